//! The watcher machinery every backend shares: one thread with its own read-only connection whose
//! `PRAGMA data_version` decides when the epoch advances, fed by a backend-specific [`Trigger`]
//! that says when to look (a timer, a `stat` change, a kernel event).
//!
//! `data_version` changes whenever *another* connection commits, so the watcher's connection never
//! writes and every application connection (same process or not) counts as "another". A trigger
//! only ever gives hints: the epoch advances only when `data_version` moved (DESIGN.md §2), except
//! for a kernel queue overflow, which is a wake by itself.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use std::{fmt, io};

use honker_core::{Epoch, EpochCell, WakeError, WakeSource};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::backend::Backend;
use crate::file_id::FileId;

/// How often a watcher `stat`s the path to notice a replaced or deleted file.
const STAT_EVERY: Duration = Duration::from_millis(250);
/// How long `start` keeps retrying a busy baseline read before giving up.
const START_BUSY_BUDGET: Duration = Duration::from_secs(5);
/// How long polls may keep failing (other than busy) before the watcher gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(5);
/// The longest pause between reconnect attempts while polls fail.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// After a hint, `data_version` is polled back to back (yielding the CPU in between) this long...
const SETTLE_SPIN: Duration = Duration::from_micros(300);
/// ...then every [`SETTLE_FAST_STEP`] until this long after the last hint or change...
const SETTLE_FAST: Duration = Duration::from_millis(2);
const SETTLE_FAST_STEP: Duration = Duration::from_micros(50);
/// ...then at doubling intervals from 250 µs, until this long after the last hint or change (a
/// writer with `synchronous=FULL` fsyncs the WAL between the frames' event and the commit
/// becoming visible: milliseconds on a real disk, more when it stalls).
const SETTLE_TAIL: Duration = Duration::from_secs(1);

/// Where a watcher learns which process it runs in: `std::process::id` outside tests.
pub(crate) type PidFn = fn() -> u32;

/// Counters of a running watcher, for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatcherStats {
    /// Polls of `PRAGMA data_version` that ran (busy or not).
    pub polls: u64,
    /// Polls skipped because another connection held a lock (`SQLITE_BUSY`/`SQLITE_LOCKED`).
    pub busy_skips: u64,
    /// Polls that failed with an error other than busy (the connection is then replaced).
    pub errors: u64,
    /// Times the watcher replaced its connection after an error (each fired one wake).
    pub reconnects: u64,
    /// Hints from the backend's trigger (a `stat` change, a kernel event); always 0 for
    /// [`DataVersion`](crate::DataVersion).
    pub hints: u64,
    /// Kernel event queue overflows (each one is a wake).
    pub overflows: u64,
}

/// What a trigger reports when its wait ends.
// Hints, overflows and moves come only from the optional backends.
#[cfg_attr(not(all(feature = "stat", feature = "kernel")), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum Signal {
    /// The deadline passed (or the trigger returned early for no reason worth reporting).
    Due,
    /// Something about the database files changed: confirm with `data_version`.
    Hint,
    /// Events were lost: wake, then confirm.
    Overflow,
    /// The database's name was removed or renamed: `stat` it now.
    Moved,
    /// A claiming process's liveness lock file was closed after writing: the process may have
    /// died holding jobs. Not a commit, so not settled on `data_version`: the epoch advances at
    /// once so claimers look (a spare wake, which is always allowed).
    Released,
}

/// The backend-specific half of a watcher: tells the watcher thread when to look.
pub(crate) trait Trigger: Send {
    /// Block until a hint arrives or `until` passes, returning early once `quit()` is true (it
    /// is true when the watcher should stop or park).
    fn wait(&mut self, until: Instant, quit: &dyn Fn() -> bool) -> Signal;

    /// Called with `true` before the watcher parks (no waiter) and with `false` once it wakes,
    /// before it polls `data_version`. A trigger whose events cost every writer something (the
    /// kernel queues an inotify event for each write to the WAL, in the writer's own system
    /// call) stops the per-write ones while parked: nobody would read them, and the poll that
    /// follows unparking covers every commit made meanwhile.
    fn quiet(&mut self, _quiet: bool) {}
}

