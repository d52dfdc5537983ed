//! Real OS processes (the test binary re-run as a child): ten schedulers ticking one
//! `@every 100ms` schedule fire each boundary exactly once, and a schedule registered by another
//! process wakes a scheduler that sleeps until a fire an hour away.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Timelike, Utc};
use honker_core::{Clock, Millis, SystemClock};
use honker_cron::{
    Misfire, Schedule, ScheduleOptions, ScheduleSpec, Scheduler, SchedulerOptions, register,
};

use crate::util::{count, db, jobs_in};

const ROLE: &str = "HONKER_CRON_CHILD";
const DB: &str = "HONKER_CRON_DB";
const STOP_AT: &str = "HONKER_CRON_STOP_AT_MS";
const TARGET: &str = "HONKER_CRON_TARGET_MS";

fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

fn child_db() -> PathBuf {
    PathBuf::from(std::env::var(DB).expect("the parent names the database"))
}

fn env_ms(key: &str) -> i64 {
    std::env::var(key).unwrap().parse().unwrap()
}

fn spawn(role: &str, test: &str, db: &Path, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DB, db)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn wait_all(children: Vec<Child>, deadline: Instant) {
    for mut child in children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "a child failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("a child did not finish before the deadline");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Child role: run a scheduler until the parent's stop time.
#[test]
fn child_scheduler() {
    if role().as_deref() != Some("scheduler") {
        return;
    }
    let db = child_db();
    let wake = honker_wake::wake_for(&db).unwrap();
    let scheduler = Scheduler::start(&db, wake, SchedulerOptions::default()).unwrap();
    let stop_at = Millis(env_ms(STOP_AT));
    // Not a synchronisation: the child's lifetime is fixed by the parent.
    std::thread::sleep(SystemClock.now().until(stop_at));
    let report = scheduler.shutdown().unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.last_error);
}

/// Child role: register a schedule that fires once, at the parent's target second.
#[test]
fn child_register() {
    if role().as_deref() != Some("register") {
        return;
    }
    let conn = honker_core::open(child_db()).unwrap();
    let target = DateTime::<Utc>::from_timestamp_millis(env_ms(TARGET)).unwrap();
    let expr = format!(
        "{} {} {} {} {} *",
        target.second(),
        target.minute(),
        target.hour(),
        target.day(),
        target.month()
    );
    let spec = ScheduleSpec::new("soon", Schedule::parse(&expr).unwrap(), "q", "{}").with_options(
        ScheduleOptions {
            max_runs: Some(1),
            ..ScheduleOptions::default()
        },
    );
    register(&conn, &spec, SystemClock.now()).unwrap();
}

fn deep() -> bool {
    std::env::var("HONKER_DEEP_TESTS").is_ok_and(|v| v == "1")
}

