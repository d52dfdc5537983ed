//! Connection setup (`open`, `prepare`), the database file behind a connection, and the
//! transaction helpers every write API uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::schema;

/// The busy timeout `open` and `prepare` set: how long a statement waits for another
/// connection's lock before failing with [`Error::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(5_000);

/// The WAL auto-checkpoint threshold in pages: one checkpoint per 10k pages rather than per commit.
pub const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Open (creating if needed) the database file at `path`, configure it and migrate the schema.
///
/// The connection gets `journal_mode=WAL`, `synchronous=NORMAL`, `wal_autocheckpoint=10000`,
/// `busy_timeout=5000` and `foreign_keys=ON`. A file that cannot be written is opened read-only
/// if its schema is current, so reads still work and writes fail with [`Error::ReadOnly`].
///
/// # Errors
///
/// [`Error::NotFile`] for `:memory:` and empty paths, [`Error::NotDatabase`] for a file that is
/// not SQLite, [`Error::SchemaTooNew`], [`Error::ReadOnly`], [`Error::NotHonker`].
pub fn open(path: impl AsRef<Path>) -> Result<Connection> {
    let path = path.as_ref();
    refuse_non_file(path)?;
    let conn = Connection::open(path).map_err(|e| at_path(e, path))?;
    prepare(&conn).map_err(|e| with_path(e, path))?;
    Ok(conn)
}

/// Open the database at `path` read-only (never creating it); the schema must already exist.
///
/// # Errors
///
/// As [`open`]; [`Error::ReadOnly`] when the schema would need a migration.
pub fn open_read_only(path: impl AsRef<Path>) -> Result<Connection> {
    let path = path.as_ref();
    refuse_non_file(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| at_path(e, path))?;
    prepare(&conn).map_err(|e| with_path(e, path))?;
    Ok(conn)
}

/// Configure a connection the caller opened and create or migrate the honker schema.
///
/// # Errors
///
/// As [`open`].
pub fn prepare(conn: &Connection) -> Result<()> {
    let path = db_file(conn)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Some BUSY results never reach the busy handler: switching the journal mode while another
    // process does, or reading while another process runs WAL recovery. Every step below is
    // idempotent, so retry the whole setup until the busy timeout is spent.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match prepare_once(conn, &path) {
            Err(e) if e.is_busy() && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn prepare_once(conn: &Connection, path: &Path) -> Result<()> {
    let path = path.to_owned();
    // Reading the schema reads page 1: a file that is not SQLite fails here, before any write.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| at_path(e, &path))?;
    let read_only = conn.is_readonly(rusqlite::MAIN_DB)?;
    if !read_only {
        // Switching to WAL needs to create the -wal file; a read-only directory refuses it.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::CannotOpen) => Error::ReadOnly {
                    path: path.clone(),
                    reason: format!("cannot create the WAL beside the database: {e}"),
                },
                _ => at_path(e, &path),
            })?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::ReadOnly {
                path,
                reason: format!("journal_mode stayed {mode:?}; WAL needs a writable directory"),
            });
        }
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    schema::migrate(conn).map_err(|e| with_path(e, &path))?;
    Ok(())
}

/// The file behind `conn`'s main database.
///
/// # Errors
///
/// [`Error::NotFile`] for in-memory and temporary databases, which no other connection can see.
pub fn db_file(conn: &Connection) -> Result<PathBuf> {
    match conn.path() {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(Error::NotFile {
            what: "an in-memory or temporary database".into(),
        }),
    }
}

/// Refuse to start a blocking wait inside an open transaction on `conn`.
///
/// # Errors
///
/// [`Error::WaitInTransaction`].
pub fn ensure_no_transaction(conn: &Connection) -> Result<()> {
    if conn.is_autocommit() {
        Ok(())
    } else {
        Err(Error::WaitInTransaction)
    }
}

/// Run `f`'s writes all-or-nothing.
///
/// Inside the caller's transaction, `f` runs under a savepoint of it (so a failure undoes only
/// `f`'s writes, and the caller's commit or rollback decides the rest). In autocommit, `f` runs in
/// its own `BEGIN IMMEDIATE` transaction: taking the write lock first means a read followed by a
/// write can never fail with `SQLITE_BUSY_SNAPSHOT`.
///
/// # Errors
///
/// `f`'s error (after rolling back), or the SQLite error of beginning or committing.
pub fn write_atomically<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let own_transaction = conn.is_autocommit();
    // Cached statements: these four run on every multi-statement write, and `execute_batch` would
    // parse them each time.
    run(
        conn,
        if own_transaction {
            "BEGIN IMMEDIATE"
        } else {
            "SAVEPOINT honker"
        },
    )?;
    match f(conn) {
        Ok(v) => {
            let end = if own_transaction {
                "COMMIT"
            } else {
                "RELEASE honker"
            };
            if let Err(e) = run(conn, end) {
                rollback(conn, own_transaction);
                return Err(e);
            }
            Ok(v)
        }
        Err(e) => {
            rollback(conn, own_transaction);
            Err(e)
        }
    }
}

fn run(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn rollback(conn: &Connection, own_transaction: bool) {
    // A failed rollback leaves nothing more to undo: SQLite rolls back on its own when it cannot.
    if own_transaction {
        let _ = run(conn, "ROLLBACK");
    } else {
        let _ = run(conn, "ROLLBACK TO honker").and_then(|()| run(conn, "RELEASE honker"));
    }
}

fn refuse_non_file(path: &Path) -> Result<()> {
    let s = path.to_string_lossy();
    if s.is_empty()
        || s == ":memory:"
        || s.starts_with("file::memory:")
        || s.contains("mode=memory")
    {
        return Err(Error::NotFile {
            what: format!("{s:?}"),
        });
    }
    Ok(())
}

fn at_path(e: rusqlite::Error, path: &Path) -> Error {
    with_path(Error::from(e), path)
}

/// Fill in the path of errors that were classified without one.
fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::ReadOnly { path: p, reason } if p.as_os_str().is_empty() => Error::ReadOnly {
            path: path.to_owned(),
            reason,
        },
        Error::NotDatabase { path: p } if p.as_os_str().is_empty() => Error::NotDatabase {
            path: path.to_owned(),
        },
        other => other,
    }
}
