//! The stream SQL functions through a bundled rusqlite connection: transactions, the blocking
//! `honker_read_wait`, policies and introspection.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use honker_core::{ManualWake, WakeProvider, WakeSource};
use honker_stream::{CommitMode, Offset, StartFrom, SubscribeOptions, Subscriber, read_wait};
use rusqlite::Connection;
use serde_json::Value;

use crate::util::{TempDb, now, soon};

fn sql_conn(db: &TempDb, wakes: Arc<dyn WakeProvider>) -> Connection {
    let conn = db.open();
    honker_stream::sql::register(&conn, wakes).unwrap();
    conn
}

fn value<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> T {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn json(conn: &Connection, sql: &str) -> Value {
    serde_json::from_str(&value::<String>(conn, sql)).unwrap()
}

#[test]
fn effects_and_offset_commit_roll_back_together_in_sql() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    conn.execute_batch("CREATE TABLE seen (o INTEGER)").unwrap();
    let o: i64 = value(&conn, r#"SELECT honker_publish('t', '{"a":1}', 'key')"#);
    conn.execute_batch(&format!(
        "BEGIN; INSERT INTO seen VALUES ({o}); SELECT honker_commit_offset('c', 't', {o}); ROLLBACK;"
    ))
    .unwrap();
    assert_eq!(
        value::<Option<i64>>(&conn, "SELECT honker_offset('c', 't')"),
        None
    );
    assert_eq!(value::<i64>(&conn, "SELECT count(*) FROM seen"), 0);
    conn.execute_batch(&format!(
        "BEGIN; INSERT INTO seen VALUES ({o}); SELECT honker_commit_offset('c', 't', {o}); COMMIT;"
    ))
    .unwrap();
    assert_eq!(value::<i64>(&conn, "SELECT honker_offset('c', 't')"), o);
    assert_eq!(
        value::<i64>(
            &conn,
            &format!("SELECT honker_commit_offset('c', 't', {o})")
        ),
        0
    );
    // A publish in a rolled-back transaction is never read.
    conn.execute_batch("BEGIN; SELECT honker_publish('t', '2'); ROLLBACK;")
        .unwrap();
    let rows = json(&conn, "SELECT honker_read('t', 0, 10)");
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["key"], "key");
    assert_eq!(rows[0]["payload"]["a"], 1);
}

#[test]
fn read_wait_blocks_until_a_publish_and_returns_empty_at_the_timeout() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let conn = sql_conn(&db, Arc::new(wake.clone()));
    assert_eq!(
        value::<String>(&conn, "SELECT honker_read_wait('w', 0, 10, 0)"),
        "[]"
    );
    let path = db.path();
    let kicker = wake.clone();
    let publisher = thread::spawn(move || {
        let conn = honker_core::open(path).unwrap();
        // Publish only once the reader is asleep, so the event can only arrive by a wake.
        let deadline = Instant::now() + Duration::from_secs(30);
        while kicker.waiters() == 0 {
            assert!(Instant::now() < deadline, "the reader never slept");
            thread::yield_now();
        }
        let o = honker_stream::publish(&conn, "w", r#""hi""#).unwrap();
        kicker.kick();
        o
    });
    let rows = json(&conn, "SELECT honker_read_wait('w', 0, 10, 30000)");
    let o = publisher.join().unwrap();
    assert_eq!(rows[0]["offset"], o.get());
    assert_eq!(rows[0]["payload"], "hi");
    // The Rust API follows the same loop.
    let got = read_wait(&conn, &wake, "w", Offset::ZERO, 10, now()).unwrap();
    assert_eq!(got.len(), 1);
}

#[test]
fn removing_a_consumer_in_sql_lets_unforced_trims_pass_its_offset() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    for i in 0..4 {
        let _: i64 = value(&conn, &format!("SELECT honker_publish('t', '{i}')"));
    }
    let _: i64 = value(&conn, "SELECT honker_commit_offset('slow', 't', 1)");
    // The registered consumer holds the trim back at its committed offset.
    let trimmed: i64 = value(
        &conn,
        r#"SELECT honker_stream_trim('t', '{"max_events":1}')"#,
    );
    assert_eq!(trimmed, 1, "only the event the consumer committed past");
    assert_eq!(
        value::<i64>(&conn, "SELECT honker_consumer_remove('slow', 't')"),
        1
    );
    assert_eq!(
        value::<i64>(&conn, "SELECT honker_consumer_remove('slow', 't')"),
        0
    );
    assert!(value::<Option<i64>>(&conn, "SELECT honker_offset('slow', 't')").is_none());
    let trimmed: i64 = value(
        &conn,
        r#"SELECT honker_stream_trim('t', '{"max_events":1}')"#,
    );
    assert_eq!(trimmed, 2, "nothing holds the trim back any more");
    let err = conn
        .query_row("SELECT honker_consumer_remove('', 't')", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("honker: stream.bad_consumer: "), "{err}");
}