#[test]
fn ten_scheduler_processes_fire_each_boundary_exactly_once() {
    if role().is_some() {
        return;
    }
    let (_dir, path, conn) = db();
    // The 10 s in every run; deep runs go on for a minute.
    let run_ms = if deep() { 60_000 } else { 10_000 };
    let now = SystemClock.now();
    // Start a little ahead so the processes are up before the first boundary; `all` catches up
    // whatever a slow start or a loaded machine makes late, so every boundary must fire.
    let start = Millis(now.0 + 500);
    let end_at = start.0 + run_ms;
    let spec = ScheduleSpec::new("tenx", Schedule::parse("@every 100ms").unwrap(), "q", "{}")
        .with_options(ScheduleOptions {
            misfire: Misfire::All { cap: 1000 },
            end_at_ms: Some(end_at),
            ..ScheduleOptions::default()
        });
    let info = register(&conn, &spec, start).unwrap();
    let first = info.next_fire.unwrap().0;
    let expected: Vec<i64> = (0..)
        .map(|k| first + 100 * k)
        .take_while(|t| *t <= end_at)
        .collect();
    let children: Vec<Child> = (0..10)
        .map(|_| {
            spawn(
                "scheduler",
                "multiprocess::child_scheduler",
                &path,
                &[(STOP_AT, (end_at + 1_500).to_string())],
            )
        })
        .collect();
    wait_all(
        children,
        Instant::now() + Duration::from_millis(run_ms as u64 + 60_000),
    );
    let fired: Vec<i64> = conn
        .prepare("SELECT fire_ms FROM honker_fires WHERE schedule = 'tenx' ORDER BY fire_ms")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        fired, expected,
        "one fire per boundary, none twice, none lost"
    );
    assert_eq!(
        jobs_in(&conn, "q") as usize,
        expected.len(),
        "one job per fire"
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM honker_fires WHERE job_id IS NULL"
        ),
        0
    );
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn a_schedule_registered_elsewhere_wakes_a_scheduler_sleeping_for_an_hour() {
    if role().is_some() {
        return;
    }
    let (_dir, path, conn) = db();
    let now = SystemClock.now();
    let hour_away = DateTime::<Utc>::from_timestamp_millis(now.0 + 3_600_000).unwrap();
    let far = format!(
        "{} {} {} {} {} *",
        hour_away.second(),
        hour_away.minute(),
        hour_away.hour(),
        hour_away.day(),
        hour_away.month()
    );
    let spec = ScheduleSpec::new("far", Schedule::parse(&far).unwrap(), "q", "{}");
    register(&conn, &spec, now).unwrap();
    let wake = honker_wake::wake_for(&path).unwrap();
    let scheduler =
        Scheduler::start(&path, Arc::clone(&wake), SchedulerOptions::default()).unwrap();
    // The target second is far enough out for the child to start and register first.
    let target = (now.0 / 1000 + 3) * 1000;
    let child = spawn(
        "register",
        "multiprocess::child_register",
        &path,
        &[(TARGET, target.to_string())],
    );
    wait_all(vec![child], Instant::now() + Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    let fired_at = loop {
        let row: Option<(i64, i64)> = conn
            .query_row(
                "SELECT fire_ms, fired_at_ms FROM honker_fires WHERE schedule = 'soon'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        if let Some((fire_ms, fired_at)) = row {
            assert_eq!(fire_ms, target);
            break fired_at;
        }
        assert!(Instant::now() < deadline, "the new schedule never fired");
        std::thread::sleep(Duration::from_millis(10));
    };
    let late = fired_at - target;
    eprintln!("fired {late} ms after its boundary");
    // The scheduler was asleep until a fire an hour away: without the wake it would fire about
    // an hour late. The spec asks for 100 ms; the bound leaves room for a loaded 2-core machine.
    assert!(
        (0..1_000).contains(&late),
        "fired {late} ms after its boundary"
    );
    assert!(SystemClock.now().0 - now.0 < 3_600_000);
    scheduler.shutdown().unwrap();
    assert_eq!(jobs_in(&conn, "q"), 1);
}

/// Child role: compute next fire times under whatever `TZ` the parent set.
#[test]
fn child_zone_check() {
    if role().as_deref() != Some("zone") {
        return;
    }
    // 09:00 UTC, and 09:00 in Berlin (08:00 UTC in winter), whatever the host's zone.
    let utc = Schedule::parse("0 9 * * *").unwrap();
    assert_eq!(utc.next_after(Millis(0)), Some(Millis(9 * 3_600_000)));
    let berlin = Schedule::parse_in("0 9 * * *", "Europe/Berlin").unwrap();
    assert_eq!(berlin.next_after(Millis(0)), Some(Millis(8 * 3_600_000)));
}

#[test]
fn next_fire_times_do_not_depend_on_the_host_tz() {
    if role().is_some() {
        return;
    }
    let (_dir, path, _conn) = db();
    for tz in [
        "America/New_York",
        "Asia/Tokyo",
        "Pacific/Kiritimati",
        ":/etc/localtime",
    ] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "multiprocess::child_zone_check",
            "--test-threads=1",
        ])
        .env(ROLE, "zone")
        .env(DB, &path)
        .env("TZ", tz)
        .stdout(Stdio::null());
        let status = cmd.status().unwrap();
        assert!(status.success(), "with TZ={tz}: {status}");
    }
}
