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
/// The connection gets `journal_mode=WAL`, `synchronous=NORMAL` and `foreign_keys=ON`; for the
/// write lock, [`crate::fair_busy_handler`] (up to
/// [`BUSY_TIMEOUT`] in all) in place of SQLite's backoff, and checkpoints at 10,000 WAL frames
/// that stay one per 1,000 more frames when the WAL cannot start over (see
/// [`crate::share_write_lock`]). A file that cannot be written is opened read-only if its
/// schema is current, so reads still work and writes fail with [`Error::ReadOnly`].
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
    if !conn.is_readonly(rusqlite::MAIN_DB)? {
        crate::share_write_lock(&conn).map_err(|e| with_path(e, path))?;
    }
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
    conn.prepare_cached("SELECT count(*) FROM sqlite_master")
        .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
        .map_err(|e| at_path(e, &path))?;
    let read_only = conn.is_readonly(rusqlite::MAIN_DB)?;
    if !read_only {
        switch_to_wal(conn, &path)?;
    }
    apply_pragmas(conn)?;
    schema::migrate(conn).map_err(|e| with_path(e, &path))?;
    Ok(())
}

/// Put the main database in WAL mode.
///
/// # Errors
///
/// [`Error::ReadOnly`] when the directory refuses the `-wal` file, SQLite's error otherwise.
pub(crate) fn switch_to_wal(conn: &Connection, path: &Path) -> Result<()> {
    if settings(conn)?.journal_mode == "wal" {
        return Ok(());
    }
    // Switching to WAL needs to create the -wal file; a read-only directory refuses it.
    let mode: String = conn
        .prepare_cached("PRAGMA journal_mode = WAL")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::CannotOpen) => Error::ReadOnly {
                path: path.to_owned(),
                reason: format!("cannot create the WAL beside the database: {e}"),
            },
            _ => at_path(e, path),
        })?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::ReadOnly {
            path: path.to_owned(),
            reason: format!("journal_mode stayed {mode:?}; WAL needs a writable directory"),
        });
    }
    Ok(())
}

/// Every setting of `open` but the journal mode, which needs a file.
///
/// Each is changed only when it differs: SQLite expires every prepared statement of the
/// connection when `synchronous` or `foreign_keys` is set, even to its current value, and
/// `honker_setup()` may run often.
fn apply_pragmas(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let now = settings(conn)?;
    let pragma = |sql: &str| -> Result<()> {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    };
    if !conn.is_readonly(rusqlite::MAIN_DB)? && now.wal_autocheckpoint != WAL_AUTOCHECKPOINT_PAGES {
        pragma(autocheckpoint_pragma())?;
    }
    if now.synchronous != "normal" {
        pragma("PRAGMA synchronous = NORMAL")?;
    }
    if !now.foreign_keys {
        pragma("PRAGMA foreign_keys = ON")?;
    }
    Ok(())
}

fn autocheckpoint_pragma() -> &'static str {
    const SQL: &str = "PRAGMA wal_autocheckpoint = 10000";
    debug_assert_eq!(
        SQL,
        format!("PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    );
    SQL
}

/// The settings of a connection that [`setup`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `PRAGMA journal_mode`, lower case (`wal`, `delete`, `memory`, ...).
    pub journal_mode: String,
    /// `PRAGMA synchronous` by name (`off`, `normal`, `full`, `extra`).
    pub synchronous: &'static str,
    /// `PRAGMA wal_autocheckpoint`, in pages.
    pub wal_autocheckpoint: i64,
    /// `PRAGMA busy_timeout`, in milliseconds.
    pub busy_timeout_ms: i64,
    /// `PRAGMA foreign_keys`.
    pub foreign_keys: bool,
}

impl Settings {
    /// The settings as the JSON object `honker_setup()` returns.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "journal_mode": self.journal_mode,
            "synchronous": self.synchronous,
            "wal_autocheckpoint": self.wal_autocheckpoint,
            "busy_timeout_ms": self.busy_timeout_ms,
            "foreign_keys": self.foreign_keys,
        })
        .to_string()
    }
}

/// Read back the settings [`setup`] applies.
///
/// # Errors
///
/// SQLite's error.
pub fn settings(conn: &Connection) -> Result<Settings> {
    let text = |sql: &str| {
        conn.prepare_cached(sql)?
            .query_row([], |r| r.get::<_, String>(0))
    };
    let int = |sql: &str| {
        conn.prepare_cached(sql)?
            .query_row([], |r| r.get::<_, i64>(0))
    };
    Ok(Settings {
        journal_mode: text("PRAGMA journal_mode")?.to_ascii_lowercase(),
        synchronous: match int("PRAGMA synchronous")? {
            0 => "off",
            1 => "normal",
            2 => "full",
            _ => "extra",
        },
        wal_autocheckpoint: int("PRAGMA wal_autocheckpoint")?,
        busy_timeout_ms: int("PRAGMA busy_timeout")?,
        foreign_keys: int("PRAGMA foreign_keys")? != 0,
    })
}

/// Apply what [`open`] applies to a connection someone else opened, migrate the schema, and
/// report the settings now in force: the `honker_setup()` SQL function.
///
/// A database with no file (`:memory:`, a temporary database) keeps its journal mode (WAL
/// needs a file) and gets every other setting; a read-only file keeps its journal mode too.
///
/// # Errors
///
/// [`Error::SetupInTransaction`] inside an open transaction (journal mode and synchronous
/// cannot change there); otherwise as [`prepare`].
pub fn setup(conn: &Connection) -> Result<Settings> {
    if !conn.is_autocommit() {
        return Err(Error::SetupInTransaction);
    }
    match db_file(conn) {
        Ok(_) => prepare(conn)?,
        Err(_) => {
            apply_pragmas(conn)?;
            schema::migrate(conn)?;
        }
    }
    settings(conn)
}

