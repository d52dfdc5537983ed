//! The SQL functions, through a bundled rusqlite connection.

use std::path::Path;
use std::sync::Arc;
use std::thread;

use honker_core::{ManualWake, WakeError, WakeProvider, WakeSource};
use rusqlite::Connection;
use serde_json::Value;

use crate::util::{TempDb, count};

/// A provider that hands out one `ManualWake` for every file.
fn sql_conn(db: &TempDb, wakes: Arc<dyn WakeProvider>) -> Connection {
    let conn = db.open();
    honker_core::sql::register(&conn).unwrap();
    honker_stream::sql::register(&conn, wakes).unwrap();
    conn
}

fn text(conn: &Connection, sql: &str) -> String {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn int(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn json(conn: &Connection, sql: &str) -> Value {
    serde_json::from_str(&text(conn, sql)).unwrap()
}

/// The `honker: <code>` of the error `sql` raises.
fn code(conn: &Connection, sql: &str) -> String {
    let e = conn
        .query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
        .unwrap_err()
        .to_string();
    let rest = e
        .strip_prefix("honker: ")
        .unwrap_or_else(|| panic!("{sql}: not a honker error: {e}"));
    rest.split(':').next().unwrap().to_string()
}

#[test]
fn notify_and_listen_round_trip_with_embedded_payloads() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    let a = int(&conn, r#"SELECT honker_notify('c', '{"k": [1, "x"]}')"#);
    let b = int(&conn, "SELECT notify('c', '\"s\"')");
    let _ = int(&conn, "SELECT notify('other', 'null')");
    assert!(b > a);
    let v = json(&conn, "SELECT honker_listen('c', 0, 10)");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], a);
    assert_eq!(rows[0]["channel"], "c");
    assert_eq!(rows[0]["payload"]["k"][1], "x");
    assert!(rows[0]["created_ms"].as_i64().unwrap() > 1_577_836_800_000);
    assert_eq!(rows[1]["payload"], "s");
    let v = json(&conn, &format!("SELECT honker_listen('c', {a}, 10)"));
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(
        json(&conn, "SELECT honker_listen('c', 0, 1)")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(text(&conn, "SELECT honker_listen('none', 0, 10)"), "[]");
    // Committed in autocommit: another connection sees them.
    assert_eq!(count(&db.open()), 3);
}

#[test]
fn bad_arguments_are_typed_errors_and_write_nothing() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    let big = format!("'\"{}\"'", "x".repeat(1024 * 1024));
    let cases = [
        ("SELECT honker_notify(1, '{}')", "arg.invalid"),
        ("SELECT honker_notify(NULL, '{}')", "arg.invalid"),
        ("SELECT honker_notify('c', 1)", "arg.invalid"),
        ("SELECT honker_notify('c', x'7b7d')", "arg.invalid"),
        ("SELECT notify('c', NULL)", "arg.invalid"),
        ("SELECT honker_notify('c', 'not json')", "payload.not_json"),
        ("SELECT honker_notify('c', '')", "payload.not_json"),
        (
            &format!("SELECT honker_notify('c', {big})"),
            "payload.too_large",
        ),
        ("SELECT honker_notify('', '{}')", "notify.bad_channel"),
        ("SELECT honker_listen('c', 'x', 1)", "arg.invalid"),
        ("SELECT honker_listen('c', 0, -1)", "arg.invalid"),
        ("SELECT honker_listen('c', 0.5, 1)", "arg.invalid"),
        ("SELECT honker_listen(1, 0, 1)", "arg.invalid"),
        ("SELECT honker_listen_wait('c', 0, 1, -1)", "arg.invalid"),
        ("SELECT honker_listen_wait('c', 0, 0, 10)", "arg.invalid"),
        (
            "SELECT honker_notify_prune('{\"max_rows\": 1, \"x\": 2}')",
            "options.unknown",
        ),
        ("SELECT honker_notify_prune('[1]')", "arg.invalid"),
        (
            "SELECT honker_notify_prune('{\"max_rows\": -1}')",
            "arg.invalid",
        ),
        ("SELECT honker_notify_prune(5)", "arg.invalid"),
    ];
    int(&conn, "SELECT honker_notify('keep', '1')");
    for (sql, want) in cases {
        assert_eq!(code(&conn, sql), want, "{sql}");
        // Same inside a transaction, which stays usable.
        conn.execute_batch("BEGIN").unwrap();
        if !sql.contains("listen_wait") {
            assert_eq!(code(&conn, sql), want, "{sql} in BEGIN");
        }
        conn.execute_batch("ROLLBACK").unwrap();
    }
    assert_eq!(count(&conn), 1);
    assert_eq!(honker_stream::latest_id(&conn).unwrap(), 1);
}

