//! One mechanism for every crate's SQL functions: a crate describes its functions as a table of
//! [`SqlFunction`] rows, and [`register_functions`] registers them with a per-connection
//! statement cache that lives exactly as long as the connection.
//!
//! # Why a virtual table holds the statements
//!
//! A SQL function gets its connection from `sqlite3_context_db_handle`; rusqlite wraps that in a
//! fresh `Connection` with an empty statement cache on every call, so every `prepare_cached`
//! missed and most of a call's time went to `sqlite3_prepare_v3`. The cache must therefore live
//! beside the connection, across calls, and its statements must be finalized before the host
//! closes the connection: `sqlite3_close()` (v1) refuses to close with `SQLITE_BUSY` while any
//! statement is unfinalized, and the destructors of functions run only *after* that check.
//!
//! `sqlite3Close` disconnects every virtual table *before* the check (SQLite's own comment: "the
//! v-table implementation may be storing some prepared statements internally"); this is true of
//! eponymous virtual tables too (`disconnectAllVtab` walks `db->aModule` for them) in every
//! SQLite from 3.38 to today. So the per-connection state registers an eponymous virtual table,
//! `honker_connection_state`, and connects it (a `prepare` of a `SELECT` from it) before it
//! caches the first statement. Its `xDisconnect`, run by `sqlite3_close` and
//! `sqlite3_close_v2` alike, finalizes the cached statements. If the host keeps the connection
//! open after all (`sqlite3_close` refused for the host's own statements), the next call
//! connects the table again and starts a new cache.
//!
//! Nested calls on one connection (a trigger on a table that a honker function writes, calling
//! another honker function) cannot share the cache of the call in progress; they use an uncached
//! wrapper, as every call did before.

use std::collections::HashMap;
use std::ffi::{CStr, c_int};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError, Weak};

use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::Value;
use rusqlite::vtab::{
    Filters, IndexInfo, Module, VTab, VTabConnection, VTabCursor, sqlite3_vtab, sqlite3_vtab_cursor,
};

use super::WakeCache;
use crate::wake::{WakeProvider, WakeSource};

/// How many statements a connection's cache keeps: more than every crate's hot statements
/// together, so the hot path never evicts.
pub const STATEMENT_CACHE_CAPACITY: usize = 256;

const ANCHOR_TABLE: &str = "honker_connection_state";

/// What a SQL function's handler computes from its call.
pub type Handler = fn(&Call<'_>) -> rusqlite::Result<Value>;

/// One SQL function: a row of a crate's function table.
#[derive(Debug, Clone, Copy)]
pub struct SqlFunction {
    /// The SQL name.
    pub name: &'static str,
    /// The fewest arguments it takes.
    pub min_args: i32,
    /// The most arguments it takes (each count in between is registered).
    pub max_args: i32,
    /// SQLite's flags (`SQLITE_UTF8` is always added).
    pub flags: FunctionFlags,
    /// What it computes.
    pub handler: Handler,
}

impl SqlFunction {
    /// A function of exactly `args` arguments.
    pub const fn new(
        name: &'static str,
        args: i32,
        flags: FunctionFlags,
        handler: Handler,
    ) -> SqlFunction {
        SqlFunction {
            name,
            min_args: args,
            max_args: args,
            flags,
            handler,
        }
    }

    /// A function of `min..=max` arguments.
    pub const fn args(
        name: &'static str,
        min: i32,
        max: i32,
        flags: FunctionFlags,
        handler: Handler,
    ) -> SqlFunction {
        SqlFunction {
            name,
            min_args: min,
            max_args: max,
            flags,
            handler,
        }
    }
}

/// Flags of a function that reads or writes but may be called from triggers and views.
pub const ANYWHERE: FunctionFlags = FunctionFlags::SQLITE_UTF8;

/// Flags of a function that only top-level SQL may call (it blocks, claims, or changes
/// settings).
pub const DIRECT_ONLY: FunctionFlags =
    FunctionFlags::SQLITE_UTF8.union(FunctionFlags::SQLITE_DIRECTONLY);

/// One call of a SQL function: its arguments (through `Deref` to rusqlite's [`Context`]) and the
/// calling connection, with its statement cache.
pub struct Call<'a> {
    ctx: &'a Context<'a>,
    conn: &'a Connection,
    wake: Option<&'a WakeCache>,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").finish_non_exhaustive()
    }
}

impl<'a> std::ops::Deref for Call<'a> {
    type Target = Context<'a>;

    fn deref(&self) -> &Context<'a> {
        self.ctx
    }
}

