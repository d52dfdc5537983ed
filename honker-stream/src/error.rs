//! The crate's error type: core errors pass through, plus what only pub/sub and streams can get
//! wrong.

/// Errors of honker-stream.
///
/// Every variant has a stable [`code`](Error::code); core errors keep their core code
/// (`payload.not_json`, `db.busy`, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from honker-core: SQLite, payload checks, arguments, waits.
    #[error(transparent)]
    Core(#[from] honker_core::Error),
    /// A channel name that is empty, too long, or holds a NUL character.
    #[error("invalid channel {shown:?} ({len} bytes): {reason}")]
    BadChannel {
        /// The start of the channel name as given (at most 64 characters).
        shown: String,
        /// Its full length in bytes.
        len: usize,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A stream topic, consumer name or event key that is empty (topic, consumer), too long, or
    /// holds a NUL character.
    #[error("invalid {kind} {shown:?} ({len} bytes): {reason}")]
    BadName {
        /// What was named: `"topic"`, `"consumer"` or `"key"`.
        kind: &'static str,
        /// The start of the name as given (at most 64 characters).
        shown: String,
        /// Its full length in bytes.
        len: usize,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A read asked for events after `after`, but the topic was trimmed through a later offset:
    /// events the reader never saw are gone (a forced trim, or a reader that never registered).
    ///
    /// Nothing is skipped silently: resume with `after = trimmed_through` to accept the loss.
    #[error(
        "topic {topic:?} was trimmed through offset {trimmed_through}, past the requested offset {after}; the first available event is {}",
        first_available.map_or_else(|| "none yet".to_owned(), |o| format!("offset {o}"))
    )]
    Trimmed {
        /// The topic.
        topic: String,
        /// The offset the read started after.
        after: i64,
        /// Every event of the topic at or below this offset has been trimmed.
        trimmed_through: i64,
        /// The oldest event still stored on the topic, if any.
        first_available: Option<i64>,
    },
    /// A consumer tried to commit an offset that has not been assigned yet.
    #[error("cannot commit offset {offset} of topic {topic:?}: the newest offset is {latest}")]
    OffsetAhead {
        /// The topic.
        topic: String,
        /// The offset given.
        offset: i64,
        /// The newest offset assigned so far (on any topic).
        latest: i64,
    },
}

impl Error {
    /// The stable, machine-readable code of this error, such as `notify.bad_channel`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Core(e) => e.code(),
            Error::BadChannel { .. } => "notify.bad_channel",
            Error::BadName { kind: "topic", .. } => "stream.bad_topic",
            Error::BadName {
                kind: "consumer", ..
            } => "stream.bad_consumer",
            Error::BadName { .. } => "stream.bad_key",
            Error::Trimmed { .. } => "stream.trimmed",
            Error::OffsetAhead { .. } => "stream.offset_ahead",
        }
    }

    /// Whether this is `SQLITE_BUSY`/`SQLITE_LOCKED`: the caller may retry.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Core(e) if e.is_busy())
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

/// A `Result` with honker-stream's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_codes_pass_through_and_sql_errors_carry_the_prefix() {
        let e = Error::from(honker_core::Error::WaitInTransaction);
        assert_eq!(e.code(), "wait.in_transaction");
        let e = Error::BadChannel {
            shown: String::new(),
            len: 0,
            reason: "is empty",
        };
        assert_eq!(e.code(), "notify.bad_channel");
        let sql: rusqlite::Error = e.into();
        assert!(
            sql.to_string().starts_with("honker: notify.bad_channel: "),
            "{sql}"
        );
    }

    #[test]
    fn busy_passes_through_as_sqlite_busy() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let e = Error::from(busy);
        assert!(e.is_busy());
        let sql: rusqlite::Error = e.into();
        assert_eq!(
            sql.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy)
        );
    }
}
