//! Ticking: one job per due boundary with its fire row, no second fire, and the misfire,
//! overlap, max_runs and end_at policies.

use honker_core::Millis;
use honker_cron::{Misfire, Overlap, Schedule, ScheduleOptions, ScheduleSpec, register, tick};

use crate::util::{count, db, jobs_in, limit_payloads};

const H: i64 = 3_600_000;

fn hourly(name: &str, options: ScheduleOptions) -> ScheduleSpec {
    ScheduleSpec::new(
        name,
        Schedule::parse("@every 1h").unwrap(),
        "q",
        r#"{"n":1}"#,
    )
    .with_options(options)
}

#[test]
fn a_boundary_fires_one_job_and_one_fire_row_once() {
    let (_d, _p, conn) = db();
    let info = register(&conn, &hourly("h", ScheduleOptions::default()), Millis(10)).unwrap();
    assert_eq!(info.next_fire, Some(Millis(H)));
    assert_eq!(tick(&conn, Millis(H - 1)).unwrap().jobs(), 0);
    let r = tick(&conn, Millis(H + 5)).unwrap();
    assert_eq!(r.jobs(), 1);
    assert_eq!(r.fires[0].fire_ms, Millis(H));
    // A second tick at the same instant, and a later one before the next boundary: nothing.
    assert_eq!(tick(&conn, Millis(H + 5)).unwrap().jobs(), 0);
    assert_eq!(tick(&conn, Millis(2 * H - 1)).unwrap().jobs(), 0);
    assert_eq!(jobs_in(&conn, "q"), 1);
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_fires"), 1);
    let job: i64 = conn
        .query_row(
            "SELECT job_id FROM honker_fires WHERE schedule = 'h'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let payload: String = conn
        .query_row(
            "SELECT payload FROM honker_jobs WHERE id = ?1",
            [job],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(payload, r#"{"n":1}"#);
    let next: i64 = conn
        .query_row("SELECT next_fire_ms FROM honker_schedules", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(next, 2 * H);
}

#[test]
fn a_fire_row_already_there_blocks_the_job() {
    // Another process (with a different view of the schedule) fired this boundary already.
    let (_d, _p, conn) = db();
    register(&conn, &hourly("h", ScheduleOptions::default()), Millis(0)).unwrap();
    conn.execute(
        "INSERT INTO honker_fires (schedule, fire_ms, fired_at_ms, job_id) VALUES ('h', ?1, ?1, NULL)",
        [H],
    )
    .unwrap();
    assert_eq!(tick(&conn, Millis(H)).unwrap().jobs(), 0);
    assert_eq!(jobs_in(&conn, "q"), 0);
}

/// Fire at 1h, then stay down across the boundaries 2h..6h and tick again at 6h10m.
fn down_across_five(misfire: Misfire) -> (Vec<i64>, u64) {
    let (_d, _p, conn) = db();
    let options = ScheduleOptions {
        misfire,
        ..ScheduleOptions::default()
    };
    register(&conn, &hourly("h", options), Millis(0)).unwrap();
    assert_eq!(tick(&conn, Millis(H)).unwrap().jobs(), 1);
    let r = tick(&conn, Millis(6 * H + 600_000)).unwrap();
    let fired: Vec<i64> = r.fires.iter().map(|f| f.fire_ms.0 / H).collect();
    assert_eq!(jobs_in(&conn, "q") as usize, 1 + fired.len());
    let next: i64 = conn
        .query_row("SELECT next_fire_ms FROM honker_schedules", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(next, 7 * H, "the schedule resumes with its next boundary");
    (fired, r.missed)
}

#[test]
fn misfire_skip_once_all_fire_zero_one_five() {
    assert_eq!(down_across_five(Misfire::Skip), (vec![], 5));
    assert_eq!(down_across_five(Misfire::Once).0, vec![6]);
    assert_eq!(
        down_across_five(Misfire::All { cap: 100 }),
        (vec![2, 3, 4, 5, 6], 0)
    );
    assert_eq!(
        down_across_five(Misfire::All { cap: 3 }),
        (vec![4, 5, 6], 2)
    );
}

#[test]
fn a_late_tick_within_grace_is_on_time_but_an_earlier_boundary_is_missed() {
    let (_d, _p, conn) = db();
    register(&conn, &hourly("h", ScheduleOptions::default()), Millis(0)).unwrap();
    // 30 s late: on time.
    assert_eq!(tick(&conn, Millis(H + 30_000)).unwrap().jobs(), 1);
    // 2h was missed (3h passed too); 3h is 10 s late: only 3h fires under skip.
    let r = tick(&conn, Millis(3 * H + 10_000)).unwrap();
    assert_eq!(
        r.fires.iter().map(|f| f.fire_ms).collect::<Vec<_>>(),
        vec![Millis(3 * H)]
    );
    assert_eq!(r.missed, 1);
}

#[test]
fn misfire_with_a_settable_clock_through_the_scheduler_loop_shape() {
    // The same outage, driven by a SettableClock as a scheduler would read it.
    let clock = honker_core::SettableClock::new(Millis(0));
    let (_d, _p, conn) = db();
    let opts = ScheduleOptions {
        misfire: Misfire::All { cap: 100 },
        ..ScheduleOptions::default()
    };
    register(&conn, &hourly("h", opts), honker_core::Clock::now(&clock)).unwrap();
    clock.advance(H);
    assert_eq!(
        tick(&conn, honker_core::Clock::now(&clock)).unwrap().jobs(),
        1
    );
    clock.advance(5 * H + 1);
    assert_eq!(
        tick(&conn, honker_core::Clock::now(&clock)).unwrap().jobs(),
        5
    );
}

#[test]
fn overlap_skip_waits_for_the_previous_job() {
    let (_d, _p, conn) = db();
    let opts = ScheduleOptions {
        overlap: Overlap::Skip,
        ..ScheduleOptions::default()
    };
    register(&conn, &hourly("h", opts), Millis(0)).unwrap();
    let first = tick(&conn, Millis(H)).unwrap();
    assert_eq!(first.jobs(), 1);
    // The job is still pending: the next boundary is recorded without a job.
    let second = tick(&conn, Millis(2 * H)).unwrap();
    assert_eq!(second.fires.len(), 1);
    assert_eq!(second.fires[0].job_id, None);
    assert_eq!(jobs_in(&conn, "q"), 1);
    // Once the job is gone (acked), the next boundary fires again.
    honker_queue::cancel(&conn, first.fires[0].job_id.unwrap()).unwrap();
    assert_eq!(tick(&conn, Millis(3 * H)).unwrap().jobs(), 1);
}

#[test]
fn overlap_allow_fires_regardless() {
    let (_d, _p, conn) = db();
    register(&conn, &hourly("h", ScheduleOptions::default()), Millis(0)).unwrap();
    assert_eq!(tick(&conn, Millis(H)).unwrap().jobs(), 1);
    assert_eq!(tick(&conn, Millis(2 * H)).unwrap().jobs(), 1);
    assert_eq!(jobs_in(&conn, "q"), 2);
}

#[test]
fn max_runs_and_end_at_finish_a_schedule() {
    let (_d, _p, conn) = db();
    let opts = ScheduleOptions {
        max_runs: Some(2),
        misfire: Misfire::All { cap: 100 },
        ..ScheduleOptions::default()
    };
    register(&conn, &hourly("runs", opts), Millis(0)).unwrap();
    let opts = ScheduleOptions {
        end_at_ms: Some(3 * H),
        misfire: Misfire::All { cap: 100 },
        ..ScheduleOptions::default()
    };
    register(&conn, &hourly("end", opts), Millis(0)).unwrap();
    let r = tick(&conn, Millis(10 * H)).unwrap();
    let of = |name: &str| r.fires.iter().filter(|f| f.schedule == name).count();
    assert_eq!(of("runs"), 2);
    assert_eq!(of("end"), 3);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM honker_schedules WHERE next_fire_ms IS NULL"
        ),
        2,
        "both are finished"
    );
    assert_eq!(tick(&conn, Millis(20 * H)).unwrap().jobs(), 0);
}

#[test]
fn a_paused_schedule_does_not_fire_and_resumes_from_now() {
    let (_d, _p, conn) = db();
    register(&conn, &hourly("h", ScheduleOptions::default()), Millis(0)).unwrap();
    honker_cron::pause(&conn, "h", Millis(1)).unwrap();
    assert_eq!(tick(&conn, Millis(5 * H)).unwrap().jobs(), 0);
    assert_eq!(honker_cron::next_due(&conn).unwrap(), None);
    honker_cron::resume(&conn, "h", Millis(5 * H + 10)).unwrap();
    assert_eq!(honker_cron::next_due(&conn).unwrap(), Some(Millis(6 * H)));
    assert_eq!(tick(&conn, Millis(6 * H)).unwrap().jobs(), 1);
}

#[test]
fn ticking_cost_reads_only_due_schedules_by_index() {
    let (_d, _p, conn) = db();
    for sql in [
        "SELECT name FROM honker_schedules WHERE paused = 0 AND next_fire_ms <= 5 ORDER BY next_fire_ms LIMIT 1000",
        "SELECT next_fire_ms FROM honker_schedules WHERE paused = 0 AND next_fire_ms IS NOT NULL ORDER BY next_fire_ms LIMIT 1",
        "SELECT 1 FROM honker_fires WHERE schedule = 'a' AND fire_ms = 5",
        "DELETE FROM honker_fires WHERE (schedule, fire_ms) IN (SELECT schedule, fire_ms FROM honker_fires WHERE fired_at_ms < 5 ORDER BY fired_at_ms LIMIT 100)",
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for step in &plan {
            assert!(
                !(step.starts_with("SCAN") && step.contains("honker_")),
                "{sql}\n scans: {plan:?}"
            );
        }
    }
}

#[test]
fn fire_history_is_pruned_by_age() {
    let (_d, _p, conn) = db();
    register(&conn, &hourly("h", ScheduleOptions::default()), Millis(0)).unwrap();
    for k in 1..=5 {
        tick(&conn, Millis(k * H)).unwrap();
    }
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_fires"), 5);
    assert_eq!(
        honker_cron::prune_fires(&conn, Millis(3 * H), 100).unwrap(),
        2
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_fires"), 3);
    // A tick a retention period later prunes the rest on its own.
    tick(
        &conn,
        Millis(5 * H + honker_cron::DEFAULT_FIRE_RETENTION_MS + 1),
    )
    .unwrap();
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM honker_fires WHERE fired_at_ms <= 5 * 3600000"
        ),
        0
    );
}

#[test]
fn a_schedule_whose_job_the_queue_refuses_is_paused_and_the_others_fire() {
    let (_d, _p, conn) = db();
    register(&conn, &hourly("a", ScheduleOptions::default()), Millis(0)).unwrap();
    let big = |payload: &str| {
        ScheduleSpec::new("b", Schedule::parse("@every 1h").unwrap(), "small", payload)
    };
    register(
        &conn,
        &big(r#"{"much":"too long for the queue"}"#),
        Millis(0),
    )
    .unwrap();
    let c = ScheduleSpec::new(
        "c",
        Schedule::parse("@every 1h").unwrap(),
        "small",
        "[1,2,3]",
    );
    register(&conn, &c, Millis(0)).unwrap();
    // The queue now refuses both payloads at enqueue time.
    limit_payloads(&conn, "small", 4);
    let r = tick(&conn, Millis(H)).unwrap();
    assert_eq!(r.jobs(), 1, "a still fires");
    assert_eq!(r.fires[0].schedule, "a");
    let refused: Vec<_> = r
        .refused
        .iter()
        .map(|f| (f.schedule.as_str(), f.code))
        .collect();
    assert_eq!(
        refused,
        [("b", "payload.too_large"), ("c", "payload.too_large")]
    );
    // b and c wrote nothing; b kept its next fire, and is paused with the reason.
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM honker_fires WHERE schedule <> 'a'"
        ),
        0
    );
    assert_eq!(jobs_in(&conn, "small"), 0);
    let b = honker_cron::get(&conn, "b").unwrap().unwrap();
    assert!(b.paused);
    assert_eq!(b.next_fire, Some(Millis(H)));
    let why = b.last_error.expect("the refusal is kept");
    assert!(why.starts_with("payload.too_large: "), "{why}");
    // Nothing is due any more, so a scheduler sleeps instead of spinning on b.
    assert_eq!(honker_cron::next_due(&conn).unwrap(), Some(Millis(2 * H)));

    // Registering b again with a payload the queue takes lifts the pause and keeps its next
    // fire: the boundary it missed is a misfire (skip: only the on-time one fires).
    let b = register(&conn, &big("{}"), Millis(H + 10)).unwrap();
    assert!(!b.paused && b.last_error.is_none());
    assert_eq!(b.next_fire, Some(Millis(H)));
    let r = tick(&conn, Millis(2 * H)).unwrap();
    assert_eq!(r.jobs(), 2);
    assert_eq!(r.missed, 1);
    assert_eq!(jobs_in(&conn, "small"), 1);
}

#[test]
fn resuming_a_refused_schedule_clears_its_error_and_a_manual_pause_survives_a_register() {
    let (_d, _p, conn) = db();
    let spec = ScheduleSpec::new(
        "b",
        Schedule::parse("@every 1h").unwrap(),
        "small",
        "[1,2,3]",
    );
    register(&conn, &spec, Millis(0)).unwrap();
    limit_payloads(&conn, "small", 2);
    assert_eq!(tick(&conn, Millis(H)).unwrap().refused.len(), 1);
    honker_cron::resume(&conn, "b", Millis(H + 1)).unwrap();
    let b = honker_cron::get(&conn, "b").unwrap().unwrap();
    assert!(!b.paused && b.last_error.is_none());
    assert_eq!(
        b.next_fire,
        Some(Millis(2 * H)),
        "resume fires from the next boundary"
    );
    // A pause by hand is not lifted by registering again.
    honker_cron::pause(&conn, "b", Millis(H + 2)).unwrap();
    let b = register(&conn, &spec, Millis(H + 3)).unwrap();
    assert!(b.paused);
}

/// Wait (with a generous deadline) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_scheduler_on_a_settable_clock_fires_on_time_and_applies_the_misfire_policy() {
    let (_d, path, conn) = db();
    let clock = honker_core::SettableClock::new(Millis(0));
    let wake = std::sync::Arc::new(honker_core::ManualWake::new());
    let opts = ScheduleOptions {
        misfire: Misfire::Once,
        ..ScheduleOptions::default()
    };
    register(&conn, &hourly("h", opts), Millis(0)).unwrap();
    let scheduler = honker_cron::Scheduler::start(
        &path,
        wake.clone(),
        honker_cron::SchedulerOptions {
            clock: std::sync::Arc::new(clock.clone()),
            ..honker_cron::SchedulerOptions::default()
        },
    )
    .unwrap();
    // It sleeps until 1h (real time); move the clock there and wake it.
    clock.set(Millis(H));
    honker_core::WakeSource::kick(&*wake);
    eventually("the on-time fire", || scheduler.jobs() == 1);
    // Down across 2h..6h: `once` fires one job for all of them.
    clock.set(Millis(6 * H + 600_000));
    honker_core::WakeSource::kick(&*wake);
    eventually("the misfire", || scheduler.jobs() == 2);
    let report = scheduler.shutdown().unwrap();
    assert_eq!(report.jobs, 2);
    assert_eq!(report.errors, 0);
    assert_eq!(jobs_in(&conn, "q"), 2);
    let fired: Vec<i64> = conn
        .prepare("SELECT fire_ms FROM honker_fires ORDER BY fire_ms")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(fired, vec![H, 6 * H]);
}

