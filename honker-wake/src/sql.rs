//! The wake SQL functions: `honker_epoch()`, `honker_wait(epoch, timeout_ms)` and
//! `honker_wake_backend([name])`.
//!
//! Both talk to the process's pinned watcher of the calling connection's database file
//! ([`Hub::pinned`](crate::Hub::pinned)), so an epoch from `honker_epoch()` can be passed to a
//! later `honker_wait()` on any connection of the process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use honker_core::sql::{
    Call, DIRECT_ONLY, SqlFunction, arg_cancel_key, arg_non_negative, arg_text, register_functions,
    sql_error,
};
use honker_core::{Epoch, WakeSource};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use crate::{Backend, Hub};

/// Register `honker_epoch()` and `honker_wait(epoch, timeout_ms)` on `conn`.
///
/// - `honker_epoch()` -> INTEGER: the current epoch of the connection's database file, starting
///   the process's watcher for it if needed.
/// - `honker_wait(epoch, timeout_ms)` -> INTEGER: blocks until the epoch is past `epoch` or
///   `timeout_ms` passed, and returns the epoch then. Call it as a bare `SELECT` in autocommit
///   mode: it refuses to run inside an open transaction (`honker: wait.in_transaction: ...`), since
///   the snapshot or lock held would hide or block the commit being waited for. While it blocks
///   it holds no read transaction.
///
/// - `honker_wake_backend()` -> TEXT: the name of the backend the process's Hub uses by default
///   (`data_version`, `stat` or `kernel`; set at start by the `HONKER_WAKE_BACKEND` environment
///   variable). `honker_wake_backend(name)` makes `name` the default and returns it; call it
///   before the first `honker_epoch()`/`honker_wait()` of the process (afterwards a switch is
///   refused with `wake.start`, since epochs of different backends are not comparable). A backend
///   not compiled into this build gives `wake.not_compiled`.
///
/// Errors have the form `honker: <code>: <message>` (`db.not_file` for in-memory and temporary
/// databases, `arg.invalid`, `wake.replaced`, `wake.watcher_died`, `wake.start`,
/// `wake.not_compiled`).
///
/// # Errors
///
/// SQLite's error when a function cannot be registered.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    register_functions(conn, None, FUNCTIONS)
}

/// The wake SQL functions: name, arguments, flags, handler.
const FUNCTIONS: &[SqlFunction] = &[
    SqlFunction::new("honker_epoch", 0, DIRECT_ONLY, |call| {
        Ok(to_sql(wake_of(call)?.epoch()).into())
    }),
    SqlFunction::args("honker_wait", 2, 3, DIRECT_ONLY, wait),
    SqlFunction::args("honker_wake_backend", 0, 1, DIRECT_ONLY, wake_backend),
    SqlFunction::new("honker_info", 0, DIRECT_ONLY, |call| {
        Ok(crate::info::info(call.conn())?.to_json().into())
    }),
];

fn wake_error(e: honker_core::WakeError) -> rusqlite::Error {
    rusqlite::Error::from(honker_core::Error::from(e))
}

fn wait(call: &Call<'_>) -> rusqlite::Result<SqlValue> {
    let seen = arg_non_negative(call, 0, "epoch")?;
    let timeout_ms = arg_non_negative(call, 1, "timeout_ms")?;
    let cancel_key = arg_cancel_key(call, 2)?;
    honker_core::ensure_no_transaction(call.conn())?;
    let mut wake = wake_of(call)?;
    if let Some(key) = cancel_key {
        wake = Arc::new(honker_core::cancel::cancellable(&key, wake).map_err(wake_error)?);
    }
    // A timeout too large for `Instant` means "no deadline".
    let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms as u64));
    let now = wake
        .wait_past(Epoch(seen as u64), deadline)
        .map_err(wake_error)?;
    Ok(to_sql(now).into())
}

fn wake_backend(call: &Call<'_>) -> rusqlite::Result<SqlValue> {
    if !call.is_empty() {
        let name = arg_text(call, 0, "backend")?;
        let backend: Backend = name
            .parse()
            .map_err(|e: crate::UnknownBackend| sql_error(e.code(), e, None))?;
        Hub::global()
            .set_default_backend(backend)
            .map_err(wake_error)?;
    }
    let backend = Hub::global().default_backend().map_err(wake_error)?;
    Ok(backend.name().to_owned().into())
}

/// The pinned wake source of the calling connection's database file.
fn wake_of(call: &Call<'_>) -> rusqlite::Result<Arc<dyn WakeSource>> {
    let path: PathBuf = honker_core::db_file(call.conn())?;
    Hub::global()
        .pinned(&path)
        .map_err(|e| honker_core::Error::from(e).into())
}

fn to_sql(e: Epoch) -> i64 {
    // Epochs count commits; they do not reach 2^63.
    i64::try_from(e.0).unwrap_or(i64::MAX)
}
