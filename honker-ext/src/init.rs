//! What happens at `load_extension`: the host version check, registering every crate's SQL
//! functions, migrating the schema, and turning any failure or panic into a clean load error.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use honker_core::{WakeError, WakeProvider, WakeSource};
use rusqlite::{Connection, ffi};

/// The oldest host SQLite the extension loads into: 3.38.0 (built-in JSON functions; `RETURNING`
/// arrived in 3.35.0).
pub(crate) const MIN_SQLITE_VERSION: c_int = 3_038_000;

/// Test-only: a version number that raises [`MIN_SQLITE_VERSION`] (never lowers it), so the
/// refusal path can be exercised on a current host.
const MIN_SQLITE_ENV: &str = "HONKER_EXT_MIN_SQLITE_FOR_TESTS";

/// The extension's init, behind both exported entry points.
///
/// # Safety
///
/// `db`, `pz_err_msg` and `p_api` are the pointers SQLite's extension loader passes.
pub(crate) unsafe fn entry(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    if p_api.is_null() {
        // Linked statically into a host that calls the init without an API table: there is no
        // SQLite to call, not even to report the error.
        return ffi::SQLITE_ERROR;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        pin_this_library();
        // SAFETY: `p_api` is the host's non-null API table, as the loader passes it.
        if let Err(message) = unsafe { check_host_version(p_api) } {
            // SAFETY: as above; `pz_err_msg` is the loader's out-pointer.
            unsafe { report(p_api, pz_err_msg, &message) };
            return ffi::SQLITE_ERROR;
        }
        // SAFETY: the loader's three pointers, passed through unchanged. `init` only registers
        // functions and runs the migration on the connection it is given, as
        // `extension_init2` requires.
        unsafe { Connection::extension_init2(db, pz_err_msg, p_api, init) }
    }));
    match outcome {
        Ok(rc) => rc,
        Err(_) => {
            // SAFETY: as above.
            unsafe {
                report(
                    p_api,
                    pz_err_msg,
                    "honker: ext.panic: the extension panicked while loading; it was not loaded",
                )
            };
            ffi::SQLITE_ERROR
        }
    }
}

/// Refuse hosts older than the floor, reading the version straight from the host's API table.
///
/// This runs before rusqlite binds the table: rusqlite refuses hosts older than its bindings
/// (3.34.1) but builds that error message with `sqlite3_malloc64`, which it has not bound yet at
/// that point, so the refusal itself would panic. The two routines used here have been at the
/// same place in the table since it exists.
///
/// # Safety
///
/// `p_api` points to the host's `sqlite3_api_routines`.
unsafe fn check_host_version(p_api: *mut ffi::sqlite3_api_routines) -> Result<(), String> {
    // SAFETY: `p_api` is valid for reads (caller's contract); these fields are function pointers
    // the host filled in.
    let (number, text) = unsafe { ((*p_api).libversion_number, (*p_api).libversion) };
    let Some(number) = number else {
        return Err("honker: ext.sqlite_too_old: the host's SQLite API table has no sqlite3_libversion_number".into());
    };
    // SAFETY: a host routine taking no arguments and returning an int.
    let version = unsafe { number() };
    let floor = MIN_SQLITE_VERSION.max(test_floor().unwrap_or(0));
    if version >= floor {
        return Ok(());
    }
    let name = match text {
        // SAFETY: the host returns a pointer to its static NUL-terminated version string.
        Some(text) => unsafe { CStr::from_ptr(text()) }
            .to_string_lossy()
            .into_owned(),
        None => version.to_string(),
    };
    Err(format!(
        "honker: ext.sqlite_too_old: the host's SQLite is {name} ({version}); honker needs {} ({floor}) or newer for its built-in JSON functions and RETURNING",
        dotted(floor)
    ))
}

/// Keep this library mapped for the life of the process, whatever the loader does.
///
/// SQLite `dlclose`s an extension whose init fails. By then the init may have left functions and
/// the statement-cache table on the connection, whose destructors run at close from this
/// library: unmapped, they crashed the host (a file refused with `schema.too_new` on the first load
/// in a process). `RTLD_NOLOAD | RTLD_NODELETE` on our own path marks the already-loaded library
/// "never unload" without loading anything.
fn pin_this_library() {
    static PINNED: std::sync::Once = std::sync::Once::new();
    PINNED.call_once(|| {
        // SAFETY: `Dl_info` is plain C data (pointers and nothing else), valid all zero.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let here = pin_this_library as *const c_void;
        // SAFETY: `dladdr` only reads the loader's tables for an address inside this library and
        // fills `info`, whose `dli_fname` stays valid while the library is loaded (it is, we are
        // running its code). `dlopen` with RTLD_NOLOAD never loads anything new; its handle is
        // deliberately leaked, keeping the reference that pins the library.
        unsafe {
            if libc::dladdr(here, &mut info) != 0 && !info.dli_fname.is_null() {
                libc::dlopen(
                    info.dli_fname,
                    libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
                );
            }
        }
    });
}

