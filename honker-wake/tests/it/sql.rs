//! The SQL functions `honker_epoch()` and `honker_wait(epoch, timeout_ms)`.

use std::thread;

use honker_wake::Hub;
use rusqlite::Connection;

use crate::{Db, commit, wait_until};

fn registered(db: &Db) -> Connection {
    let conn = db.connect();
    honker_wake::sql::register(&conn).unwrap();
    conn
}

fn epoch(conn: &Connection) -> i64 {
    conn.query_row("SELECT honker_epoch()", [], |r| r.get(0))
        .unwrap()
}

fn error_of(conn: &Connection, sql: &str) -> String {
    conn.query_row(sql, [], |r| r.get::<_, i64>(0))
        .unwrap_err()
        .to_string()
}

#[test]
fn honker_wait_returns_after_a_commit_from_another_connection() {
    let db = Db::new("wal");
    let sampler = registered(&db);
    let seen = epoch(&sampler);
    thread::scope(|s| {
        // The epoch is sampled on one connection and waited on from another.
        let waiter = s.spawn(|| {
            registered(&db)
                .query_row("SELECT honker_wait(?1, 20000)", [seen], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap()
        });
        wait_until("honker_wait blocked", || {
            Hub::global().waiters(&db.path) >= 1
        });
        // While it blocks, the waiting connection holds no read snapshot.
        let writer = db.connect();
        let busy: i64 = writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0, "honker_wait pinned the WAL");
        commit(&writer);
        assert!(waiter.join().unwrap() > seen);
    });
    assert!(epoch(&sampler) > seen);
}

#[test]
fn honker_wait_times_out_with_the_same_epoch() {
    let db = Db::new("wal");
    let conn = registered(&db);
    let seen = epoch(&conn);
    let now: i64 = conn
        .query_row("SELECT honker_wait(?1, 0)", [seen], |r| r.get(0))
        .unwrap();
    assert_eq!(now, seen);
}

#[test]
fn honker_wait_refuses_to_run_inside_a_transaction() {
    let db = Db::new("wal");
    let conn = registered(&db);
    let seen = epoch(&conn);
    conn.execute_batch("BEGIN").unwrap();
    let e = error_of(&conn, &format!("SELECT honker_wait({seen}, 20000)"));
    assert!(e.starts_with("honker: wait.in_transaction: "), "{e}");
    conn.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn sql_functions_give_typed_errors() {
    let mem = Connection::open_in_memory().unwrap();
    honker_wake::sql::register(&mem).unwrap();
    let e = error_of(&mem, "SELECT honker_epoch()");
    assert!(e.starts_with("honker: db.not_file: "), "{e}");
    let e = error_of(&mem, "SELECT honker_wait(0, 0)");
    assert!(e.starts_with("honker: db.not_file: "), "{e}");

    let db = Db::new("wal");
    let conn = registered(&db);
    for bad in [
        "SELECT honker_wait('x', 0)",
        "SELECT honker_wait(0, -1)",
        "SELECT honker_wait(-1, 0)",
        "SELECT honker_wait(0, 1.5)",
        "SELECT honker_wait(NULL, 0)",
    ] {
        let e = error_of(&conn, bad);
        assert!(e.starts_with("honker: arg.invalid: "), "{bad}: {e}");
    }
    let e = conn
        .query_row("SELECT honker_wait(0)", [], |r| r.get::<_, i64>(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("wrong number of arguments"), "{e}");
}

#[test]
fn kick_after_commit_advances_the_epoch_before_returning() {
    let db = Db::new("wal");
    let wake = honker_wake::wake_for(&db.path).unwrap();
    let writer = db.connect();
    let seen = wake.epoch();
    commit(&writer);
    honker_core::kick_after_commit(&writer);
    // Nobody waits, so the watcher is parked: only the kick can have moved the epoch.
    assert!(wake.epoch() > seen);
}
