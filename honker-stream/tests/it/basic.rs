//! notify / listen / Listener behaviour in one process, with `ManualWake` as the wake source.

use std::sync::Arc;
use std::thread;

use honker_core::{ManualWake, WakeSource};
use honker_stream::{Listener, Notification, latest_id, listen, notify};

use crate::util::{TempDb, count, now, soon};

fn listener(db: &TempDb, channel: &str, wake: &ManualWake) -> Listener {
    Listener::open(&db.path(), channel, Arc::new(wake.clone())).unwrap()
}

fn payloads(ns: &[Notification]) -> Vec<String> {
    ns.iter().map(|n| n.payload.clone()).collect()
}

#[test]
fn rollback_drops_the_notification() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    let conn = db.open();
    {
        let tx = conn.unchecked_transaction().unwrap();
        notify(&tx, "c", "1").unwrap();
        assert_eq!(count(&tx), 1);
        tx.rollback().unwrap();
    }
    assert_eq!(count(&conn), 0);
    wake.kick();
    assert_eq!(l.recv(now()).unwrap(), None);
    let id = notify(&conn, "c", "2").unwrap();
    let got = l.recv(soon()).unwrap().unwrap();
    assert_eq!((got.id, got.payload.as_str()), (id, "2"));
}

#[test]
fn notifications_in_a_committed_transaction_arrive_together_in_order() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    let conn = db.open();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..5 {
        notify(&tx, "c", &i.to_string()).unwrap();
    }
    // Not committed yet: the listener sees nothing.
    assert_eq!(l.recv(now()).unwrap(), None);
    tx.commit().unwrap();
    wake.kick();
    let got: Vec<String> = l.iter(now()).map(|n| n.unwrap().payload).collect();
    assert_eq!(got, ["0", "1", "2", "3", "4"]);
}

#[test]
fn commit_order_is_delivery_order_across_connections() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    let a = db.open();
    let b = db.open();
    // Interleave commits from two connections; ids follow commit order.
    let mut expected = Vec::new();
    for i in 0..50 {
        let conn = if i % 2 == 0 { &a } else { &b };
        let p = format!("{i}");
        let id = notify(conn, "c", &p).unwrap();
        expected.push((id, p));
    }
    wake.kick();
    let got: Vec<(i64, String)> = l
        .iter(now())
        .map(|n| n.map(|n| (n.id, n.payload)).unwrap())
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn channels_are_isolated() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut a = listener(&db, "a", &wake);
    let mut b = listener(&db, "b", &wake);
    let conn = db.open();
    notify(&conn, "a", "1").unwrap();
    notify(&conn, "b", "2").unwrap();
    notify(&conn, "ab", "3").unwrap();
    notify(&conn, "a", "4").unwrap();
    let got_a: Vec<String> = a.iter(now()).map(|n| n.unwrap().payload).collect();
    let got_b: Vec<String> = b.iter(now()).map(|n| n.unwrap().payload).collect();
    assert_eq!(got_a, ["1", "4"]);
    assert_eq!(got_b, ["2"]);
    assert!(a.iter(now()).all(|n| n.unwrap().channel == "a"));
}

#[test]
fn listener_starts_after_the_newest_id() {
    let db = TempDb::new();
    let conn = db.open();
    notify(&conn, "c", "\"old\"").unwrap();
    notify(&conn, "other", "\"newest\"").unwrap();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    assert_eq!(l.last_id(), latest_id(&conn).unwrap());
    assert_eq!(l.recv(now()).unwrap(), None);
    notify(&conn, "c", "\"new\"").unwrap();
    assert_eq!(l.recv(now()).unwrap().unwrap().payload, "\"new\"");
}

