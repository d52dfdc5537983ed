//! The StatPoll backend when the `stat` feature is off: the same names, and
//! [`WakeError::NotCompiled`] from every way to start it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use honker_core::WakeError;

use crate::backend::Backend;
use crate::watch::Arm;

/// Options of the StatPoll backend (compiled out: enable the `stat` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatPollOptions {
    /// How often the files would be `stat`ed.
    pub poll_interval: Duration,
    /// How often `data_version` would be polled without a change.
    pub confirm_every: Duration,
}

impl Default for StatPollOptions {
    fn default() -> StatPollOptions {
        StatPollOptions {
            poll_interval: Duration::from_millis(1),
            confirm_every: Duration::from_millis(20),
        }
    }
}

/// The `stat`-polling backend, not compiled in this build: [`StatPoll::start`] fails with
/// [`WakeError::NotCompiled`]. Enable the `stat` feature of honker-wake.
#[derive(Debug)]
pub struct StatPoll(std::convert::Infallible);

impl StatPoll {
    /// Always fails: the backend is not compiled in.
    ///
    /// # Errors
    ///
    /// [`WakeError::NotCompiled`].
    pub fn start(_db_path: &Path, _opts: StatPollOptions) -> Result<StatPoll, WakeError> {
        Err(not_compiled())
    }

    /// The watched file (never reached: no value of this type exists).
    pub fn path(&self) -> &Path {
        match self.0 {}
    }

    /// How many threads wait (never reached).
    pub fn waiters(&self) -> usize {
        match self.0 {}
    }

    /// The watcher's counters (never reached).
    pub fn stats(&self) -> crate::WatcherStats {
        match self.0 {}
    }

    /// Whether the watcher failed (never reached).
    pub fn has_failed(&self) -> bool {
        match self.0 {}
    }
}

impl honker_core::WakeSource for StatPoll {
    fn epoch(&self) -> honker_core::Epoch {
        match self.0 {}
    }

    fn wait_past(
        &self,
        _seen: honker_core::Epoch,
        _deadline: Option<std::time::Instant>,
    ) -> Result<honker_core::Epoch, WakeError> {
        match self.0 {}
    }

    fn kick(&self) {
        match self.0 {}
    }
}

fn not_compiled() -> WakeError {
    WakeError::NotCompiled {
        backend: Backend::StatPoll.name(),
        feature: "stat",
    }
}

pub(crate) fn arm(_opts: StatPollOptions) -> Arm {
    Arc::new(|_path: &Path| Err(not_compiled()))
}
