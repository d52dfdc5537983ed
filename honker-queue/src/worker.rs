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
//!   the result, if any), retry with the error recorded, or fail;
//! - the **heartbeat** thread extends the lease of every held job well before it runs out, and
//!   marks a job whose lease was lost, so its handler's outcome is not handed back.

mod state;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use honker_core::{Epoch, WakeSource};
use rusqlite::Connection;

use crate::{ClaimedJob, Error, Queue};

use self::state::{Held, Phase, Shared};

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

/// A blocking worker over one queue: see the [module docs](self) for its threads.
///
/// Drop shuts it down like [`Worker::shutdown`], ignoring errors.
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
            sh.cv.notify_all();
        }
        // The claimer may sleep in the wake source; a kick makes it look at `stopping`.
        sh.wake.kick();
        let conn = match self.claimer.take().map(JoinHandle::join) {
            Some(Ok(conn)) => Some(conn),
            _ => None,
        };
        let conn = match conn {
            Some(c) => c,
            None => honker_core::open(&self.db_path)?,
        };
        let mut first_err = None;
        // Jobs claimed but not started go back at once.
        let not_started = sh.take_phase(Phase::Ready);
        release_all(&sh, &conn, not_started, &mut first_err);
        // Running handlers get the grace period to finish and settle.
        let grace_end = Instant::now() + sh.settings.shutdown_grace;
        {
            let mut st = sh.lock();
            while st.held.values().any(|h| h.phase != Phase::Released) {
                let left = grace_end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = sh.wait_timeout(st, left);
            }
        }
        let running = sh.take_phase(Phase::Running);
        let stuck_threads: Vec<usize> = running.iter().filter_map(|h| h.thread).collect();
        release_all(&sh, &conn, running, &mut first_err);
        {
            let mut st = sh.lock();
            st.heartbeat_stop = true;
            st.report.abandoned_threads += stuck_threads.len() as u64;
            sh.cv.notify_all();
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

/// Release `jobs` (already marked released) on `conn`, counting them.
fn release_all(sh: &Shared, conn: &Connection, jobs: Vec<Held>, first_err: &mut Option<Error>) {
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
    sh.cv.notify_all();
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

/// The claiming thread: the wake loop of DESIGN.md §2.
fn claim_loop(sh: &Shared, conn: &Connection) {
    let mut brief_left = 0u32;
    let mut error_pause = BRIEF_PAUSE;
    loop {
        let Some(free) = sh.wait_for_free_slots() else {
            return;
        };
        // 1. Sample before looking: a commit after this moves the epoch past `seen`.
        let seen = sh.wake.epoch();
        // 2. Look: one claim statement, never more jobs than idle handler threads.
        let n = free.min(sh.settings.batch);
        match sh
            .queue
            .claim(conn, &sh.worker_id, n, Some(sh.settings.lease_ms))
        {
            Ok(jobs) if !jobs.is_empty() => {
                sh.hand_over(jobs);
                brief_left = 0;
                error_pause = BRIEF_PAUSE;
                continue;
            }
            Ok(_) => sh.lock().report.empty_claims += 1,
            // The write lock stayed busy past the busy timeout: look again soon.
            Err(e) if e.is_busy() => brief_left = brief_left.max(1),
            Err(e) => {
                sh.lock().report.record(e);
                if !sh.pause(seen, error_pause) {
                    return;
                }
                error_pause = (error_pause * 2).min(MAX_ERROR_PAUSE);
                continue;
            }
        }
        sh.lock().report.claims += 1;
        if brief_left > 0 {
            // An empty look right after a deadline: the job may be behind a busy write lock or
            // a racing worker; look again shortly rather than sleeping until a far deadline.
            let pause = BRIEF_PAUSE * 2u32.pow(BRIEF_RETRIES.saturating_sub(brief_left));
            brief_left -= 1;
            if !sh.pause(seen, pause) {
                return;
            }
            continue;
        }
        // 3. The next deadline from SQL: the earliest run_at, lease expiry or expiry time.
        let due = match sh.queue.next_due(conn) {
            Ok(due) => due,
            Err(e) => {
                let busy = e.is_busy();
                if !busy {
                    sh.lock().report.record(e);
                }
                if !sh.pause(seen, error_pause) {
                    return;
                }
                error_pause = (error_pause * 2).min(MAX_ERROR_PAUSE);
                continue;
            }
        };
        error_pause = BRIEF_PAUSE;
        let deadline = due.map(|at| sh.instant_of(at));
        // 4. Sleep past the sample; a commit since step 1 returns at once.
        match sh.wait(seen, deadline) {
            Ok(now) => {
                let deadline_passed = deadline.is_some_and(|d| Instant::now() >= d);
                if now == seen && deadline_passed {
                    brief_left = BRIEF_RETRIES;
                }
            }
            Err(e) => {
                sh.fail(e);
                return;
            }
        }
    }
}

/// One handler thread: run jobs as the claimer hands them over, and settle each.
fn handler_loop(
    sh: &Shared,
    conn: &Connection,
    handler: &Handler,
    thread: usize,
    transactional: bool,
) {
    while let Some(job) = sh.next_job(thread) {
        let settled = if transactional {
            run_in_transaction(sh, conn, handler, &job)
        } else {
            let outcome = run(handler, conn, &job);
            if sh.start_settling(job.id) {
                Some(settle(sh, conn, &job, outcome))
            } else {
                // The lease was lost, or shutdown released the job: the outcome is not ours.
                None
            }
        };
        let Some(settled) = settled else {
            continue;
        };
        let mut st = sh.lock();
        match settled {
            Ok(s) => s.count(&mut st.report),
            Err(e) if e.code() == "queue.lease_lost" || e.code() == "queue.not_found" => {
                st.report.lease_lost += 1;
            }
            Err(e) => st.report.record(e),
        }
        st.held.remove(&job.id);
        drop(st);
        sh.cv.notify_all();
    }
}

/// Run the handler, turning a panic into an outcome.
fn run(handler: &Handler, conn: &Connection, job: &ClaimedJob) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| handler(conn, job))) {
        Ok(r) => Outcome::Returned(r),
        Err(panic) => Outcome::Panicked(panic_message(&*panic)),
    }
}