#[test]
fn no_duplicates_or_gaps_across_batches() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    let conn = db.open();
    let mut sent = Vec::new();
    let mut got = Vec::new();
    // Bursts larger than one internal batch, with reads interleaved mid-buffer.
    for round in 0..4 {
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..700 {
            let p = format!("{}", round * 1000 + i);
            notify(&tx, "c", &p).unwrap();
            notify(&tx, "noise", "0").unwrap();
            sent.push(p);
        }
        tx.commit().unwrap();
        for _ in 0..300 {
            got.push(l.recv(now()).unwrap().unwrap());
        }
    }
    got.extend(l.iter(now()).map(|n| n.unwrap()));
    assert_eq!(payloads(&got), sent);
    assert!(got.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn recv_blocks_until_a_notify_from_another_thread() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    let path = db.path();
    let w2 = wake.clone();
    let writer = thread::spawn(move || {
        let conn = honker_core::open(path).unwrap();
        // Wait until the listener is asleep, so this exercises the wake rather than the look.
        while w2.waiters() == 0 {
            thread::yield_now();
        }
        let id = notify(&conn, "c", "\"hello\"").unwrap();
        w2.kick();
        id
    });
    let got = l.recv(soon()).unwrap().expect("woken before the deadline");
    assert_eq!(got.id, writer.join().unwrap());
    assert_eq!(got.payload, "\"hello\"");
}

#[test]
fn recv_returns_none_at_the_deadline() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(20);
    assert_eq!(l.recv(Some(deadline)).unwrap(), None);
    assert!(std::time::Instant::now() >= deadline);
}

#[test]
fn listener_refuses_an_open_transaction_on_its_connection() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let conn = db.open();
    conn.execute_batch("BEGIN").unwrap();
    let e = Listener::new(conn, "c", Arc::new(wake.clone())).unwrap_err();
    assert_eq!(e.code(), "wait.in_transaction");

    let mut l = listener(&db, "c", &wake);
    l.connection().execute_batch("BEGIN").unwrap();
    assert_eq!(l.recv(now()).unwrap_err().code(), "wait.in_transaction");
    l.connection().execute_batch("COMMIT").unwrap();
    assert_eq!(l.recv(now()).unwrap(), None);
}

#[test]
fn wake_failure_reaches_recv() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    wake.fail(honker_core::WakeError::Replaced { path: db.path() });
    assert_eq!(l.recv(soon()).unwrap_err().code(), "wake.replaced");
}

#[test]
fn typed_errors_write_nothing() {
    let db = TempDb::new();
    let conn = db.open();
    let cases: Vec<(String, String, &str)> = vec![
        (String::new(), "1".into(), "notify.bad_channel"),
        ("x".repeat(257), "1".into(), "notify.bad_channel"),
        ("a\0b".into(), "1".into(), "notify.bad_channel"),
        ("c".into(), "not json".into(), "payload.not_json"),
        ("c".into(), "".into(), "payload.not_json"),
        ("c".into(), "{} {}".into(), "payload.not_json"),
        (
            "c".into(),
            format!("\"{}\"", "x".repeat(1024 * 1024)),
            "payload.too_large",
        ),
    ];
    for (channel, payload, code) in &cases {
        let e = notify(&conn, channel, payload).unwrap_err();
        assert_eq!(e.code(), *code, "{channel:?}");
        // Inside a transaction too, and the transaction stays usable.
        let tx = conn.unchecked_transaction().unwrap();
        assert_eq!(notify(&tx, channel, payload).unwrap_err().code(), *code);
        notify(&tx, "ok", "1").unwrap();
        tx.rollback().unwrap();
    }
    assert_eq!(count(&conn), 0);
    assert_eq!(latest_id(&conn).unwrap(), 0);
    assert_eq!(
        listen(&conn, "", 0, 10).unwrap_err().code(),
        "notify.bad_channel"
    );
}

#[test]
fn latest_id_never_goes_backwards() {
    let db = TempDb::new();
    let conn = db.open();
    assert_eq!(latest_id(&conn).unwrap(), 0);
    let id = notify(&conn, "c", "1").unwrap();
    assert_eq!(latest_id(&conn).unwrap(), id);
    conn.execute("DELETE FROM honker_notifications", [])
        .unwrap();
    assert_eq!(latest_id(&conn).unwrap(), id);
    assert!(notify(&conn, "c", "2").unwrap() > id);
}

