//! Time: integer milliseconds since the Unix epoch, and the `Clock` that every time-dependent
//! operation reads so tests can move time without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time (or a duration) in integer milliseconds since the Unix epoch, as stored in
/// every honker table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub i64);

impl Millis {
    /// The raw number of milliseconds.
    pub fn get(self) -> i64 {
        self.0
    }

    /// `self + ms`, saturating at the ends of `i64`.
    pub fn saturating_add(self, ms: i64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// The non-negative duration from `self` until `later` (zero if `later` is earlier).
    pub fn until(self, later: Millis) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0).max(0) as u64)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl rusqlite::ToSql for Millis {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl rusqlite::types::FromSql for Millis {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(value).map(Millis)
    }
}

/// Where honker reads the current time from.
///
/// Every delay, lease, retention cut-off and cron computation asks a `Clock`, so tests use a
/// [`SettableClock`] and never sleep.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Millis(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct SettableClock {
    now: Arc<AtomicI64>,
}

impl SettableClock {
    /// A clock standing at `start`.
    pub fn new(start: Millis) -> SettableClock {
        SettableClock {
            now: Arc::new(AtomicI64::new(start.0)),
        }
    }

    /// Set the time.
    pub fn set(&self, to: Millis) {
        self.now.store(to.0, Ordering::SeqCst);
    }

    /// Move the time forward by `ms` (backward if negative).
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for SettableClock {
    fn now(&self) -> Millis {
        Millis(self.now.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settable_clock_clones_share_time() {
        let a = SettableClock::new(Millis(1_000));
        let b = a.clone();
        a.advance(250);
        assert_eq!(b.now(), Millis(1_250));
        b.set(Millis(5));
        assert_eq!(a.now(), Millis(5));
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > Millis(1_577_836_800_000));
    }

    #[test]
    fn until_is_never_negative() {
        assert_eq!(Millis(10).until(Millis(5)), Duration::ZERO);
        assert_eq!(Millis(5).until(Millis(10)), Duration::from_millis(5));
    }
}
