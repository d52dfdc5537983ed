//! honker-core: what every honker crate agrees on.
//!
//! - [`open`] / [`prepare`]: a connection in WAL mode with honker's pragmas and the schema
//!   migrated ([`schema`]).
//! - Time in integer milliseconds ([`Millis`]) read from a [`Clock`], settable in tests.
//! - The wake protocol's contract: [`Epoch`], [`WakeSource`], [`ManualWake`], [`EpochCell`].
//! - The core [`Error`], each variant with a stable [`code`](Error::code).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let conn = honker_core::open(dir.path().join("app.db"))?;
//! assert_eq!(honker_core::schema::schema_version(&conn)?, Some(honker_core::schema::SCHEMA_VERSION));
//! let journal: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
//! assert_eq!(journal, "wal");
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! None. Backends of [`WakeSource`] live in honker-wake, so this crate depends on no watcher.
//!
//! # Known limitations
//!
//! - WAL needs shared memory between processes: every process must be on the same host, and the
//!   file must not live on a network file system (NFS, SMB) or a Docker bind mount from another
//!   kernel (Docker Desktop on macOS/Windows).
//! - honker needs a database *file*: `:memory:` and temporary databases are refused with
//!   `db.not_file` wherever another connection must see the writes.
#![warn(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
// Audited `unsafe` lives in four places, each allowlisted by tidy: `sql::context_connection` (the
// calling connection, which rusqlite exposes only through an unsafe getter), the per-connection
// statement cache of `sql::functions` (a non-owning wrapper of the handle and the anchor virtual
// table), `conn::in_write_statement` (a walk of the connection's statements) and the fork
// handlers of `liveness` (`pthread_atfork`, and `dup2` in the child).
#![deny(unsafe_code)]

pub mod cancel;
mod conn;
mod contention;
mod error;
pub mod liveness;
pub mod payload;
pub mod schema;
pub mod sql;
mod time;
mod wake;

pub use crate::conn::{
    BUSY_TIMEOUT, Settings, WAL_AUTOCHECKPOINT_PAGES, db_file, ensure_no_transaction,
    in_write_statement, journal_mode_note, nested_atomically, open, open_read_only, prepare,
    read_then_write, settings, setup, write_atomically,
};
pub use crate::contention::{fair_busy_handler, share_write_lock};
pub use crate::error::{Error, Result, at_least};
pub use crate::time::{Clock, Millis, SettableClock, SystemClock};
pub use crate::wake::{
    Epoch, EpochCell, ManualWake, WakeError, WakeProvider, WakeSource, kick_after_commit,
    set_kick_hook,
};

/// This build's version, as `honker_version()` reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
