//! The StatPoll backend when the `stat` feature is off: the same names, and
//! [`WakeError::NotCompiled`] from every way to start it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use honker_core::WakeError;

use crate::backend::{Backend, NotCompiled, backend_handle};
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
pub struct StatPoll(NotCompiled);

impl StatPoll {
    /// Always fails: the backend is not compiled in.
    ///
    /// # Errors
    ///
    /// [`WakeError::NotCompiled`].
    pub fn start(_db_path: &Path, _opts: StatPollOptions) -> Result<StatPoll, WakeError> {
        Err(not_compiled())
    }
}

backend_handle!(StatPoll);

fn not_compiled() -> WakeError {
    WakeError::NotCompiled {
        backend: Backend::StatPoll.name(),
        feature: "stat",
    }
}

pub(crate) fn arm(_opts: StatPollOptions) -> Arm {
    Arc::new(|_path: &Path| Err(not_compiled()))
}