#[test]
fn the_on_tick_hook_sees_each_eventful_tick_and_its_panic_is_not_fatal() {
    use std::sync::{Arc, Mutex};
    let (_d, path, conn) = db();
    let clock = honker_core::SettableClock::new(Millis(0));
    let wake = Arc::new(honker_core::ManualWake::new());
    register(&conn, &hourly("h", ScheduleOptions::default()), Millis(0)).unwrap();
    let seen: Arc<Mutex<Vec<Millis>>> = Arc::default();
    let hook: honker_cron::TickHook = {
        let seen = Arc::clone(&seen);
        Arc::new(move |report: &honker_cron::TickReport| {
            // A panic below poisons the lock; later calls still record.
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.extend(report.fires.iter().map(|f| f.fire_ms));
            assert!(seen.len() < 2, "a hook that panics on its second call");
        })
    };
    let scheduler = honker_cron::Scheduler::start(
        &path,
        wake.clone(),
        honker_cron::SchedulerOptions {
            clock: Arc::new(clock.clone()),
            on_tick: Some(hook),
            ..honker_cron::SchedulerOptions::default()
        },
    )
    .unwrap();
    for hour in 1..=3 {
        clock.set(Millis(hour * H));
        honker_core::WakeSource::kick(&*wake);
        eventually("the fire", || scheduler.jobs() == hour as u64);
    }
    let report = scheduler.shutdown().unwrap();
    assert_eq!(report.jobs, 3, "the scheduler outlived its hook's panic");
    assert_eq!(report.errors, 2);
    assert_eq!(
        report.last_error.as_deref(),
        Some("the on_tick hook panicked")
    );
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(*seen, [Millis(H), Millis(2 * H), Millis(3 * H)]);
}

/// Issue 11.3: the scheduler checked the stop flag before it sampled the epoch, so a shutdown
/// kick landing between the two was inside the sample and the scheduler slept until its next fire
/// (for ever with no schedules). `with_slow_epochs` holds every `epoch()` for 30 ms, standing in
/// for a preemption between the two lines, and the shutdown lands inside that window.
#[test]
fn shutdown_during_the_epoch_sample_is_not_slept_through() {
    let (_d, path, _conn) = db();
    let wake = honker_core::ManualWake::with_slow_epochs(std::time::Duration::from_millis(30));
    let scheduler = honker_cron::Scheduler::start(
        &path,
        std::sync::Arc::new(wake.clone()),
        honker_cron::SchedulerOptions::default(),
    )
    .unwrap();
    while wake.epoch_calls() == 0 {
        std::thread::yield_now();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(scheduler.shutdown().map(|_| ())).unwrap());
    let done = rx.recv_timeout(std::time::Duration::from_secs(10));
    assert!(
        matches!(done, Ok(Ok(()))),
        "shutdown did not return: {done:?}"
    );
}
