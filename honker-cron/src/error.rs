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
    /// `honker: <code>: <message>`; `SQLITE_BUSY` passes through untouched, also from a
    /// wrapped queue error.
    fn from(e: Error) -> rusqlite::Error {
        match e {
            Error::Core(core) => core.into(),
            Error::Queue(queue) => queue.into(),
            other => honker_core::sql::sql_error(other.code(), &other, None),
        }
    }
}

/// A `Result` with honker-cron's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_passes_through_to_sql_from_a_wrapped_queue_error_too() {
        let busy = || {
            honker_core::Error::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            ))
        };
        for e in [
            Error::Core(busy()),
            Error::Queue(honker_queue::Error::Core(busy())),
        ] {
            let sql = rusqlite::Error::from(e);
            assert_eq!(
                sql.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy)
            );
        }
        let refused = Error::Queue(honker_queue::Error::Core(
            honker_core::Error::PayloadTooLarge { size: 9, limit: 4 },
        ));
        assert!(
            rusqlite::Error::from(refused)
                .to_string()
                .starts_with("honker: payload.too_large: ")
        );
    }
}
