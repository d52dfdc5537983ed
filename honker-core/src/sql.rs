//! What every crate's SQL functions share: typed argument getters, the `honker: <code>: ...`
//! error form, the options-object parser, and the meta functions `honker_version()` and
//! `honker_migrate()`.

mod functions;

use std::fmt;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};

use crate::error::Error;

pub use self::functions::{
    ANYWHERE, CacheStats, Call, DIRECT_ONLY, Handler, STATEMENT_CACHE_CAPACITY, SqlFunction,
    cache_stats, register_functions,
};

/// An error raised by a honker SQL function; displays as `honker: <code>: <message>`.
#[derive(Debug)]
pub struct SqlError {
    /// The stable code, such as `payload.not_json`.
    pub code: &'static str,
    /// The human-readable message.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "honker: {}: {}", self.code, self.message)
    }
}

impl std::error::Error for SqlError {}

/// Turn any error with a stable code into the error a SQL function returns.
///
/// `SQLITE_BUSY`/`SQLITE_LOCKED` pass through untouched (same result code, SQLite's own message),
/// so callers and bindings can retry them as they would any busy statement.
pub fn sql_error(
    code: &'static str,
    message: impl fmt::Display,
    busy: Option<&rusqlite::Error>,
) -> rusqlite::Error {
    if let Some(rusqlite::Error::SqliteFailure(f, _)) = busy
        && matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    {
        return rusqlite::Error::SqliteFailure(*f, None);
    }
    rusqlite::Error::UserFunctionError(Box::new(SqlError {
        code,
        message: message.to_string(),
    }))
}

impl From<Error> for rusqlite::Error {
    fn from(e: Error) -> rusqlite::Error {
        let busy = match &e {
            Error::Busy { source } => Some(source),
            _ => None,
        };
        sql_error(e.code(), &e, busy)
    }
}

fn bad_arg(name: &'static str, reason: String) -> rusqlite::Error {
    Error::InvalidArgument { name, reason }.into()
}

fn type_name(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

/// Argument `i` as TEXT (UTF-8); anything else is `arg.invalid`.
///
/// # Errors
///
/// `honker: arg.invalid` naming the argument and the type that was given.
pub fn arg_text(ctx: &Context<'_>, i: usize, name: &'static str) -> rusqlite::Result<String> {
    match ctx.get_raw(i) {
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map(str::to_owned)
            .map_err(|_| bad_arg(name, "is not valid UTF-8".into())),
        other => Err(bad_arg(
            name,
            format!("must be TEXT, got {}", type_name(other)),
        )),
    }
}

/// Argument `i` as TEXT, or `None` when it is NULL or absent.
///
/// # Errors
///
/// As [`arg_text`].
pub fn arg_opt_text(
    ctx: &Context<'_>,
    i: usize,
    name: &'static str,
) -> rusqlite::Result<Option<String>> {
    if i >= ctx.len() || matches!(ctx.get_raw(i), ValueRef::Null) {
        return Ok(None);
    }
    arg_text(ctx, i, name).map(Some)
}

/// Argument `i` as INTEGER; REAL, TEXT, BLOB and NULL are `arg.invalid`.
///
/// # Errors
///
/// `honker: arg.invalid` naming the argument and the type that was given.
pub fn arg_i64(ctx: &Context<'_>, i: usize, name: &'static str) -> rusqlite::Result<i64> {
    match ctx.get_raw(i) {
        ValueRef::Integer(v) => Ok(v),
        // Hosts whose numbers are doubles (JavaScript drivers bind every number as REAL) pass
        // `30000.0` for 30000: accept a REAL that is exactly an integer a double holds exactly.
        ValueRef::Real(f) if integral_real(f) => Ok(f as i64),
        ValueRef::Real(f) => Err(bad_arg(name, format!("must be an integer, got REAL {f}"))),
        other => Err(bad_arg(
            name,
            format!("must be INTEGER, got {}", type_name(other)),
        )),
    }
}

/// A REAL with no fraction within +-2^53, where every integer is exact as a double.
fn integral_real(f: f64) -> bool {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT
}

/// Argument `i` as a non-negative INTEGER.
///
/// # Errors
///
/// As [`arg_i64`], and `arg.invalid` for a negative value.
pub fn arg_non_negative(ctx: &Context<'_>, i: usize, name: &'static str) -> rusqlite::Result<i64> {
    Ok(crate::at_least(name, arg_i64(ctx, i, name)?, 0)?)
}

/// Refuse a count of 0 for a blocking wait (`n`, `limit`): it could only ever return at the
/// timeout, empty.
///
/// # Errors
///
/// `arg.invalid`, "must be >= 1 for a wait", when `count` is 0.
pub fn nonzero_for_wait(name: &'static str, count: usize) -> rusqlite::Result<()> {
    if count == 0 {
        return Err(Error::InvalidArgument {
            name,
            reason: "must be >= 1 for a wait".into(),
        }
        .into());
    }
    Ok(())
}

/// Parse an options object: JSON text holding one object whose keys are all in `known`.
///
/// An empty string or `NULL` (pass `None`) means no options.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when it is not a JSON object, [`Error::UnknownOption`] for a key
/// not in `known` (whose text, comma-separated, is `known_list`).
pub fn parse_options(
    text: Option<&str>,
    known: &[&str],
    known_list: &'static str,
) -> crate::Result<serde_json::Map<String, serde_json::Value>> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(serde_json::Map::new());
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::InvalidArgument {
            name: "options",
            reason: format!("must be a JSON object: {e}"),
        })?;
    let serde_json::Value::Object(map) = value else {
        return Err(Error::InvalidArgument {
            name: "options",
            reason: "must be a JSON object".into(),
        });
    };
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::UnknownOption {
            option: k.clone(),
            known: known_list,
        });
    }
    Ok(map)
}