#[test]
fn notify_in_a_rolled_back_transaction_is_gone() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    conn.execute_batch("BEGIN; SELECT honker_notify('c', '1'); SELECT notify('c', '2'); ROLLBACK;")
        .unwrap();
    assert_eq!(count(&conn), 0);
    conn.execute_batch("BEGIN; SELECT honker_notify('c', '1'); COMMIT;")
        .unwrap();
    assert_eq!(count(&db.open()), 1);
}

#[test]
fn a_failing_autocommit_notify_statement_writes_nothing() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    // The bad call is refused before its INSERT; the good one in the same statement was written
    // by a nested statement of its own, so check what autocommit gives for the whole statement.
    assert_eq!(
        code(&conn, "SELECT honker_notify('c', 'bad')"),
        "payload.not_json"
    );
    assert_eq!(count(&conn), 0);
    let id = int(&conn, "SELECT honker_notify('c', '1')");
    // Committed when the statement ended: visible to a fresh connection, write lock free.
    let other = db.open();
    assert_eq!(count(&other), 1);
    other.execute_batch("BEGIN IMMEDIATE; COMMIT").unwrap();
    assert_eq!(honker_stream::latest_id(&other).unwrap(), id);
}

#[test]
fn notify_from_a_trigger_follows_the_triggering_transaction() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL);
         CREATE TRIGGER orders_notify AFTER INSERT ON orders BEGIN
             SELECT honker_notify('orders', json_object('id', NEW.id, 'item', NEW.item));
         END;",
    )
    .unwrap();
    conn.execute_batch("BEGIN; INSERT INTO orders (item) VALUES ('a'); ROLLBACK;")
        .unwrap();
    assert_eq!(count(&conn), 0);
    conn.execute("INSERT INTO orders (item) VALUES ('b')", [])
        .unwrap();
    let v = json(&conn, "SELECT honker_listen('orders', 0, 10)");
    assert_eq!(v[0]["payload"]["item"], "b");
    // A trigger whose notify fails aborts the triggering INSERT too.
    conn.execute_batch(
        "CREATE TRIGGER orders_bad AFTER INSERT ON orders WHEN NEW.item = 'bad' BEGIN
             SELECT honker_notify('', '{}');
         END;",
    )
    .unwrap();
    let e = conn
        .execute("INSERT INTO orders (item) VALUES ('bad')", [])
        .unwrap_err();
    assert!(
        e.to_string().starts_with("honker: notify.bad_channel: "),
        "{e}"
    );
    assert_eq!(int(&conn, "SELECT count(*) FROM orders"), 1);
    assert_eq!(count(&conn), 1);
}

#[test]
fn prune_by_options_and_by_stored_policy() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    for _ in 0..10 {
        int(&conn, "SELECT honker_notify('c', '1')");
    }
    assert_eq!(
        int(&conn, r#"SELECT honker_notify_prune('{"max_rows": 6}')"#),
        4
    );
    assert_eq!(int(&conn, "SELECT honker_notify_prune()"), 0);
    assert_eq!(int(&conn, "SELECT honker_notify_prune(NULL)"), 0);
    honker_stream::set_retention(
        &conn,
        &honker_stream::Retention {
            max_age_ms: 3_600_000,
            max_rows: 2,
        },
    )
    .unwrap();
    assert_eq!(int(&conn, "SELECT honker_notify_prune('{}')"), 4);
    assert_eq!(
        int(
            &conn,
            r#"SELECT honker_notify_prune('{"max_age_ms": 3600000, "max_rows": 0}')"#
        ),
        2
    );
    assert_eq!(count(&conn), 0);
    assert_eq!(int(&conn, "SELECT honker_notify('c', '1')"), 11);
}

