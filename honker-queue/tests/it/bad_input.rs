//! Bad input through the Rust API and the SQL functions: each is a typed error with its code,
//! and nothing is written (row counts and the lease-token counter are unchanged).

use std::sync::Arc;

use honker_core::ManualWake;
use honker_queue::{EnqueueOptions, JobId, LeaseToken, Queue, QueueOptionsPatch};
use rusqlite::Connection;

use crate::util::{TempDb, queue_at_t0, snapshot};

pub(crate) fn sql_conn(db: &TempDb) -> Connection {
    let conn = db.open();
    let wake = ManualWake::new();
    honker_queue::sql::register(&conn, Arc::new(wake)).unwrap();
    conn
}

/// Run `sql` and check it fails with `code` and writes nothing.
fn refused(conn: &Connection, sql: &str, code: &str) {
    let before = snapshot(conn);
    let e = conn
        .query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("honker: {code}: ")),
        "{sql}: expected {code}, got {e}"
    );
    assert_eq!(snapshot(conn), before, "{sql} wrote something");
}

#[test]
fn rust_api_refuses_bad_input_and_writes_nothing() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, _clock) = queue_at_t0("q");
    let id = q.enqueue(&conn, "{}", &EnqueueOptions::default()).unwrap();
    let held = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    q.enqueue(&conn, "{}", &EnqueueOptions::default()).unwrap();
    let other = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    let before = snapshot(&conn);
    let codes = [
        q.enqueue(&conn, "nope", &EnqueueOptions::default())
            .unwrap_err()
            .code(),
        q.enqueue(
            &conn,
            &format!("\"{}\"", "x".repeat(1 << 20)),
            &EnqueueOptions::default(),
        )
        .unwrap_err()
        .code(),
        q.enqueue(
            &conn,
            "1",
            &EnqueueOptions {
                delay_ms: Some(-1),
                ..Default::default()
            },
        )
        .unwrap_err()
        .code(),
        q.enqueue(
            &conn,
            "1",
            &EnqueueOptions {
                delay_ms: Some(1),
                run_at_ms: Some(5),
                ..Default::default()
            },
        )
        .unwrap_err()
        .code(),
        q.enqueue_batch(&conn, &["1", "{"], &EnqueueOptions::default())
            .unwrap_err()
            .code(),
        q.ack(&conn, id, other.lease_token).unwrap_err().code(),
        q.ack(&conn, JobId(999), held.lease_token)
            .unwrap_err()
            .code(),
        q.retry(&conn, id, held.lease_token, Some(-5), None)
            .unwrap_err()
            .code(),
        q.heartbeat(&conn, id, held.lease_token, 0)
            .unwrap_err()
            .code(),
        q.release(&conn, id, LeaseToken(-1)).unwrap_err().code(),
        q.claim(&conn, "w", 1, Some(0)).unwrap_err().code(),
        q.configure(
            &conn,
            &QueueOptionsPatch {
                lease_ms: Some(0),
                ..Default::default()
            },
        )
        .unwrap_err()
        .code(),
        Queue::new("").unwrap_err().code(),
        Queue::new("a\nb").unwrap_err().code(),
    ];
    assert_eq!(
        codes,
        [
            "payload.not_json",
            "payload.too_large",
            "queue.bad_option",
            "queue.bad_option",
            "payload.not_json",
            "queue.lease_lost",
            "queue.lease_lost",
            "arg.invalid",
            "arg.invalid",
            "queue.lease_lost",
            "arg.invalid",
            "queue.bad_option",
            "queue.bad_name",
            "queue.bad_name",
        ]
    );
    assert_eq!(snapshot(&conn), before);
}

