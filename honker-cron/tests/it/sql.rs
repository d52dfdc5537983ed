//! The cron SQL functions on a plain rusqlite connection: JSON shapes, typed errors that write
//! nothing, and `honker_cron_next` usable where SQLite demands a deterministic function.

use rusqlite::Connection;

use crate::util::{count, db, limit_payloads};

fn conn_with_functions() -> (tempfile::TempDir, Connection) {
    let (dir, _path, conn) = db();
    honker_cron::sql::register(&conn).unwrap();
    (dir, conn)
}

fn text(conn: &Connection, sql: &str) -> String {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn error_of(conn: &Connection, sql: &str) -> String {
    conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
        .unwrap_err()
        .to_string()
}

#[test]
fn schedule_list_tick_pause_resume_unschedule() {
    let (_d, conn) = conn_with_functions();
    let next: i64 = conn
        .query_row(
            r#"SELECT honker_schedule('nightly', '0 3 * * *', 'jobs', '{"k":1}', '{"tz":"Europe/Berlin","misfire":"all","misfire_cap":5}')"#,
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(next > 0);
    let list: serde_json::Value =
        serde_json::from_str(&text(&conn, "SELECT honker_schedules(2)")).unwrap();
    assert_eq!(list[0]["name"], "nightly");
    assert_eq!(list[0]["tz"], "Europe/Berlin");
    assert_eq!(list[0]["payload"]["k"], 1, "payload embedded as JSON");
    assert_eq!(list[0]["misfire"], "all");
    assert_eq!(list[0]["misfire_cap"], 5);
    assert_eq!(list[0]["next_fire_ms"], next);
    assert_eq!(list[0]["upcoming"].as_array().unwrap().len(), 2);
    // Tick at the next fire: one job.
    let fired: serde_json::Value =
        serde_json::from_str(&text(&conn, &format!("SELECT honker_cron_tick({next})"))).unwrap();
    assert_eq!(fired[0]["schedule"], "nightly");
    assert_eq!(fired[0]["fire_ms"], next);
    assert!(fired[0]["job_id"].as_i64().is_some());
    assert_eq!(
        text(&conn, &format!("SELECT honker_cron_tick({next})")),
        "[]"
    );
    let one: i64 = conn
        .query_row("SELECT honker_schedule_pause('nightly')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(one, 1);
    assert_eq!(count(&conn, "SELECT paused FROM honker_schedules"), 1);
    conn.query_row("SELECT honker_schedule_resume('nightly')", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap();
    assert_eq!(count(&conn, "SELECT paused FROM honker_schedules"), 0);
    assert_eq!(count(&conn, "SELECT honker_unschedule('nightly')"), 1);
    assert_eq!(count(&conn, "SELECT honker_unschedule('nightly')"), 0);
}

#[test]
fn cron_next_one_or_many_and_deterministic() {
    let (_d, conn) = conn_with_functions();
    assert_eq!(
        count(&conn, "SELECT honker_cron_next('@every 250ms', 1000)"),
        1250
    );
    assert_eq!(
        text(
            &conn,
            "SELECT honker_cron_next('@every 250ms', 1000, 'UTC', 3)"
        ),
        "[1250,1500,1750]"
    );
    // 09:00 in Tokyo is 00:00 UTC.
    assert_eq!(
        count(
            &conn,
            "SELECT honker_cron_next('0 9 * * *', 0, 'Asia/Tokyo')"
        ),
        86_400_000
    );
    // Deterministic functions are allowed in generated columns; it reads only its arguments.
    conn.execute_batch(
        "CREATE TABLE t (expr TEXT, after INTEGER, nxt INTEGER GENERATED ALWAYS AS (honker_cron_next(expr, after)));
         INSERT INTO t (expr, after) VALUES ('@every 1s', 1500);",
    )
    .unwrap();
    assert_eq!(count(&conn, "SELECT nxt FROM t"), 2000);
}

#[test]
fn bad_arguments_are_typed_errors_and_write_nothing() {
    let (_d, conn) = conn_with_functions();
    for (sql, code) in [
        (
            "SELECT honker_schedule('a', '61 * * * *', 'q', '{}')",
            "cron.bad_expression",
        ),
        (
            "SELECT honker_schedule('a', '* * * * *', 'q', '{}', '{\"tz\":\"Mars/Base\"}')",
            "cron.unknown_zone",
        ),
        (
            "SELECT honker_schedule('a', '* * * * *', 'q', '{}', '{\"bogus\":1}')",
            "options.unknown",
        ),
        (
            "SELECT honker_schedule('a', '* * * * *', 'q', '{}', '{\"overlap\":\"maybe\"}')",
            "cron.bad_option",
        ),
        (
            "SELECT honker_schedule('a', '* * * * *', 'q', 'nope')",
            "payload.not_json",
        ),
        (
            "SELECT honker_schedule('', '* * * * *', 'q', '{}')",
            "cron.bad_name",
        ),
        ("SELECT honker_schedule('a', 5, 'q', '{}')", "arg.invalid"),
        ("SELECT honker_schedule_pause('missing')", "cron.not_found"),
        ("SELECT honker_schedule_resume('missing')", "cron.not_found"),
        (
            "SELECT honker_cron_next('@every 5x', 0)",
            "cron.bad_expression",
        ),
        (
            "SELECT honker_cron_next('* * * * *', 0, 'Nope/Nope')",
            "cron.unknown_zone",
        ),
        (
            "SELECT honker_cron_next('* * * * *', 0, 'UTC', 100000)",
            "arg.invalid",
        ),
        ("SELECT honker_cron_tick('soon')", "arg.invalid"),
    ] {
        let err = error_of(&conn, sql);
        assert!(
            err.starts_with(&format!("honker: {code}: ")),
            "{sql}: {err}"
        );
    }
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_schedules"), 0);
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_fires"), 0);
}

#[test]
fn a_refused_schedule_shows_its_pause_and_reason() {
    let (_d, conn) = conn_with_functions();
    let next: i64 = conn
        .query_row(
            "SELECT honker_schedule('s', '@every 1s', 'tiny', '[1,2,3]')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    limit_payloads(&conn, "tiny", 2);
    let fired = text(&conn, &format!("SELECT honker_cron_tick({next})"));
    assert_eq!(fired, "[]");
    let list: serde_json::Value =
        serde_json::from_str(&text(&conn, "SELECT honker_schedules()")).unwrap();
    assert_eq!(list[0]["paused"], true);
    let why = list[0]["last_error"].as_str().expect("a reason");
    assert!(why.starts_with("payload.too_large: "), "{why}");
    conn.query_row("SELECT honker_schedule_resume('s')", [], |_| Ok(()))
        .unwrap();
    let list: serde_json::Value =
        serde_json::from_str(&text(&conn, "SELECT honker_schedules()")).unwrap();
    assert_eq!(list[0]["paused"], false);
    assert_eq!(list[0]["last_error"], serde_json::Value::Null);
}