#[test]
fn listen_wait_is_refused_inside_a_transaction() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    conn.execute_batch("BEGIN").unwrap();
    assert_eq!(
        code(&conn, "SELECT honker_listen_wait('c', 0, 10, 10)"),
        "wait.in_transaction"
    );
    conn.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn listen_wait_returns_empty_at_timeout_and_at_once_when_rows_exist() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    assert_eq!(
        text(&conn, "SELECT honker_listen_wait('c', 0, 10, 20)"),
        "[]"
    );
    let id = int(&conn, "SELECT honker_notify('c', '{\"a\":1}')");
    // A long timeout: rows already there return without waiting.
    let v = json(&conn, "SELECT honker_listen_wait('c', 0, 10, 600000)");
    assert_eq!(v[0]["id"], id);
    assert_eq!(v[0]["payload"]["a"], 1);
}

#[test]
fn listen_wait_is_woken_by_a_notify_from_another_connection() {
    let db = TempDb::new();
    let manual = ManualWake::new();
    let conn = sql_conn(&db, Arc::new(manual.clone()));
    let writer = sql_conn(&db, Arc::new(manual.clone()));
    let waiter = thread::spawn(move || {
        let v: String = conn
            .query_row("SELECT honker_listen_wait('c', 0, 10, 30000)", [], |r| {
                r.get(0)
            })
            .unwrap();
        (v, conn)
    });
    while manual.waiters() == 0 {
        thread::yield_now();
    }
    // Blocked without a read transaction: a checkpoint can truncate the WAL meanwhile.
    let id = int(&writer, "SELECT honker_notify('c', '[true]')");
    let (busy, _, _): (i64, i64, i64) = writer
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "a reader pinned the WAL while blocked");
    manual.kick();
    let (v, _conn) = waiter.join().unwrap();
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v[0]["id"], id);
    assert_eq!(v[0]["payload"], serde_json::json!([true]));
}

#[test]
fn notifies_in_one_writing_statement_are_all_or_nothing() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    conn.execute_batch("CREATE TABLE sent (id INTEGER)")
        .unwrap();
    let e = conn
        .execute(
            "INSERT INTO sent SELECT honker_notify('c', column1) FROM (VALUES ('1'), ('2'), ('bad'))",
            [],
        )
        .unwrap_err();
    assert!(
        e.to_string().starts_with("honker: payload.not_json: "),
        "{e}"
    );
    assert_eq!(count(&db.open()), 0);
    assert_eq!(int(&conn, "SELECT count(*) FROM sent"), 0);
    conn.execute(
        "INSERT INTO sent SELECT honker_notify('c', column1) FROM (VALUES ('1'), ('2'))",
        [],
    )
    .unwrap();
    assert_eq!(count(&db.open()), 2);
    assert_eq!(
        int(
            &conn,
            "SELECT count(*) FROM sent JOIN honker_notifications USING (id)"
        ),
        2
    );
}

/// The process-wide Hub of honker-wake, as the extension uses it.
#[derive(Debug)]
struct GlobalHub;

impl WakeProvider for GlobalHub {
    fn wake_for(&self, db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
        honker_wake::Hub::global().pinned(db_path)
    }
}

fn hub_conn(db: &TempDb) -> Connection {
    let conn = sql_conn(db, Arc::new(GlobalHub));
    honker_wake::sql::register(&conn).unwrap();
    conn
}

#[test]
fn listen_wait_wakes_on_a_sql_notify_through_the_real_watcher() {
    let db = TempDb::new();
    let mut waiter_conn = hub_conn(&db);
    let writer = hub_conn(&db);
    for round in 0..20 {
        let after = honker_stream::latest_id(&writer).unwrap();
        let waiter = thread::spawn(move || {
            let v: String = waiter_conn
                .query_row(
                    "SELECT honker_listen_wait('c', ?1, 10, 30000)",
                    [after],
                    |r| r.get(0),
                )
                .unwrap();
            (v, waiter_conn)
        });
        // On odd rounds give the waiter a moment to block, so both orders are exercised (notify
        // before the look, notify during the wait). Delivery does not depend on it.
        if round % 2 == 1 {
            thread::sleep(std::time::Duration::from_millis(5));
        }
        // No kick: a notify from SQL is seen by the watcher polling data_version.
        let id = int(
            &writer,
            &format!("SELECT honker_notify('c', '{{\"round\":{round}}}')"),
        );
        let (v, conn) = waiter.join().unwrap();
        waiter_conn = conn;
        let v: Value = serde_json::from_str(&v).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v[0]["id"], id);
        assert_eq!(v[0]["payload"]["round"], round);
    }
}

