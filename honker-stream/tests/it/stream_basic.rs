//! Durable streams through the Rust API: publish, read, commit, trim, subscribe, lag, and the
//! query plans of the hot statements.

use std::sync::Arc;

use honker_core::{ManualWake, Millis, SettableClock, WakeSource};
use honker_stream::{
    Commit, CommitMode, Offset, StartFrom, SubscribeOptions, Subscriber, TopicPolicy, Trim,
    commit_offset, committed_offset, consumers_with, publish, publish_keyed, publish_with, read,
    set_topic_policy, topics, trim, trim_with,
};

use crate::util::{TempDb, integrity_ok, now};

fn events(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM honker_streams", [], |r| r.get(0))
        .unwrap()
}

fn offsets(conn: &rusqlite::Connection, topic: &str, after: i64) -> Vec<i64> {
    read(conn, topic, Offset(after), 1000)
        .unwrap()
        .iter()
        .map(|e| e.offset.get())
        .collect()
}

#[test]
fn publish_in_a_rolled_back_transaction_publishes_nothing_and_offsets_are_global() {
    let db = TempDb::new();
    let conn = db.open();
    let a = publish(&conn, "t", r#"{"n":1}"#).unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    publish(&tx, "t", r#"{"n":2}"#).unwrap();
    tx.rollback().unwrap();
    let other = publish(&conn, "u", "1").unwrap();
    let b = publish_keyed(&conn, "t", "k", r#"{"n":3}"#).unwrap();
    assert!(a < other && other < b, "{a} {other} {b}");
    let got = read(&conn, "t", Offset::ZERO, 10).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].offset, got[0].key.as_deref()), (a, None));
    assert_eq!((got[1].offset, got[1].key.as_deref()), (b, Some("k")));
    assert_eq!(got[1].payload, r#"{"n":3}"#);
    assert_eq!(offsets(&conn, "t", a.get()), vec![b.get()]);
    assert_eq!(read(&conn, "t", b, 10).unwrap(), vec![]);
    assert_eq!(read(&conn, "t", Offset::ZERO, 0).unwrap(), vec![]);
    integrity_ok(&conn);
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    let db = TempDb::new();
    let conn = db.open();
    let o = publish(&conn, "t", "1").unwrap();
    commit_offset(&conn, "c", "t", o).unwrap();
    let before = events(&conn);
    let cases: Vec<(&str, honker_stream::Error)> = vec![
        (
            "payload.not_json",
            publish(&conn, "t", "{nope").unwrap_err(),
        ),
        ("stream.bad_topic", publish(&conn, "", "1").unwrap_err()),
        (
            "stream.bad_key",
            publish_keyed(&conn, "t", "a\0", "1").unwrap_err(),
        ),
        (
            "payload.too_large",
            publish(&conn, "t", &format!("\"{}\"", "x".repeat(2 << 20))).unwrap_err(),
        ),
        ("arg.invalid", read(&conn, "t", Offset(-1), 1).unwrap_err()),
        (
            "arg.invalid",
            commit_offset(&conn, "c", "t", Offset(-5)).unwrap_err(),
        ),
        (
            "stream.offset_ahead",
            commit_offset(&conn, "c", "t", Offset(o.get() + 1)).unwrap_err(),
        ),
        (
            "stream.bad_consumer",
            commit_offset(&conn, "", "t", o).unwrap_err(),
        ),
        (
            "arg.invalid",
            trim(
                &conn,
                "t",
                &Trim {
                    max_events: Some(-1),
                    ..Trim::default()
                },
            )
            .unwrap_err(),
        ),
    ];
    for (code, e) in cases {
        assert_eq!(e.code(), code, "{e}");
    }
    assert_eq!(events(&conn), before);
    assert_eq!(committed_offset(&conn, "c", "t").unwrap(), Some(o));
}

