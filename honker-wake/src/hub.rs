//! The process-wide Hub: one watcher per database file (device, inode) per process, shared by
//! every waiter, and the same-process commit kick.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use honker_core::{WakeError, WakeProvider, WakeSource};

use crate::data_version::{DataVersion, DataVersionOptions, PidFn};
use crate::file_id::FileId;

/// Hands out one shared [`DataVersion`] watcher per database file of the process.
///
/// Every waiter of a file (threads, connections, extension handles) shares one watcher thread and
/// one connection; the watcher stops when the last handle from [`wake_for`](Hub::wake_for) drops.
/// Files are told apart by (device, inode), so two paths to one file share a watcher, and a file
/// replaced under the same path gets a fresh one.
///
/// The Hub is fork-aware: a handle used in a forked child starts a watcher of its own there (see
/// [`DataVersion`]), so a wait in a child never hangs.
pub struct Hub {
    state: Mutex<HubState>,
    opts: DataVersionOptions,
    pid_fn: PidFn,
}

#[derive(Default)]
struct HubState {
    entries: HashMap<(u64, u64), Entry>,
    /// Above every epoch of a watcher that left the map, so epochs of a later watcher for the
    /// same path never look older than ones handed out before.
    floor: u64,
}

struct Entry {
    watcher: Weak<DataVersion>,
    /// Set by [`Hub::pinned`]: the watcher lives as long as the process.
    pinned: Option<Arc<DataVersion>>,
}

impl HubState {
    /// Drop entries whose last handle went away or whose watcher stopped for good.
    fn prune(&mut self) {
        let mut floor = self.floor;
        self.entries.retain(|_, e| match e.watcher.upgrade() {
            Some(w) if !w.has_failed() => true,
            Some(w) => {
                floor = floor.max(w.epoch().0 + 1);
                false
            }
            None => false,
        });
        self.floor = floor;
    }

    /// The live watcher of the file `id`, if any.
    fn live(&self, id: &FileId) -> Option<Arc<DataVersion>> {
        let w = self.entries.get(&id.key())?.watcher.upgrade()?;
        (w.file_id() == *id && !w.has_failed()).then_some(w)
    }

    /// An epoch above every epoch a watcher of this Hub has reached.
    fn next_base(&self) -> u64 {
        self.entries
            .values()
            .filter_map(|e| e.watcher.upgrade())
            .map(|w| w.epoch().0 + 1)
            .fold(self.floor, u64::max)
    }
}

impl Hub {
    /// The Hub of this process.
    ///
    /// The first call installs [`honker_core::set_kick_hook`], so a writer that calls
    /// [`honker_core::kick_after_commit`] wakes this process's waiters at once.
    pub fn global() -> &'static Hub {
        static GLOBAL: OnceLock<Hub> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            honker_core::set_kick_hook(|path| Hub::global().kick(path));
            Hub::with(DataVersionOptions::default(), std::process::id)
        })
    }

    /// A Hub of its own (not the process's), whose watchers read the process id from `pid_fn`,
    /// so tests can pretend the process forked. Not part of the stable API.
    #[doc(hidden)]
    pub fn with_pid_fn(opts: DataVersionOptions, pid_fn: fn() -> u32) -> Hub {
        Hub::with(opts, pid_fn)
    }

    fn with(opts: DataVersionOptions, pid_fn: PidFn) -> Hub {
        Hub {
            state: Mutex::new(HubState::default()),
            opts,
            pid_fn,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Every update under this lock leaves the map consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared wake source of the database file at `db_path`, starting its watcher if none
    /// runs. The watcher stops when the last handle drops.
    ///
    /// # Errors
    ///
    /// [`WakeError::Start`] when the file does not exist or cannot be watched.
    pub fn wake_for(&self, db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
        Ok(self.get(db_path, false)?)
    }

    /// Like [`wake_for`](Hub::wake_for), but the watcher is kept for the life of the process, so
    /// epochs from separate calls are comparable (the SQL functions `honker_epoch()` and
    /// `honker_wait()` use it). A watcher whose file was replaced is still let go.
    ///
    /// # Errors
    ///
    /// As [`wake_for`](Hub::wake_for).
    pub fn pinned(&self, db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
        Ok(self.get(db_path, true)?)
    }

    /// Advance the epoch of the watcher of the file at `db_path`, if one runs in this Hub.
    ///
    /// Call it right after a commit (honker's write APIs do, through
    /// [`honker_core::kick_after_commit`]): same-process waiters then wake in microseconds instead
    /// of at the watcher's next poll.
    pub fn kick(&self, db_path: &Path) {
        let Ok(id) = FileId::of(db_path) else {
            return;
        };
        let live = self.lock().live(&id);
        if let Some(w) = live {
            w.kick();
        }
    }

    /// How many threads of this process are blocked waiting on the watcher of the file at
    /// `db_path` (0 when no watcher runs for it).
    pub fn waiters(&self, db_path: &Path) -> usize {
        let Ok(id) = FileId::of(db_path) else {
            return 0;
        };
        let live = self.lock().live(&id);
        live.map_or(0, |w| w.waiters())
    }

    /// How many watchers are running (one per watched file).
    pub fn watcher_count(&self) -> usize {
        let mut st = self.lock();
        st.prune();
        st.entries.len()
    }

    fn get(&self, db_path: &Path, pin: bool) -> Result<Arc<DataVersion>, WakeError> {
        let id = FileId::of(db_path).map_err(|e| WakeError::Start {
            path: db_path.to_owned(),
            reason: format!("cannot stat: {e}"),
        })?;
        let base = {
            let mut st = self.lock();
            st.prune();
            if let Some(w) = st.live(&id) {
                return Ok(self.keep(&mut st, w, pin));
            }
            st.next_base()
        };
        // Start without the lock: opening can wait up to the busy budget, and kicks from
        // committing writers must not wait for it.
        let fresh = Arc::new(DataVersion::start_with(
            db_path,
            self.opts,
            self.pid_fn,
            base,
        )?);
        let mut st = self.lock();
        st.prune();
        let fresh_id = fresh.file_id();
        if let Some(w) = st.live(&fresh_id) {
            // Another thread started one meanwhile: use it (ours stops when dropped below).
            let w = self.keep(&mut st, w, pin);
            drop(st);
            drop(fresh);
            return Ok(w);
        }
        if let Some(old) = st.entries.remove(&fresh_id.key()) {
            // Same (device, inode) but another file (inode reuse) or a stopped watcher.
            if let Some(w) = old.watcher.upgrade() {
                st.floor = st.floor.max(w.epoch().0 + 1);
            }
        }
        st.entries.insert(
            fresh_id.key(),
            Entry {
                watcher: Arc::downgrade(&fresh),
                pinned: None,
            },
        );
        Ok(self.keep(&mut st, fresh, pin))
    }

    fn keep(&self, st: &mut HubState, w: Arc<DataVersion>, pin: bool) -> Arc<DataVersion> {
        if pin {
            if let Some(e) = st.entries.get_mut(&w.file_id().key()) {
                e.pinned.get_or_insert_with(|| w.clone());
            }
        }
        w
    }
}

impl WakeProvider for Hub {
    fn wake_for(&self, db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
        Hub::wake_for(self, db_path)
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("watchers", &self.lock().entries.len())
            .field("poll_interval", &self.opts.poll_interval)
            .finish_non_exhaustive()
    }
}

/// The shared wake source of the database file at `db_path`: [`Hub::global`]`().wake_for(..)`.
///
/// # Errors
///
/// As [`Hub::wake_for`].
pub fn wake_for(db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
    Hub::global().wake_for(db_path)
}