#[test]
fn hot_queries_use_indexes() {
    let db = TempDb::new();
    let conn = db.open();
    for sql in [
        "SELECT id, channel, payload, created_ms FROM honker_notifications
         WHERE channel = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        "DELETE FROM honker_notifications
         WHERE id <= (SELECT coalesce(max(id), 0) FROM honker_notifications) - ?1",
    ] {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = stmt.parameter_count();
        let params: Vec<i64> = vec![0; n];
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(params), |r| r.get(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(
            plan.iter().all(|line| !line.starts_with("SCAN")),
            "{sql}: {plan:?}"
        );
    }
}

/// The prune by age has no `created_ms` index to use (schema v7 dropped it, one page fewer per
/// notify): it deletes a rowid range, and finds the range's end by walking ids from the oldest,
/// in rowid order (no sort), stopping at the first row young enough to keep.
#[test]
fn the_prune_by_age_walks_ids_in_order_and_deletes_a_rowid_range() {
    let db = TempDb::new();
    let conn = db.open();
    let sql = "EXPLAIN QUERY PLAN DELETE FROM honker_notifications WHERE id < coalesce(
                   (SELECT id FROM honker_notifications WHERE created_ms >= ?1 ORDER BY id LIMIT 1),
                   (SELECT max(id) + 1 FROM honker_notifications))";
    let plan: Vec<String> = conn
        .prepare(sql)
        .unwrap()
        .query_map([0], |r| r.get(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(
        plan[0].starts_with("SEARCH honker_notifications USING INTEGER PRIMARY KEY"),
        "{plan:?}"
    );
    assert!(
        plan.iter().all(|l| !l.contains("TEMP B-TREE")),
        "no sort: {plan:?}"
    );
    let indexes = |table: &str| -> i64 {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(
        indexes("honker_notifications"),
        1,
        "only (channel, id): each index is a page more per notify"
    );
    // Likewise events: only (topic, offset), which the trim by age walks.
    assert_eq!(
        indexes("honker_streams"),
        1,
        "only (topic, offset) on events"
    );
}

#[test]
fn racing_commits_are_never_slept_through() {
    // Each commit races the listener's look-then-sleep; the epoch is sampled before the look, so
    // a commit landing after the look has moved the epoch and the sleep returns at once.
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    let (go_tx, go_rx) = std::sync::mpsc::channel::<String>();
    let (id_tx, id_rx) = std::sync::mpsc::channel::<i64>();
    let path = db.path();
    let w2 = wake.clone();
    let writer = thread::spawn(move || {
        let conn = honker_core::open(path).unwrap();
        for p in go_rx {
            id_tx.send(notify(&conn, "c", &p).unwrap()).unwrap();
            w2.kick();
        }
    });
    for i in 0..200 {
        go_tx.send(i.to_string()).unwrap();
        let got = l
            .recv(soon())
            .unwrap()
            .expect("delivered before the deadline");
        assert_eq!(got.id, id_rx.recv().unwrap());
        assert_eq!(got.payload, i.to_string());
    }
    drop(go_tx);
    writer.join().unwrap();
}

#[test]
fn a_blocked_listener_holds_no_read_transaction() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let mut l = listener(&db, "c", &wake);
    let conn = db.open();
    // Give the listener's connection a cached statement and a look first.
    notify(&conn, "c", "1").unwrap();
    assert!(l.recv(now()).unwrap().is_some());
    let blocked = thread::spawn(move || (l.recv(soon()), l));
    while wake.waiters() == 0 {
        thread::yield_now();
    }
    let id = notify(&conn, "c", "2").unwrap();
    // A reader holding a snapshot would make the TRUNCATE checkpoint report busy.
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0, "the blocked listener pins the WAL");
    wake.kick();
    let (got, _l) = blocked.join().unwrap();
    assert_eq!(got.unwrap().unwrap().id, id);
}
