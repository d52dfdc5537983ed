//! `open`, `open_read_only` and `prepare`: pragmas, and refusing what is not a honker file.

use honker_core::{Error, open, open_read_only, prepare};

#[test]
fn open_sets_wal_and_honker_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path().join("a.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 1, "synchronous=NORMAL");
    // SQLite's automatic checkpoint and busy timeout are replaced by honker's stepped
    // checkpoint and fair busy handler, so both pragmas read 0.
    let ckpt: i64 = conn
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ckpt, 0);
    let busy: i64 = conn
        .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0);

    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        user_version, 0,
        "honker never touches the application's user_version"
    );
}

#[test]
fn memory_and_temp_databases_are_refused_with_db_not_file() {
    for p in [":memory:", "", "file::memory:?cache=shared"] {
        let e = open(p).unwrap_err();
        assert_eq!(e.code(), "db.not_file", "{p:?}: {e}");
    }
    let mem = rusqlite::Connection::open_in_memory().unwrap();
    assert_eq!(prepare(&mem).unwrap_err().code(), "db.not_file");
    let temp = rusqlite::Connection::open("").unwrap();
    assert_eq!(prepare(&temp).unwrap_err().code(), "db.not_file");
}

#[test]
fn a_text_file_is_refused_with_db_not_database_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let e = open(&path).unwrap_err();
    assert_eq!(e.code(), "db.not_database", "{e}");
    assert!(
        e.to_string().contains("notes.txt"),
        "the message names the file: {e}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn read_only_open_reads_and_refuses_writes_with_db_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.db");
    {
        let rw = open(&path).unwrap();
        rw.execute_batch("CREATE TABLE app(x); INSERT INTO app VALUES (1);")
            .unwrap();
    }
    let ro = open_read_only(&path).unwrap();
    assert_eq!(crate::count(&ro, "app"), 1);
    let e = ro
        .execute("INSERT INTO app VALUES (2)", [])
        .map_err(Error::from)
        .unwrap_err();
    assert_eq!(e.code(), "db.read_only", "{e}");
    drop(ro);
    assert_eq!(crate::count(&open(&path).unwrap(), "app"), 1);
}

#[test]
fn read_only_file_without_schema_gives_db_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE app(x);")
        .unwrap();
    let e = open_read_only(&path).unwrap_err();
    assert_eq!(e.code(), "db.read_only", "{e}");
}

#[test]
fn read_only_permission_bits_give_db_read_only_when_not_root() {
    // Root ignores permission bits, so this arm only runs for ordinary users; the read-only
    // open above covers the same path for everyone.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perm.db");
    drop(rusqlite::Connection::open(&path).unwrap());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let writable = std::fs::OpenOptions::new().write(true).open(&path).is_ok();
    if writable {
        return; // running as root
    }
    let e = open(&path).unwrap_err();
    assert_eq!(e.code(), "db.read_only", "{e}");
}

#[test]
fn prepare_on_callers_connection_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("own.db")).unwrap();
    prepare(&conn).unwrap();
    assert_eq!(
        honker_core::schema::schema_version(&conn).unwrap(),
        Some(honker_core::schema::SCHEMA_VERSION)
    );
}