/// Wakes a trigger blocked in [`Trigger::wait`] from another thread (shutdown, a new waiter).
pub(crate) trait Stopper: Send + Sync {
    fn wake(&self);
}

/// A trigger ready to run, as a backend builds it before the watcher reads its baseline.
pub(crate) struct Armed {
    pub(crate) trigger: Box<dyn Trigger>,
    pub(crate) stopper: Option<Arc<dyn Stopper>>,
    /// How often `data_version` is polled with no hint at all.
    pub(crate) floor: Duration,
    /// For the raw-event control test only: advance the epoch on every hint, unconfirmed.
    pub(crate) trust_hints: bool,
}

/// A timer trigger: the [`DataVersion`](crate::DataVersion) backend, and the fallback of others.
pub(crate) struct Sleep;

impl Trigger for Sleep {
    fn wait(&mut self, until: Instant, quit: &dyn Fn() -> bool) -> Signal {
        // Sleeps are short (one poll interval) except while failing; check `quit` every 10 ms.
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || quit() {
                return Signal::Due;
            }
            thread::sleep(left.min(Duration::from_millis(10)));
        }
    }
}

/// Builds the trigger of one backend for one file.
pub(crate) type Arm = Arc<dyn Fn(&Path) -> Result<Armed, WakeError> + Send + Sync>;

/// A watched file: one watcher thread per process (a fresh one after a `fork`).
///
/// The public backends ([`DataVersion`](crate::DataVersion), [`StatPoll`](crate::StatPoll),
/// [`Kernel`](crate::Kernel)) are thin wrappers around it; the Hub shares it directly.
pub(crate) struct Watch {
    path: PathBuf,
    backend: Backend,
    arm: Arm,
    pid_fn: PidFn,
    first: Watcher,
    /// The watcher started in a forked child, if this handle crossed a `fork`.
    forked: Mutex<Option<Arc<Watcher>>>,
    /// The highest epoch reached, written when the handle is dropped (see `last_epoch`).
    last: Arc<std::sync::atomic::AtomicU64>,
}

impl Watch {
    /// Start watching `db_path` with epochs counting from `base` (the Hub starts replacements
    /// above old epochs).
    pub(crate) fn start(
        db_path: &Path,
        backend: Backend,
        arm: Arm,
        pid_fn: PidFn,
        base: u64,
    ) -> Result<Watch, WakeError> {
        let path = std::fs::canonicalize(db_path).map_err(|e| WakeError::Start {
            path: db_path.to_owned(),
            reason: format!("cannot resolve the path: {e}"),
        })?;
        let first = Watcher::start(&path, &arm, pid_fn, base)?;
        Ok(Watch {
            path,
            backend,
            arm,
            pid_fn,
            first,
            forked: Mutex::new(None),
            last: Arc::default(),
        })
    }

    /// Where this handle leaves the highest epoch its watchers reached when it is dropped, so the
    /// Hub can start a later watcher of the file above it.
    pub(crate) fn last_epoch(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.last.clone()
    }

    /// The watched file (canonical path).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// How many threads are blocked in `wait_past` on this watcher now.
    pub(crate) fn waiters(&self) -> usize {
        self.peek().map_or(0, |w| w.shared.cell.waiters())
    }

    /// The counters of this process's watcher.
    pub(crate) fn stats(&self) -> WatcherStats {
        self.peek()
            .map_or_else(WatcherStats::default, |w| w.shared.stats())
    }

    /// Whether the watcher of this process stopped for good (file replaced, watcher died).
    pub(crate) fn has_failed(&self) -> bool {
        self.peek()
            .is_some_and(|w| w.shared.cell.failure().is_some())
    }

    /// The id of the file this handle watches.
    pub(crate) fn file_id(&self) -> FileId {
        self.peek().map_or(self.first.shared.id, |w| w.shared.id)
    }

