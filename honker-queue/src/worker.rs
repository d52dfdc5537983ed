//! The blocking [`Worker`]: handler threads fed by one writer thread that claims in batches,
//! commits the outcomes of many jobs in one transaction and follows the wake loop of DESIGN.md
//! §2, with automatic heartbeats, retries on handler errors and panics, and release of the jobs
//! it holds on shutdown.
//!
//! Threads of one worker, each with its own connection:
//! - the **writer** is claimer and completer. It claims up to [`WorkerOptions::batch`] jobs in
//!   one statement, as many as there are free slots (one per handler thread plus
//!   [`WorkerOptions::prefetch`] more waiting), and hands them to the handler threads. It
//!   commits the handlers' outcomes (acks with their results, retries, fails) in one write
//!   transaction for many jobs, every [`WorkerOptions::complete_every`] or as soon as
//!   `batch` outcomes wait or no handler is still running, with the next claim in that same
//!   transaction (the way River's batch completer works). Each outcome is written under the
//!   token its job was claimed with: a lost lease refuses that job's outcome and no other. When
//!   nothing is due it sleeps until a commit moves the epoch, until [`Queue::next_due`] (the next
//!   `run_at`, lease expiry or expiry time) or until a handler's first outcome kicks it: never
//!   an interval poll of the table. After a deadline it really waited for, an empty claim (the
//!   write lock was busy, another worker won) looks again a few times over a short while before
//!   sleeping long again;
//! - the **handler threads** run the handler and hand its outcome to the writer. A
//!   transactional worker's handler thread instead runs the handler and writes its outcome in
//!   one transaction of its own per job (claims are still batched by the writer);
//! - the **heartbeat** thread extends the lease of every held job (prefetched, running, or
//!   waiting for the completer) well before it runs out, and marks a job whose lease was lost,
//!   so its handler does not run or its outcome is not handed back.
//!
//! Delivery is at least once: an outcome is durable only once the completer's transaction
//! commits. A worker that dies between a handler's return and that commit leaves the job
//! running under its lease; it is claimed again (one more attempt) when the lease ends, or at
//! once when the claimer finds the dead process's liveness lock free. No job is lost, and a
//! job is never acked by a token that no longer holds it. Handlers must therefore be
//! idempotent, or transactional ([`Worker::start_transactional`]), whose effects commit with the
//! ack.
//!
//! Connections of a worker use a short jittered busy handler ([`fair_busy_handler`]) instead of
//! SQLite's growing backoff, so worker processes share the write lock fairly
//! (ARCHITECTURE.md, "Fair sharing of the write lock").

mod state;
mod threads;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use honker_core::WakeSource;
use rusqlite::Connection;

use crate::{ClaimedJob, Error, Queue};

pub use honker_core::fair_busy_handler;

use self::state::{Phase, Shared};
use self::threads::{handler_loop, heartbeat_loop, release_all, writer_loop};

/// How many times the claimer looks again, after a deadline it really waited for, before it
/// goes back to sleeping until the next deadline.
const BRIEF_RETRIES: u32 = 8;
/// The first pause between such looks; each later one doubles (2 ms, 4 ms ... 256 ms: about
/// half a second in all).
const BRIEF_PAUSE: Duration = Duration::from_millis(2);
/// The longest pause after an unexpected claim error, before the next try.
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How many errors a [`WorkerReport`] keeps (the first ones; the rest are only counted).
const MAX_KEPT_ERRORS: usize = 16;
/// The default lease when neither the options nor the queue say (the queue always does).
const FALLBACK_LEASE_MS: i64 = 30_000;

/// How a handler asks for its job to be treated when it did not succeed.
///
/// Any error converts into one with `?` (as [`HandlerError::retry`]); it records the error's
/// message, and its sources, as the job's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
    delay_ms: Option<i64>,
    fail: bool,
}

impl HandlerError {
    /// Retry the job with the queue's backoff (dead when its attempts are used up).
    pub fn retry(message: impl Into<String>) -> HandlerError {
        HandlerError {
            message: message.into(),
            delay_ms: None,
            fail: false,
        }
    }

    /// Retry the job after `delay_ms` milliseconds instead of the queue's backoff.
    pub fn retry_after(message: impl Into<String>, delay_ms: i64) -> HandlerError {
        HandlerError {
            message: message.into(),
            delay_ms: Some(delay_ms.max(0)),
            fail: false,
        }
    }

