//! The wake SQL functions: `honker_epoch()`, `honker_wait(epoch, timeout_ms)` and
//! `honker_wake_backend([name])`.
//!
//! Both talk to the process's pinned watcher of the calling connection's database file
//! ([`Hub::pinned`](crate::Hub::pinned)), so an epoch from `honker_epoch()` can be passed to a
//! later `honker_wait()` on any connection of the process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use honker_core::sql::{arg_non_negative, arg_text, context_connection, sql_error};
use honker_core::{Epoch, WakeSource};
use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};

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
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    conn.create_scalar_function("honker_epoch", 0, flags, |ctx| {
        let wake = wake_of(ctx)?;
        Ok(to_sql(wake.epoch()))
    })?;
    conn.create_scalar_function("honker_wait", 2, flags, |ctx| {
        let seen = arg_non_negative(ctx, 0, "epoch")?;
        let timeout_ms = arg_non_negative(ctx, 1, "timeout_ms")?;
        {
            let conn = context_connection(ctx)?;
            honker_core::ensure_no_transaction(&conn).map_err(rusqlite::Error::from)?;
        }
        let wake = wake_of(ctx)?;
        // A timeout too large for `Instant` means "no deadline".
        let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms as u64));
        let now = wake
            .wait_past(Epoch(seen as u64), deadline)
            .map_err(|e| rusqlite::Error::from(honker_core::Error::from(e)))?;
        Ok(to_sql(now))
    })?;
    conn.create_scalar_function("honker_wake_backend", -1, flags, |ctx| {
        let wake_error =
            |e: honker_core::WakeError| rusqlite::Error::from(honker_core::Error::from(e));
        match ctx.len() {
            0 => {}
            1 => {
                let name = arg_text(ctx, 0, "backend")?;
                let backend: Backend = name
                    .parse()
                    .map_err(|e: crate::UnknownBackend| sql_error(e.code(), e, None))?;
                Hub::global()
                    .set_default_backend(backend)
                    .map_err(wake_error)?;
            }
            n => {
                return Err(sql_error(
                    "arg.invalid",
                    format!("honker_wake_backend takes 0 or 1 arguments, got {n}"),
                    None,
                ));
            }
        }
        let backend = Hub::global().default_backend().map_err(wake_error)?;
        Ok(backend.name())
    })?;
    Ok(())
}

/// The pinned wake source of the calling connection's database file.
fn wake_of(ctx: &Context<'_>) -> rusqlite::Result<Arc<dyn WakeSource>> {
    let path: PathBuf = {
        let conn = context_connection(ctx)?;
        honker_core::db_file(&conn)?
    };
    Hub::global()
        .pinned(&path)
        .map_err(|e| honker_core::Error::from(e).into())
}

fn to_sql(e: Epoch) -> i64 {
    // Epochs count commits; they do not reach 2^63.
    i64::try_from(e.0).unwrap_or(i64::MAX)
}
