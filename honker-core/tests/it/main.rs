//! honker-core's integration tests: opening, migrating and protecting a database file.

mod migrate;
mod open;
mod statements;
mod write_atomically;

use std::path::Path;

/// Count the rows of a table.
pub(crate) fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// `PRAGMA integrity_check` is `ok`.
pub(crate) fn assert_integrity(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}