impl Call<'_> {
    /// The connection that called the function; `prepare_cached` on it hits the connection's
    /// cache across calls.
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    /// The wake source a blocking function waits on: refuses an open transaction, needs a file,
    /// and stops on [`cancel`](crate::cancel::cancel) of `cancel_key` when one is given.
    ///
    /// # Errors
    ///
    /// As [`WakeCache::for_wait`]; `wake.start` when the table was registered without a wake
    /// provider.
    pub fn wake_for_wait(&self, cancel_key: Option<&str>) -> crate::Result<Arc<dyn WakeSource>> {
        let Some(cache) = self.wake else {
            return Err(crate::WakeError::Start {
                path: std::path::PathBuf::new(),
                reason: "this SQL function was registered without a wake provider".into(),
            }
            .into());
        };
        cache.for_wait(self.conn, cancel_key)
    }

    /// After a wake error: make the next call ask the provider again (a replaced file gets a
    /// fresh watcher).
    pub fn forget_wake(&self) {
        if let Some(cache) = self.wake {
            cache.forget();
        }
    }
}

/// Register every function of `table` on `conn`, sharing `conn`'s statement cache.
///
/// `wakes` serves the blocking functions ([`Call::wake_for_wait`]); each function gets its own
/// cached wake source.
///
/// # Errors
///
/// SQLite's error when a function or the cache's virtual table cannot be registered.
pub fn register_functions(
    conn: &Connection,
    wakes: Option<Arc<dyn WakeProvider>>,
    table: &[SqlFunction],
) -> rusqlite::Result<()> {
    let state = ConnState::of(conn)?;
    for f in table {
        for n in f.min_args..=f.max_args {
            let state = state.clone();
            let handler = f.handler;
            let wake = wakes.clone().map(WakeCache::new);
            conn.create_scalar_function(
                f.name,
                n,
                f.flags | FunctionFlags::SQLITE_UTF8,
                move |ctx| {
                    state.with_connection(ctx, |conn| {
                        handler(&Call {
                            ctx,
                            conn,
                            wake: wake.as_ref(),
                        })
                        .map_err(|e| name_the_file(e, conn))
                    })
                },
            )?;
        }
    }
    Ok(())
}

/// Errors classified without a path (a read-only database) get the calling connection's file.
fn name_the_file(e: rusqlite::Error, conn: &Connection) -> rusqlite::Error {
    let rusqlite::Error::UserFunctionError(inner) = &e else {
        return e;
    };
    let Some(sql) = inner.downcast_ref::<super::SqlError>() else {
        return e;
    };
    if sql.code != "db.read_only" || !sql.message.starts_with("database \"\"") {
        return e;
    }
    let path = conn.path().unwrap_or_default();
    let message = sql
        .message
        .replacen("database \"\"", &format!("database {path:?}"), 1);
    super::sql_error(sql.code, message, None)
}

/// How many statement caches were started and how many calls used one (process-wide, for tests
/// and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Connections whose statement cache was started (again after a refused close).
    pub caches_started: u64,
    /// Calls that ran on a cached connection.
    pub cached_calls: u64,
    /// Calls that ran on an uncached wrapper (nested calls, or no virtual table).
    pub uncached_calls: u64,
    /// Caches whose statements were finalized by the virtual table's disconnect.
    pub caches_finalized: u64,
}

static CACHES_STARTED: AtomicU64 = AtomicU64::new(0);
static CACHED_CALLS: AtomicU64 = AtomicU64::new(0);
static UNCACHED_CALLS: AtomicU64 = AtomicU64::new(0);
static CACHES_FINALIZED: AtomicU64 = AtomicU64::new(0);

/// The process-wide counts of [`CacheStats`].
pub fn cache_stats() -> CacheStats {
    CacheStats {
        caches_started: CACHES_STARTED.load(Ordering::Relaxed),
        cached_calls: CACHED_CALLS.load(Ordering::Relaxed),
        uncached_calls: UNCACHED_CALLS.load(Ordering::Relaxed),
        caches_finalized: CACHES_FINALIZED.load(Ordering::Relaxed),
    }
}

/// What the extension keeps per connection: the cached, non-owning connection wrapper whose
/// statement cache serves every call.
struct ConnState {
    key: usize,
    cached: Mutex<Option<Connection>>,
    anchored: AtomicBool,
}

impl std::fmt::Debug for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnState")
            .field("anchored", &self.anchored)
            .finish_non_exhaustive()
    }
}

/// The states of live connections, by handle address, so that every crate's `register` on one
/// connection shares one cache. An entry goes when its state is dropped, which SQLite does when
/// it destroys the connection's functions and modules, before the handle's memory is freed.
fn states() -> std::sync::MutexGuard<'static, HashMap<usize, Weak<ConnState>>> {
    static STATES: OnceLock<Mutex<HashMap<usize, Weak<ConnState>>>> = OnceLock::new();
    STATES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

const ANCHOR_MODULE: Module<'static, Anchor> = Module::eponymous_only_module();

impl ConnState {
    fn of(conn: &Connection) -> rusqlite::Result<Arc<ConnState>> {
        let key = handle(conn) as usize;
        let mut states = states();
        if let Some(s) = states.get(&key).and_then(Weak::upgrade) {
            return Ok(s);
        }
        let state = Arc::new(ConnState {
            key,
            cached: Mutex::new(None),
            anchored: AtomicBool::new(false),
        });
        conn.create_module(ANCHOR_TABLE, &ANCHOR_MODULE, Some(state.clone()))?;
        states.insert(key, Arc::downgrade(&state));
        Ok(state)
    }