#[test]
fn commit_offset_is_monotonic_and_part_of_the_callers_transaction() {
    let db = TempDb::new();
    let conn = db.open();
    let a = publish(&conn, "t", "1").unwrap();
    let b = publish(&conn, "t", "2").unwrap();
    assert_eq!(committed_offset(&conn, "c", "t").unwrap(), None);
    assert_eq!(commit_offset(&conn, "c", "t", b).unwrap(), Commit::Advanced);
    assert_eq!(
        commit_offset(&conn, "c", "t", a).unwrap(),
        Commit::NotAdvanced { committed: b }
    );
    assert_eq!(
        commit_offset(&conn, "c", "t", b).unwrap(),
        Commit::NotAdvanced { committed: b }
    );
    let c = publish(&conn, "t", "3").unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    assert!(commit_offset(&tx, "c", "t", c).unwrap().advanced());
    tx.rollback().unwrap();
    assert_eq!(committed_offset(&conn, "c", "t").unwrap(), Some(b));
}

#[test]
fn trim_never_passes_a_registered_consumer_unless_forced_and_the_consumer_then_gets_trimmed() {
    let db = TempDb::new();
    let conn = db.open();
    let offs: Vec<Offset> = (0..10)
        .map(|i| publish(&conn, "t", &i.to_string()).unwrap())
        .collect();
    commit_offset(&conn, "slow", "t", offs[2]).unwrap();
    commit_offset(&conn, "fast", "t", offs[8]).unwrap();
    let r = trim(
        &conn,
        "t",
        &Trim {
            max_events: Some(3),
            ..Trim::default()
        },
    )
    .unwrap();
    assert_eq!(
        (r.deleted, r.trimmed_through, r.held_back),
        (3, offs[2], true)
    );
    assert_eq!(offsets(&conn, "t", offs[2].get()).len(), 7);
    // Reading from before the watermark is refused, not silently shortened.
    let e = read(&conn, "t", Offset::ZERO, 10).unwrap_err();
    assert_eq!(e.code(), "stream.trimmed");
    // Forced: passes the slow consumer, which is told where the stream now starts.
    let r = trim(
        &conn,
        "t",
        &Trim {
            max_events: Some(3),
            force: true,
            ..Trim::default()
        },
    )
    .unwrap();
    assert_eq!((r.deleted, r.trimmed_through), (4, offs[6]));
    match read(&conn, "t", offs[2], 10).unwrap_err() {
        honker_stream::Error::Trimmed {
            trimmed_through,
            first_available,
            ..
        } => {
            assert_eq!(trimmed_through, offs[6].get());
            assert_eq!(first_available, Some(offs[7].get()));
        }
        other => panic!("{other}"),
    }
    let lag = consumers_with(&conn, &SettableClock::new(Millis(0)), "t").unwrap();
    assert_eq!(lag.len(), 2);
    assert_eq!((lag[0].consumer.as_str(), lag[0].lag_events), ("fast", 1));
    assert_eq!(lag[1].consumer.as_str(), "slow");
    assert!(lag[1].behind_trim && !lag[0].behind_trim);
    assert_eq!(offsets(&conn, "t", offs[6].get()).len(), 3);
    integrity_ok(&conn);
}

#[test]
fn trim_by_age_and_the_automatic_policy() {
    let db = TempDb::new();
    let conn = db.open();
    let clock = SettableClock::new(Millis(1_000_000));
    for i in 0..5 {
        publish_with(&conn, &clock, "old", None, &i.to_string()).unwrap();
    }
    clock.advance(10_000);
    let keep = publish_with(&conn, &clock, "old", None, "5").unwrap();
    let r = trim_with(
        &conn,
        &clock,
        "old",
        &Trim {
            max_age_ms: Some(5_000),
            ..Trim::default()
        },
    )
    .unwrap();
    assert_eq!(r.deleted, 5);
    assert_eq!(
        offsets(&conn, "old", r.trimmed_through.get()),
        vec![keep.get()]
    );

    set_topic_policy(
        &conn,
        "auto",
        &TopicPolicy {
            max_age_ms: None,
            max_events: Some(10),
        },
    )
    .unwrap();
    for i in 0..(2 * honker_stream::AUTO_TRIM_EVERY) {
        publish(&conn, "auto", &i.to_string()).unwrap();
    }
    let info = topics(&conn).unwrap();
    let auto = info.iter().find(|t| t.topic == "auto").unwrap();
    assert!(auto.events < honker_stream::AUTO_TRIM_EVERY, "{auto:?}");
    assert!(auto.trimmed_through > Offset::ZERO);
}

