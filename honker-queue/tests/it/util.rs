//! Shared helpers of the queue tests: temporary databases, a settable clock, row counts.

use std::path::PathBuf;
use std::sync::Arc;

use honker_core::{Millis, SettableClock};
use honker_queue::Queue;
use rusqlite::Connection;

/// The start of every settable clock: a round, recognisable time.
pub(crate) const T0: i64 = 1_700_000_000_000;

/// A temporary directory holding `app.db`, migrated.
pub(crate) struct TempDb {
    pub(crate) dir: tempfile::TempDir,
}

impl TempDb {
    pub(crate) fn new() -> TempDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TempDb { dir };
        drop(db.open());
        db
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    pub(crate) fn open(&self) -> Connection {
        honker_core::open(self.path()).expect("open")
    }
}

/// A queue on a settable clock standing at [`T0`].
pub(crate) fn queue_at_t0(name: &str) -> (Queue, SettableClock) {
    let clock = SettableClock::new(Millis(T0));
    (
        Queue::with_clock(name, Arc::new(clock.clone())).unwrap(),
        clock,
    )
}

/// Rows of a table.
pub(crate) fn rows(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Row counts of every queue table, to check that a refused call wrote nothing.
pub(crate) fn snapshot(conn: &Connection) -> Vec<(String, i64)> {
    [
        "honker_jobs",
        "honker_dead",
        "honker_results",
        "honker_queues",
        "honker_locks",
        "honker_rate_limits",
        "honker_history",
    ]
    .iter()
    .map(|t| (t.to_string(), rows(conn, t)))
    .chain(std::iter::once((
        "claims and tokens".to_string(),
        conn.query_row(
            "SELECT coalesce(sum(claims), 0) + coalesce(sum(lease_token), 0)
                 + coalesce(sum(lease_expires), 0) FROM honker_jobs",
            [],
            |r| r.get(0),
        )
        .unwrap(),
    )))
    .collect()
}

pub(crate) fn integrity_ok(conn: &Connection) {
    let s: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(s, "ok");
}
