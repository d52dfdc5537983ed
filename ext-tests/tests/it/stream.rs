//! The durable-stream SQL functions through the extension in Debian's `sqlite3` CLI: publish,
//! read, commit offsets, lag, trims, typed errors, and a blocked `honker_read_wait` woken by a
//! publish from a Rust process.

use rusqlite::Connection;

use crate::support::{Running, run, sqlite3, temp_db, wait_until_asleep};

fn rows(text: &str) -> Vec<serde_json::Value> {
    match serde_json::from_str(text.trim()) {
        Ok(serde_json::Value::Array(v)) => v,
        other => panic!("not a JSON array: {text:?} ({other:?})"),
    }
}

#[test]
fn publish_read_commit_and_lag_in_the_sqlite3_cli() {
    let (_dir, db) = temp_db();
    let out = run(sqlite3(
        &db,
        &[
            r#"SELECT honker_publish('orders', '{"id":1}')"#,
            r#"SELECT honker_publish('orders', '{"id":2}', 'k2')"#,
            r#"SELECT honker_publish('other', '0')"#,
            "SELECT honker_read('orders', 0, 10)",
            "SELECT honker_commit_offset('billing', 'orders', 1)",
            "SELECT honker_commit_offset('billing', 'orders', 1)",
            "SELECT honker_offset('billing', 'orders')",
            "SELECT coalesce(honker_offset('nobody', 'orders'), 'null')",
            "SELECT honker_consumers('orders')",
            "SELECT honker_streams()",
        ],
    ))
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10, "{out}");
    assert_eq!(&lines[..3], ["1", "2", "3"], "{out}");
    let read = rows(lines[3]);
    assert_eq!(read.len(), 2);
    assert_eq!(read[0]["payload"], serde_json::json!({"id": 1}));
    assert_eq!(read[0]["key"], serde_json::Value::Null);
    assert_eq!(read[1]["key"], "k2");
    assert_eq!(read[1]["offset"], 2);
    assert_eq!(&lines[4..8], ["1", "0", "1", "null"], "{out}");
    let lag = rows(lines[8]);
    assert_eq!(lag[0]["consumer"], "billing");
    assert_eq!(lag[0]["lag_events"], 1);
    let topics = rows(lines[9]);
    assert_eq!(topics.len(), 2);
    assert_eq!(topics[0]["topic"], "orders");
    assert_eq!(topics[0]["events"], 2);
}

#[test]
fn trims_wait_for_consumers_unless_forced_and_errors_are_typed() {
    let (_dir, db) = temp_db();
    let out = run(sqlite3(
        &db,
        &[
            "SELECT honker_publish('t', '1')",
            "SELECT honker_publish('t', '2')",
            "SELECT honker_publish('t', '3')",
            "SELECT honker_commit_offset('c', 't', 1)",
            r#"SELECT honker_stream_trim('t', '{"max_events":0}')"#,
            r#"SELECT honker_stream_trim('t', '{"max_events":0,"force":true}')"#,
        ],
    ))
    .ok();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1", "2", "3", "1", "1", "2"]
    );
    for (sql, code) in [
        ("SELECT honker_read('t', 1, 10)", "stream.trimmed"),
        ("SELECT honker_read('t', -1, 10)", "arg.invalid"),
        ("SELECT honker_read('t', 'x', 10)", "arg.invalid"),
        ("SELECT honker_publish('t', 'not json')", "payload.not_json"),
        ("SELECT honker_publish('', '1')", "stream.bad_topic"),
        (
            "SELECT honker_commit_offset('c', 't', 99)",
            "stream.offset_ahead",
        ),
        ("SELECT honker_commit_offset('c', 't', -1)", "arg.invalid"),
        (
            r#"SELECT honker_stream_trim('t', '{"bogus":1}')"#,
            "options.unknown",
        ),
        (
            "BEGIN; SELECT honker_read_wait('t', 3, 1, 10)",
            "wait.in_transaction",
        ),
    ] {
        let stderr = run(sqlite3(&db, &[sql])).failed();
        assert!(
            stderr.contains(&format!("honker: {code}: ")),
            "{sql}: expected {code}, got {stderr:?}"
        );
    }
    let conn = Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM honker_streams", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn a_cli_blocked_in_read_wait_gets_a_rust_publish() {
    let (_dir, db) = temp_db();
    let conn = honker_core::open(&db).expect("open");
    let before = honker_stream::publish(&conn, "w", r#""before""#).expect("publish");
    let mut cli = Running::spawn(sqlite3(
        &db,
        &[&format!(
            "SELECT honker_read_wait('w', {before}, 10, 20000)"
        )],
    ));
    let pid = cli.pid();
    wait_until_asleep(pid, pid, "the CLI in honker_read_wait");
    let offset = honker_stream::publish(&conn, "w", r#"{"hello":1}"#).expect("publish");
    let line = cli.expect_line("");
    let got = rows(&line);
    assert_eq!(got.len(), 1, "{line}");
    assert_eq!(got[0]["offset"], offset.get());
    assert_eq!(got[0]["payload"]["hello"], 1);
    let (status, _) = cli.finish();
    assert!(status.success(), "{status}");
}
