//! The wake protocol's contract: [`Epoch`], the [`WakeSource`] trait, the [`EpochCell`] that
//! backends build on, the [`ManualWake`] test double and the same-process commit kick.
//!
//! A wake is an event *count*, not a message. Every consumer follows one loop (DESIGN.md §2):
//! sample the epoch, look for work, and only then sleep past the sampled epoch. A commit that lands
//! after the sample advances the epoch, so the sleep returns at once: lost wakes are impossible by
//! construction. Over-waking is fine.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// A count of "the database may have changed" events seen by a [`WakeSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a wait could not continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WakeError {
    /// The watched database file was replaced (its inode changed) or deleted.
    #[error("database file {path:?} was replaced or deleted; reopen it")]
    Replaced {
        /// The watched path.
        path: PathBuf,
    },
    /// The watcher stopped and cannot continue.
    #[error("wake watcher for {path:?} stopped: {reason}")]
    WatcherDied {
        /// The watched path.
        path: PathBuf,
        /// What stopped it.
        reason: String,
    },
    /// The backend was asked for by name but its cargo feature is off in this build.
    #[error(
        "wake backend {backend:?} is not compiled in; enable the {feature:?} feature of honker-wake"
    )]
    NotCompiled {
        /// The backend's name.
        backend: &'static str,
        /// The cargo feature that compiles it.
        feature: &'static str,
    },
    /// The watcher could not be started.
    #[error("cannot watch {path:?}: {reason}")]
    Start {
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The wait was cancelled through its cancel key ([`crate::cancel`]).
    #[error("the wait with cancel key {key:?} was cancelled")]
    Cancelled {
        /// The cancel key the wait was started with.
        key: String,
    },
}

impl WakeError {
    /// The stable code of this error, such as `wake.replaced`.
    pub fn code(&self) -> &'static str {
        match self {
            WakeError::Replaced { .. } => "wake.replaced",
            WakeError::WatcherDied { .. } => "wake.watcher_died",
            WakeError::NotCompiled { .. } => "wake.not_compiled",
            WakeError::Start { .. } => "wake.start",
            WakeError::Cancelled { .. } => "wait.cancelled",
        }
    }
}

/// Something that notices commits to a database and counts them as an [`Epoch`].
pub trait WakeSource: Send + Sync + fmt::Debug {
    /// The current epoch; cheap, never blocks.
    fn epoch(&self) -> Epoch;

    /// Block until the epoch is past `seen`, or until `deadline`; returns the epoch then.
    ///
    /// Returning at the deadline with an unchanged epoch is not an error.
    ///
    /// # Errors
    ///
    /// [`WakeError::Replaced`] when the watched file was replaced or deleted, and
    /// [`WakeError::WatcherDied`] when the watcher cannot continue.
    fn wait_past(&self, seen: Epoch, deadline: Option<Instant>) -> Result<Epoch, WakeError>;

    /// Advance the epoch now (a same-process writer that just committed may call it).
    fn kick(&self);
}

/// Hands out the process's [`WakeSource`] for a database file.
///
/// honker-wake's `Hub` implements it; leaf crates take one so they never depend on a backend.
pub trait WakeProvider: Send + Sync + fmt::Debug {
    /// The shared wake source for the database file at `db_path`, started if needed.
    ///
    /// # Errors
    ///
    /// [`WakeError::Start`] when the file cannot be watched.
    fn wake_for(&self, db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError>;
}

#[derive(Debug, Default)]
struct CellState {
    waiters: usize,
    failed: Option<WakeError>,
    /// Bumped to ask a parked watcher to look at the cell again (shutdown, a new waiter).
    watcher_nudges: u64,
}

/// A shared epoch counter with blocking waits: the building block of every backend.
///
/// Readers of [`epoch`](EpochCell::epoch) never take the lock. Waiters block on a condition
/// variable; the watcher thread of a backend can park until at least one waiter exists, so an
/// idle database costs no periodic wake-ups.
#[derive(Debug, Default)]
pub struct EpochCell {
    epoch: AtomicU64,
    state: Mutex<CellState>,
    waiters_cv: Condvar,
    watcher_cv: Condvar,
}

impl EpochCell {
    /// A cell at epoch 0.
    pub fn new() -> EpochCell {
        EpochCell::default()
    }

    fn lock(&self) -> MutexGuard<'_, CellState> {
        // A panic while holding this lock cannot leave the state inconsistent (every update is a
        // single field write), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::Acquire))
    }