/// What a journal mode other than WAL costs honker's users, or `None` for WAL.
pub fn journal_mode_note(mode: &str) -> Option<&'static str> {
    match mode.to_ascii_lowercase().as_str() {
        "wal" => None,
        "memory" => Some(
            "an in-memory database: no other connection sees it, so no other process can wake on it",
        ),
        _ => Some(
            "not WAL: every commit syncs the file and its journal (about 2 ms here, so wakes take milliseconds), readers block writers, and the wake watcher's SHARED lock can fail a writer that has no busy timeout; call honker_setup() (or PRAGMA journal_mode=WAL) to switch",
        ),
    }
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
/// Three cases, picked from the connection's state:
/// - in autocommit, `f` runs in its own `BEGIN IMMEDIATE` transaction: taking the write lock
///   first means a read followed by a write can never fail with `SQLITE_BUSY_SNAPSHOT`;
/// - inside the caller's transaction, `f` runs under a savepoint of it (so a failure undoes only
///   `f`'s writes, and the caller's commit or rollback decides the rest);
/// - inside another write statement (a SQL function called from a trigger, `INSERT ... SELECT`
///   or `UPDATE ... SET`), see [`nested_atomically`].
///
/// # Errors
///
/// `f`'s error (after rolling back), or the SQLite error of beginning or committing.
pub fn write_atomically<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let in_statement = in_write_statement(conn);
    if !conn.is_autocommit() || in_statement {
        return savepoint_unless_in_statement(conn, in_statement, f);
    }
    immediately(conn, f)
}

/// Run `f`, whose reads must see exactly the rows its one write (its last statement) then
/// changes, under the write lock: in autocommit in its own `BEGIN IMMEDIATE` transaction, and
/// inside a transaction or a write statement as it is. There the write either finds the reads
/// current or fails (SQLite refuses to upgrade a stale read snapshot, `SQLITE_BUSY_SNAPSHOT`),
/// and no savepoint is needed: when the one write fails, nothing of `f`'s is left to undo.
///
/// # Errors
///
/// `f`'s error (after rolling back its own transaction), or the SQLite error of beginning or
/// committing.
pub fn read_then_write<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    if !conn.is_autocommit() || in_write_statement(conn) {
        return f(conn);
    }
    immediately(conn, f)
}

/// Run `f` in a `BEGIN IMMEDIATE` transaction of its own, committed when it succeeds.
fn immediately<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    // Cached statements: these run on every multi-statement write, and `execute_batch` would
    // parse them each time.
    run(conn, "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(v) => {
            if let Err(e) = run(conn, "COMMIT") {
                let _ = run(conn, "ROLLBACK");
                return Err(e);
            }
            Ok(v)
        }
        Err(e) => {
            // A failed rollback leaves nothing to undo: SQLite rolls back on its own when it
            // cannot.
            let _ = run(conn, "ROLLBACK");
            Err(e)
        }
    }
}

/// Run `f`'s writes all-or-nothing inside whatever transaction or statement is running: under a
/// savepoint, or directly when a write statement of `conn` is running.
///
/// SQLite refuses `SAVEPOINT`, `BEGIN` and `COMMIT` while a write statement is running ("SQL
/// statements in progress", as `SQLITE_BUSY`). There the outer statement is the unit: when `f`
/// fails, the outer statement fails, and SQLite undoes it in autocommit (the whole statement's
/// transaction) and on I/O or full-disk errors (the whole transaction). Every honker write
/// checks its input before its first statement, so `f` fails between its statements only on
/// such errors.
///
/// # Errors
///
/// `f`'s error (after rolling back to the savepoint), or SQLite's error of the savepoint.
pub fn nested_atomically<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    savepoint_unless_in_statement(conn, in_write_statement(conn), f)
}

/// [`nested_atomically`] once the caller knows whether a write statement is running (the walk
/// of the connection's statements is done once per write).
fn savepoint_unless_in_statement<T>(
    conn: &Connection,
    in_statement: bool,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    if in_statement {
        return f(conn);
    }
    run(conn, "SAVEPOINT honker")?;
    match f(conn) {
        Ok(v) => {
            if let Err(e) = run(conn, "RELEASE honker") {
                rollback_to_savepoint(conn);
                return Err(e);
            }
            Ok(v)
        }
        Err(e) => {
            rollback_to_savepoint(conn);
            Err(e)
        }
    }
}

/// Whether a statement of `conn` that writes is running now: the caller is a SQL function
/// called from a trigger, `INSERT ... SELECT` or `UPDATE ... SET`.
#[allow(unsafe_code)]
pub fn in_write_statement(conn: &Connection) -> bool {
    use rusqlite::ffi;
    // SAFETY: the handle is this live connection's, used on the calling thread for the length
    // of the loop; `sqlite3_next_stmt` walks the connection's own statement list, and every
    // statement it yields stays alive while we hold the connection (statements are finalized only
    // through the connection, which this thread is using). The three calls only read.
    unsafe {
        let db = conn.handle();
        let mut stmt = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
        while !stmt.is_null() {
            if ffi::sqlite3_stmt_busy(stmt) != 0 && ffi::sqlite3_stmt_readonly(stmt) == 0 {
                return true;
            }
            stmt = ffi::sqlite3_next_stmt(db, stmt);
        }
    }
    false
}

fn run(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn rollback_to_savepoint(conn: &Connection) {
    // If SQLite already rolled everything back there is nothing left to undo and this fails
    // harmlessly.
    let _ = run(conn, "ROLLBACK TO honker").and_then(|()| run(conn, "RELEASE honker"));
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
