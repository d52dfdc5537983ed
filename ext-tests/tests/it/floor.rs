//! The host version floor: a host older than the floor gets a clean load error, not an abort.
//!
//! The only host here is SQLite 3.40.1, above the 3.38.0 floor, so the test raises the floor with
//! the test-only `HONKER_EXT_MIN_SQLITE_FOR_TESTS` (read by the extension's init, documented in
//! honker-ext): the refusal runs the same code an old host would.

use rusqlite::Connection;

use crate::support::{run, sqlite3, temp_db};

#[test]
fn a_host_below_the_floor_gets_a_clean_load_error_and_nothing_is_written() {
    let (_dir, db) = temp_db();
    let mut cmd = sqlite3(&db, &["SELECT 1"]);
    cmd.env("HONKER_EXT_MIN_SQLITE_FOR_TESTS", "3099000");
    // `failed` asserts a plain non-zero exit status, not death by a signal.
    let stderr = run(cmd).failed();
    assert!(
        stderr.contains("honker: ext.sqlite_too_old: ") && stderr.contains("3.99.0"),
        "{stderr:?}"
    );
    let conn = Connection::open(&db).expect("open");
    assert_eq!(
        honker_core::schema::schema_version(&conn).expect("version"),
        None
    );
}