    /// Advance the epoch by one and wake every waiter.
    pub fn advance(&self) {
        let st = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        // Waiters register under this lock, so with none registered there is nobody to wake and
        // the futex syscall can be skipped (writers kick after every commit).
        if st.waiters > 0 {
            self.waiters_cv.notify_all();
        }
    }

    /// Make every current and future wait fail with `err` (the first failure wins).
    pub fn fail(&self, err: WakeError) {
        let mut st = self.lock();
        if st.failed.is_none() {
            st.failed = Some(err);
        }
        self.waiters_cv.notify_all();
    }

    /// The failure recorded by [`fail`](EpochCell::fail), if any.
    pub fn failure(&self) -> Option<WakeError> {
        self.lock().failed.clone()
    }

    /// How many threads are blocked in [`wait_past`](EpochCell::wait_past) now.
    pub fn waiters(&self) -> usize {
        self.lock().waiters
    }

    /// Block until the epoch is past `seen`, the deadline passes, or the cell has failed.
    ///
    /// # Errors
    ///
    /// The error given to [`fail`](EpochCell::fail).
    pub fn wait_past(&self, seen: Epoch, deadline: Option<Instant>) -> Result<Epoch, WakeError> {
        let mut st = self.lock();
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        if self.epoch() > seen {
            return Ok(self.epoch());
        }
        st.waiters += 1;
        st.watcher_nudges += 1;
        self.watcher_cv.notify_all();
        let result = loop {
            if let Some(e) = &st.failed {
                break Err(e.clone());
            }
            let now = self.epoch();
            if now > seen {
                break Ok(now);
            }
            match deadline {
                None => st = self.waiters_cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Ok(now);
                    }
                    st = self
                        .waiters_cv
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        };
        st.waiters -= 1;
        result
    }