#[test]
fn configure_sets_the_policy_and_streams_lists_topics() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    let p = json(
        &conn,
        r#"SELECT honker_stream_configure('t', '{"max_events":2}')"#,
    );
    assert_eq!(p["max_events"], 2);
    for i in 0..5 {
        let _: i64 = value(&conn, &format!("SELECT honker_publish('t', '{i}')"));
    }
    // No limits given: the stored policy applies.
    assert_eq!(value::<i64>(&conn, "SELECT honker_stream_trim('t')"), 3);
    let topics = json(&conn, "SELECT honker_streams()");
    assert_eq!(topics[0]["topic"], "t");
    assert_eq!(topics[0]["events"], 2);
    assert_eq!(topics[0]["trimmed_through"], 3);
    let code = conn
        .query_row(
            r#"SELECT honker_stream_configure('t', '{"max_rows":2}')"#,
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap_err()
        .to_string();
    assert!(code.starts_with("honker: options.unknown: "), "{code}");
}

#[test]
fn time_based_auto_commit_saves_progress_before_the_next_event() {
    let db = TempDb::new();
    let conn = db.open();
    let wake = ManualWake::new();
    let offs: Vec<Offset> = (0..3)
        .map(|i| honker_stream::publish(&conn, "t", &i.to_string()).unwrap())
        .collect();
    let mut sub = Subscriber::open(
        &db.path(),
        "t",
        Arc::new(wake),
        SubscribeOptions {
            consumer: Some("c".into()),
            start: StartFrom::Beginning,
            commit: CommitMode::Auto {
                every_events: None,
                every: Some(Duration::ZERO),
            },
        },
    )
    .unwrap();
    assert_eq!(sub.recv(soon()).unwrap().unwrap().offset, offs[0]);
    // Nothing is committed until the next event is asked for.
    assert_eq!(
        honker_stream::committed_offset(&conn, "c", "t").unwrap(),
        Some(Offset::ZERO)
    );
    assert_eq!(sub.recv(soon()).unwrap().unwrap().offset, offs[1]);
    assert_eq!(
        honker_stream::committed_offset(&conn, "c", "t").unwrap(),
        Some(offs[0])
    );
}

#[test]
fn payloads_no_reader_can_parse_are_refused_and_old_ones_stay_readable() {
    let db = TempDb::new();
    let conn = sql_conn(&db, Arc::new(ManualWake::new()));
    // Valid JSON grammar, but out of a double's range or with a lone surrogate: serde_json and
    // Go's encoding/json refuse these, so each would poison every read that embeds it.
    for bad in ["1e400", r#"[-1e309]"#, r#"{"s":"\ud800"}"#] {
        let e = conn
            .query_row("SELECT honker_publish('t', ?1)", [bad], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_err();
        assert!(
            e.to_string().starts_with("honker: payload.not_json: "),
            "{bad}: {e}"
        );
        let e = conn
            .query_row("SELECT honker_notify('c', ?1)", [bad], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_err();
        assert!(
            e.to_string().starts_with("honker: payload.not_json: "),
            "{bad}: {e}"
        );
    }
    assert_eq!(
        value::<i64>(&conn, "SELECT count(*) FROM honker_streams"),
        0
    );
    // Nesting is limited so that a read embedding the payload stays within serde_json's
    // 128 levels.
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let e = conn
        .query_row("SELECT honker_publish('t', ?1)", [nested(65)], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("nested deeper than 64 levels"),
        "{e}"
    );
    conn.query_row("SELECT honker_notify('c', ?1)", [nested(64)], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap();
    let listened = json(&conn, "SELECT honker_listen('c', 0, 10)");
    assert_eq!(listened.as_array().unwrap().len(), 1);
    // A row that a build before this check let in (written here around honker) is embedded as
    // a JSON string, so the read stays parseable.
    let ok: i64 = value(&conn, r#"SELECT honker_publish('t', '{"n":1}')"#);
    conn.execute(
        r#"INSERT INTO honker_streams (topic, payload, created_ms) VALUES ('t', '1e400', 0)"#,
        [],
    )
    .unwrap();
    let events = json(&conn, "SELECT honker_read('t', 0, 10)");
    assert_eq!(events[0]["offset"], ok);
    assert_eq!(events[0]["payload"]["n"], 1);
    assert_eq!(events[1]["payload"], "1e400");
}