    /// Move the job straight to the dead letters: retrying cannot help.
    pub fn fail(message: impl Into<String>) -> HandlerError {
        HandlerError {
            message: message.into(),
            delay_ms: None,
            fail: true,
        }
    }

    /// The message recorded as the job's `last_error`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> HandlerError {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        HandlerError::retry(message)
    }
}

/// What a handler returns: `Ok(None)` acks, `Ok(Some(json))` acks and saves `json` as the job's
/// result in the same transaction, `Err` retries or fails.
pub type HandlerResult = Result<Option<String>, HandlerError>;

/// Options of a [`Worker`]; `WorkerOptions::default()` suits most queues.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Handler threads: how many jobs run at once (default 4, at least 1).
    pub threads: usize,
    /// The most jobs one claim statement takes (default 32), and how many waiting outcomes make
    /// the completer commit at once.
    pub batch: usize,
    /// Claimed jobs the worker may hold beyond one per handler thread, waiting for a free
    /// thread (their leases kept by the heartbeats); `None` means two batches, so handlers work
    /// through one while the completer commits the other's outcomes. `Some(0)` claims only
    /// for idle threads, so no claimed job waits behind another (best for long jobs shared by
    /// many workers).
    pub prefetch: Option<usize>,
    /// The longest a handler's outcome waits for the completer's transaction (default 5 ms).
    /// Outcomes are committed sooner when `batch` of them wait or no handler is still running.
    pub complete_every: Duration,
    /// The lease of each claim, in milliseconds; `None` uses the queue's configured lease.
    pub lease_ms: Option<i64>,
    /// How often a held job's lease is extended; `None` means a third of the lease.
    pub heartbeat_every: Option<Duration>,
    /// How long [`Worker::shutdown`] lets running handlers finish before it releases their jobs
    /// (default 10 s).
    pub shutdown_grace: Duration,
    /// The name recorded with each claim; `None` makes one from the process id.
    pub worker_id: Option<String>,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            threads: 4,
            batch: 32,
            prefetch: None,
            complete_every: Duration::from_millis(5),
            lease_ms: None,
            heartbeat_every: None,
            shutdown_grace: Duration::from_secs(10),
            worker_id: None,
        }
    }
}

/// What a worker did, from [`Worker::report`] or [`Worker::shutdown`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs acked (handler returned `Ok`).
    pub acked: u64,
    /// Jobs given back for a retry (handler error or panic), dead ones included.
    pub retried: u64,
    /// Jobs a handler failed on purpose ([`HandlerError::fail`]): straight to the dead letters.
    pub failed: u64,
    /// Jobs that went to the dead letters: retries with no attempts left, and failed ones.
    pub dead: u64,
    /// Handler panics (each also counted as a retry).
    pub panics: u64,
    /// Jobs whose lease was lost (reclaimed, cancelled or expired) before their outcome could be
    /// handed back; their outcome was dropped.
    pub lease_lost: u64,
    /// Jobs released on shutdown without using an attempt.
    pub released: u64,
    /// Handler threads still running a handler when shutdown gave up waiting (left detached).
    pub abandoned_threads: u64,
    /// Claim statements run, and how many of them found nothing.
    pub claims: u64,
    /// Claims that found nothing.
    pub empty_claims: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Errors the worker met and survived (the first few; `error_count` counts all).
    pub errors: Vec<Error>,
    /// All errors met, kept or not.
    pub error_count: u64,
    /// The error that stopped the claimer early (a replaced database file, say), if any.
    pub fatal: Option<Error>,
}

impl WorkerReport {
    fn record(&mut self, e: Error) {
        self.error_count += 1;
        if self.errors.len() < MAX_KEPT_ERRORS {
            self.errors.push(e);
        }
    }

    /// A copy of the counters (errors are not cloned; only their count is kept).
    fn counters(&self) -> WorkerReport {
        WorkerReport {
            claimed: self.claimed,
            acked: self.acked,
            retried: self.retried,
            failed: self.failed,
            dead: self.dead,
            panics: self.panics,
            lease_lost: self.lease_lost,
            released: self.released,
            abandoned_threads: self.abandoned_threads,
            claims: self.claims,
            empty_claims: self.empty_claims,
            heartbeats: self.heartbeats,
            errors: Vec::new(),
            error_count: self.error_count,
            fatal: None,
        }
    }
}