/// Issue 11.1: a multi-statement write (the automatic prune, the stream trim) inside another
/// write statement picked `BEGIN`/`SAVEPOINT`, which SQLite refuses there with a `SQLITE_BUSY`
/// ("statements in progress"); the user's row rolled back with a fake "database is locked".
#[test]
fn writes_from_triggers_and_nested_write_statements_are_not_a_fake_busy() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, v);
         CREATE TRIGGER orders_out AFTER INSERT ON orders BEGIN
             SELECT honker_notify('orders', json_object('id', NEW.id));
             SELECT notify('orders', '{}');
             SELECT honker_publish('orders', json_object('id', NEW.id), 'k' || NEW.id);
             SELECT honker_commit_offset('c', 'orders', 1);
         END;",
    )
    .unwrap();
    conn.execute("INSERT INTO orders DEFAULT VALUES", [])
        .unwrap();
    conn.execute_batch("BEGIN; INSERT INTO orders DEFAULT VALUES; COMMIT;")
        .unwrap();
    conn.execute(
        "INSERT INTO orders (v) SELECT honker_publish('t', '{}') FROM (SELECT 1 UNION ALL SELECT 2)",
        [],
    )
    .unwrap();
    conn.execute("UPDATE orders SET v = honker_notify('u', '{}')", [])
        .unwrap();
    assert_eq!(int(&conn, "SELECT count(*) FROM orders"), 4);
    // 4 inserts x 2 notifications, plus 4 from the UPDATE.
    assert_eq!(count(&conn), 12);
    assert_eq!(int(&conn, "SELECT count(*) FROM honker_streams"), 6);
    assert_eq!(int(&conn, "SELECT honker_offset('c', 'orders')"), 1);
}

/// Issue 11.2: the automatic prune and trim opened a savepoint that fails inside a trigger, the
/// error was swallowed, and retention never ran for writes made from triggers.
#[test]
fn retention_runs_for_notifications_and_events_written_from_triggers() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    honker_stream::set_retention(
        &conn,
        &honker_stream::Retention {
            max_age_ms: 3_600_000,
            max_rows: 10,
        },
    )
    .unwrap();
    text(
        &conn,
        r#"SELECT honker_stream_configure('ev', '{"max_events": 5}')"#,
    );
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY);
         CREATE TRIGGER orders_out AFTER INSERT ON orders BEGIN
             SELECT honker_notify('orders', '{}');
             SELECT honker_publish('ev', '{}');
         END;",
    )
    .unwrap();
    let before = honker_stream::upkeep_stats();
    conn.execute_batch("BEGIN").unwrap();
    for _ in 0..3000 {
        conn.execute("INSERT INTO orders DEFAULT VALUES", [])
            .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    let kept = count(&conn);
    // Every PRUNE_EVERY-th id prunes to max_rows, so at most max_rows + PRUNE_EVERY remain.
    let bound = 10 + honker_stream::PRUNE_EVERY;
    assert!(kept <= bound, "{kept} notifications kept (bound {bound})");
    let events = int(
        &conn,
        "SELECT count(*) FROM honker_streams WHERE topic = 'ev'",
    );
    let bound = 5 + honker_stream::AUTO_TRIM_EVERY;
    assert!(events <= bound, "{events} events kept (bound {bound})");
    let after = honker_stream::upkeep_stats();
    assert!(after.prunes.ran > before.prunes.ran);
    assert!(after.trims.ran > before.trims.ran);
    let stats = json(&conn, "SELECT honker_upkeep_stats()");
    assert!(stats["prunes"]["ran"].as_u64().unwrap() >= after.prunes.ran);
}
