//! The cron SQL functions through the extension in Debian's `sqlite3` CLI: schedule, list,
//! next fire times, tick, pause/resume/unschedule, and typed errors that write nothing.

use crate::support::{json_rows, run, sqlite3, temp_db};

#[test]
fn schedule_tick_and_list_in_the_sqlite3_cli() {
    let (_dir, db) = temp_db();
    let out = run(sqlite3(
        &db,
        &[
            // 2026-01-01T00:00:00Z is 1767225600000.
            "SELECT honker_cron_next('0 9 * * *', 1767225600000, 'Europe/Berlin')",
            "SELECT honker_cron_next('@every 250ms', 1000, 'UTC', 3)",
            r#"SELECT honker_schedule('beat', '@every 1s', 'jobs', '{"kind":"beat"}', '{"misfire":"all","misfire_cap":3}') > 0"#,
            "UPDATE honker_schedules SET next_fire_ms = 1000 WHERE name = 'beat'",
            // 125 boundaries due: the latest is on time, the cap of 3 fires the latest three
            // missed ones before it.
            "SELECT honker_cron_tick(5000 + 120000)",
            "SELECT honker_cron_tick(5000 + 120000)",
            "SELECT count(*) FROM honker_jobs WHERE queue = 'jobs'",
            "SELECT honker_schedule_pause('beat')",
            "SELECT honker_schedules(0)",
            "SELECT honker_schedule_resume('beat')",
            "SELECT honker_unschedule('beat')",
            "SELECT count(*) FROM honker_schedules",
        ],
    ))
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    // The UPDATE prints nothing.
    assert_eq!(lines.len(), 11, "{out}");
    assert_eq!(lines[0], "1767254400000", "09:00 Berlin is 08:00 UTC");
    assert_eq!(lines[1], "[1250,1500,1750]");
    assert_eq!(lines[2], "1");
    let fired = json_rows(lines[3]);
    let times: Vec<i64> = fired
        .iter()
        .map(|f| f["fire_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(times, [122_000, 123_000, 124_000, 125_000], "{out}");
    assert_eq!(lines[4], "[]", "a second tick fires nothing");
    assert_eq!(lines[5], "4");
    assert_eq!(lines[6], "1");
    let list = json_rows(lines[7]);
    assert_eq!(list[0]["paused"], true);
    assert_eq!(list[0]["payload"]["kind"], "beat");
    assert_eq!(list[0]["runs"], 4);
    assert_eq!(&lines[8..], ["1", "1", "0"], "{out}");
}

#[test]
fn bad_cron_input_is_a_typed_error_and_writes_nothing() {
    let (_dir, db) = temp_db();
    for (sql, code) in [
        (
            "SELECT honker_schedule('a', '* * * 13 *', 'q', '{}')",
            "cron.bad_expression",
        ),
        (
            "SELECT honker_schedule('a', '* * * * *', 'q', '{}', '{\"tz\":\"Mars/Base\"}')",
            "cron.unknown_zone",
        ),
        (
            "SELECT honker_schedule('a', '* * * * *', 'q', '{}', '{\"when\":1}')",
            "options.unknown",
        ),
        ("SELECT honker_schedule_pause('nope')", "cron.not_found"),
    ] {
        let err = run(sqlite3(&db, &[sql])).failed();
        assert!(err.contains(&format!("honker: {code}: ")), "{sql}: {err}");
    }
    let out = run(sqlite3(&db, &["SELECT count(*) FROM honker_schedules"])).ok();
    assert_eq!(out.trim(), "0");
}