    /// This process's watcher without starting one: `None` in a forked child that has not used
    /// the handle yet (or while another thread of the child is starting the replacement).
    fn peek(&self) -> Option<Current<'_>> {
        let pid = (self.pid_fn)();
        if pid == self.first.pid {
            return Some(Current::First(&self.first));
        }
        let forked = match self.forked.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        forked
            .as_ref()
            .filter(|w| w.pid == pid)
            .map(|w| Current::Forked(w.clone()))
    }

    /// This process's watcher, starting a fresh one if the handle crossed a `fork`.
    fn current(&self) -> Result<Current<'_>, WakeError> {
        let pid = (self.pid_fn)();
        if pid == self.first.pid {
            return Ok(Current::First(&self.first));
        }
        let mut forked = lock(&self.forked);
        if let Some(w) = forked.as_ref().filter(|w| w.pid == pid) {
            return Ok(Current::Forked(w.clone()));
        }
        // The parent's thread does not exist in this process and its cell may have been locked by
        // a thread that is gone: leave both alone and start above every epoch handed out so far.
        let base = self.frozen_epoch(forked.as_ref()).0 + 1;
        let w = Arc::new(Watcher::start(&self.path, &self.arm, self.pid_fn, base)?);
        // Dropping a watcher of another process only forgets it (see `Watcher::drop`).
        *forked = Some(w.clone());
        Ok(Current::Forked(w))
    }

    /// The highest epoch any watcher of this handle reached, read without locking their cells.
    fn frozen_epoch(&self, forked: Option<&Arc<Watcher>>) -> Epoch {
        let first = self.first.shared.epoch();
        forked.map_or(first, |w| first.max(w.shared.epoch()))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let forked = match self.forked.try_lock() {
            Ok(g) => g.clone(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().clone(),
            Err(TryLockError::WouldBlock) => None,
        };
        let high = self.frozen_epoch(forked.as_ref()).0;
        self.last
            .fetch_max(high, std::sync::atomic::Ordering::SeqCst);
    }
}

impl WakeSource for Watch {
    fn epoch(&self) -> Epoch {
        match self.peek() {
            Some(w) => w.shared.epoch(),
            // A forked child before its first wait: any epoch below the replacement's base works,
            // since a wait on it returns at once.
            None => self.first.shared.epoch(),
        }
    }

    fn wait_past(&self, seen: Epoch, deadline: Option<Instant>) -> Result<Epoch, WakeError> {
        self.current()?.shared.wait_past(seen, deadline)
    }