#[test]
fn sql_functions_refuse_bad_input_and_write_nothing() {
    let db = TempDb::new();
    let conn = sql_conn(&db);
    conn.query_row("SELECT honker_enqueue('q', '{}')", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap();
    let claimed: String = conn
        .query_row("SELECT honker_claim('q', 'w', 1)", [], |r| r.get(0))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&claimed).unwrap();
    let (id, token) = (
        v[0]["id"].as_i64().unwrap(),
        v[0]["lease_token"].as_i64().unwrap(),
    );
    for (sql, code) in [
        (
            "SELECT honker_enqueue('q', '{}', '{\"bogus\":1}')",
            "queue.unknown_option",
        ),
        (
            "SELECT honker_enqueue('q', '{}', '{\"delay_ms\":-1}')",
            "queue.bad_option",
        ),
        (
            "SELECT honker_enqueue('q', '{}', '{\"delay_ms\":1,\"run_at_ms\":1}')",
            "queue.bad_option",
        ),
        (
            "SELECT honker_enqueue('q', '{}', 'not json')",
            "arg.invalid",
        ),
        ("SELECT honker_enqueue('q', 'not json')", "payload.not_json"),
        ("SELECT honker_enqueue('q', 42)", "arg.invalid"),
        ("SELECT honker_enqueue(1, '{}')", "arg.invalid"),
        ("SELECT honker_enqueue('', '{}')", "queue.bad_name"),
        (
            "SELECT honker_enqueue_batch('q', '[1, 2')",
            "payload.not_json",
        ),
        ("SELECT honker_enqueue_batch('q', '{}')", "arg.invalid"),
        ("SELECT honker_claim('q', 'w', -1)", "arg.invalid"),
        ("SELECT honker_claim('q', 'w', 'x')", "arg.invalid"),
        ("SELECT honker_claim('q', 'w', 1, 0)", "arg.invalid"),
        ("SELECT honker_claim('q', 'w', 1.5)", "arg.invalid"),
        ("SELECT honker_claim('q', 'w', 1e300)", "arg.invalid"),
        (
            "SELECT honker_claim('q', 'w', 9007199254740994.0)",
            "arg.invalid",
        ),
        (
            "SELECT honker_queue_configure('q', '{\"lease\":1}')",
            "queue.unknown_option",
        ),
        (
            "SELECT honker_queue_configure('q', '{\"max_attempts\":0}')",
            "queue.bad_option",
        ),
        (
            "SELECT honker_dead_purge('q', '{\"older_than_ms\":-1}')",
            "queue.bad_option",
        ),
        (
            "SELECT honker_dead_purge('q', '{\"age\":1}')",
            "queue.unknown_option",
        ),
        ("SELECT honker_result_save(1, 'nope')", "payload.not_json"),
        ("SELECT honker_result_save(1, '{}', 0)", "arg.invalid"),
        ("SELECT honker_lock_acquire('l', 'o', 0)", "arg.invalid"),
        ("SELECT honker_rate_limit('r', -1, 10)", "arg.invalid"),
        ("SELECT honker_rate_limit('r', 1, 0)", "arg.invalid"),
        ("SELECT honker_ack_batch('[[1]]')", "arg.invalid"),
        (
            "SELECT honker_claim_wait('q', 'w', 0, NULL, 10)",
            "arg.invalid",
        ),
    ] {
        refused(&conn, sql, code);
    }
    for (sql, code) in [
        (
            format!("SELECT honker_ack({id}, {})", token + 1),
            "queue.lease_lost",
        ),
        (format!("SELECT honker_ack({id}, '{token}')"), "arg.invalid"),
        (
            format!("SELECT honker_retry({id}, {token}, -1)"),
            "arg.invalid",
        ),
        (
            format!("SELECT honker_heartbeat({id}, {token}, 0)"),
            "arg.invalid",
        ),
        (
            format!("SELECT honker_heartbeat({id}, {}, 10)", token - 1),
            "queue.lease_lost",
        ),
        (
            format!("SELECT honker_fail({id}, {}, 'e')", token + 7),
            "queue.lease_lost",
        ),
        (
            format!("SELECT honker_release({}, {token})", id + 1),
            "queue.lease_lost",
        ),
    ] {
        refused(&conn, &sql, code);
    }
}

/// Hosts whose numbers are doubles (JavaScript) bind integers as REAL: an exactly integral REAL
/// is taken as that integer, for counts, leases and timeouts alike.
#[test]
fn integral_reals_are_taken_as_integers() {
    let db = TempDb::new();
    let conn = sql_conn(&db);
    conn.query_row("SELECT honker_enqueue_batch('q', '[1, 2, 3]')", [], |r| {
        r.get::<_, String>(0)
    })
    .unwrap();
    let claimed: String = conn
        .query_row("SELECT honker_claim('q', 'w', 2.0, 60000.0)", [], |r| {
            r.get(0)
        })
        .unwrap();
    let jobs: serde_json::Value = serde_json::from_str(&claimed).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    let (id, token) = (
        jobs[0]["id"].as_i64().unwrap(),
        jobs[0]["lease_token"].as_i64().unwrap(),
    );
    // A token is below 2^53, so it too survives a trip through a double.
    let acked: i64 = conn
        .query_row(
            "SELECT honker_ack(?1, ?2)",
            rusqlite::params![id as f64, token as f64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(acked, 1);
}

#[test]
fn claim_wait_refuses_to_run_inside_a_transaction() {
    let db = TempDb::new();
    let conn = sql_conn(&db);
    conn.execute_batch("BEGIN").unwrap();
    let e = conn
        .query_row("SELECT honker_claim_wait('q', 'w', 1, NULL, 10)", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap_err();
    assert!(
        e.to_string().starts_with("honker: wait.in_transaction: "),
        "{e}"
    );
    conn.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn a_queues_lowered_payload_limit_and_default_attempts_apply_to_every_enqueue() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, _clock) = queue_at_t0("small");
    q.configure(
        &conn,
        &QueueOptionsPatch {
            max_payload_bytes: Some(8),
            max_attempts: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let before = snapshot(&conn);
    for opts in [
        EnqueueOptions::default(),
        EnqueueOptions {
            dedup_key: Some("k".into()),
            ..Default::default()
        },
    ] {
        let e = q.enqueue(&conn, r#"{"long": 1}"#, &opts).unwrap_err();
        assert_eq!(e.code(), "payload.too_large");
        assert!(e.to_string().contains("limit is 8"), "{e}");
    }
    assert_eq!(snapshot(&conn), before);
    let id = q.enqueue(&conn, "[1]", &EnqueueOptions::default()).unwrap();
    assert_eq!(
        honker_queue::job(&conn, id).unwrap().unwrap().max_attempts,
        2
    );
}
