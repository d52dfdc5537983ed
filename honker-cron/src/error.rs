//! The cron error type, with a stable code per variant.

/// Errors of honker-cron.
///
/// Every variant has a stable [`code`](Error::code); queue and core errors pass through with
/// their own codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The schedule expression does not parse.
    #[error("bad cron expression {expression:?} at byte {position}: {reason}")]
    BadExpression {
        /// The expression as given.
        expression: String,
        /// Byte offset into `expression` where the problem is.
        position: usize,
        /// What is wrong.
        reason: String,
    },
    /// The time zone is not an IANA zone name.
    #[error("unknown time zone {zone:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    UnknownZone {
        /// The name given.
        zone: String,
    },
    /// A schedule option has a bad value.
    #[error("bad schedule option {option}: {reason}")]
    BadOption {
        /// The option's name.
        option: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A schedule name is empty, too long or has control characters.
    #[error("bad schedule name {name:?}: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No schedule has this name.
    #[error("no schedule named {name:?}")]
    NotFound {
        /// The name given.
        name: String,
    },
    /// The queue refused the fire's job (bad queue name, payload, ...).
    #[error(transparent)]
    Queue(#[from] honker_queue::Error),
    /// A core error (SQLite, busy, read-only, payload, unknown option, ...).
    #[error(transparent)]
    Core(#[from] honker_core::Error),
}

impl Error {
    /// The stable, machine-readable code, such as `cron.bad_expression`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadExpression { .. } => "cron.bad_expression",
            Error::UnknownZone { .. } => "cron.unknown_zone",
            Error::BadOption { .. } => "cron.bad_option",
            Error::BadName { .. } => "cron.bad_name",
            Error::NotFound { .. } => "cron.not_found",
            Error::Queue(e) => e.code(),
            Error::Core(e) => e.code(),
        }
    }

    /// Whether the database was busy past the busy timeout: the caller may retry.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Core(e) => e.is_busy(),
            Error::Queue(e) => e.code() == "db.busy",
            _ => false,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Core(e.into())
    }
}

impl From<Error> for rusqlite::Error {
    fn from(e: Error) -> rusqlite::Error {
        match e {
            Error::Core(core) => core.into(),
            other => honker_core::sql::sql_error(other.code(), &other, None),
        }
    }
}

/// A `Result` with honker-cron's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