    fn kick(&self) {
        // In a forked child with no replacement yet there is nobody to wake: the first wait
        // starts a watcher above every earlier epoch and returns at once.
        if let Some(w) = self.peek() {
            w.shared.cell.advance();
        }
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

/// The watcher of this process: borrowed when it is the first, shared when started after a fork.
enum Current<'a> {
    First(&'a Watcher),
    Forked(Arc<Watcher>),
}

impl std::ops::Deref for Current<'_> {
    type Target = Watcher;

    fn deref(&self) -> &Watcher {
        match self {
            Current::First(w) => w,
            Current::Forked(w) => w,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single assignment, so a poisoned lock is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One watcher thread and what it shares with the handles.
struct Watcher {
    shared: Arc<Shared>,
    stopper: Option<Arc<dyn Stopper>>,
    /// The process that spawned the thread.
    pid: u32,
    pid_fn: PidFn,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    fn start(path: &Path, arm: &Arm, pid_fn: PidFn, base: u64) -> Result<Watcher, WakeError> {
        // Arm the trigger before the baseline is read: a commit after the baseline then always
        // raises a hint (or moves the floor poll).
        let armed = arm(path)?;
        let (id, poller) = connect_stable(path)?;
        let shared = Arc::new(Shared {
            cell: EpochCell::new(),
            base,
            stop: AtomicBool::new(false),
            path: path.to_owned(),
            id,
            polls: AtomicU64::new(0),
            busy_skips: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            hints: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        });
        let stopper = armed.stopper.clone();
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("honker-wake".into())
            .spawn(move || watch(&thread_shared, poller, armed))
            .map_err(|e| WakeError::Start {
                path: path.to_owned(),
                reason: format!("cannot spawn the watcher thread: {e}"),
            })?;
        Ok(Watcher {
            shared,
            stopper,
            pid: pid_fn(),
            pid_fn,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if (self.pid_fn)() != self.pid {
            // A forked child: the thread does not exist here. Joining would wait forever, and the
            // connection it owns must not be closed from this process. Leak both.
            std::mem::forget(thread);
            return;
        }
        self.shared.stop.store(true, Ordering::Release);
        // A nudge that lands between the thread's stop check and its park is not seen by the
        // park, so nudge until the thread has gone.
        while !thread.is_finished() {
            self.shared.cell.nudge_watcher();
            if let Some(s) = &self.stopper {
                s.wake();
            }
            thread::sleep(Duration::from_micros(100));
        }
        // The thread catches its own panics, so join cannot fail.
        let _ = thread.join();
    }
}

/// What the handles and the thread of one watcher share.
struct Shared {
    cell: EpochCell,
    /// Epochs count from here (above the epochs of a watcher this one replaces).
    base: u64,
    stop: AtomicBool,
    path: PathBuf,
    id: FileId,
    polls: AtomicU64,
    busy_skips: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    hints: AtomicU64,
    overflows: AtomicU64,
}

impl Shared {
    fn epoch(&self) -> Epoch {
        Epoch(self.base + self.cell.epoch().0)
    }

    fn wait_past(&self, seen: Epoch, deadline: Option<Instant>) -> Result<Epoch, WakeError> {
        if seen.0 < self.base {
            // Sampled from a watcher this one replaced: every such epoch is in the past.
            if let Some(e) = self.cell.failure() {
                return Err(e);
            }
            return Ok(self.epoch());
        }
        let e = self.cell.wait_past(Epoch(seen.0 - self.base), deadline)?;
        Ok(Epoch(self.base + e.0))
    }

    fn stats(&self) -> WatcherStats {
        WatcherStats {
            polls: self.polls.load(Ordering::Relaxed),
            busy_skips: self.busy_skips.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            hints: self.hints.load(Ordering::Relaxed),
            overflows: self.overflows.load(Ordering::Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `Err(Replaced)` when the path now names another file or nothing.
    fn check_file(&self) -> Result<(), WakeError> {
        match FileId::of(&self.path) {
            Ok(id) if id == self.id => Ok(()),
            Err(e) if e.kind() != io::ErrorKind::NotFound => Ok(()), // cannot tell; keep watching
            _ => Err(WakeError::Replaced {
                path: self.path.clone(),
            }),
        }
    }
}

/// Open the watcher's connection and read the baseline, making sure the file did not change
/// under us between the `stat` and the open.
fn connect_stable(path: &Path) -> Result<(FileId, Poller), WakeError> {
    let start_error = |reason: String| WakeError::Start {
        path: path.to_owned(),
        reason,
    };
    let deadline = Instant::now() + START_BUSY_BUDGET;
    loop {
        let before = FileId::of(path).map_err(|e| start_error(format!("cannot stat: {e}")))?;
        let poller = Poller::connect(path, deadline).map_err(|e| start_error(e.to_string()))?;
        let after = FileId::of(path).map_err(|e| start_error(format!("cannot stat: {e}")))?;
        if before == after {
            return Ok((after, poller));
        }
        if Instant::now() >= deadline {
            return Err(start_error(
                "the file kept being replaced while the watcher started".into(),
            ));
        }
    }
}

/// The thread's body: run the poll loop, and turn every way it can end other than a stop into a
/// failure that waiters see.
fn watch(shared: &Shared, poller: Poller, armed: Armed) {
    let outcome = catch_unwind(AssertUnwindSafe(|| poll_loop(shared, poller, armed)));
    let err = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            WakeError::WatcherDied {
                path: shared.path.clone(),
                reason: format!("watcher thread panicked: {what}"),
            }
        }
    };
    shared.cell.fail(err);
}

/// When to poll `data_version` after a hint: back to back at first (in WAL mode the event comes
/// before the commit is visible, typically by tens of microseconds), then less and less often.
#[derive(Debug, Default)]
struct Settle {
    /// The last hint, or the last change of `data_version` seen while settling.
    since: Option<Instant>,
    tail_step: Duration,
}

impl Settle {
    fn restart(&mut self, now: Instant) {
        self.since = Some(now);
        self.tail_step = Duration::ZERO;
    }

    /// `data_version` moved: another commit may be right behind it, keep looking closely.
    fn moved(&mut self, now: Instant) {
        if self.since.is_some() {
            self.restart(now);
        }
    }

    /// The next poll while settling; `None` once settled.
    fn next(&mut self, now: Instant) -> Option<Instant> {
        let since = now.saturating_duration_since(self.since?);
        if since < SETTLE_SPIN {
            Some(now)
        } else if since < SETTLE_FAST {
            Some(now + SETTLE_FAST_STEP)
        } else if since < SETTLE_TAIL {
            // A commit that becomes visible d after the fast window is seen within about 2d.
            self.tail_step = (self.tail_step * 2).max(Duration::from_micros(250));
            Some(now + self.tail_step)
        } else {
            self.since = None;
            None
        }
    }
}

/// After a liveness lock file closed, wake claimers again after these delays: the kernel raises
/// the close event before it releases the file's lock, so a claimer that looked at once may still
/// have found the holder alive.
const RELEASE_FOLLOW_UPS: [Duration; 4] = [
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(25),
    Duration::from_millis(100),
];

/// A spare wake for claimers: forget which holders were seen alive, so they look again.
fn released_wake(shared: &Shared) {
    honker_core::liveness::forget_alive();
    shared.cell.advance();
}

fn poll_loop(shared: &Shared, mut poller: Poller, mut armed: Armed) -> Result<(), WakeError> {
    let mut next_stat = Instant::now() + STAT_EVERY;
    let mut next_check = Instant::now();
    let mut failing_since: Option<Instant> = None;
    let mut pause = armed.floor;
    let mut settle = Settle::default();
    // Spare wakes after a liveness lock file closed (see `Signal::Released`).
    let mut released: Option<(Instant, usize)> = None;
    let quit = || shared.stop.load(Ordering::Acquire) || shared.cell.waiters() == 0;
    // Watchers with a slow floor (Kernel) stat as often as they poll: renames and deletions
    // raise events, this is the backstop.
    let stat_every = STAT_EVERY.max(armed.floor);
    let stat_slack = armed.floor.min(STAT_EVERY) / 2;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        if shared.cell.waiters() == 0 {
            armed.trigger.quiet(true);
            shared.cell.park_watcher(None);
            // Events again before the poll below, so a commit after that poll raises one.
            armed.trigger.quiet(false);
            // A waiter may arrive long after the last look: look at the file and at
            // `data_version` at once (hints that came meanwhile were only hints).
            let now = Instant::now();
            next_stat = now;
            next_check = now;
            continue;
        }
        let now = Instant::now();
        // A stat due soon is done in this wake-up, so an idle watcher wakes once per floor.
        let stat_due = now + stat_slack >= next_stat;
        if now >= next_check {
            Shared::bump(&shared.polls);
            match poller.poll() {
                Poll::Same => failing_since = None,
                Poll::Changed => {
                    failing_since = None;
                    shared.cell.advance();
                    settle.moved(now);
                }
                Poll::Reconnected => {
                    // A commit may have landed between the old baseline and the new one.
                    failing_since = None;
                    Shared::bump(&shared.reconnects);
                    shared.cell.advance();
                }
                Poll::Busy => Shared::bump(&shared.busy_skips),
                Poll::Failed(e) => {
                    Shared::bump(&shared.errors);
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= GIVE_UP_AFTER {
                        shared.check_file()?;
                        return Err(WakeError::WatcherDied {
                            path: shared.path.clone(),
                            reason: format!("PRAGMA data_version kept failing: {e}"),
                        });
                    }
                }
            }
            // Back off while the connection keeps failing, so a broken file does not cost a
            // reopen per millisecond.
            let now = Instant::now();
            next_check = if failing_since.is_some() {
                pause = (pause * 2).min(MAX_BACKOFF);
                now + pause
            } else {
                pause = armed.floor;
                settle.next(now).unwrap_or(now + armed.floor)
            };
        }
        let now = Instant::now();
        if stat_due {
            next_stat = now + stat_every;
            shared.check_file()?;
        }
        if let Some((_, step)) = released.filter(|(at, _)| *at <= now) {
            released_wake(shared);
            released = RELEASE_FOLLOW_UPS
                .get(step + 1)
                .map(|d| (now + *d, step + 1));
        }
        if next_check <= now {
            // Settling closely: give the committing thread the CPU, then look again.
            thread::yield_now();
        }
        let until = next_check.min(next_stat);
        let until = released.map_or(until, |(at, _)| until.min(at));
        match armed.trigger.wait(until, &quit) {
            Signal::Due => {}
            Signal::Hint => {
                Shared::bump(&shared.hints);
                if armed.trust_hints {
                    // The control arm of the raw-event race test: the bug this backend avoids.
                    shared.cell.advance();
                    continue;
                }
                let now = Instant::now();
                settle.restart(now);
                next_check = now;
            }
            Signal::Overflow => {
                Shared::bump(&shared.overflows);
                // Events were dropped: any of them may have been a commit.
                shared.cell.advance();
                let now = Instant::now();
                settle.restart(now);
                next_check = now;
            }
            Signal::Moved => next_stat = Instant::now(),
            Signal::Released => {
                released_wake(shared);
                released = Some((Instant::now() + RELEASE_FOLLOW_UPS[0], 0));
            }
        }
    }
}

/// The result of one poll.
enum Poll {
    Same,
    Changed,
    /// A new connection and baseline replaced a failed one.
    Reconnected,
    Busy,
    Failed(rusqlite::Error),
}

/// The watcher's connection and the last `data_version` it saw.
struct Poller {
    path: PathBuf,
    conn: Option<Connection>,
    baseline: i64,
}

impl Poller {
    /// Open a connection and read the baseline, retrying while busy until `deadline`.
    fn connect(path: &Path, deadline: Instant) -> rusqlite::Result<Poller> {
        let conn = open(path)?;
        loop {
            match data_version(&conn) {
                Ok(baseline) => {
                    return Ok(Poller {
                        path: path.to_owned(),
                        conn: Some(conn),
                        baseline,
                    });
                }
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn poll(&mut self) -> Poll {
        let Some(conn) = &self.conn else {
            return match open(&self.path).and_then(|c| Ok((data_version(&c)?, c))) {
                Ok((baseline, conn)) => {
                    self.conn = Some(conn);
                    self.baseline = baseline;
                    Poll::Reconnected
                }
                Err(e) if is_busy(&e) => Poll::Busy,
                Err(e) => Poll::Failed(e),
            };
        };
        match data_version(conn) {
            Ok(v) if v == self.baseline => Poll::Same,
            Ok(v) => {
                self.baseline = v;
                Poll::Changed
            }
            // Keep the connection: a new one would take a new baseline and hide a commit.
            Err(e) if is_busy(&e) => Poll::Busy,
            Err(e) => {
                self.conn = None;
                Poll::Failed(e)
            }
        }
    }
}

/// The watcher's connection: read-only (it never writes, so every other connection's commit
/// moves its `data_version`), never creating the file, no busy wait (a busy poll is skipped).
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::ZERO)?;
    Ok(conn)
}

/// One poll. The cached statement is reset when the row is read, so no read transaction (which
/// would pin the WAL and make `wal_checkpoint(TRUNCATE)` fail) outlives the call.
fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}
