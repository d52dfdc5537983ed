//! A full database (`SQLITE_FULL`, made with `PRAGMA max_page_count`): publish and notify refuse
//! with `db.full` and write nothing, committed offsets never move backwards, and once there is
//! room again offsets go on increasing with every earlier event still readable.

use honker_stream::{Offset, commit_offset, committed_offset, notify, publish, read};
use rusqlite::Connection;

use crate::util::TempDb;

/// Cap the file at `pages` (its current size when `None`), or lift the cap.
fn cap_pages(conn: &Connection, pages: Option<i64>) {
    let pages = pages.unwrap_or_else(|| {
        conn.query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap()
    });
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap();
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_full_database_refuses_publish_and_notify_and_offsets_stay_monotonic() {
    let db = TempDb::new();
    let conn = db.open();
    let mut offsets: Vec<Offset> = (0..5)
        .map(|i| publish(&conn, "t", &format!("[{i}]")).unwrap())
        .collect();
    commit_offset(&conn, "c", "t", offsets[2]).unwrap();
    cap_pages(&conn, None);

    let payload = format!(r#"{{"pad":"{}"}}"#, "x".repeat(6000));
    let refused = loop {
        match publish(&conn, "t", &payload) {
            Ok(o) => offsets.push(o),
            Err(e) => break e,
        }
        assert!(offsets.len() < 10_000, "the capped file never filled up");
    };
    assert_eq!(refused.code(), "db.full", "{refused}");
    assert_eq!(count(&conn, "honker_streams"), offsets.len() as i64);
    let notes = count(&conn, "honker_notifications");
    let e = (0..10_000)
        .find_map(|_| notify(&conn, "ch", &payload).err())
        .expect("the capped file never filled up");
    assert_eq!(e.code(), "db.full", "{e}");
    assert!(count(&conn, "honker_notifications") >= notes);

    // A commit either fits or is refused whole; the committed offset never goes back.
    match commit_offset(&conn, "c", "t", offsets[4]) {
        Ok(_) => assert_eq!(committed_offset(&conn, "c", "t").unwrap(), Some(offsets[4])),
        Err(e) => {
            assert_eq!(e.code(), "db.full", "{e}");
            assert_eq!(committed_offset(&conn, "c", "t").unwrap(), Some(offsets[2]));
        }
    }

    cap_pages(&conn, Some(1_073_741_823));
    let next = publish(&conn, "t", &payload).unwrap();
    assert!(next > *offsets.last().unwrap(), "an offset was reused");
    offsets.push(next);
    let events = read(&conn, "t", Offset::ZERO, 100_000).unwrap();
    let read_back: Vec<Offset> = events.iter().map(|e| e.offset).collect();
    assert_eq!(read_back, offsets, "an event was lost or reordered");
}
