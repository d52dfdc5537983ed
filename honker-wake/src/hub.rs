//! The process-wide Hub: one watcher per database file (device, inode) per process, shared by
//! every waiter, and the same-process commit kick.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use honker_core::{WakeError, WakeProvider, WakeSource};

use crate::backend::{Backend, BackendOptions, UnknownBackend};
use crate::data_version::DataVersionOptions;
use crate::file_id::FileId;
use crate::watch::{PidFn, Watch};

/// Hands out one shared watcher per (database file, [`Backend`]) of the process.
///
/// Every waiter of a file (threads, connections, extension handles) shares one watcher thread and
/// one connection per backend; the watcher stops when the last handle from
/// [`wake_for`](Hub::wake_for) drops. Files are told apart by (device, inode), so two paths to one
/// file share a watcher, and a file replaced under the same path gets a fresh one.
///
/// [`wake_for`](Hub::wake_for) and [`pinned`](Hub::pinned) use the Hub's default backend:
/// [`Backend::DataVersion`] unless the `HONKER_WAKE_BACKEND` environment variable (read once, by
/// [`Hub::global`]) or [`set_default_backend`](Hub::set_default_backend) names another;
/// [`wake_for_with`](Hub::wake_for_with) picks one explicitly.
///
/// The Hub is fork-aware: a handle used in a forked child starts a watcher of its own there (see
/// [`DataVersion`](crate::DataVersion)), so a wait in a child never hangs.
pub struct Hub {
    state: Mutex<HubState>,
    opts: BackendOptions,
    pid_fn: PidFn,
    default: Mutex<Result<Choice, UnknownBackend>>,
    /// One gate per (file, backend) being started: threads asking for the same new watcher at
    /// once wait for the first instead of each starting one (a Kernel watcher costs an inotify
    /// instance, of which a user often has only 128).
    starting: Mutex<HashMap<Key, Arc<Mutex<()>>>>,
}

/// The default backend and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Choice {
    backend: Backend,
    why: Why,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Why {
    PlatformDefault,
    Environment,
    Set,
    FellBack(String),
}

/// The Hub's map key: the file's (device, inode) and the backend.
type Key = (u64, u64, Backend);

#[derive(Default)]
struct HubState {
    entries: HashMap<Key, Entry>,
    /// Above every epoch of a watcher that left the map, so epochs of a later watcher for the
    /// same path never look older than ones handed out before.
    floor: u64,
}

struct Entry {
    watcher: Weak<Watch>,
    /// The watcher's highest epoch once its last handle is gone (the floor a later one starts
    /// above).
    last: Arc<std::sync::atomic::AtomicU64>,
    /// Set by [`Hub::pinned`]: the watcher lives as long as the process.
    pinned: Option<Arc<Watch>>,
}

