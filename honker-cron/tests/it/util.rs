//! Shared helpers: a fresh database file, instants written as RFC 3339, job counts.

use std::path::PathBuf;

use chrono::DateTime;
use honker_core::Millis;
use rusqlite::Connection;

/// A fresh migrated database in a temporary directory (kept alive by the returned guard).
pub(crate) fn db() -> (tempfile::TempDir, PathBuf, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cron.db");
    let conn = honker_core::open(&path).unwrap();
    (dir, path, conn)
}

/// An RFC 3339 instant (`2026-03-08T03:00:00-04:00`) as milliseconds.
pub(crate) fn at(text: &str) -> Millis {
    Millis(
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("bad instant {text:?} in a test: {e}"))
            .timestamp_millis(),
    )
}

/// Rows in a table.
pub(crate) fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Live jobs in `queue`.
pub(crate) fn jobs_in(conn: &Connection, queue: &str) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM honker_jobs WHERE queue = ?1",
        [queue],
        |r| r.get(0),
    )
    .unwrap()
}

/// How many proptest cases to run: small by default, `HONKER_PROPTEST_CASES` to go deeper.
pub(crate) fn proptest_cases(default: u32) -> u32 {
    std::env::var("HONKER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Make `queue` refuse payloads over `bytes` from now on.
pub(crate) fn limit_payloads(conn: &Connection, queue: &str, bytes: usize) {
    honker_queue::Queue::new(queue)
        .unwrap()
        .configure(
            conn,
            &honker_queue::QueueOptionsPatch {
                max_payload_bytes: Some(bytes),
                ..Default::default()
            },
        )
        .unwrap();
}
