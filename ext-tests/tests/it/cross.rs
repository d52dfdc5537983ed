//! Cross-language wakes both ways between a `sqlite3` CLI process running the extension and this
//! Rust process using honker-stream, and proof that a CLI blocked in a wait holds no read
//! transaction.

use std::time::Instant;

use crate::support::{DEADLINE, Running, json_rows, run, sqlite3, temp_db, wait_until_asleep};

#[test]
fn cli_notify_wakes_a_rust_listener() {
    let (_dir, db) = temp_db();
    drop(honker_core::open(&db).expect("create"));
    let wake = honker_wake::wake_for(&db).expect("wake source");
    let mut listener = honker_stream::Listener::open(&db, "jobs", wake).expect("listener");

    let cli = std::thread::spawn({
        let db = db.clone();
        move || {
            run(sqlite3(
                &db,
                &[r#"SELECT honker_notify('jobs', '{"from":"cli","n":[1,2]}')"#],
            ))
            .ok()
        }
    });
    let got = listener
        .recv(Some(Instant::now() + DEADLINE))
        .expect("recv")
        .unwrap_or_else(|| panic!("no notification from the CLI within {DEADLINE:?}"));
    let id: i64 = cli.join().expect("cli thread").trim().parse().expect("id");
    assert_eq!(got.id, id);
    assert_eq!(got.channel, "jobs");
    let payload: serde_json::Value = serde_json::from_str(&got.payload).expect("payload JSON");
    assert_eq!(payload, serde_json::json!({"from": "cli", "n": [1, 2]}));
    assert_eq!(listener.last_id(), id);
}

#[test]
fn rust_notify_wakes_a_cli_blocked_in_listen_wait() {
    let (_dir, db) = temp_db();
    let conn = honker_core::open(&db).expect("open");
    honker_stream::notify(&conn, "jobs", r#""before""#).expect("notify before");
    let after = honker_stream::latest_id(&conn).expect("latest id");

    let mut cli = Running::spawn(sqlite3(
        &db,
        &[&format!(
            "SELECT honker_listen_wait('jobs', {after}, 10, 20000)"
        )],
    ));
    let pid = cli.pid();
    wait_until_asleep(pid, pid, "the CLI in honker_listen_wait");
    let id = honker_stream::notify(&conn, "jobs", r#"{"from":"rust"}"#).expect("notify");

    let line = cli.expect_line("");
    let rows = json_rows(&line);
    assert_eq!(rows.len(), 1, "{line}");
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["payload"], serde_json::json!({"from": "rust"}));
    let (status, _) = cli.finish();
    assert!(status.success(), "{status}");
}

/// While a CLI connection sleeps in the wait that `wait_sql(latest_id)` makes, a
/// `wal_checkpoint(TRUNCATE)` from this process is not blocked by it (busy = 0, the WAL emptied);
/// then a notify wakes the CLI. Returns the CLI's output line.
///
/// The waiting statements read no table: a statement that does holds its own read transaction
/// until it finishes, whatever the function it calls does.
fn checkpoint_while_cli_waits(wait_sql: impl Fn(i64) -> Vec<String>) -> String {
    let (_dir, db) = temp_db();
    let conn = honker_core::open(&db).expect("open");
    let latest = honker_stream::notify(&conn, "c", "1").expect("fill the WAL");
    let sql = wait_sql(latest);
    let sql: Vec<&str> = sql.iter().map(String::as_str).collect();
    let mut cli = Running::spawn(sqlite3(&db, &sql));
    let pid = cli.pid();
    wait_until_asleep(pid, pid, "the CLI in its wait");

    let (busy, log, done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("checkpoint");
    assert_eq!(
        (busy, log, done),
        (0, 0, 0),
        "checkpoint blocked by the waiting CLI"
    );
    // The CLI was asleep in its wait when the checkpoint ran (`wait_until_asleep` above). It may
    // return right after it: a TRUNCATE checkpoint restarts the WAL header, which other
    // connections can see as a change of `data_version`, and an over-wake is allowed (DESIGN §2).
    // `honker_wait` then returns a newer epoch on its own; `honker_listen_wait` looks, finds
    // nothing and keeps waiting for the notification below.
    honker_stream::notify(&conn, "c", r#"{"wake":true}"#).expect("notify");
    let line = cli.expect_line("");
    let (status, _) = cli.finish();
    assert!(status.success(), "{status}");
    line
}

#[test]
fn a_cli_blocked_in_listen_wait_holds_no_read_transaction() {
    let line = checkpoint_while_cli_waits(|latest| {
        vec![format!(
            "SELECT honker_listen_wait('c', {latest}, 10, 20000)"
        )]
    });
    let rows = json_rows(&line);
    assert_eq!(rows.len(), 1, "{line}");
    assert_eq!(rows[0]["payload"], serde_json::json!({"wake": true}));
}

#[test]
fn a_cli_blocked_in_honker_wait_holds_no_read_transaction() {
    // The epoch goes through a CLI parameter so the waiting statement reads no table.
    let line = checkpoint_while_cli_waits(|_| {
        vec![
            ".parameter init".into(),
            "INSERT INTO temp.sqlite_parameters VALUES ('$e', honker_epoch())".into(),
            "SELECT $e, honker_wait($e, 20000)".into(),
        ]
    });
    let epochs: Vec<u64> = line.split('|').map(|e| e.parse().expect("epoch")).collect();
    assert!(
        epochs.len() == 2 && epochs[1] > epochs[0],
        "honker_wait returned without a newer epoch: {line}"
    );
}