#[test]
fn subscriber_replays_then_follows_and_auto_commits_before_the_next_event() {
    let db = TempDb::new();
    let conn = db.open();
    let wake = ManualWake::new();
    let first: Vec<Offset> = (0..5)
        .map(|i| publish(&conn, "t", &i.to_string()).unwrap())
        .collect();
    let mut sub = Subscriber::open(
        &db.path(),
        "t",
        Arc::new(wake.clone()),
        SubscribeOptions {
            consumer: Some("c".into()),
            start: StartFrom::Committed,
            commit: CommitMode::Auto {
                every_events: Some(2),
                every: None,
            },
        },
    )
    .unwrap();
    assert_eq!(
        committed_offset(&conn, "c", "t").unwrap(),
        Some(Offset::ZERO)
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(sub.recv(now()).unwrap().unwrap().offset);
    }
    // Two handed out, then committed before the third.
    assert_eq!(committed_offset(&conn, "c", "t").unwrap(), Some(first[1]));
    let live = publish(&conn, "t", "\"live\"").unwrap();
    wake.kick();
    for e in sub.iter(now()) {
        got.push(e.unwrap().offset);
    }
    let mut want = first.clone();
    want.push(live);
    assert_eq!(got, want);
    // Caught up: committed before it would have slept.
    assert_eq!(committed_offset(&conn, "c", "t").unwrap(), Some(live));
    drop(sub);
    // A new subscriber of the same consumer resumes after the committed offset.
    let mut again = Subscriber::open(
        &db.path(),
        "t",
        Arc::new(wake),
        SubscribeOptions {
            consumer: Some("c".into()),
            ..SubscribeOptions::default()
        },
    )
    .unwrap();
    assert_eq!(again.recv(now()).unwrap(), None);
}

#[test]
fn hot_queries_use_indexes() {
    let db = TempDb::new();
    let conn = db.open();
    let hot = [
        r#"SELECT "offset", topic, key, payload, created_ms FROM honker_streams
           WHERE topic = 't' AND "offset" > 5 ORDER BY "offset" LIMIT 10"#,
        "SELECT trimmed_through FROM honker_stream_topics WHERE topic = 't'",
        "SELECT committed FROM honker_consumers WHERE topic = 't' AND consumer = 'c'",
        "SELECT min(committed) FROM honker_consumers WHERE topic = 't'",
        r#"SELECT max("offset") FROM honker_streams WHERE topic = 't'"#,
        r#"SELECT min("offset") FROM honker_streams WHERE topic = 't'"#,
        r#"SELECT "offset" FROM honker_streams WHERE topic = 't' ORDER BY "offset" DESC LIMIT 1 OFFSET 5"#,
        r#"SELECT max("offset") FROM honker_streams WHERE topic = 't' AND created_ms < 5"#,
        r#"DELETE FROM honker_streams WHERE topic = 't' AND "offset" <= 5"#,
        r#"SELECT count(*) FROM honker_streams s WHERE s.topic = 't' AND s."offset" > 3"#,
        "INSERT INTO honker_consumers (topic, consumer, committed, updated_ms) VALUES ('t', 'c', 1, 1)
         ON CONFLICT (topic, consumer) DO UPDATE
            SET committed = excluded.committed, updated_ms = excluded.updated_ms
          WHERE excluded.committed > honker_consumers.committed",
        r#"SELECT c.consumer, c.committed, c.updated_ms,
                  (SELECT count(*) FROM honker_streams s
                    WHERE s.topic = c.topic AND s."offset" > c.committed),
                  (SELECT s.created_ms FROM honker_streams s
                    WHERE s.topic = c.topic AND s."offset" > c.committed
                    ORDER BY s."offset" LIMIT 1)
             FROM honker_consumers c WHERE c.topic = 't' ORDER BY c.consumer"#,
    ];
    for sql in hot {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Every table here is a honker table (some under an alias), so no SCAN at all.
        assert!(
            !plan.iter().any(|l| l.starts_with("SCAN ")),
            "{sql}: {plan:?}"
        );
    }
}
