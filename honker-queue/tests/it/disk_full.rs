//! A full database (`SQLITE_FULL`, made with `PRAGMA max_page_count` on the writing connection):
//! every refused write is a typed `db.full` error that writes nothing, the caller's business
//! write rolls back with its job, jobs already queued are not lost, and work resumes as soon as
//! there is room again.

use honker_queue::{EnqueueOptions, Queue};
use rusqlite::Connection;

use crate::bad_input::sql_conn;
use crate::util::{TempDb, integrity_ok, rows};

/// Cap the file at the pages it has now: writes that need a new page fail with SQLITE_FULL.
fn fill_up(conn: &Connection) {
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let max: i64 = conn
        .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(max, pages);
}

fn make_room(conn: &Connection) {
    conn.query_row("PRAGMA max_page_count = 1073741823", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap();
}

/// A payload big enough to need pages of its own.
fn big() -> String {
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(6000))
}

/// Enqueue big payloads until the file is full; returns how many fitted.
fn enqueue_until_full(conn: &Connection, q: &Queue) -> usize {
    let payload = big();
    for fitted in 0..10_000 {
        match q.enqueue(conn, &payload, &EnqueueOptions::default()) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), "db.full", "{e}");
                assert!(e.to_string().contains("full"), "{e}");
                return fitted;
            }
        }
    }
    panic!("the capped file never filled up");
}

#[test]
fn a_full_database_refuses_each_write_with_db_full_and_loses_nothing() {
    let db = TempDb::new();
    let conn = db.open();
    conn.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        .unwrap();
    let q = Queue::new("q").unwrap();
    for i in 0..10 {
        q.enqueue(&conn, &format!("[{i}]"), &EnqueueOptions::default())
            .unwrap();
    }
    fill_up(&conn);
    let fitted = enqueue_until_full(&conn, &q);
    let queued = 10 + fitted as i64;
    assert_eq!(rows(&conn, "honker_jobs"), queued);

    // A batch is all or nothing.
    let payload = big();
    let batch: Vec<&str> = vec![payload.as_str(); 20];
    let e = q
        .enqueue_batch(&conn, &batch, &EnqueueOptions::default())
        .unwrap_err();
    assert_eq!(e.code(), "db.full");
    assert_eq!(rows(&conn, "honker_jobs"), queued);

    // The business write and its job roll back together: no order without its job.
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let order = conn.execute("INSERT INTO orders (note) VALUES ('small')", []);
    let job = q.enqueue(&conn, &payload, &EnqueueOptions::default());
    assert!(
        order.is_err() || job.is_err(),
        "both writes fitted in a full file"
    );
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(rows(&conn, "orders"), 0);
    assert_eq!(rows(&conn, "honker_jobs"), queued);

    // The SQL function says the same, with its code first.
    let sql = sql_conn(&db);
    fill_up(&sql);
    let e = sql
        .query_row("SELECT honker_enqueue('q', ?1)", [&payload], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_err();
    assert!(
        e.to_string().starts_with("honker: db.full: "),
        "expected db.full, got {e}"
    );
    assert_eq!(rows(&conn, "honker_jobs"), queued);

    // Workers can still drain a full file: a claim that needs no new page succeeds, and one
    // that does fails whole. Acks only delete.
    let claimed = match q.claim(&conn, "w", 5, None) {
        Ok(jobs) => jobs,
        Err(e) => {
            assert_eq!(e.code(), "db.full", "{e}");
            assert_eq!(rows(&conn, "honker_jobs"), queued);
            Vec::new()
        }
    };
    for job in &claimed {
        q.ack(&conn, job.id, job.lease_token).unwrap();
    }
    let left = queued - claimed.len() as i64;
    assert_eq!(rows(&conn, "honker_jobs"), left);
    integrity_ok(&conn);

    // Room again: writes go through, and every job that was queued is still there.
    make_room(&conn);
    q.enqueue(&conn, &payload, &EnqueueOptions::default())
        .unwrap();
    assert_eq!(rows(&conn, "honker_jobs"), left + 1);
    let mut drained = 0;
    loop {
        let jobs = q.claim(&conn, "w", 64, None).unwrap();
        if jobs.is_empty() {
            break;
        }
        for job in &jobs {
            q.ack(&conn, job.id, job.lease_token).unwrap();
        }
        drained += jobs.len() as i64;
    }
    assert_eq!(drained, left + 1, "a job was lost");
    integrity_ok(&conn);
}