/// The transactional variant: the handler and the ack in one `BEGIN IMMEDIATE` transaction.
/// `None` when the outcome is not ours to hand back.
fn run_in_transaction(
    sh: &Shared,
    conn: &Connection,
    handler: &Handler,
    job: &ClaimedJob,
) -> Option<Result<Settled, Error>> {
    if let Err(e) = with_busy_retry(|| Ok(conn.execute_batch("BEGIN IMMEDIATE")?)) {
        // Could not even start: give the job back for a retry later, if it is still ours.
        let outcome = Outcome::Returned(Err(HandlerError::retry(format!(
            "worker could not begin the handler's transaction: {e}"
        ))));
        return sh
            .start_settling(job.id)
            .then(|| settle(sh, conn, job, outcome));
    }
    let outcome = run(handler, conn, job);
    if conn.is_autocommit() {
        // The handler ended the transaction itself: its writes are already decided, and an
        // ack now would not be atomic with them. Retry, and say why.
        let outcome = Outcome::Returned(Err(HandlerError::retry(
            "the handler committed or rolled back the worker's transaction itself",
        )));
        return sh
            .start_settling(job.id)
            .then(|| settle(sh, conn, job, outcome));
    }
    let ours = sh.start_settling(job.id);
    match outcome {
        Outcome::Returned(Ok(result)) if ours => {
            let acked = match &result {
                None => sh.queue.ack(conn, job.id, job.lease_token),
                Some(r) => sh
                    .queue
                    .ack_with_result(conn, job.id, job.lease_token, r, None),
            };
            let done = acked.and_then(|()| Ok(conn.execute_batch("COMMIT")?));
            match done {
                Ok(()) => Some(Ok(Settled::Acked)),
                Err(e) => {
                    rollback(conn);
                    Some(Err(e))
                }
            }
        }
        outcome => {
            rollback(conn);
            ours.then(|| settle(sh, conn, job, outcome))
        }
    }
}

fn rollback(conn: &Connection) {
    // A failed ROLLBACK means SQLite already rolled back on its own.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// What a handler did.
enum Outcome {
    Returned(HandlerResult),
    Panicked(String),
}

/// How a job was settled.
enum Settled {
    Acked,
    Retried { dead: bool, panicked: bool },
    Failed,
}

impl Settled {
    fn count(&self, r: &mut WorkerReport) {
        match *self {
            Settled::Acked => r.acked += 1,
            Settled::Retried { dead, panicked } => {
                r.retried += 1;
                r.dead += u64::from(dead);
                r.panics += u64::from(panicked);
            }
            Settled::Failed => {
                r.failed += 1;
                r.dead += 1;
            }
        }
    }
}

fn settle(
    sh: &Shared,
    conn: &Connection,
    job: &ClaimedJob,
    outcome: Outcome,
) -> Result<Settled, Error> {
    let q = &sh.queue;
    let (id, token) = (job.id, job.lease_token);
    let retry = |delay: Option<i64>, msg: &str, panicked: bool| {
        with_busy_retry(|| q.retry(conn, id, token, delay, Some(msg))).map(|o| Settled::Retried {
            dead: matches!(o, crate::RetryOutcome::Dead),
            panicked,
        })
    };
    match outcome {
        Outcome::Returned(Ok(None)) => {
            with_busy_retry(|| q.ack(conn, id, token)).map(|()| Settled::Acked)
        }
        Outcome::Returned(Ok(Some(result))) => {
            with_busy_retry(|| q.ack_with_result(conn, id, token, &result, None))
                .map(|()| Settled::Acked)
        }
        Outcome::Returned(Err(e)) if e.fail => {
            with_busy_retry(|| q.fail(conn, id, token, &e.message)).map(|()| Settled::Failed)
        }
        Outcome::Returned(Err(e)) => retry(e.delay_ms, &e.message, false),
        Outcome::Panicked(msg) => retry(None, &format!("handler panicked: {msg}"), true),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

/// The heartbeat thread: extend each held lease every `heartbeat_every`.
fn heartbeat_loop(sh: &Shared, conn: &Connection) {
    while let Some(due) = sh.next_heartbeats() {
        for (id, token) in due {
            let r = sh.queue.heartbeat(conn, id, token, sh.settings.lease_ms);
            sh.heartbeat_done(id, r);
        }
    }
}

/// The pieces of [`Shared`] the threads use, kept beside the types they move between threads.
impl Shared {
    /// Sleep past `seen` until `deadline`, or fail like the wake source.
    fn wait(&self, seen: Epoch, deadline: Option<Instant>) -> Result<Epoch, Error> {
        self.wake
            .wait_past(seen, deadline)
            .map_err(|e| Error::from(honker_core::Error::from(e)))
    }

    /// A short sleep that a commit (or shutdown's kick) cuts short; false when the worker stops.
    fn pause(&self, seen: Epoch, d: Duration) -> bool {
        match self.wait(seen, Some(Instant::now() + d)) {
            Ok(_) => !self.lock().stopping,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }
}
