//! The queue SQL functions through the extension in Debian's `sqlite3` CLI: an enqueue / claim /
//! ack round trip, typed errors that write nothing, and a CLI blocked in `honker_claim_wait`
//! woken by an enqueue from another `sqlite3` process.

use rusqlite::Connection;

use crate::support::{Running, json_rows, run, sqlite3, temp_db, wait_until_asleep};

fn count(db: &std::path::Path, table: &str) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn enqueue_claim_ack_round_trip_in_the_sqlite3_cli() {
    let (_dir, db) = temp_db();
    let out = run(sqlite3(
        &db,
        &[
            r#"SELECT honker_queue_configure('emails', '{"max_attempts": 3}')"#,
            r#"SELECT honker_enqueue('emails', '{"to": "a@example.com"}')"#,
            r#"SELECT honker_enqueue('emails', '{"to": "b@example.com"}', '{"priority": 5}')"#,
            "SELECT honker_claim('emails', 'cli', 10, 60000)",
        ],
    ))
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(&lines[1..3], ["1", "2"], "{out}");
    let claimed = json_rows(lines[3]);
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0]["id"], 2, "higher priority first");
    assert_eq!(claimed[0]["payload"]["to"], "b@example.com");
    assert_eq!(claimed[0]["max_attempts"], 3);
    let acks: Vec<String> = claimed
        .iter()
        .map(|j| format!("SELECT honker_ack({}, {})", j["id"], j["lease_token"]))
        .collect();
    let mut cmds: Vec<&str> = acks.iter().map(String::as_str).collect();
    cmds.push("SELECT honker_result_save(1, '{\"sent\":true}', 60000)");
    cmds.push("SELECT honker_result_get(1)");
    cmds.push("SELECT honker_queue_stats('emails')");
    let out = run(sqlite3(&db, &cmds)).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..4], ["1", "1", "1", r#"{"sent":true}"#], "{out}");
    let stats: serde_json::Value = serde_json::from_str(lines[4]).unwrap();
    assert_eq!(
        (stats["pending"].as_i64(), stats["running"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(count(&db, "honker_jobs"), 0);
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    let (_dir, db) = temp_db();
    let out = run(sqlite3(
        &db,
        &[
            "SELECT honker_enqueue('q', '1')",
            "SELECT honker_claim('q', 'w', 1)",
        ],
    ))
    .ok();
    let claimed = json_rows(out.lines().nth(1).unwrap());
    let (id, token) = (
        &claimed[0]["id"],
        claimed[0]["lease_token"].as_i64().unwrap(),
    );
    let stale = format!("SELECT honker_ack({id}, {})", token + 1);
    let bad_type = format!("SELECT honker_heartbeat({id}, {token}, 'soon')");
    for (sql, code) in [
        (
            r#"SELECT honker_enqueue('q', '1', '{"bogus": 1}')"#,
            "queue.unknown_option",
        ),
        (
            r#"SELECT honker_enqueue('q', '1', '{"delay_ms": -5}')"#,
            "queue.bad_option",
        ),
        (
            r#"SELECT honker_enqueue('q', '1', '{"delay_ms": 1, "run_at_ms": 1}')"#,
            "queue.bad_option",
        ),
        ("SELECT honker_enqueue('q', 'not json')", "payload.not_json"),
        ("SELECT honker_enqueue('q', 12)", "arg.invalid"),
        ("SELECT honker_claim('q', 'w', 'many')", "arg.invalid"),
        (stale.as_str(), "queue.lease_lost"),
        (bad_type.as_str(), "arg.invalid"),
        (
            "BEGIN; SELECT honker_claim_wait('q', 'w', 1, NULL, 10)",
            "wait.in_transaction",
        ),
    ] {
        let stderr = run(sqlite3(&db, &[sql])).failed();
        assert!(
            stderr.contains(&format!("honker: {code}: ")),
            "{sql}: expected {code}, got {stderr:?}"
        );
    }
    assert_eq!(count(&db, "honker_jobs"), 1);
    assert_eq!(count(&db, "honker_dead"), 0);
    let (attempts, held): (i64, i64) = Connection::open(&db)
        .unwrap()
        .query_row("SELECT attempts, lease_token FROM honker_jobs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (attempts, held),
        (1, token),
        "the refused calls changed the claim"
    );
}

#[test]
fn a_cli_blocked_in_claim_wait_is_woken_by_an_enqueue_from_another_process() {
    let (_dir, db) = temp_db();
    // Create the schema before the waiter starts, so its first look is at a migrated file, and
    // use WAL as the extension's docs ask: in a rollback-journal mode the waiter's watcher takes a
    // SHARED lock on every poll, and the enqueuing CLI below has no busy timeout.
    run(sqlite3(
        &db,
        &["PRAGMA journal_mode = WAL", "SELECT honker_version()"],
    ))
    .ok();
    let mut cli = Running::spawn(sqlite3(
        &db,
        &["SELECT honker_claim_wait('jobs', 'cli', 1, 60000, 20000)"],
    ));
    let pid = cli.pid();
    wait_until_asleep(pid, pid, "the CLI in honker_claim_wait");
    let out = run(sqlite3(
        &db,
        &[r#"SELECT honker_enqueue('jobs', '{"n": 7}')"#],
    ))
    .ok();
    assert_eq!(out.trim(), "1");
    let line = cli.expect_line("");
    let got = json_rows(&line);
    assert_eq!(got.len(), 1, "{line}");
    assert_eq!(got[0]["id"], 1);
    assert_eq!(got[0]["payload"]["n"], 7);
    let (status, _) = cli.finish();
    assert!(status.success(), "{status}");
}
