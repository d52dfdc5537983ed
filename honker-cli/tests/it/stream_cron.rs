//! The stream and cron commands as real processes: `stream publish|tail|ls` and
//! `cron add|ls|next|rm`, including their typed errors.

use crate::{ok, path_str, run, text};

/// Runs `args`, expects failure with `error [<code>]` on stderr, and returns stderr.
fn fails_with(args: &[&str], code: &str) -> String {
    let out = run(args);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "honker {args:?} succeeded");
    assert!(stderr.contains(&format!("error [{code}]")), "{stderr}");
    stderr
}

#[test]
fn stream_publish_then_tail_shows_events_in_offset_order_with_embedded_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let db = path_str(&db);
    let first: i64 = ok(&["stream", "--db", db, "publish", "orders", r#"{"n":1}"#])
        .trim()
        .parse()
        .unwrap();
    let second: i64 = ok(&[
        "stream",
        "--db",
        db,
        "publish",
        "orders",
        r#"{"n":2}"#,
        "--key",
        "k",
    ])
    .trim()
    .parse()
    .unwrap();
    assert!(second > first, "offsets increase: {first} then {second}");
    let events: Vec<serde_json::Value> = ok(&["stream", "--db", db, "tail", "orders", "-n", "10"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["offset"], first);
    assert_eq!(events[0]["payload"]["n"], 1, "payload embedded as JSON");
    assert_eq!(events[1]["key"], "k");
    let ls = ok(&["stream", "--db", db, "ls"]);
    let row = ls.lines().find(|l| l.starts_with("orders")).expect(&ls);
    assert_eq!(row.split_whitespace().nth(1), Some("2"), "two events: {ls}");
}

#[test]
fn stream_publish_refuses_non_json_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let db = path_str(&db);
    fails_with(
        &["stream", "--db", db, "publish", "orders", "not json"],
        "payload.not_json",
    );
    let tail = ok(&["stream", "--db", db, "tail", "orders", "-n", "10"]);
    assert!(tail.trim().is_empty(), "nothing was published: {tail}");
}

#[test]
fn cron_add_ls_next_rm_round_trip_in_a_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let db = path_str(&db);
    ok(&[
        "cron",
        "--db",
        db,
        "add",
        "nightly",
        "0 3 * * *",
        "reports",
        r#"{"r":1}"#,
        "--tz",
        "Europe/Berlin",
    ]);
    let listed: serde_json::Value =
        serde_json::from_str(ok(&["cron", "--db", db, "ls", "--json"]).trim()).unwrap();
    assert_eq!(listed["name"], "nightly");
    assert_eq!(listed["tz"], "Europe/Berlin");
    let next_fire = listed["next_fire_ms"].as_i64().unwrap();
    // 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
    let utc_hour = (next_fire / 3_600_000) % 24;
    assert!(matches!(utc_hour, 1 | 2), "{listed}");

    // 2026-11-24T18:40:31Z: the next two 03:00 Berlin fires are 02:00 UTC on the 25th and 26th.
    let next = ok(&[
        "cron",
        "--db",
        db,
        "next",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "--after-ms",
        "1795550431216",
        "-n",
        "2",
    ]);
    let times: Vec<&str> = next
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(times, ["1795572000000", "1795658400000"], "{next}");

    ok(&["cron", "--db", db, "rm", "nightly"]);
    fails_with(&["cron", "--db", db, "rm", "nightly"], "cron.not_found");
    assert!(ok(&["cron", "--db", db, "ls", "--json"]).trim().is_empty());
}

#[test]
fn cron_add_refuses_a_bad_expression_with_its_position_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let db = path_str(&db);
    let stderr = fails_with(
        &["cron", "--db", db, "add", "bad", "* * * 13 *", "q"],
        "cron.bad_expression",
    );
    assert!(stderr.contains("at byte 6"), "{stderr}");
    assert!(ok(&["cron", "--db", db, "ls", "--json"]).trim().is_empty());
}

#[test]
fn scheduler_logs_each_fire_and_pauses_a_schedule_whose_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let db = path_str(&db);
    ok(&["cron", "--db", db, "add", "beat", "@every 100ms", "ticks"]);
    ok(&[
        "cron",
        "--db",
        db,
        "add",
        "big",
        "@every 100ms",
        "tiny",
        "[1,2,3]",
    ]);
    let set_limit = |bytes: u32| {
        let set = format!(r#"{{"max_payload_bytes":{bytes}}}"#);
        let shown = ok(&[
            "queue",
            "configure",
            "--db",
            db,
            "--queue",
            "tiny",
            "--set",
            &set,
        ]);
        let options: serde_json::Value = serde_json::from_str(shown.trim()).unwrap();
        assert_eq!(options["max_payload_bytes"], bytes, "{shown}");
    };
    set_limit(2);

    let log = ok(&["scheduler", "--db", db, "--for-ms", "1000"]);
    let fired = log
        .lines()
        .filter(|l| l.starts_with("fired beat at ") && l.contains(": job "))
        .count();
    assert!(fired >= 2, "fewer fires than boundaries passed:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("paused big: the queue refused its job: payload.too_large: ")),
        "{log}"
    );
    assert!(!log.contains("fired big"), "{log}");
    let summary = log.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("scheduler fired {fired} jobs")),
        "{log}"
    );

    // `cron ls` says why the schedule stopped; fixing the queue and resuming restarts it.
    let ls = ok(&["cron", "--db", db, "ls"]);
    assert!(ls.contains("refused"), "{ls}");
    assert!(ls.contains("paused by a tick: payload.too_large: "), "{ls}");
    set_limit(1024);
    ok(&["cron", "--db", db, "resume", "big"]);
    let log = ok(&["scheduler", "--db", db, "--for-ms", "400"]);
    assert!(log.lines().any(|l| l.starts_with("fired big at ")), "{log}");
}
