//! The queue error type: core errors pass through, plus what only the queue can get wrong.

use crate::job::JobId;

/// Errors of honker-queue.
///
/// Every variant has a stable [`code`](Error::code); core errors keep their core code
/// (`payload.not_json`, `payload.too_large`, `db.busy`, `arg.invalid`, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from honker-core: SQLite, payload checks, arguments, waits.
    #[error(transparent)]
    Core(#[from] honker_core::Error),
    /// A queue (or lock, or rate limit) name that is empty, too long or holds control characters.
    #[error("invalid name {shown:?}: {reason}")]
    BadName {
        /// The start of the name as given (at most 64 characters).
        shown: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An options object has a key that is not known.
    #[error("unknown option {option:?}; known options: {known}")]
    UnknownOption {
        /// The key that was given.
        option: String,
        /// The keys that are accepted, comma-separated.
        known: &'static str,
    },
    /// An option has a value out of range, of the wrong type, or conflicts with another option.
    #[error("bad option {option}: {reason}")]
    BadOption {
        /// The option's name.
        option: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The lease token does not hold the job any more (it expired and was reclaimed, the job was
    /// acked, cancelled, released or is dead), or never did.
    #[error(
        "job {id} is not held under this lease token (lease lost, job finished or never claimed with it)"
    )]
    LeaseLost {
        /// The job.
        id: JobId,
    },
    /// No job (or dead letter) with this id.
    #[error("job {id} not found")]
    NotFound {
        /// The job.
        id: JobId,
    },
    /// A dead job cannot be requeued because a live job of its queue has the same dedup key.
    #[error("job {id} cannot be requeued: live job {existing} has the same dedup key")]
    DedupConflict {
        /// The dead job.
        id: JobId,
        /// The live job holding the key.
        existing: JobId,
    },
}

impl Error {
    /// The stable, machine-readable code of this error, such as `queue.lease_lost`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Core(e) => e.code(),
            Error::BadName { .. } => "queue.bad_name",
            Error::UnknownOption { .. } => "queue.unknown_option",
            Error::BadOption { .. } => "queue.bad_option",
            Error::LeaseLost { .. } => "queue.lease_lost",
            Error::NotFound { .. } => "queue.not_found",
            Error::DedupConflict { .. } => "queue.dedup_conflict",
        }
    }

    /// Whether this is `SQLITE_BUSY`/`SQLITE_LOCKED`: the caller may retry.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Core(e) if e.is_busy())
    }

    pub(crate) fn bad_option(option: &'static str, reason: impl Into<String>) -> Error {
        Error::BadOption {
            option,
            reason: reason.into(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Core(e.into())
    }
}

impl From<honker_core::WakeError> for Error {
    fn from(e: honker_core::WakeError) -> Self {
        Error::Core(e.into())
    }
}

impl From<Error> for rusqlite::Error {
    /// `honker: <code>: <message>`; `SQLITE_BUSY` passes through untouched.
    fn from(e: Error) -> rusqlite::Error {
        match e {
            Error::Core(core) => core.into(),
            other => honker_core::sql::sql_error(other.code(), &other, None),
        }
    }
}

/// A `Result` with honker-queue's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_codes_pass_through_and_sql_errors_carry_the_prefix() {
        let e = Error::from(honker_core::Error::WaitInTransaction);
        assert_eq!(e.code(), "wait.in_transaction");
        let e = Error::LeaseLost { id: JobId(7) };
        assert_eq!(e.code(), "queue.lease_lost");
        let sql: rusqlite::Error = e.into();
        assert!(
            sql.to_string().starts_with("honker: queue.lease_lost: "),
            "{sql}"
        );
    }
}
