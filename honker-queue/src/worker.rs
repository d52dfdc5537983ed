//! The blocking [`Worker`]: handler threads fed by one claiming thread that follows the wake loop
//! of DESIGN.md §2, with automatic heartbeats, retries on handler errors and panics, and release
//! of the jobs it holds on shutdown.
//!
//! Threads of one worker, each with its own connection:
//! - the **claimer** samples the epoch, claims up to as many jobs as there are idle handler
//!   threads (at most [`WorkerOptions::batch`]) in one statement, and when it finds none sleeps
//!   until a commit moves the epoch, or until [`Queue::next_due`] (the next `run_at`, lease
//!   expiry or expiry time): never an interval poll of the table. After a deadline it really
//!   waited for, an empty claim (the write lock was busy, another worker won) looks again a few
//!   times over a short while before sleeping long again;
//! - the **handler threads** run the handler and settle each job with its lease token: ack (with
//!   the result, if any), retry with the error recorded, or fail. A thread that just settled a
//!   job and finds none waiting for it claims its next one itself, under its own slot, so a busy
//!   queue costs no hand-over between threads; when that claim is empty, the claimer's wake loop
//!   takes over;
//! - the **heartbeat** thread extends the lease of every held job well before it runs out, and
//!   marks a job whose lease was lost, so its handler's outcome is not handed back.

mod state;
mod threads;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use honker_core::WakeSource;
use rusqlite::Connection;

use crate::{ClaimedJob, Error, Queue};

use self::state::{Held, Phase, Shared};
use self::threads::{claim_loop, handler_loop, heartbeat_loop};

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
    /// The most jobs one claim statement takes (default 32). A claim never takes more jobs than
    /// there are idle handler threads, so no claimed job waits behind another.
    pub batch: usize,
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
/// Its threads, each with its own connection: a claimer that claims at most as many jobs as
/// there are idle handler threads and otherwise sleeps until a commit or the queue's next due
/// time (never an interval poll), the handler threads, and a heartbeat thread that extends every
/// held lease a third of the way through it. A handler error or panic becomes a retry with the
/// error recorded; a job whose lease was lost is not handed back. Drop shuts it down like
/// [`Worker::shutdown`], ignoring errors.
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
    claimer: Option<JoinHandle<Connection>>,
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
        let claim_conn = honker_core::open(db_path)?;
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
        let mut handler_conns = Vec::with_capacity(threads);
        for _ in 0..threads {
            handler_conns.push(honker_core::open(db_path)?);
        }
        let shared = Arc::new(Shared::new(
            queue,
            wake,
            state::Settings {
                threads,
                batch,
                lease_ms,
                heartbeat_every,
                shutdown_grace: opts.shutdown_grace,
            },
            worker_id,
        ));
        let mut worker = Worker {
            shared: shared.clone(),
            claimer: None,
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
        worker.claimer = Some(spawn("honker-claimer", move || {
            claim_loop(&sh, &claim_conn);
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

    /// Stop claiming, give back the jobs not started, let running handlers finish for up to
    /// [`WorkerOptions::shutdown_grace`], release the jobs of those still running (without
    /// using an attempt; their outcome is then dropped), and report.
    ///
    /// # Errors
    ///
    /// The error of releasing a held job (that job then comes back when its lease expires).
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
        // The claimer may sleep in the wake source; a kick makes it look at `stopping`.
        sh.wake.kick();
        let mut first_err = None;
        let conn = match self.claimer.take().map(JoinHandle::join) {
            Some(Ok(conn)) => Some(conn),
            // The claimer never started or panicked: releasing needs a connection of its own.
            _ => honker_core::open(&self.db_path)
                .map_err(|e| first_err = Some(Error::from(e)))
                .ok(),
        };
        // A handler thread may be claiming its own next job: wait for that claim to land.
        {
            let mut st = sh.lock();
            while st.reserved > 0 {
                st = sh.wait_for_settled(st, Duration::from_millis(100));
            }
        }
        // Jobs claimed but not started go back at once.
        let not_started = sh.take_phase(Phase::Ready);
        release_all(&sh, conn.as_ref(), not_started, &mut first_err);
        // Running handlers get the grace period to finish and settle.
        let grace_end = Instant::now() + sh.settings.shutdown_grace;
        {
            let mut st = sh.lock();
            while st.held.values().any(|h| h.phase != Phase::Released) {
                let left = grace_end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = sh.wait_for_settled(st, left);
            }
        }
        let running = sh.take_phase(Phase::Running);
        // Threads still in a handler: those of the jobs given back now, and those whose job's
        // lease was lost earlier (their job stays listed until their handler returns).
        let mut stuck_threads: Vec<usize> = sh
            .lock()
            .held
            .values()
            .filter(|h| h.phase == Phase::Released)
            .filter_map(|h| h.thread)
            .collect();
        stuck_threads.sort_unstable();
        stuck_threads.dedup();
        release_all(&sh, conn.as_ref(), running, &mut first_err);
        {
            let mut st = sh.lock();
            st.heartbeat_stop = true;
            st.report.abandoned_threads += stuck_threads.len() as u64;
            sh.notify_everyone();
        }
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
        match first_err {
            Some(e) => {
                report.record(e);
                // The report's error list shows it too; the caller asked for the first failure.
                Err(report
                    .errors
                    .pop()
                    .unwrap_or_else(|| invalid("release", "failed")))
            }
            None => Ok(report),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.claimer.is_some() || !self.handlers.is_empty() {
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

/// Release `jobs` (already marked released) on `conn`, counting them. Without a connection they
/// are only forgotten here: each comes back when its lease expires.
fn release_all(
    sh: &Shared,
    conn: Option<&Connection>,
    jobs: Vec<Held>,
    first_err: &mut Option<Error>,
) {
    let Some(conn) = conn else {
        let mut st = sh.lock();
        for h in jobs {
            st.held.remove(&h.id);
        }
        drop(st);
        sh.notify_slots();
        return;
    };
    for h in jobs {
        match with_busy_retry(|| sh.queue.release(conn, h.id, h.token)) {
            Ok(()) => sh.lock().report.released += 1,
            // Already settled elsewhere (reclaimed after a lost lease, cancelled): nothing to give back.
            Err(e) if e.code() == "queue.lease_lost" || e.code() == "queue.not_found" => {
                sh.lock().report.lease_lost += 1;
            }
            Err(e) => {
                if first_err.is_none() {
                    *first_err = Some(e);
                } else {
                    sh.lock().report.record(e);
                }
            }
        }
        sh.lock().held.remove(&h.id);
    }
    sh.notify_slots();
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
