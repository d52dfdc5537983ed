//! The SQL functions: round trips, all-or-nothing writes in autocommit, and the blocking
//! `honker_claim_wait` woken by a commit and by a job's `run_at`.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use honker_core::{ManualWake, WakeSource};
use rusqlite::Connection;
use serde_json::Value;

use crate::util::{TempDb, rows};

fn sql_conn(db: &TempDb, wake: &ManualWake) -> Connection {
    let conn = db.open();
    honker_queue::sql::register(&conn, Arc::new(wake.clone())).unwrap();
    conn
}

fn one<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> T {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn json(conn: &Connection, sql: &str) -> Value {
    serde_json::from_str(&one::<String>(conn, sql)).unwrap()
}

#[test]
fn enqueue_claim_ack_round_trip_embeds_payloads() {
    let db = TempDb::new();
    let conn = sql_conn(&db, &ManualWake::new());
    let opts = json(
        &conn,
        r#"SELECT honker_queue_configure('q', '{"lease_ms": 5000}')"#,
    );
    assert_eq!(opts["lease_ms"], 5000);
    let id: i64 = one(
        &conn,
        r#"SELECT honker_enqueue('q', '{"n": 1}', '{"priority": 2}')"#,
    );
    let ids = json(
        &conn,
        r#"SELECT honker_enqueue_batch('q', '[{"n": 2}, [3]]')"#,
    );
    assert_eq!(ids.as_array().unwrap().len(), 2);
    let claimed = json(&conn, "SELECT honker_claim('q', 'w', 10)");
    assert_eq!(claimed[0]["id"], id);
    assert_eq!(claimed[0]["payload"]["n"], 1);
    assert_eq!(claimed[2]["payload"][0], 3);
    assert_eq!(claimed[0]["attempts"], 1);
    let token = claimed[0]["lease_token"].as_i64().unwrap();
    let job = json(&conn, &format!("SELECT honker_job({id})"));
    assert_eq!(job["state"], "running");
    let until: i64 = one(
        &conn,
        &format!("SELECT honker_heartbeat({id}, {token}, 60000)"),
    );
    assert!(until > claimed[0]["lease_expires_ms"].as_i64().unwrap());
    assert_eq!(
        one::<i64>(&conn, &format!("SELECT honker_ack({id}, {token})")),
        1
    );
    let pairs: Vec<Value> = claimed.as_array().unwrap()[1..]
        .iter()
        .map(|j| serde_json::json!([j["id"], j["lease_token"]]))
        .collect();
    let n: i64 = one(
        &conn,
        &format!("SELECT honker_ack_batch('{}')", Value::from(pairs)),
    );
    assert_eq!(n, 2);
    assert_eq!(rows(&conn, "honker_jobs"), 0);
    let stats = json(&conn, "SELECT honker_queue_stats('q')");
    assert_eq!(
        (stats["pending"].as_i64(), stats["running"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(one::<Option<i64>>(&conn, "SELECT honker_next_due('q')").is_none());
}

#[test]
fn retry_fail_dead_letters_and_results_through_sql() {
    let db = TempDb::new();
    let conn = sql_conn(&db, &ManualWake::new());
    let id: i64 = one(
        &conn,
        r#"SELECT honker_enqueue('q', '1', '{"max_attempts": 2}')"#,
    );
    let c = json(&conn, "SELECT honker_claim('q', 'w', 1)");
    let token = c[0]["lease_token"].as_i64().unwrap();
    let r = json(
        &conn,
        &format!("SELECT honker_retry({id}, {token}, 0, 'boom')"),
    );
    assert_eq!(r["state"], "retrying");
    let c = json(&conn, "SELECT honker_claim('q', 'w', 1)");
    let token = c[0]["lease_token"].as_i64().unwrap();
    let r = json(&conn, &format!("SELECT honker_retry({id}, {token})"));
    assert_eq!(r["state"], "dead");
    let dead = json(&conn, "SELECT honker_dead_list('q')");
    assert_eq!(dead[0]["id"], id);
    assert_eq!(dead[0]["reason"], "attempts exhausted");
    assert_eq!(dead[0]["last_error"], "boom");
    assert_eq!(
        one::<i64>(&conn, &format!("SELECT honker_dead_requeue({id})")),
        1
    );
    let c = json(&conn, "SELECT honker_claim('q', 'w', 1)");
    let token = c[0]["lease_token"].as_i64().unwrap();
    assert_eq!(c[0]["attempts"], 1);
    one::<i64>(&conn, &format!("SELECT honker_fail({id}, {token}, 'no')"));
    assert_eq!(
        json(&conn, &format!("SELECT honker_job({id})"))["dead_reason"],
        "failed"
    );
    assert_eq!(one::<i64>(&conn, "SELECT honker_dead_purge('q')"), 1);
    assert_eq!(
        one::<i64>(
            &conn,
            &format!("SELECT honker_result_save({id}, '{{\"ok\":1}}')")
        ),
        1
    );
    assert_eq!(
        one::<String>(&conn, &format!("SELECT honker_result_get({id})")),
        r#"{"ok":1}"#
    );
    assert!(one::<Option<String>>(&conn, "SELECT honker_result_get(12345)").is_none());
}

#[test]
fn multi_statement_functions_are_all_or_nothing_in_autocommit() {
    let db = TempDb::new();
    let conn = sql_conn(&db, &ManualWake::new());
    // A trigger that fails the third insert of a batch, the insert of a dead letter, and the
    // claim after a promotion: each function must leave nothing of its earlier writes.
    conn.execute_batch(
        "CREATE TABLE fail_on (what TEXT);
         CREATE TRIGGER t_jobs BEFORE INSERT ON honker_jobs
           WHEN NEW.payload = '3' BEGIN SELECT RAISE(ABORT, 'boom'); END;
         CREATE TRIGGER t_dead BEFORE INSERT ON honker_dead
           WHEN EXISTS (SELECT 1 FROM fail_on WHERE what = 'dead') BEGIN SELECT RAISE(ABORT, 'boom'); END;
         CREATE TRIGGER t_claim BEFORE UPDATE ON honker_jobs
           WHEN NEW.state = 2 AND EXISTS (SELECT 1 FROM fail_on WHERE what = 'claim')
           BEGIN SELECT RAISE(ABORT, 'boom'); END;",
    )
    .unwrap();
    assert!(
        conn.query_row("SELECT honker_enqueue_batch('q', '[1, 2, 3]')", [], |r| {
            r.get::<_, String>(0)
        })
        .is_err()
    );
    assert_eq!(rows(&conn, "honker_jobs"), 0);
    assert!(conn.is_autocommit());

    // A due scheduled job: the claim first promotes it (one statement), then its claim fails,
    // and the promotion must be undone with it.
    let id: i64 = one(&conn, "SELECT honker_enqueue('q', '1')");
    conn.execute("UPDATE honker_jobs SET state = 1", [])
        .unwrap();
    conn.execute("INSERT INTO fail_on VALUES ('claim')", [])
        .unwrap();
    assert!(
        conn.query_row("SELECT honker_claim('q', 'w', 1)", [], |r| r
            .get::<_, String>(0))
            .is_err()
    );
    let job = json(&conn, &format!("SELECT honker_job({id})"));
    assert_eq!(
        (job["state"].as_str(), job["attempts"].as_i64()),
        (Some("scheduled"), Some(0))
    );
    conn.execute("DELETE FROM fail_on", []).unwrap();

    let c = json(&conn, "SELECT honker_claim('q', 'w', 1)");
    let token = c[0]["lease_token"].as_i64().unwrap();
    conn.execute("INSERT INTO fail_on VALUES ('dead')", [])
        .unwrap();
    assert!(
        conn.query_row(
            &format!("SELECT honker_fail({id}, {token}, 'x')"),
            [],
            |r| r.get::<_, i64>(0)
        )
        .is_err()
    );
    assert_eq!(
        json(&conn, &format!("SELECT honker_job({id})"))["state"],
        "running"
    );
    assert_eq!(rows(&conn, "honker_dead"), 0);
    assert!(conn.is_autocommit());
}

#[test]
fn claim_wait_is_woken_by_a_commit_on_another_connection() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let path = db.path();
    let w = wake.clone();
    let waiter = thread::spawn(move || {
        let db_conn = honker_core::open(&path).unwrap();
        honker_queue::sql::register(&db_conn, Arc::new(w)).unwrap();
        let started = Instant::now();
        let got: String = db_conn
            .query_row(
                "SELECT honker_claim_wait('q', 'w', 1, NULL, 30000)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (got, started.elapsed())
    });
    let conn = sql_conn(&db, &wake);
    // Wait until the waiter sleeps, so the enqueue really is what wakes it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while wake.waiters() == 0 {
        assert!(Instant::now() < deadline, "the waiter never went to sleep");
        thread::sleep(Duration::from_millis(1));
    }
    let id: i64 = one(&conn, "SELECT honker_enqueue('q', '7')");
    wake.kick();
    let (got, _) = waiter.join().unwrap();
    let v: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(v[0]["id"], id);
}

#[test]
fn claim_wait_wakes_at_a_delayed_jobs_run_at_without_any_commit() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let conn = sql_conn(&db, &wake);
    let id: i64 = one(
        &conn,
        r#"SELECT honker_enqueue('q', '1', '{"delay_ms": 50}')"#,
    );
    // Never kicked: only the timer from honker_next_due can wake it before the 30 s timeout.
    let got = json(&conn, "SELECT honker_claim_wait('q', 'w', 1, 1000, 30000)");
    assert_eq!(got[0]["id"], id);
    assert_eq!(
        json(&conn, "SELECT honker_claim_wait('q', 'w', 1, 1000, 0)"),
        Value::from(Vec::<Value>::new())
    );
}

#[test]
fn a_blocked_claim_wait_pins_no_wal_snapshot() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let conn = sql_conn(&db, &wake);
    // Some WAL content, so a checkpoint has frames to copy back.
    let id: i64 = one(&conn, "SELECT honker_enqueue('other', '1')");
    assert!(id > 0);
    let path = db.path();
    let w = wake.clone();
    let waiter = thread::spawn(move || {
        let c = honker_core::open(&path).unwrap();
        honker_queue::sql::register(&c, Arc::new(w)).unwrap();
        c.query_row(
            "SELECT honker_claim_wait('q', 'w', 1, NULL, 30000)",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while wake.waiters() == 0 {
        assert!(Instant::now() < deadline, "the waiter never went to sleep");
        thread::sleep(Duration::from_millis(1));
    }
    // A TRUNCATE checkpoint completes only if no reader holds a snapshot.
    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "the blocked claim_wait holds a read transaction");
    one::<i64>(&conn, "SELECT honker_enqueue('q', '2')");
    wake.kick();
    let got: Value = serde_json::from_str(&waiter.join().unwrap()).unwrap();
    assert_eq!(got[0]["payload"], 2);
}

/// Issue 11.1: enqueueing from a trigger (the outbox pattern) failed with a permanent, fake
/// `SQLITE_BUSY` ("cannot commit transaction - SQL statements in progress") and rolled back the
/// user's row.
#[test]
fn enqueue_from_a_trigger_or_a_nested_write_is_not_a_fake_busy() {
    let db = TempDb::new();
    let conn = sql_conn(&db, &ManualWake::new());
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, v);
         CREATE TRIGGER orders_out AFTER INSERT ON orders BEGIN
             SELECT honker_enqueue_batch('q', json_array(NEW.id));
             SELECT honker_enqueue('q', '{}', json_object('dedup_key', 'o' || NEW.id));
         END;",
    )
    .unwrap();
    conn.execute("INSERT INTO orders DEFAULT VALUES", [])
        .unwrap();
    conn.execute_batch("BEGIN; INSERT INTO orders DEFAULT VALUES; COMMIT;")
        .unwrap();
    conn.execute(
        "UPDATE orders SET v = honker_enqueue_batch('q', '[1,2]')",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO orders (v) SELECT honker_enqueue('q', '{}', '{\"delay_ms\": 10}')",
        [],
    )
    .unwrap();
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM orders"), 3);
    // 3 inserts x 2 jobs from the trigger, 2 updated rows x 2, 1 from the INSERT ... SELECT.
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM honker_jobs"), 11);
    // A refused enqueue in a trigger fails the INSERT with its code and keeps nothing of it.
    conn.execute_batch(
        "CREATE TRIGGER orders_bad AFTER INSERT ON orders WHEN NEW.v = 'bad' BEGIN
             SELECT honker_enqueue('q', 'not json');
         END;",
    )
    .unwrap();
    let e = conn
        .execute("INSERT INTO orders (v) VALUES ('bad')", [])
        .unwrap_err();
    assert!(
        e.to_string().starts_with("honker: payload.not_json: "),
        "{e}"
    );
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM orders"), 3);
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM honker_jobs"), 11);
}

/// Issue 11.4: the token was `(id << 24) + claims + 1` and `claims` rolls back with the claim, so
/// a claim made in a rolled-back transaction handed its token to the next claimer, and the first
/// caller could fail the second one's job.
#[test]
fn a_rolled_back_claims_token_is_never_handed_out_again() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let a = sql_conn(&db, &wake);
    let b = sql_conn(&db, &wake);
    for round in 0..50 {
        one::<i64>(
            &a,
            &format!("SELECT honker_enqueue('q', '{{\"round\": {round}}}')"),
        );
        a.execute_batch("BEGIN IMMEDIATE").unwrap();
        let claimed = json(&a, "SELECT honker_claim('q', 'A', 1, 60000)");
        let (id, stale) = (
            claimed[0]["id"].as_i64().unwrap(),
            claimed[0]["lease_token"].as_i64().unwrap(),
        );
        a.execute_batch("ROLLBACK").unwrap();
        let claimed = json(&b, "SELECT honker_claim('q', 'B', 1, 60000)");
        assert_eq!(claimed[0]["id"].as_i64().unwrap(), id);
        let token = claimed[0]["lease_token"].as_i64().unwrap();
        assert_ne!(
            token, stale,
            "round {round}: the rolled-back claim's token came back"
        );
        assert!(
            token > 0 && token < (1 << 53),
            "{token} is not exact in JSON"
        );
        let e = a
            .query_row(
                &format!("SELECT honker_fail({id}, {stale}, 'A gave up')"),
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_err();
        assert!(
            e.to_string().starts_with("honker: queue.lease_lost: "),
            "{e}"
        );
        assert_eq!(
            one::<i64>(&b, &format!("SELECT honker_ack({id}, {token})")),
            1
        );
    }
    assert_eq!(one::<i64>(&a, "SELECT count(*) FROM honker_dead"), 0);
}