/// A non-negative integer option, or `None` when absent.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when present but not a non-negative integer.
pub fn option_u64(
    map: &serde_json::Map<String, serde_json::Value>,
    key: &'static str,
) -> crate::Result<Option<u64>> {
    match map.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| Error::InvalidArgument {
            name: key,
            reason: format!("must be a non-negative integer, got {v}"),
        }),
    }
}

/// The wake source of the database file behind a blocking SQL function, asked of the
/// [`WakeProvider`](crate::WakeProvider) once and kept while it works.
///
/// A blocking function (`honker_listen_wait`, `honker_claim_wait`, ...) owns one; calling
/// [`forget`](WakeCache::forget) after a wake error makes the next call ask again (a replaced
/// file gets a fresh watcher).
#[derive(Debug)]
pub struct WakeCache {
    wakes: std::sync::Arc<dyn crate::WakeProvider>,
    source: std::sync::Mutex<Option<(std::path::PathBuf, std::sync::Arc<dyn crate::WakeSource>)>>,
}

impl WakeCache {
    /// A cache over `wakes`, empty until the first [`get`](WakeCache::get).
    pub fn new(wakes: std::sync::Arc<dyn crate::WakeProvider>) -> WakeCache {
        WakeCache {
            wakes,
            source: std::sync::Mutex::new(None),
        }
    }

    /// The wake source of the file at `path`: the cached one if it is for that file.
    ///
    /// # Errors
    ///
    /// The provider's [`WakeError`](crate::WakeError) when a new one cannot be started.
    pub fn get(
        &self,
        path: std::path::PathBuf,
    ) -> Result<std::sync::Arc<dyn crate::WakeSource>, crate::WakeError> {
        let mut slot = self.source.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, s)) = slot.as_ref()
            && *p == path
        {
            return Ok(s.clone());
        }
        let source = self.wakes.wake_for(&path)?;
        *slot = Some((path, source.clone()));
        Ok(source)
    }

    /// What every blocking SQL function does before it waits on `conn`: refuse to run inside an
    /// open transaction (its snapshot or lock would hide or block the commit waited for), then
    /// the wake source of `conn`'s database file, which stops on
    /// [`cancel`](crate::cancel::cancel) of `cancel_key` when one is given.
    ///
    /// # Errors
    ///
    /// `wait.in_transaction`; `db.not_file` for a database with no file; the provider's wake
    /// error; `wait.cancelled` when a cancel of `cancel_key` is pending.
    pub fn for_wait(
        &self,
        conn: &Connection,
        cancel_key: Option<&str>,
    ) -> crate::Result<std::sync::Arc<dyn crate::WakeSource>> {
        crate::ensure_no_transaction(conn)?;
        let source = self.get(crate::db_file(conn)?)?;
        Ok(match cancel_key {
            Some(key) => std::sync::Arc::new(crate::cancel::cancellable(key, source)?),
            None => source,
        })
    }

    /// Drop the cached wake source, so the next [`get`](WakeCache::get) asks the provider again.
    pub fn forget(&self) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The optional cancel key of a blocking function, its argument `i` (TEXT or NULL, or absent).
///
/// # Errors
///
/// `arg.invalid` when it is neither TEXT nor NULL, empty, or longer than
/// [`cancel::MAX_KEY_LEN`](crate::cancel::MAX_KEY_LEN) bytes.
pub fn arg_cancel_key(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    let key = arg_opt_text(ctx, i, "cancel_key")?;
    if let Some(k) = &key
        && (k.is_empty() || k.len() > crate::cancel::MAX_KEY_LEN)
    {
        return Err(bad_arg(
            "cancel_key",
            format!(
                "must be 1 to {} bytes, got {}",
                crate::cancel::MAX_KEY_LEN,
                k.len()
            ),
        ));
    }
    Ok(key)
}

