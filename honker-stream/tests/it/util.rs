//! Shared helpers: temporary databases, deadlines, row counts, child processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

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

/// A generous deadline for conditions that should hold soon.
pub(crate) fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(30))
}

/// A deadline that has already passed: `recv` looks once and returns.
pub(crate) fn now() -> Option<Instant> {
    Some(Instant::now())
}

pub(crate) fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM honker_notifications", [], |r| {
        r.get(0)
    })
    .unwrap()
}

pub(crate) fn integrity_ok(conn: &Connection) {
    let s: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(s, "ok");
}

/// The environment variable naming a child's role.
pub(crate) const ROLE: &str = "HONKER_STREAM_TEST_ROLE";

/// Whether this process is a child started for `role`.
pub(crate) fn is_child(role: &str) -> bool {
    std::env::var(ROLE).as_deref() == Ok(role)
}

/// Re-run this test binary as a child that runs only `test` (its full path) in role `role`.
pub(crate) fn spawn_child(role: &str, test: &str, db: &Path, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("HONKER_STREAM_TEST_DB", db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child")
}

/// The database path a child was given.
pub(crate) fn child_db() -> PathBuf {
    PathBuf::from(std::env::var("HONKER_STREAM_TEST_DB").expect("HONKER_STREAM_TEST_DB"))
}