    fn with_connection<T>(
        &self,
        ctx: &Context<'_>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let slot = match self.cached.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            // A nested call: the outer call on this connection holds the cache.
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut slot) = slot {
            if slot.is_none() || !self.anchored.load(Ordering::SeqCst) {
                *slot = self.start_cache(ctx);
            }
            if let Some(conn) = slot.as_ref() {
                CACHED_CALLS.fetch_add(1, Ordering::Relaxed);
                return f(conn);
            }
        }
        UNCACHED_CALLS.fetch_add(1, Ordering::Relaxed);
        let conn = super::context_connection(ctx)?;
        f(&conn)
    }

    /// Connect the anchor table (so its disconnect finalizes the cache at close), then wrap the
    /// handle in a connection of our own whose statement cache outlives the call.
    fn start_cache(&self, ctx: &Context<'_>) -> Option<Connection> {
        let raw = super::context_connection(ctx).ok()?;
        // Preparing a statement that names an eponymous table connects it; finalizing the
        // statement leaves it connected until the connection closes.
        drop(raw.prepare(&format!("SELECT 1 FROM {ANCHOR_TABLE}")).ok()?);
        if !self.anchored.load(Ordering::SeqCst) {
            return None;
        }
        let conn = cached_wrapper(&raw)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        CACHES_STARTED.fetch_add(1, Ordering::Relaxed);
        Some(conn)
    }

    /// Finalize the cached statements: the anchor table is being disconnected.
    fn finalize(&self) {
        self.anchored.store(false, Ordering::SeqCst);
        let slot = match self.cached.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            // Only `sqlite3_close` disconnects the table, never during a call of ours.
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(conn) = slot.and_then(|mut s| s.take()) {
            // Dropping the non-owning wrapper finalizes its statements and leaves the handle.
            drop(conn);
            CACHES_FINALIZED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        let mut states = states();
        if states.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            states.remove(&self.key);
        }
    }
}

#[allow(unsafe_code)]
fn handle(conn: &Connection) -> *mut rusqlite::ffi::sqlite3 {
    // SAFETY: reading the raw handle is harmless; it is used only as a map key here and, in
    // `cached_wrapper`, wrapped without taking ownership.
    unsafe { conn.handle() }
}

#[allow(unsafe_code)]
fn cached_wrapper(conn: &Connection) -> Option<Connection> {
    // SAFETY: `from_handle` makes a wrapper that does not own the handle (dropping it finalizes
    // only its own cached statements and never closes the connection). The wrapper lives in the
    // connection's `ConnState`, whose anchor table's disconnect drops it before `sqlite3_close`
    // checks for unfinalized statements, so it never outlives the handle; it is used only inside
    // SQL function calls on this connection, while SQLite holds the connection.
    unsafe { Connection::from_handle(conn.handle()).ok() }
}

/// The eponymous virtual table whose disconnect finalizes a connection's cached statements. It
/// has no rows.
#[repr(C)]
struct Anchor {
    base: sqlite3_vtab,
    state: Arc<ConnState>,
}

// SAFETY: `Anchor` is `#[repr(C)]` with `sqlite3_vtab` first, as rusqlite requires.
#[allow(unsafe_code)]
unsafe impl<'vtab> VTab<'vtab> for Anchor {
    type Aux = Arc<ConnState>;
    type Cursor = NoRows;

    fn connect(
        _db: &mut VTabConnection,
        aux: Option<&Arc<ConnState>>,
        _module: &[u8],
        _database: &[u8],
        _table: &[u8],
        _args: &[&[u8]],
    ) -> rusqlite::Result<(std::borrow::Cow<'static, CStr>, Anchor)> {
        let state = aux
            .cloned()
            .ok_or_else(|| rusqlite::Error::ModuleError("no connection state".into()))?;
        state.anchored.store(true, Ordering::SeqCst);
        Ok((
            std::borrow::Cow::Borrowed(c"CREATE TABLE x(cached)"),
            Anchor {
                base: sqlite3_vtab::default(),
                state,
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        info.set_estimated_cost(1.0);
        Ok(true)
    }

    fn open(&'vtab mut self) -> rusqlite::Result<NoRows> {
        Ok(NoRows {
            base: sqlite3_vtab_cursor::default(),
        })
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        // rusqlite drops the table in its xDisconnect.
        self.state.finalize();
    }
}

#[repr(C)]
struct NoRows {
    base: sqlite3_vtab_cursor,
}

// SAFETY: `NoRows` is `#[repr(C)]` with `sqlite3_vtab_cursor` first, as rusqlite requires.
#[allow(unsafe_code)]
unsafe impl VTabCursor for NoRows {
    fn filter(&mut self, _: c_int, _: Option<&str>, _: &Filters<'_>) -> rusqlite::Result<()> {
        Ok(())
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        Ok(())
    }

    fn eof(&self) -> bool {
        true
    }

    fn column(&self, _: &mut rusqlite::vtab::Context, _: c_int) -> rusqlite::Result<()> {
        Ok(())
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(0)
    }
}
