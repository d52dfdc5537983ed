//! The core error type, with a stable code per variant that every crate and binding agrees on.

use std::path::PathBuf;

use crate::wake::WakeError;

/// Errors of honker-core: opening, preparing and migrating a database, payloads and arguments.
///
/// Every variant has a stable [`code`](Error::code) (such as `schema.too_new`). The extension
/// prefixes SQL error messages with it (`honker: schema.too_new: ...`) so bindings map errors
/// without parsing prose.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database has no file on disk (`:memory:`, a temp database, a non-file URI), but the
    /// operation needs one: cross-connection wakes watch a file.
    #[error("{what} has no file on disk; honker needs a database file to wake other connections")]
    NotFile {
        /// What was given (`:memory:`, `temporary database`, ...).
        what: String,
    },
    /// The database file (or its directory) cannot be written.
    #[error("database {path:?} is read-only: {reason}")]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// What was refused.
        reason: String,
    },
    /// The file exists but is not an SQLite database.
    #[error("file {path:?} is not an SQLite database")]
    NotDatabase {
        /// The file.
        path: PathBuf,
    },
    /// The file is an SQLite database with `honker_*` objects that honker did not create.
    #[error("database is not a honker database: {detail}")]
    NotHonker {
        /// What did not match.
        detail: String,
    },
    /// The file was migrated by a newer honker than this build.
    #[error(
        "schema version {found} is newer than this build supports ({supported}); upgrade honker"
    )]
    SchemaTooNew {
        /// Version found in `honker_meta`.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// Another connection held a lock longer than the busy timeout.
    #[error("database is busy: {source}")]
    Busy {
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database or the disk it is on is full (`SQLITE_FULL`): the write was undone, and the
    /// connection stays usable. Free space (or raise `PRAGMA max_page_count`) and retry.
    #[error("the database or the disk it is on is full; free space and retry")]
    Full {
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A payload is not valid JSON text.
    #[error("payload is not JSON: {source}")]
    PayloadNotJson {
        /// The parse error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A payload is larger than the limit.
    #[error("payload has {size} bytes; the limit is {limit}")]
    PayloadTooLarge {
        /// Size in bytes.
        size: usize,
        /// Limit in bytes.
        limit: usize,
    },
    /// An argument is out of range or of the wrong type.
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// An options object has a key that is not known.
    #[error("unknown option {option:?}; known options: {known}")]
    UnknownOption {
        /// The key that was given.
        option: String,
        /// The keys that are accepted, comma-separated.
        known: &'static str,
    },
    /// A blocking wait was called inside an open transaction on the calling connection.
    #[error(
        "cannot wait inside an open transaction: the snapshot or lock it holds would hide or block the commit being waited for"
    )]
    WaitInTransaction,
    /// `honker_setup()` was called inside an open transaction: journal mode and synchronous
    /// cannot change there.
    #[error(
        "honker_setup() cannot run inside an open transaction: call it right after opening the connection"
    )]
    SetupInTransaction,
    /// A honker table is missing: the database was never migrated (an in-memory or temporary
    /// database, where the extension does not migrate at load).
    #[error(
        "honker's tables are not in this database ({table} is missing): call honker_migrate() (or honker_setup()) once on it, or use a database file, which the extension migrates when it loads"
    )]
    NotMigrated {
        /// The missing table.
        table: String,
    },
    /// The wake source failed.
    #[error(transparent)]
    Wake(#[from] WakeError),
    /// Any other SQLite error.
    #[error("{0}")]
    Sqlite(#[source] rusqlite::Error),
}

impl Error {
    /// The stable, machine-readable code of this error, such as `schema.too_new`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFile { .. } => "db.not_file",
            Error::ReadOnly { .. } => "db.read_only",
            Error::NotDatabase { .. } => "db.not_database",
            Error::NotHonker { .. } => "db.not_honker",
            Error::SchemaTooNew { .. } => "schema.too_new",
            Error::Busy { .. } => "db.busy",
            Error::Full { .. } => "db.full",
            Error::PayloadNotJson { .. } => "payload.not_json",
            Error::PayloadTooLarge { .. } => "payload.too_large",
            Error::InvalidArgument { .. } => "arg.invalid",
            Error::UnknownOption { .. } => "options.unknown",
            Error::WaitInTransaction => "wait.in_transaction",
            Error::SetupInTransaction => "setup.in_transaction",
            Error::NotMigrated { .. } => "schema.missing",
            Error::Wake(e) => e.code(),
            Error::Sqlite(_) => "db.sqlite",
        }
    }

    /// Whether this is `SQLITE_BUSY`/`SQLITE_LOCKED`: the caller may retry.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Busy { source: e },
            Some(ErrorCode::ReadOnly) => Error::ReadOnly {
                path: PathBuf::new(),
                reason: e.to_string(),
            },
            Some(ErrorCode::DiskFull) => Error::Full { source: e },
            Some(ErrorCode::NotADatabase) => Error::NotDatabase {
                path: PathBuf::new(),
            },
            _ => match missing_honker_table(&e) {
                Some(table) => Error::NotMigrated { table },
                None => Error::Sqlite(e),
            },
        }
    }
}

/// The honker table named by a "no such table: honker_..." error.
fn missing_honker_table(e: &rusqlite::Error) -> Option<String> {
    let rusqlite::Error::SqliteFailure(_, Some(message)) = e else {
        return None;
    };
    let table = message.strip_prefix("no such table: ")?;
    let table = table.rsplit('.').next().unwrap_or(table);
    table.starts_with("honker_").then(|| table.to_owned())
}

/// Check that argument `name` is at least `min`; returns it unchanged.
///
/// # Errors
///
/// [`Error::InvalidArgument`] (`arg.invalid`): "must be >= {min}, got {value}".
pub fn at_least(name: &'static str, value: i64, min: i64) -> Result<i64> {
    if value < min {
        return Err(Error::InvalidArgument {
            name,
            reason: format!("must be >= {min}, got {value}"),
        });
    }
    Ok(value)
}

/// A `Result` with honker-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_busy_maps_to_db_busy() {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let e = Error::from(e);
        assert_eq!(e.code(), "db.busy");
        assert!(e.is_busy());
    }

    #[test]
    fn sqlite_readonly_maps_to_db_read_only() {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            None,
        );
        assert_eq!(Error::from(e).code(), "db.read_only");
    }

    #[test]
    fn sqlite_full_maps_to_db_full() {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let e = Error::from(e);
        assert_eq!(e.code(), "db.full");
        assert!(
            e.to_string()
                .starts_with("the database or the disk it is on is full"),
            "{e}"
        );
    }
}