/// The handler a worker runs, shared by its threads.
type Handler = dyn Fn(&Connection, &ClaimedJob) -> HandlerResult + Send + Sync + 'static;

/// A blocking worker over one queue.
///
/// Its threads, each with its own connection: a writer that claims in batches (for idle handler
/// threads and a prefetch buffer), commits the handlers' outcomes many jobs to a transaction,
/// and otherwise sleeps until a commit or the queue's next due time (never an interval poll),
/// the handler threads, and a heartbeat thread that extends every held lease a third of the way
/// through it. A handler error or panic becomes a retry with the error recorded; a job whose
/// lease was lost is not handed back. Delivery is at least once (see the module docs). Drop
/// shuts it down like [`Worker::shutdown`], ignoring errors.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::{Duration, Instant};
/// use honker_queue::{EnqueueOptions, HandlerError, Queue, Worker, WorkerOptions};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("app.db");
/// let conn = honker_core::open(&path)?;
/// let emails = Queue::new("emails")?;
/// emails.enqueue(&conn, r#"{"to": "a@example.com"}"#, &EnqueueOptions::default())?;
///
/// let wake = honker_wake::wake_for(&path)?;
/// let worker = Worker::start(&path, emails, wake, WorkerOptions::default(), |job| {
///     let msg: serde_json::Value = serde_json::from_str(&job.payload)?; // an Err retries
///     if msg["to"].is_null() {
///         return Err(HandlerError::fail("no recipient")); // straight to the dead letters
///     }
///     Ok(None) // ack
/// })?;
/// let deadline = Instant::now() + Duration::from_secs(30);
/// while worker.report().acked < 1 && Instant::now() < deadline {
///     std::thread::sleep(Duration::from_millis(5));
/// }
/// let report = worker.shutdown()?;
/// assert_eq!(report.acked, 1);
/// # Ok(()) }
/// ```
pub struct Worker {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<Connection>>,
    heartbeat: Option<JoinHandle<()>>,
    handlers: Vec<JoinHandle<()>>,
    db_path: PathBuf,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.shared.queue.name())
            .field("worker_id", &self.shared.worker_id)
            .field("threads", &self.handlers.len())
            .field("db_path", &self.db_path)
            .finish_non_exhaustive()
    }
}

/// Numbers the workers of this process, for their default names.
static WORKER_SEQ: AtomicU64 = AtomicU64::new(0);

impl Worker {
    /// Start a worker on `queue` in the database at `db_path`, woken by `wake` (usually
    /// `honker_wake::wake_for(db_path)`, shared by every waiter of the process).
    ///
    /// Every thread opens its own connection with [`honker_core::open`] before this returns, so
    /// a bad path fails here.
    ///
    /// # Errors
    ///
    /// As [`honker_core::open`]; `arg.invalid` for a lease or heartbeat interval that is not
    /// positive; SQLite errors reading the queue's options; `Error` when a thread cannot start.
    pub fn start(
        db_path: &Path,
        queue: Queue,
        wake: Arc<dyn WakeSource>,
        opts: WorkerOptions,
        handler: impl Fn(&ClaimedJob) -> HandlerResult + Send + Sync + 'static,
    ) -> Result<Worker, Error> {
        let handler: Arc<Handler> = Arc::new(move |_: &Connection, job: &ClaimedJob| handler(job));
        Worker::launch(db_path, queue, wake, opts, handler, false)
    }

    /// Like [`Worker::start`], but each job's handler runs inside a `BEGIN IMMEDIATE`
    /// transaction on its thread's connection, which it gets as its first argument, and the ack
    /// commits in that same transaction: the handler's writes to the database and the ack happen
    /// together or not at all. A worker killed mid-job leaves neither; the job is redelivered.
    ///
    /// When the handler returns an error or panics, its writes are rolled back and the retry is
    /// recorded in a transaction of its own. When the lease was lost meanwhile, everything rolls
    /// back. The handler must not commit or roll back the transaction itself.
    ///
    /// The handler holds the database's write lock while it runs, so the handlers of every
    /// process run one at a time: keep them short (database work, not network calls).
    ///
    /// # Errors
    ///
    /// As [`Worker::start`].
    pub fn start_transactional(
        db_path: &Path,
        queue: Queue,
        wake: Arc<dyn WakeSource>,
        opts: WorkerOptions,
        handler: impl Fn(&Connection, &ClaimedJob) -> HandlerResult + Send + Sync + 'static,
    ) -> Result<Worker, Error> {
        Worker::launch(db_path, queue, wake, opts, Arc::new(handler), true)
    }

