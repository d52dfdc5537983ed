//! The StatPoll backend (feature `stat`): `stat` of the db and `-wal` files every millisecond, each
//! change confirmed with `PRAGMA data_version`, and a slower `data_version` poll as the floor.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use honker_core::WakeError;

use crate::backend::{Backend, backend_handle};
use crate::signature::StatTrigger;
use crate::watch::{Arm, Armed, Watch};

/// Options of the [`StatPoll`] backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatPollOptions {
    /// How often the db and `-wal` files are `stat`ed while somebody waits (default 1 ms; at
    /// least 100 µs).
    pub poll_interval: Duration,
    /// How often `PRAGMA data_version` is polled without any change of the files (default 20 ms):
    /// it catches a rewrite to the same size within one mtime tick.
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

/// The `stat`-polling wake backend.
///
/// **Guarantee:** as [`DataVersion`](crate::DataVersion): every commit by another connection after
/// [`start`](StatPoll::start) advances the epoch; within one `poll_interval` when it changed the
/// `(dev, ino, size, mtime_ns)` of the db or `-wal` file (any change, a shrink to 0 after
/// `wal_checkpoint(TRUNCATE)` included), otherwise (a same-size rewrite within one mtime tick)
/// within `confirm_every`. A change is only a hint: the epoch advances once `data_version` moved,
/// since the WAL grows before its commit is visible.
/// **Cost:** two `stat` calls per interval while somebody waits, plus one `data_version` poll per
/// `confirm_every` and a short burst of polls after each change; nothing while nobody waits.
/// **Known problems:** on NFS and other network file systems attribute caching delays or hides
/// changes (and WAL does not work there anyway); on Docker bind mounts from another kernel
/// (Docker Desktop) `stat` may lag behind the host. Coarse mtime granularity is covered by the
/// `data_version` floor.
pub struct StatPoll(Watch);

backend_handle!(StatPoll);

impl StatPoll {
    /// Start watching the database file at `db_path`.
    ///
    /// # Errors
    ///
    /// [`WakeError::Start`] as [`DataVersion::start`](crate::DataVersion::start).
    pub fn start(db_path: &Path, opts: StatPollOptions) -> Result<StatPoll, WakeError> {
        Watch::start(db_path, Backend::StatPoll, arm(opts), std::process::id, 0).map(StatPoll)
    }
}

pub(crate) fn arm(opts: StatPollOptions) -> Arm {
    let interval = opts.poll_interval.max(Duration::from_micros(100));
    let floor = opts.confirm_every.max(interval);
    Arc::new(move |path: &Path| {
        Ok(Armed {
            trigger: Box::new(StatTrigger::new(path, interval)),
            stopper: None,
            floor,
            trust_hints: false,
        })
    })
}