fn test_floor() -> Option<c_int> {
    std::env::var(MIN_SQLITE_ENV).ok()?.trim().parse().ok()
}

/// `3038000` as `3.38.0`.
fn dotted(v: c_int) -> String {
    format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000)
}

/// Hand `message` to the loader as its error text, allocated with the host's `sqlite3_malloc`
/// (the loader frees it with `sqlite3_free`).
///
/// # Safety
///
/// `p_api` points to the host's API table; `pz_err_msg` is null or the loader's out-pointer.
unsafe fn report(
    p_api: *mut ffi::sqlite3_api_routines,
    pz_err_msg: *mut *mut c_char,
    message: &str,
) {
    if pz_err_msg.is_null() {
        return;
    }
    // SAFETY: `p_api` is valid for reads (caller's contract).
    let Some(malloc) = (unsafe { (*p_api).malloc }) else {
        return;
    };
    let bytes = message.as_bytes();
    let Ok(size) = c_int::try_from(bytes.len() + 1) else {
        return;
    };
    // SAFETY: the host's `sqlite3_malloc`; it returns null or `size` writable bytes.
    let buf: *mut c_void = unsafe { malloc(size) };
    if buf.is_null() {
        return;
    }
    let buf = buf.cast::<u8>();
    // SAFETY: `buf` has `bytes.len() + 1` bytes and does not overlap `bytes`; the message has no
    // interior NUL that would matter (SQLite reads up to the first one). `pz_err_msg` is the
    // loader's out-pointer, valid for one write.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len());
        *buf.add(bytes.len()) = 0;
        *pz_err_msg = buf.cast::<c_char>();
    }
}

/// Register every SQL function on the loading connection and migrate its schema.
///
/// Returns `Ok(true)`: load permanently, never `dlclose`d (see the crate docs).
fn init(conn: Connection) -> rusqlite::Result<bool> {
    // Installs the same-process commit kick, so a notify on one connection of this process wakes
    // waiters on the others at once instead of at the watcher's next poll.
    honker_wake::Hub::global();
    honker_core::sql::register(&conn)?;
    honker_wake::sql::register(&conn)?;
    honker_stream::sql::register(&conn, Arc::new(PinnedHub))?;
    honker_queue::sql::register(&conn, Arc::new(PinnedHub))?;
    honker_cron::sql::register(&conn)?;
    migrate_at_load(&conn)?;
    Ok(true)
}

/// The process's Hub, handing out watchers that live as long as the process.
///
/// SQL callers carry epochs and ids between statements (`honker_wait(honker_epoch(), ...)`), so
/// the watcher of a file must not stop and restart between two calls.
#[derive(Debug)]
struct PinnedHub;

impl WakeProvider for PinnedHub {
    fn wake_for(&self, db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
        honker_wake::Hub::global().pinned(db_path)
    }
}

/// Create or upgrade the schema when the main database is a writable file.
///
/// Memory and temporary databases are skipped (they have no other connection to share rows
/// with) and read-only files are skipped (they still serve reads). The host's busy handler is
/// left alone; a migration that finds the write lock taken is retried here for up to the same
/// 5 seconds honker's own connections wait.
fn migrate_at_load(conn: &Connection) -> rusqlite::Result<()> {
    if !matches!(conn.path(), Some(p) if !p.is_empty()) || conn.is_readonly(rusqlite::MAIN_DB)? {
        return Ok(());
    }
    let deadline = Instant::now() + honker_core::BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match wal_if_new(conn).and_then(|()| honker_core::schema::migrate(conn)) {
            Ok(_) => return Ok(()),
            // A writable file in a directory where the -wal or -journal cannot be created.
            Err(honker_core::Error::ReadOnly { .. }) => return Ok(()),
            Err(e) if e.is_busy() && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A file with no tables of anyone's is ours to set up: put it in WAL mode, so the first commits
/// neither fsync a rollback journal nor let the wake watcher's read lock fail a writer. A file that
/// already holds the user's tables keeps the mode its owner chose (`honker_info()` reports it).
fn wal_if_new(conn: &Connection) -> honker_core::Result<()> {
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if tables == 0 && !mode.eq_ignore_ascii_case("wal") {
        // Only the journal mode: the connection's other settings (busy timeout, synchronous)
        // are the host's; `honker_setup()` applies them when asked. A directory that refuses
        // the -wal file leaves the mode as it was (the query answers the old mode).
        let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_versions() {
        assert_eq!(dotted(MIN_SQLITE_VERSION), "3.38.0");
        assert_eq!(dotted(3_040_001), "3.40.1");
    }
}