fn key(id: &FileId, backend: Backend) -> Key {
    (id.dev, id.ino, backend)
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
            // The last handle went away: it left its highest epoch behind, and a later watcher of
            // the file must start above it, or an epoch sampled on the old handle would look
            // newer than the new watcher's and a wait past it would sleep through commits.
            None => {
                floor = floor.max(e.last.load(std::sync::atomic::Ordering::SeqCst) + 1);
                false
            }
        });
        self.floor = floor;
    }

    /// The live watcher of the file `id` with `backend`, if any.
    fn live(&self, id: &FileId, backend: Backend) -> Option<Arc<Watch>> {
        let w = self.entries.get(&key(id, backend))?.watcher.upgrade()?;
        (w.file_id() == *id && !w.has_failed()).then_some(w)
    }

    /// The live watchers of the file `id`, every backend.
    fn all_live(&self, id: &FileId) -> Vec<Arc<Watch>> {
        Backend::ALL
            .into_iter()
            .filter_map(|b| self.live(id, b))
            .collect()
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

/// The Hub of one process, and the Hub of the child forked from it, if any ([`Hub::global`]).
struct ProcessHub {
    pid: u32,
    hub: Hub,
    next: OnceLock<&'static ProcessHub>,
}

impl ProcessHub {
    /// The Hub of process `pid` along the line of forks that starts at `first`, started (after
    /// the newest node) if this process has none yet. Only the `OnceLock`s of the line are
    /// touched, never a parent's Hub lock.
    fn of(first: &'static ProcessHub, pid: u32) -> &'static Hub {
        let mut node = first;
        loop {
            if node.pid == pid {
                return &node.hub;
            }
            node = match node.next.get() {
                Some(next) => next,
                None => node
                    .next
                    .get_or_init(|| ProcessHub::start(pid, Some(&node.hub))),
            };
        }
    }

    /// A Hub for process `pid`, which lives as long as the process.
    fn start(pid: u32, parent: Option<&Hub>) -> &'static ProcessHub {
        honker_core::set_kick_hook(|path| Hub::global().kick(path));
        let hub = Hub::with(BackendOptions::default(), std::process::id);
        let inherited = parent.and_then(|p| match p.default.try_lock() {
            Ok(d) => d.as_ref().ok().cloned(),
            Err(_) => None,
        });
        *hub.default_lock() = match inherited {
            Some(c) => Ok(c),
            None => Backend::from_env().map(|b| match b {
                Some(backend) => Choice {
                    backend,
                    why: Why::Environment,
                },
                None => Choice {
                    backend: Backend::platform_default(),
                    why: Why::PlatformDefault,
                },
            }),
        };
        Box::leak(Box::new(ProcessHub {
            pid,
            hub,
            next: OnceLock::new(),
        }))
    }
}

impl Hub {
    /// The Hub of this process.
    ///
    /// The first call installs [`honker_core::set_kick_hook`], so a writer that calls
    /// [`honker_core::kick_after_commit`] wakes this process's waiters at once.
    ///
    /// Each process has its own. A child forked while another thread of the parent held the
    /// Hub's lock (every same-process commit takes it to kick) would block on that lock for ever,
    /// so the first call in a child starts a fresh Hub and never touches the parent's copy. The
    /// child's Hub keeps the parent's default backend when it can read it without waiting.
    pub fn global() -> &'static Hub {
        static FIRST: OnceLock<&'static ProcessHub> = OnceLock::new();
        let pid = std::process::id();
        ProcessHub::of(FIRST.get_or_init(|| ProcessHub::start(pid, None)), pid)
    }

    /// A Hub of its own (not the process's), whose watchers read the process id from `pid_fn`,
    /// so tests can pretend the process forked. Not part of the stable API.
    #[doc(hidden)]
    pub fn with_pid_fn(opts: DataVersionOptions, pid_fn: fn() -> u32) -> Hub {
        Hub::with(
            BackendOptions {
                data_version: opts,
                ..BackendOptions::default()
            },
            pid_fn,
        )
    }

    /// A Hub of its own (not the process's) with the given options of every backend; its default
    /// backend is [`Backend::DataVersion`] (the environment is not read).
    pub fn with_options(opts: BackendOptions) -> Hub {
        Hub::with(opts, std::process::id)
    }

    fn with(opts: BackendOptions, pid_fn: PidFn) -> Hub {
        Hub {
            state: Mutex::new(HubState::default()),
            opts,
            pid_fn,
            default: Mutex::new(Ok(Choice {
                backend: Backend::DataVersion,
                why: Why::Set,
            })),
            starting: Mutex::new(HashMap::new()),
        }
    }

    fn default_lock(&self) -> MutexGuard<'_, Result<Choice, UnknownBackend>> {
        self.default.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The default backend and why it is the default: the platform's choice, `HONKER_WAKE_BACKEND`,
    /// [`set_default_backend`](Hub::set_default_backend), or a fallback after the platform's
    /// choice could not start (with the reason).
    ///
    /// # Errors
    ///
    /// As [`default_backend`](Hub::default_backend).
    pub fn backend_choice(&self) -> Result<(Backend, String), WakeError> {
        let c = self.default_choice()?;
        let why = match c.why {
            Why::PlatformDefault => "this platform's default".to_owned(),
            Why::Environment => format!("set by {}", crate::BACKEND_ENV),
            Why::Set => "set by the program".to_owned(),
            Why::FellBack(reason) => reason,
        };
        Ok((c.backend, why))
    }

    fn default_choice(&self) -> Result<Choice, WakeError> {
        self.default_lock().clone().map_err(|e| WakeError::Start {
            path: std::path::PathBuf::from(crate::BACKEND_ENV),
            reason: e.to_string(),
        })
    }

    /// The watcher of `db_path` with the default backend. When the platform's default (not a
    /// backend the user chose) cannot start (inotify instance or watch limits, no descriptor left,
    /// a file system without events), fall back to [`Backend::DataVersion`] once, for the rest of
    /// the process, and record why ([`backend_choice`](Hub::backend_choice)).
    fn get_default(&self, db_path: &Path, pin: bool) -> Result<Arc<Watch>, WakeError> {
        let choice = self.default_choice()?;
        match self.get(db_path, choice.backend, pin) {
            Err(e @ WakeError::Start { .. })
                if matches!(choice.why, Why::PlatformDefault)
                    && choice.backend != Backend::DataVersion
                    && db_path.exists() =>
            {
                let reason = format!(
                    "fell back from {} to data_version: {e}",
                    choice.backend.name()
                );
                {
                    let mut d = self.default_lock();
                    if matches!(&*d, Ok(c) if c.why == Why::PlatformDefault) {
                        *d = Ok(Choice {
                            backend: Backend::DataVersion,
                            why: Why::FellBack(reason),
                        });
                    }
                }
                self.get(db_path, Backend::DataVersion, pin)
            }
            other => other,
        }
    }

    /// The backend [`wake_for`](Hub::wake_for) and [`pinned`](Hub::pinned) use.
    ///
    /// # Errors
    ///
    /// [`WakeError::Start`] when `HONKER_WAKE_BACKEND` names no backend.
    pub fn default_backend(&self) -> Result<Backend, WakeError> {
        self.default_choice().map(|c| c.backend)
    }

    /// Make `backend` the default of [`wake_for`](Hub::wake_for) and [`pinned`](Hub::pinned).
    ///
    /// Handles already given out keep their backend. Epochs of different backends' watchers are
    /// not comparable, so the switch is refused while a pinned watcher (the SQL functions'
    /// `honker_epoch()`/`honker_wait()`) of another backend runs.
    ///
    /// # Errors
    ///
    /// [`WakeError::NotCompiled`] when the backend is not in this build; [`WakeError::Start`]
    /// (naming the file) when a pinned watcher of another backend runs.
    pub fn set_default_backend(&self, backend: Backend) -> Result<(), WakeError> {
        backend.ensure_compiled()?;
        let mut st = self.lock();
        st.prune();
        if let Some(w) = st
            .entries
            .iter()
            .filter(|(k, e)| k.2 != backend && e.pinned.is_some())
            .find_map(|(_, e)| e.watcher.upgrade())
        {
            return Err(WakeError::Start {
                path: w.path().to_owned(),
                reason: format!(
                    "cannot switch the wake backend to {backend}: the {} watcher of this file is \
                     pinned by honker_epoch()/honker_wait() and epochs of different backends are \
                     not comparable; choose the backend before the first wait",
                    w.backend()
                ),
            });
        }
        *self.default_lock() = Ok(Choice {
            backend,
            why: Why::Set,
        });
        Ok(())
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
        Ok(self.get_default(db_path, false)?)
    }

    /// Like [`wake_for`](Hub::wake_for), with the given backend instead of the default.
    ///
    /// # Errors
    ///
    /// [`WakeError::NotCompiled`] when the backend's feature is off; [`WakeError::Start`] as
    /// [`wake_for`](Hub::wake_for).
    pub fn wake_for_with(
        &self,
        db_path: &Path,
        backend: Backend,
    ) -> Result<Arc<dyn WakeSource>, WakeError> {
        Ok(self.get(db_path, backend, false)?)
    }

    /// Like [`wake_for`](Hub::wake_for), but the watcher is kept for the life of the process, so
    /// epochs from separate calls are comparable (the SQL functions `honker_epoch()` and
    /// `honker_wait()` use it). A watcher whose file was replaced is still let go.
    ///
    /// # Errors
    ///
    /// As [`wake_for`](Hub::wake_for).
    pub fn pinned(&self, db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
        Ok(self.get_default(db_path, true)?)
    }

    /// Like [`pinned`](Hub::pinned), with the given backend instead of the default.
    ///
    /// # Errors
    ///
    /// As [`wake_for_with`](Hub::wake_for_with).
    pub fn pinned_with(
        &self,
        db_path: &Path,
        backend: Backend,
    ) -> Result<Arc<dyn WakeSource>, WakeError> {
        Ok(self.get(db_path, backend, true)?)
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
        let live = self.lock().all_live(&id);
        for w in live {
            w.kick();
        }
    }

    /// How many threads of this process are blocked waiting on the watcher of the file at
    /// `db_path` (0 when no watcher runs for it).
    pub fn waiters(&self, db_path: &Path) -> usize {
        let Ok(id) = FileId::of(db_path) else {
            return 0;
        };
        let live = self.lock().all_live(&id);
        live.iter().map(|w| w.waiters()).sum()
    }

    /// How many watchers are running (one per watched file and backend).
    pub fn watcher_count(&self) -> usize {
        let mut st = self.lock();
        st.prune();
        st.entries.len()
    }

    fn get(&self, db_path: &Path, backend: Backend, pin: bool) -> Result<Arc<Watch>, WakeError> {
        backend.ensure_compiled()?;
        let id = FileId::of(db_path).map_err(|e| WakeError::Start {
            path: db_path.to_owned(),
            reason: format!("cannot stat: {e}"),
        })?;
        {
            let mut st = self.lock();
            st.prune();
            if let Some(w) = st.live(&id, backend) {
                return Ok(self.keep(&mut st, w, pin));
            }
        }
        // One starter per (file, backend); the others wait here and then find its watcher.
        let gate_key = key(&id, backend);
        let gate = self
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(gate_key)
            .or_default()
            .clone();
        let started = {
            let _starter = gate.lock().unwrap_or_else(|p| p.into_inner());
            self.start_gated(db_path, &id, backend, pin)
        };
        let mut starting = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference and ours: nobody else waits at this gate, drop it.
        if Arc::strong_count(&gate) == 2 {
            starting.remove(&gate_key);
        }
        started
    }

    /// The second half of [`get`](Hub::get), with the (file, backend) gate held.
    fn start_gated(
        &self,
        db_path: &Path,
        id: &FileId,
        backend: Backend,
        pin: bool,
    ) -> Result<Arc<Watch>, WakeError> {
        let base = {
            let mut st = self.lock();
            st.prune();
            if let Some(w) = st.live(id, backend) {
                return Ok(self.keep(&mut st, w, pin));
            }
            st.next_base()
        };
        // Start without the Hub's lock: opening can wait up to the busy budget, and kicks from
        // committing writers must not wait for it.
        let fresh = Arc::new(Watch::start(
            db_path,
            backend,
            self.opts.arm(backend),
            self.pid_fn,
            base,
        )?);
        let mut st = self.lock();
        st.prune();
        let fresh_id = fresh.file_id();
        if let Some(w) = st.live(&fresh_id, backend) {
            // Another thread started one meanwhile: use it (ours stops when dropped below).
            let w = self.keep(&mut st, w, pin);
            drop(st);
            drop(fresh);
            return Ok(w);
        }
        if let Some(old) = st.entries.remove(&key(&fresh_id, backend)) {
            // Same (device, inode) but another file (inode reuse) or a stopped watcher.
            let high = match old.watcher.upgrade() {
                Some(w) => w.epoch().0,
                None => old.last.load(std::sync::atomic::Ordering::SeqCst),
            };
            st.floor = st.floor.max(high + 1);
        }
        st.entries.insert(
            key(&fresh_id, backend),
            Entry {
                watcher: Arc::downgrade(&fresh),
                last: fresh.last_epoch(),
                pinned: None,
            },
        );
        Ok(self.keep(&mut st, fresh, pin))
    }

    fn keep(&self, st: &mut HubState, w: Arc<Watch>, pin: bool) -> Arc<Watch> {
        if pin && let Some(e) = st.entries.get_mut(&key(&w.file_id(), w.backend())) {
            e.pinned.get_or_insert_with(|| w.clone());
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
            .field("default", &*self.default_lock())
            .field("opts", &self.opts)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11.6: a child forked while another thread of the parent held the Hub's lock (every
    /// same-process commit kicks the Hub) blocked on that lock for ever. The parent's lock is held
    /// here by a thread that never lets go while the "child" (another pid on the same line of
    /// forks) gets and uses its Hub.
    #[test]
    fn a_forked_child_never_waits_for_the_parents_hub_lock() {
        let parent = ProcessHub::start(u32::MAX - 10, None);
        let (held, hold) = std::sync::mpsc::channel::<()>();
        let (locked_tx, locked) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _guard = parent.hub.lock();
            locked_tx.send(()).unwrap();
            let _ = hold.recv();
        });
        locked.recv().unwrap();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let child = ProcessHub::of(parent, u32::MAX - 11);
            assert!(!std::ptr::eq(child, &parent.hub));
            child.kick(Path::new("/nonexistent/honker-fork-test.db"));
            done_tx.send(child.watcher_count()).unwrap();
        });
        let got = done.recv_timeout(std::time::Duration::from_secs(10));
        drop(held);
        holder.join().unwrap();
        assert_eq!(got, Ok(0), "the child's Hub waited for the parent's lock");
        // The parent's own line still answers with the parent's Hub.
        assert!(std::ptr::eq(
            ProcessHub::of(parent, u32::MAX - 10),
            &parent.hub
        ));
    }
}