    /// For a watcher thread: block while nobody waits, until a waiter arrives,
    /// [`nudge_watcher`](EpochCell::nudge_watcher) is called, or `deadline` passes.
    ///
    /// Returns the number of waiters when it returned.
    pub fn park_watcher(&self, deadline: Option<Instant>) -> usize {
        let mut st = self.lock();
        let nudges = st.watcher_nudges;
        while st.waiters == 0 && st.watcher_nudges == nudges {
            match deadline {
                None => st = self.watcher_cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    st = self
                        .watcher_cv
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        st.waiters
    }

    /// Wake a watcher parked in [`park_watcher`](EpochCell::park_watcher) (for shutdown).
    pub fn nudge_watcher(&self) {
        let mut st = self.lock();
        st.watcher_nudges += 1;
        self.watcher_cv.notify_all();
    }
}

/// A [`WakeSource`] that advances only on [`kick`](WakeSource::kick): the test double for code
/// where the backend does not matter.
#[derive(Debug, Default, Clone)]
pub struct ManualWake {
    cell: Arc<EpochCell>,
    slow: Option<Arc<SlowEpochs>>,
}

/// What [`ManualWake::with_slow_epochs`] adds: a pause inside every `epoch()`, and a count.
#[derive(Debug)]
struct SlowEpochs {
    delay: std::time::Duration,
    calls: std::sync::atomic::AtomicU64,
}

impl ManualWake {
    /// A manual wake source at epoch 0.
    pub fn new() -> ManualWake {
        ManualWake::default()
    }

    /// Make every wait fail with `err`, as a watcher would when the file is replaced.
    pub fn fail(&self, err: WakeError) {
        self.cell.fail(err);
    }

    /// How many threads are blocked in `wait_past` now.
    pub fn waiters(&self) -> usize {
        self.cell.waiters()
    }

    /// A manual wake whose every `epoch()` sleeps `delay` before it reads the epoch: a stand-in
    /// for a thread preempted between two lines, to test that a loop samples the epoch before it
    /// looks at a stop flag (or any other work).
    pub fn with_slow_epochs(delay: std::time::Duration) -> ManualWake {
        ManualWake {
            cell: Arc::default(),
            slow: Some(Arc::new(SlowEpochs {
                delay,
                calls: std::sync::atomic::AtomicU64::new(0),
            })),
        }
    }

    /// How many `epoch()` calls have started (only counted by
    /// [`with_slow_epochs`](ManualWake::with_slow_epochs)).
    pub fn epoch_calls(&self) -> u64 {
        self.slow
            .as_ref()
            .map_or(0, |s| s.calls.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl WakeSource for ManualWake {
    fn epoch(&self) -> Epoch {
        if let Some(slow) = &self.slow {
            slow.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(slow.delay);
        }
        self.cell.epoch()
    }

    fn wait_past(&self, seen: Epoch, deadline: Option<Instant>) -> Result<Epoch, WakeError> {
        self.cell.wait_past(seen, deadline)
    }

    fn kick(&self) {
        self.cell.advance();
    }
}

/// A manual wake is also a provider that hands out itself for every file: code under test
/// that asks for the wake source of its database gets the one the test kicks.
impl WakeProvider for ManualWake {
    fn wake_for(&self, _db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
        Ok(Arc::new(self.clone()))
    }
}

/// The process-wide hook that same-process writers call after their commit.
static KICK_HOOK: OnceLock<fn(&Path)> = OnceLock::new();

/// Install the function that [`kick_after_commit`] calls; the first call wins.
///
/// honker-wake's Hub installs one that advances the epoch of the watcher for that file, so a
/// listener in the same process wakes in microseconds instead of at the next poll.
pub fn set_kick_hook(hook: fn(&Path)) {
    let _ = KICK_HOOK.set(hook);
}

/// Tell same-process waiters that `conn` has just committed a honker write.
///
/// Does nothing inside an open transaction (the commit has not happened yet: the caller's
/// `COMMIT` will be seen by the watcher instead), for databases with no file, or when no Hub runs
/// in this process. Never fails: a kick is only a latency optimisation.
pub fn kick_after_commit(conn: &rusqlite::Connection) {
    let Some(hook) = KICK_HOOK.get() else {
        return;
    };
    if !conn.is_autocommit() {
        return;
    }
    if let Some(path) = conn.path().filter(|p| !p.is_empty()) {
        hook(Path::new(path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn wait_past_returns_at_once_when_epoch_already_moved() {
        let w = ManualWake::new();
        let seen = w.epoch();
        w.kick();
        assert_eq!(w.wait_past(seen, None), Ok(Epoch(1)));
    }

    #[test]
    fn wait_past_times_out_with_same_epoch() {
        let w = ManualWake::new();
        let deadline = Instant::now() + Duration::from_millis(5);
        assert_eq!(w.wait_past(w.epoch(), Some(deadline)), Ok(Epoch(0)));
    }

    #[test]
    fn kick_from_another_thread_wakes_a_waiter() {
        let w = ManualWake::new();
        let seen = w.epoch();
        let w2 = w.clone();
        let t = thread::spawn(move || w2.wait_past(seen, None));
        while w.waiters() == 0 {
            thread::yield_now();
        }
        w.kick();
        assert_eq!(t.join().unwrap(), Ok(Epoch(1)));
        assert_eq!(w.waiters(), 0);
    }

    #[test]
    fn failure_reaches_current_and_future_waiters() {
        let w = ManualWake::new();
        let w2 = w.clone();
        let t = thread::spawn(move || w2.wait_past(Epoch(0), None));
        while w.waiters() == 0 {
            thread::yield_now();
        }
        let err = WakeError::Replaced {
            path: PathBuf::from("x.db"),
        };
        w.fail(err.clone());
        assert_eq!(t.join().unwrap(), Err(err.clone()));
        assert_eq!(w.wait_past(Epoch(0), None), Err(err));
    }

    #[test]
    fn parked_watcher_returns_when_a_waiter_arrives() {
        let cell = Arc::new(EpochCell::new());
        let c2 = cell.clone();
        let t = thread::spawn(move || c2.park_watcher(None));
        let c3 = cell.clone();
        let waiter = thread::spawn(move || {
            c3.wait_past(Epoch(0), Some(Instant::now() + Duration::from_secs(30)))
        });
        assert!(t.join().unwrap() >= 1);
        cell.advance();
        assert_eq!(waiter.join().unwrap(), Ok(Epoch(1)));
    }

    #[test]
    fn parked_watcher_returns_on_nudge() {
        let cell = Arc::new(EpochCell::new());
        let c2 = cell.clone();
        let t = thread::spawn(move || c2.park_watcher(None));
        // The nudge may come before the watcher parks; then park sees the changed counter only if
        // it sampled it earlier, so nudge until the thread has returned.
        while !t.is_finished() {
            cell.nudge_watcher();
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(t.join().unwrap(), 0);
    }
}