    fn launch(
        db_path: &Path,
        queue: Queue,
        wake: Arc<dyn WakeSource>,
        opts: WorkerOptions,
        handler: Arc<Handler>,
        transactional: bool,
    ) -> Result<Worker, Error> {
        let threads = opts.threads.max(1);
        let batch = opts.batch.max(1);
        if opts.complete_every.is_zero() {
            return Err(invalid("complete_every", "must be positive"));
        }
        let claim_conn = honker_core::open(db_path)?;
        fair_busy(&claim_conn)?;
        // The completer claims a batch inside its transaction, which keeps a statement journal;
        // SQLite spills one past 64 KiB into a temporary file that it creates, writes and
        // deletes for that one statement, unless temporary storage is in memory. (Not for every
        // connection: small statements run faster with the default.)
        claim_conn
            .execute_batch("PRAGMA temp_store = MEMORY")
            .map_err(|e| Error::from(honker_core::Error::from(e)))?;
        let lease_ms = match opts.lease_ms {
            Some(ms) if ms <= 0 => return Err(invalid("lease_ms", "must be positive")),
            Some(ms) => ms,
            None => queue_lease_ms(&queue, &claim_conn)?,
        };
        let heartbeat_every = match opts.heartbeat_every {
            Some(d) if d.is_zero() => {
                return Err(invalid("heartbeat_every", "must be positive"));
            }
            Some(d) => d,
            None => Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1).max(1)),
        };
        let worker_id = opts.worker_id.clone().unwrap_or_else(|| {
            format!(
                "pid{}-w{}",
                std::process::id(),
                WORKER_SEQ.fetch_add(1, Ordering::Relaxed)
            )
        });
        let heartbeat_conn = honker_core::open(db_path)?;
        fair_busy(&heartbeat_conn)?;
        let mut handler_conns = Vec::with_capacity(threads);
        for _ in 0..threads {
            let conn = honker_core::open(db_path)?;
            if transactional {
                fair_busy(&conn)?;
            }
            handler_conns.push(conn);
        }
        let shared = Arc::new(Shared::new(
            queue,
            wake,
            state::Settings {
                threads,
                batch,
                prefetch: opts.prefetch.unwrap_or(2 * batch),
                lease_ms,
                heartbeat_every,
                shutdown_grace: opts.shutdown_grace,
                complete_every: opts.complete_every,
                // A whole batch: the next claim (of the slots they free) shares their
                // transaction while the handlers work through the batch prefetched before.
                complete_batch: batch,
            },
            worker_id,
        ));
        let mut worker = Worker {
            shared: shared.clone(),
            writer: None,
            heartbeat: None,
            handlers: Vec::with_capacity(threads),
            db_path: db_path.to_owned(),
        };
        // On an error below, dropping `worker` stops the threads already started.
        for (i, conn) in handler_conns.into_iter().enumerate() {
            let sh = shared.clone();
            let h = handler.clone();
            worker
                .handlers
                .push(spawn(&format!("honker-handler-{i}"), move || {
                    handler_loop(&sh, &conn, &*h, i, transactional);
                })?);
        }
        let sh = shared.clone();
        worker.heartbeat = Some(spawn("honker-heartbeat", move || {
            heartbeat_loop(&sh, &heartbeat_conn);
        })?);
        let sh = shared;
        worker.writer = Some(spawn("honker-writer", move || {
            writer_loop(&sh, &claim_conn);
            claim_conn
        })?);
        Ok(worker)
    }

    /// The name this worker records with its claims.
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// The counters so far (errors are counted in `error_count` but not copied).
    pub fn report(&self) -> WorkerReport {
        self.shared.lock().report.counters()
    }

    /// How many jobs the worker holds now (claimed and not yet settled).
    pub fn held(&self) -> usize {
        self.shared.lock().held.len()
    }

    /// Whether the claimer stopped on a fatal error (see [`WorkerReport::fatal`]); the worker
    /// then claims nothing more and should be shut down.
    pub fn has_failed(&self) -> bool {
        self.shared.lock().report.fatal.is_some()
    }

    /// Stop claiming, give back the prefetched jobs no handler started (without using an
    /// attempt), let running handlers finish for up to [`WorkerOptions::shutdown_grace`] while
    /// their outcomes are committed, commit every outcome waiting, release the jobs of handlers
    /// still running (without using an attempt; their outcome is then dropped), and report.
    ///
    /// # Errors
    ///
    /// The first error met while giving jobs back or committing the last outcomes (those jobs
    /// then come back when their leases expire).
    pub fn shutdown(mut self) -> Result<WorkerReport, Error> {
        self.stop()
    }

    fn stop(&mut self) -> Result<WorkerReport, Error> {
        let sh = self.shared.clone();
        {
            let mut st = sh.lock();
            st.stopping = true;
            sh.notify_everyone();
        }
        // The writer may sleep in the wake source: a kick makes it look at `stopping`. It does
        // the rest of shutdown (see `shut_down_step`) and returns its connection.
        sh.wake.kick();
        let mut first_err = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(_conn)) => {}
            // The writer never started or panicked: releasing needs a connection of its own.
            _ => match honker_core::open(&self.db_path) {
                Ok(conn) => {
                    let not_started = sh.take_phase(Phase::Ready);
                    release_all(&sh, &conn, not_started);
                    let running = sh.take_phase(Phase::Running);
                    release_all(&sh, &conn, running);
                }
                Err(e) => first_err = Some(Error::from(e)),
            },
        }
        let stuck_threads = {
            let mut st = sh.lock();
            st.heartbeat_stop = true;
            let stuck = std::mem::take(&mut st.stuck_threads);
            st.report.abandoned_threads += stuck.len() as u64;
            sh.notify_everyone();
            stuck
        };
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        for (i, h) in std::mem::take(&mut self.handlers).into_iter().enumerate() {
            if !stuck_threads.contains(&i) {
                let _ = h.join();
            }
        }
        let mut st = sh.lock();
        let mut report = std::mem::take(&mut st.report);
        drop(st);
        if let Some(e) = first_err {
            report.record(e);
            return Err(report
                .errors
                .pop()
                .unwrap_or_else(|| invalid("release", "failed")));
        }
        Ok(report)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.writer.is_some() || !self.handlers.is_empty() {
            let _ = self.stop();
        }
    }
}