/// The meta functions every connection gets.
const FUNCTIONS: &[SqlFunction] = &[
    SqlFunction::new(
        "honker_version",
        0,
        FunctionFlags::SQLITE_DETERMINISTIC.union(FunctionFlags::SQLITE_INNOCUOUS),
        |_| Ok(crate::VERSION.to_owned().into()),
    ),
    SqlFunction::new("honker_migrate", 0, DIRECT_ONLY, |call| {
        Ok(crate::schema::migrate(call.conn())?.into())
    }),
    SqlFunction::new("honker_setup", 0, DIRECT_ONLY, |call| {
        Ok(crate::setup(call.conn())?.to_json().into())
    }),
    SqlFunction::new("honker_wait_cancel", 1, DIRECT_ONLY, |call| {
        let Some(key) = arg_cancel_key(call, 0)? else {
            return Err(bad_arg("cancel_key", "must be TEXT, got NULL".into()));
        };
        Ok((crate::cancel::cancel(&key) as i64).into())
    }),
];

/// Register the meta functions on `conn`:
///
/// - `honker_version()` -> TEXT: this build's version;
/// - `honker_migrate()` -> INTEGER: create or migrate the schema, returning its version;
/// - `honker_setup()` -> JSON object: apply what `honker_core::open` applies to the calling
///   connection (`journal_mode=WAL` for a file, `synchronous=NORMAL`,
///   `wal_autocheckpoint=10000`, `busy_timeout=5000`, `foreign_keys=ON`), migrate the schema, and
///   return the settings now in force: `{"journal_mode":"wal","synchronous":"normal",
///   "wal_autocheckpoint":10000,"busy_timeout_ms":5000,"foreign_keys":true}`. Inside an open
///   transaction it refuses with `setup.in_transaction`;
/// - `honker_wait_cancel(key)` -> INTEGER: stop every running wait of this process started with
///   cancel key `key` (they fail with `wait.cancelled`), returning how many; when none is
///   running, the next wait with `key` within 60 s fails at once. Call it from another connection
///   (or thread) than the waiting one.
///
/// # Errors
///
/// SQLite's error when a function cannot be registered.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    register_functions(conn, None, FUNCTIONS)
}

/// The connection that called a SQL function, to run statements on it from inside the function.
///
/// # Errors
///
/// SQLite's error if the handle cannot be wrapped.
#[allow(unsafe_code)]
pub fn context_connection<'a>(
    ctx: &'a Context<'_>,
) -> rusqlite::Result<rusqlite::functions::ConnectionRef<'a>> {
    // SAFETY: `get_connection` is unsafe because the non-owning handle could be sent to another
    // thread and used after the call. The returned guard borrows `ctx`, so it cannot outlive the
    // function call, and `ConnectionRef` is neither `Send` nor `Sync`.
    unsafe { ctx.get_connection() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_for_zero_rows_is_refused_with_its_reason() {
        nonzero_for_wait("limit", 1).unwrap();
        let e = nonzero_for_wait("limit", 0).unwrap_err().to_string();
        assert_eq!(
            e,
            "honker: arg.invalid: invalid argument limit: must be >= 1 for a wait"
        );
    }

    #[test]
    fn parse_options_refuses_unknown_keys_and_non_objects() {
        let known = &["a", "b"];
        assert!(parse_options(None, known, "a, b").unwrap().is_empty());
        assert!(parse_options(Some(" "), known, "a, b").unwrap().is_empty());
        assert_eq!(
            parse_options(Some(r#"{"a":1}"#), known, "a, b").unwrap()["a"],
            1
        );
        let e = parse_options(Some(r#"{"c":1}"#), known, "a, b").unwrap_err();
        assert_eq!(e.code(), "options.unknown");
        assert_eq!(
            parse_options(Some("[1]"), known, "a, b")
                .unwrap_err()
                .code(),
            "arg.invalid"
        );
        assert_eq!(
            parse_options(Some("{"), known, "a, b").unwrap_err().code(),
            "arg.invalid"
        );
    }

    #[test]
    fn busy_passes_through_as_sqlite_busy() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("x".into()),
        );
        let e: rusqlite::Error = Error::from(busy).into();
        assert_eq!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy));
    }

    #[test]
    fn sql_errors_carry_the_code_prefix() {
        let conn = Connection::open_in_memory().unwrap();
        conn.create_scalar_function("t_arg", 1, FunctionFlags::SQLITE_UTF8, |ctx| {
            arg_i64(ctx, 0, "n")
        })
        .unwrap();
        let e = conn
            .query_row("SELECT t_arg('x')", [], |r| r.get::<_, i64>(0))
            .unwrap_err();
        assert!(e.to_string().starts_with("honker: arg.invalid: "), "{e}");
        register(&conn).unwrap();
        let v: String = conn
            .query_row("SELECT honker_version()", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, crate::VERSION);
    }
}
