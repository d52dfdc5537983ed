//! The default wake backend: a thread with its own read-only connection that polls
//! `PRAGMA data_version` while somebody waits, and parks while nobody does.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use honker_core::WakeError;

use crate::backend::{Backend, backend_handle};
use crate::watch::{Arm, Armed, PidFn, Sleep, Watch};

/// A zero interval would spin a core; this is the floor.
const MIN_POLL_INTERVAL: Duration = Duration::from_micros(100);

/// Options of the [`DataVersion`] backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataVersionOptions {
    /// How often the watcher runs `PRAGMA data_version` while at least one thread waits.
    ///
    /// The default, 1 ms, bounds cross-process wake latency at about 1 ms. Values below 100 µs are
    /// raised to 100 µs. A watcher with no waiter does not poll at all.
    pub poll_interval: Duration,
}

impl Default for DataVersionOptions {
    fn default() -> DataVersionOptions {
        DataVersionOptions {
            poll_interval: Duration::from_millis(1),
        }
    }
}

/// The `PRAGMA data_version` wake backend: one thread and one read-only connection per instance.
///
/// **Guarantee:** every commit by another connection (any process on this host) after
/// [`start`](DataVersion::start) returns advances the epoch within one poll interval of becoming
/// visible. **Cost:** one prepared `PRAGMA data_version` per interval while somebody waits (about
/// 1% of one core at 1 ms on a 2-core Linux VM), nothing while nobody waits.
/// **Known problems:** none of the file-event kind; latency is bounded by the interval.
///
/// The baseline `data_version` is read before `start` returns. The thread polls only while some
/// thread is blocked in [`wait_past`](honker_core::WakeSource::wait_past); with no waiter it parks.
/// While polling it also `stat`s the path every 250 ms, and fails every wait with
/// [`WakeError::Replaced`] once the file was replaced or deleted.
///
/// Dropping the value stops and joins the thread. After a `fork`, a handle used in the child (where
/// the thread does not exist) starts a fresh watcher on first use, whose epochs are above every
/// epoch the parent handed out, so a wait on an epoch sampled before the fork returns at once.
///
/// Prefer [`Hub::wake_for`](crate::Hub::wake_for), which shares one watcher per file among all
/// waiters of the process.
pub struct DataVersion(Watch);

backend_handle!(DataVersion);

impl DataVersion {
    /// Start watching the database file at `db_path`.
    ///
    /// # Errors
    ///
    /// [`WakeError::Start`] when the file does not exist, is not an SQLite database, stays locked
    /// for 5 s, or the thread cannot be spawned.
    pub fn start(db_path: &Path, opts: DataVersionOptions) -> Result<DataVersion, WakeError> {
        DataVersion::start_with_pid_fn(db_path, opts, std::process::id)
    }

    /// Like [`start`](DataVersion::start), but the process id comes from `pid_fn`, so tests can
    /// pretend the handle crossed a `fork` (the real `fork` needs `unsafe`, which this crate
    /// forbids; the extension's tests fork for real). Not part of the stable API.
    #[doc(hidden)]
    pub fn start_with_pid_fn(
        db_path: &Path,
        opts: DataVersionOptions,
        pid_fn: PidFn,
    ) -> Result<DataVersion, WakeError> {
        Watch::start(db_path, Backend::DataVersion, arm(opts), pid_fn, 0).map(DataVersion)
    }
}

/// The trigger of the DataVersion backend: a timer of one poll interval.
pub(crate) fn arm(opts: DataVersionOptions) -> Arm {
    let floor = opts.poll_interval.max(MIN_POLL_INTERVAL);
    Arc::new(move |_path: &Path| {
        Ok(Armed {
            trigger: Box::new(Sleep),
            stopper: None,
            floor,
            trust_hints: false,
        })
    })
}