fn invalid(name: &'static str, reason: &str) -> Error {
    Error::from(honker_core::Error::InvalidArgument {
        name,
        reason: reason.to_owned(),
    })
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, Error> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|e| invalid("threads", &format!("cannot start thread {name}: {e}")))
}

/// The lease the queue's options give.
fn queue_lease_ms(queue: &Queue, conn: &Connection) -> Result<i64, Error> {
    let lease = queue.options(conn)?.lease_ms;
    Ok(if lease > 0 { lease } else { FALLBACK_LEASE_MS })
}

/// Share the write lock fairly on `conn` (see [`honker_core::share_write_lock`]).
fn fair_busy(conn: &Connection) -> Result<(), Error> {
    honker_core::share_write_lock(conn).map_err(Error::from)
}

/// Run `f`, trying again a few times while it fails with `SQLITE_BUSY` (each try already waited
/// the busy timeout): settling a job should survive a long write lock held by someone else.
fn with_busy_retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if e.is_busy() && tries < 3 => tries += 1,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn any_error_converts_into_a_retry_with_its_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e: HandlerError = Outer(std::io::Error::other("inner")).into();
        assert_eq!(e.message(), "outer: inner");
        assert!(!e.fail && e.delay_ms.is_none());
        let f = HandlerError::fail("bad input");
        assert!(f.fail);
        assert_eq!(HandlerError::retry_after("later", -5).delay_ms, Some(0));
    }

    #[test]
    fn a_bad_lease_or_heartbeat_interval_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let q = Queue::new("q").unwrap();
        let wake: Arc<dyn WakeSource> = Arc::new(honker_core::ManualWake::new());
        let bad = |opts: WorkerOptions| {
            Worker::start(&path, q.clone(), wake.clone(), opts, |_| Ok(None))
                .unwrap_err()
                .code()
        };
        let lease = WorkerOptions {
            lease_ms: Some(0),
            ..WorkerOptions::default()
        };
        assert_eq!(bad(lease), "arg.invalid");
        let hb = WorkerOptions {
            heartbeat_every: Some(Duration::ZERO),
            ..WorkerOptions::default()
        };
        assert_eq!(bad(hb), "arg.invalid");
    }

    /// A worker on `path` that acks every job, woken only by `wake`, once its claimer has
    /// looked and gone to sleep.
    fn sleeping_worker(path: &Path, q: &Queue, wake: &honker_core::ManualWake) -> Worker {
        let w = Worker::start(
            path,
            q.clone(),
            Arc::new(wake.clone()),
            WorkerOptions::default(),
            |_| Ok(None),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while wake.waiters() == 0 {
            assert!(Instant::now() < deadline, "the claimer never slept");
            thread::yield_now();
        }
        w
    }

    #[test]
    fn a_worker_on_a_manual_wake_claims_after_a_kick_and_shuts_down_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = honker_core::open(&path).unwrap();
        let q = Queue::new("q").unwrap();
        let wake = honker_core::ManualWake::new();
        // The claimer looks once, finds nothing and sleeps (no deadline: nothing is scheduled).
        let w = sleeping_worker(&path, &q, &wake);
        let deadline = Instant::now() + Duration::from_secs(30);
        q.enqueue(&conn, "1", &crate::EnqueueOptions::default())
            .unwrap();
        // A manual wake advances only on kick: that is the commit notice.
        wake.kick();
        while w.report().acked < 1 {
            assert!(
                Instant::now() < deadline,
                "the kick did not wake the claimer"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let r = w.shutdown().unwrap();
        assert_eq!((r.acked, r.released, r.error_count), (1, 0, 0));
    }

    #[test]
    fn an_idle_worker_sleeps_without_polling_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        drop(honker_core::open(&path).unwrap());
        let wake = honker_core::ManualWake::new();
        let w = sleeping_worker(&path, &Queue::new("idle").unwrap(), &wake);
        let before = w.report().claims;
        // An observation window, not a synchronisation: with nothing scheduled and no commit,
        // the claimer has no deadline and must not look at the table again.
        thread::sleep(Duration::from_millis(300));
        assert_eq!(w.report().claims, before, "the idle claimer polled");
        assert_eq!(wake.waiters(), 1);
        w.shutdown().unwrap();
    }

    #[test]
    fn an_empty_look_right_after_a_deadline_looks_again_soon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = honker_core::open(&path).unwrap();
        let thief = honker_core::open(&path).unwrap();
        let q = Queue::new("q").unwrap();
        let start = Instant::now();
        let delayed = crate::EnqueueOptions {
            delay_ms: Some(1500),
            ..crate::EnqueueOptions::default()
        };
        q.enqueue(&conn, "1", &delayed).unwrap();
        // A manual wake that is never kicked: only deadlines and the brief looks can find work.
        let wake = honker_core::ManualWake::new();
        let w = sleeping_worker(&path, &q, &wake);
        // Another worker holds the write lock across the job's due time and takes the job, so
        // the claimer's look at its deadline (queued behind the lock) comes back empty.
        thief.execute_batch("BEGIN IMMEDIATE").unwrap();
        thread::sleep(
            (start + Duration::from_millis(1550)).saturating_duration_since(Instant::now()),
        );
        let stolen = q.claim(&thief, "thief", 1, Some(600_000)).unwrap();
        thief.execute_batch("COMMIT").unwrap();
        assert_eq!(stolen.len(), 1, "the job was due and free");
        thread::sleep(Duration::from_millis(30));
        // The thief gives it back. Nothing wakes the claimer and its next deadline is the
        // thief's 10-minute lease: only looking again soon after the empty look finds it.
        q.release(&thief, stolen[0].id, stolen[0].lease_token)
            .unwrap();
        while w.report().acked < 1 {
            assert!(
                Instant::now() < start + Duration::from_secs(10),
                "the claimer slept past the released job: {:?}",
                w.report()
            );
            thread::sleep(Duration::from_millis(1));
        }
        let r = w.shutdown().unwrap();
        assert!(
            r.empty_claims >= 1,
            "the deadline's look was not empty: {r:?}"
        );
        assert_eq!((r.acked, r.error_count), (1, 0));
    }
}
