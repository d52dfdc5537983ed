//! Migrations: versioned in honker_meta, run once under concurrency, newer schemas refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use honker_core::schema::{SCHEMA_VERSION, migrate, schema_version};
use honker_core::{Error, open};

const CHILD_ROLE: &str = "HONKER_CORE_TEST_ROLE";

#[test]
fn migrate_is_idempotent_and_keeps_user_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let plain = rusqlite::Connection::open(&path).unwrap();
    plain
        .execute_batch("CREATE TABLE app(x); INSERT INTO app VALUES (1), (2);")
        .unwrap();
    let conn = open(&path).unwrap();
    assert_eq!(migrate(&conn).unwrap(), SCHEMA_VERSION);
    assert_eq!(migrate(&conn).unwrap(), SCHEMA_VERSION);
    assert_eq!(crate::count(&conn, "app"), 2);
    crate::assert_integrity(&path);
}

#[test]
fn newer_schema_is_refused_with_schema_too_new_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    drop(open(&path).unwrap());
    let plain = rusqlite::Connection::open(&path).unwrap();
    plain
        .execute(
            "UPDATE honker_meta SET value = ?1 WHERE key = 'schema_version'",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
    let e = open(&path).unwrap_err();
    assert_eq!(e.code(), "schema.too_new", "{e}");
    assert!(
        matches!(e, Error::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION)
    );
    assert_eq!(schema_version(&plain).unwrap(), Some(SCHEMA_VERSION + 1));
}

#[test]
fn foreign_honker_tables_are_refused_with_db_not_honker() {
    let dir = tempfile::tempdir().unwrap();
    let stray = dir.path().join("stray.db");
    rusqlite::Connection::open(&stray)
        .unwrap()
        .execute_batch("CREATE TABLE honker_jobs(x); INSERT INTO honker_jobs VALUES (7);")
        .unwrap();
    assert_eq!(open(&stray).unwrap_err().code(), "db.not_honker");

    let odd_meta = dir.path().join("odd.db");
    rusqlite::Connection::open(&odd_meta)
        .unwrap()
        .execute_batch("CREATE TABLE honker_meta(k, v);")
        .unwrap();
    assert_eq!(open(&odd_meta).unwrap_err().code(), "db.not_honker");

    let c = rusqlite::Connection::open(&stray).unwrap();
    assert_eq!(
        crate::count(&c, "honker_jobs"),
        1,
        "a refused file loses nothing"
    );
}

#[test]
fn migrate_inside_callers_transaction_uses_a_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mut plain = rusqlite::Connection::open(&path).unwrap();
    let tx = plain.transaction().unwrap();
    tx.execute_batch("CREATE TABLE app(x)").unwrap();
    assert_eq!(migrate(&tx).unwrap(), SCHEMA_VERSION);
    tx.rollback().unwrap();
    assert_eq!(
        schema_version(&plain).unwrap(),
        None,
        "rolled back with the caller"
    );
}

/// Child role: wait for the start signal, then open (and so migrate) the file.
#[test]
fn child_open_at_signal() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let (db, go) = role.split_once('|').expect("role is db|go");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(go).exists() {
        assert!(Instant::now() < deadline, "no start signal");
        std::thread::yield_now();
    }
    let conn = open(db).unwrap_or_else(|e| panic!("child open failed: {} {e}", e.code()));
    assert_eq!(schema_version(&conn).unwrap(), Some(SCHEMA_VERSION));
}

#[test]
fn processes_opening_an_empty_file_at_once_all_succeed_and_migrate_once() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("race.db");
        let go = dir.path().join("go");
        let children: Vec<_> = (0..6)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "migrate::child_open_at_signal",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ROLE, format!("{}|{}", db.display(), go.display()))
                    .output_spawn()
            })
            .collect();
        std::fs::write(&go, b"go").unwrap();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: a child failed (a second migration would fail on CREATE TABLE):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("1 passed"),
                "the child ran its role: {stdout}"
            );
        }
        let conn = open(&db).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), Some(SCHEMA_VERSION));
        crate::assert_integrity(&db);
    }
}

trait SpawnPiped {
    fn output_spawn(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn output_spawn(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
