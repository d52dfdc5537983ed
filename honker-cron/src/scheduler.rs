//! The scheduler runtime: a thread that ticks, then sleeps exactly until the next fire time or a
//! wake, and repeats.
//!
//! It follows the wake protocol: sample the epoch, tick, read the earliest `next_fire_ms`, and
//! wait past the sampled epoch with that deadline. Any commit to the file (a schedule registered,
//! changed or removed by any process) advances the epoch, so the scheduler re-reads the deadline
//! at once; nothing polls the schedule table. Any number of schedulers may run on one file (see
//! [`tick`](crate::tick()) for why they never fire a boundary twice).

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use honker_core::{Clock, SystemClock, WakeSource};
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::store::next_due;
use crate::tick::{TickReport, tick};

/// A function the scheduler calls on its thread after each tick that did something.
pub type TickHook = Arc<dyn Fn(&TickReport) + Send + Sync>;

/// How a [`Scheduler`] runs.
#[derive(Clone)]
pub struct SchedulerOptions {
    /// Where "now" comes from (default: the system clock). With a settable clock, kick the wake
    /// after moving it.
    pub clock: Arc<dyn Clock>,
    /// How long to wait before ticking again after a failed tick (default 1 s).
    pub retry_after_error: Duration,
    /// Called after every committed tick that fired, missed, paused or stopped a schedule
    /// (default: none), for logging. It runs on the scheduler's thread, so keep it short.
    pub on_tick: Option<TickHook>,
}

impl Default for SchedulerOptions {
    fn default() -> SchedulerOptions {
        SchedulerOptions {
            clock: Arc::new(SystemClock),
            retry_after_error: Duration::from_secs(1),
            on_tick: None,
        }
    }
}

impl fmt::Debug for SchedulerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerOptions")
            .field("clock", &self.clock)
            .field("retry_after_error", &self.retry_after_error)
            .field("on_tick", &self.on_tick.as_ref().map(|_| "Fn(&TickReport)"))
            .finish()
    }
}

/// What a scheduler did, as counted when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerReport {
    /// Ticks run.
    pub ticks: u64,
    /// Jobs enqueued by this scheduler.
    pub jobs: u64,
    /// Ticks that failed (and were retried).
    pub errors: u64,
    /// Schedules this scheduler paused because the queue refused their job (each stays paused,
    /// with the refusal in its `last_error`, until resumed or registered again).
    pub refused: u64,
    /// The last failed tick's error (code first), or the last schedule paused for a refusal.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    ticks: AtomicU64,
    jobs: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A running scheduler thread; stop it with [`shutdown`](Scheduler::shutdown) (dropping it
/// also stops it, without waiting).
#[derive(Debug)]
pub struct Scheduler {
    shared: Arc<Shared>,
    wake: Arc<dyn WakeSource>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Scheduler {
    /// Open `db_path` (a connection of the scheduler's own) and start ticking.
    ///
    /// # Errors
    ///
    /// Opening or migrating the database; a failure to spawn the thread.
    pub fn start(
        db_path: &Path,
        wake: Arc<dyn WakeSource>,
        opts: SchedulerOptions,
    ) -> Result<Scheduler> {
        let conn = honker_core::open(db_path)?;
        Scheduler::with_connection(conn, wake, opts)
    }

    /// Start ticking on `conn`, which the scheduler owns from now on.
    ///
    /// # Errors
    ///
    /// A failure to spawn the thread (`arg.invalid` naming it).
    pub fn with_connection(
        conn: Connection,
        wake: Arc<dyn WakeSource>,
        opts: SchedulerOptions,
    ) -> Result<Scheduler> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("honker-scheduler".into())
            .spawn({
                let shared = Arc::clone(&shared);
                let wake = Arc::clone(&wake);
                move || run(&conn, &*wake, &opts, &shared)
            })
            .map_err(|e| {
                Error::Core(honker_core::Error::InvalidArgument {
                    name: "thread",
                    reason: format!("cannot spawn the scheduler thread: {e}"),
                })
            })?;
        Ok(Scheduler {
            shared,
            wake,
            thread: Some(thread),
        })
    }

    /// Jobs enqueued so far.
    pub fn jobs(&self) -> u64 {
        self.shared.jobs.load(Ordering::Relaxed)
    }

    /// Ticks run so far.
    pub fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }

    /// Stop the thread and wait for it.
    ///
    /// # Errors
    ///
    /// The error that ended the thread early (the wake source failed, e.g. `wake.replaced`
    /// when the file was deleted).
    pub fn shutdown(mut self) -> Result<SchedulerReport> {
        self.stop();
        let outcome = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Core(honker_core::Error::InvalidArgument {
                name: "scheduler",
                reason: "the scheduler thread panicked".into(),
            })),
            None => Ok(()),
        };
        outcome?;
        Ok(self.report())
    }

    fn report(&self) -> SchedulerReport {
        SchedulerReport {
            ticks: self.shared.ticks.load(Ordering::Relaxed),
            jobs: self.shared.jobs.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            last_error: self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake.kick();
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

fn run(
    conn: &Connection,
    wake: &dyn WakeSource,
    opts: &SchedulerOptions,
    shared: &Shared,
) -> Result<()> {
    loop {
        // 1. Sample before looking, so a commit (or `stop`'s kick) after this point ends the
        //    wait at once. The stop flag is looked at after the sample, like any other work:
        //    checked before it, a kick landing between the check and the sample would already
        //    be inside the sample, and the wait would sleep until the next fire (for ever with
        //    no schedules).
        let seen = wake.epoch();
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        // 2. Look: fire what is due. The due check is a plain indexed read, so wakes caused by
        //    unrelated commits cost no write lock.
        let deadline = match step(conn, opts, shared) {
            Ok(Step::Again) => continue,
            Ok(Step::Sleep(until)) => until,
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("{}: {e}", e.code()));
                Some(Instant::now() + opts.retry_after_error)
            }
        };
        // 3. Sleep until the next fire time or a wake.
        wake.wait_past(seen, deadline)
            .map_err(|e| Error::Core(honker_core::Error::Wake(e)))?;
    }
}

enum Step {
    Again,
    Sleep(Option<Instant>),
}

fn step(conn: &Connection, opts: &SchedulerOptions, shared: &Shared) -> Result<Step> {
    let now = opts.clock.now();
    match next_due(conn)? {
        Some(next) if next <= now => {
            let report = tick(conn, now)?;
            shared.ticks.fetch_add(1, Ordering::Relaxed);
            shared
                .jobs
                .fetch_add(report.jobs() as u64, Ordering::Relaxed);
            for r in &report.refused {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("schedule {:?} paused: {}", r.schedule, r.error));
            }
            let eventful = !report.fires.is_empty()
                || report.missed > 0
                || !report.refused.is_empty()
                || !report.broken.is_empty();
            if let Some(hook) = opts.on_tick.as_ref().filter(|_| eventful) {
                // The tick is committed: a panicking hook is reported, never fatal.
                let call = std::panic::AssertUnwindSafe(|| hook(&report));
                if std::panic::catch_unwind(call).is_err() {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some("the on_tick hook panicked".into());
                }
            }
            Ok(Step::Again)
        }
        Some(next) => Ok(Step::Sleep(Some(Instant::now() + now.until(next)))),
        None => Ok(Step::Sleep(None)),
    }
}
