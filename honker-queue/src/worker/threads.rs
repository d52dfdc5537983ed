//! What each thread of a worker does: the writer's loop (claim in batches, commit the outcomes
//! of many jobs in one transaction, sleep on the wake source), the handler threads (running the
//! handler, in a transaction of its own for transactional workers) and heartbeats.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use honker_core::Epoch;
use rusqlite::Connection;

use super::state::{Done, Held, Outcome, Phase, Shared};
use super::{
    BRIEF_PAUSE, BRIEF_RETRIES, Handler, HandlerError, MAX_ERROR_PAUSE, WorkerReport,
    with_busy_retry,
};
use crate::{ClaimedJob, Error};

/// The writer thread: claimer and completer on one connection, the wake loop of DESIGN.md §2.
///
/// Each turn: sample the epoch; commit the outcomes waiting (when enough have gathered, the
/// oldest has waited `complete_every`, or no other handler is still running) in one
/// transaction, with the next claim in that same transaction; otherwise claim alone, up to the
/// free capacity (handler slots plus the prefetch buffer). With nothing to claim it sleeps in the
/// wake source until a commit, the queue's next due time or the completer's deadline (a first
/// outcome kicks it); with every slot taken it waits for outcomes. Stopping, it releases the
/// prefetched jobs no handler started, lets running handlers finish for the grace period while
/// it keeps committing their outcomes, then releases the rest.
pub(super) fn writer_loop(sh: &Shared, conn: &Connection) {
    let mut brief_left = 0u32;
    let mut error_pause = BRIEF_PAUSE;
    // After an empty claim, claim again only once the epoch moved past this sample (or a
    // deadline passed): no spinning on an empty queue.
    let mut claim_after: Option<Epoch> = None;
    let mut grace_end: Option<Instant> = None;
    let mut ready_watch = (0, Instant::now());
    loop {
        let seen = sh.wake.epoch();
        let (done, stopping, free, flush_deadline, claiming, starving) = {
            let mut st = sh.lock();
            st.writer_asleep = false;
            let unfinished = st.unfinished();
            // The writer's waits end by the next look at jobs waiting for a thread.
            let stall_due = sh.watch_ready(&mut st, &mut ready_watch);
            let age_due = st.oldest_done.map(|t| t + sh.settings.complete_every);
            let age_due = match (age_due, stall_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let flush = st.flush_due(&sh.settings, unfinished).is_ok();
            let done = if flush {
                st.oldest_done = None;
                std::mem::take(&mut st.done)
            } else {
                Vec::new()
            };
            // Slots of the outcomes about to be committed count as free for the claim that
            // shares their transaction.
            let free = sh
                .settings
                .capacity()
                .saturating_sub(st.held.len() - done.len());
            let claiming = !st.stopping && st.report.fatal.is_none();
            let starving = st.ready.len() < sh.settings.threads;
            (done, st.stopping, free, age_due, claiming, starving)
        };
        if stopping {
            let end = *grace_end.get_or_insert_with(|| Instant::now() + sh.settings.shutdown_grace);
            if !shut_down_step(sh, conn, done, end) {
                return;
            }
            continue;
        }
        // No claim of a few jobs while many are held: a write transaction is worth a batch.
        // But a handler thread about to go idle claims whatever is free.
        let min_claim = if free == sh.settings.capacity() || starving {
            1
        } else {
            (sh.settings.batch.min(sh.settings.capacity()) / 2).max(1)
        };
        let want_claim = claiming && free >= min_claim && claim_after.is_none_or(|e| e != seen);
        let n = if want_claim {
            free.min(sh.settings.batch)
        } else {
            0
        };
        if !done.is_empty() {
            match commit_outcomes(sh, conn, done, n) {
                Ok(Some(jobs)) => {
                    claim_after = claimed(sh, jobs, seen);
                    error_pause = BRIEF_PAUSE;
                    brief_left = 0;
                }
                Ok(None) => {}
                Err(e) => {
                    let busy = e.is_busy();
                    if !busy {
                        sh.lock().report.record(e);
                    }
                    if !sh.pause(seen, error_pause) {
                        continue;
                    }
                    error_pause = (error_pause * 2).min(MAX_ERROR_PAUSE);
                }
            }
            continue;
        }
        if n > 0 {
            match sh
                .queue
                .claim(conn, &sh.worker_id, n, Some(sh.settings.lease_ms))
            {
                Ok(jobs) => {
                    let empty = jobs.is_empty();
                    claim_after = claimed(sh, jobs, seen);
                    error_pause = BRIEF_PAUSE;
                    if !empty {
                        brief_left = 0;
                        continue;
                    }
                }
                // The write lock stayed busy past the busy handler: look again soon.
                Err(e) if e.is_busy() => {
                    sh.lock().report.claims += 1;
                    brief_left = brief_left.max(1);
                }
                Err(e) => {
                    sh.lock().report.record(e);
                    sh.pause(seen, error_pause);
                    error_pause = (error_pause * 2).min(MAX_ERROR_PAUSE);
                    continue;
                }
            }
        }
        // Nothing to commit yet and nothing (more) to claim: wait.
        if !claiming || free < min_claim {
            // Every slot is taken (or claiming stopped): only outcomes (enough of them to commit,
            // or the oldest waiting long enough) or shutdown matter.
            let st = sh.lock();
            if st.stopping {
                continue;
            }
            let wait = match st.flush_due(&sh.settings, st.unfinished()) {
                Ok(()) => continue,
                Err(Some(at)) => Some(at.saturating_duration_since(Instant::now())),
                Err(None) if st.held.is_empty() => None,
                Err(None) => Some(MAX_ERROR_PAUSE),
            };
            let wait = match (wait, flush_deadline) {
                (Some(w), Some(at)) => Some(w.min(at.saturating_duration_since(Instant::now()))),
                (w, at) => w.or(at.map(|at| at.saturating_duration_since(Instant::now()))),
            };
            drop(sh.wait_for_writer(st, wait));
            continue;
        }
        if brief_left > 0 {
            // An empty look right after a deadline: the job may be behind a busy write lock or
            // a racing worker; look again shortly rather than sleeping until a far deadline.
            let pause = BRIEF_PAUSE * 2u32.pow(BRIEF_RETRIES.saturating_sub(brief_left));
            brief_left -= 1;
            claim_after = None;
            if let Err(e) = sh.sleep_in_wake(seen, Some(Instant::now() + pause), flush_deadline) {
                sh.fail(e);
            }
            continue;
        }
        // The next deadline from SQL: the earliest run_at, lease expiry or expiry time.
        let due = match sh.queue.next_due(conn) {
            Ok(due) => due,
            Err(e) => {
                if !e.is_busy() {
                    sh.lock().report.record(e);
                }
                claim_after = None;
                sh.pause(seen, error_pause);
                error_pause = (error_pause * 2).min(MAX_ERROR_PAUSE);
                continue;
            }
        };
        error_pause = BRIEF_PAUSE;
        let deadline = due.map(|at| sh.instant_of(at));
        match sh.sleep_in_wake(seen, deadline, flush_deadline) {
            Ok(now) => {
                let deadline_passed = deadline.is_some_and(|d| Instant::now() >= d);
                if now == seen && deadline_passed {
                    brief_left = BRIEF_RETRIES;
                    claim_after = None;
                }
            }
            Err(e) => sh.fail(e),
        }
    }
}

/// Count a claim that committed and hand its jobs over; the epoch sample after which to claim
/// again when it found nothing.
fn claimed(sh: &Shared, jobs: Vec<ClaimedJob>, seen: Epoch) -> Option<Epoch> {
    {
        let mut st = sh.lock();
        st.report.claims += 1;
        if jobs.is_empty() {
            st.report.empty_claims += 1;
        }
    }
    if jobs.is_empty() {
        return Some(seen);
    }
    sh.hand_over(jobs);
    None
}

/// The completer: write `done` in one transaction, each outcome under its job's token (a stale
/// token writes nothing for that job and counts as a lost lease), then claim up to `claim` jobs
/// in the same transaction. On an error of the transaction itself nothing is written and the
/// outcomes go back to wait for the next turn; `Ok(None)` when no claim was asked for.
fn commit_outcomes(
    sh: &Shared,
    conn: &Connection,
    done: Vec<Done>,
    claim: usize,
) -> Result<Option<Vec<ClaimedJob>>, Error> {
    let mut results: Vec<Option<Result<Settled, Error>>> = Vec::new();
    let tx = (|| -> Result<Option<Vec<ClaimedJob>>, Error> {
        results.clear();
        results.resize_with(done.len(), || None);
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        if !sh.queue.keeps_history(conn)? {
            // Plain acks, most outcomes: one delete each, fenced by the token, through one
            // statement. An error here is the transaction's (nothing else fails a delete).
            let acks = done.iter().enumerate().filter_map(|(i, d)| {
                matches!(d.outcome, Outcome::Returned(Ok(None))).then_some((i, d.id, d.token))
            });
            sh.queue.delete_held_each(conn, acks, |i, ok| {
                results[i] = Some(if ok {
                    Ok(Settled::Acked)
                } else {
                    Err(Error::LeaseLost { id: done[i].id })
                });
            })?;
        }
        for (d, slot) in done.iter().zip(results.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let r = settle(sh, conn, d.id, d.token, &d.outcome);
            // An error that ends the whole transaction (I/O, a full disk) cannot be kept per
            // job: give every outcome back.
            match r {
                Err(e) if conn.is_autocommit() => return Err(e),
                r => *slot = Some(r),
            }
        }
        let jobs = if claim > 0 {
            Some(
                sh.queue
                    .claim(conn, &sh.worker_id, claim, Some(sh.settings.lease_ms))?,
            )
        } else {
            None
        };
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(jobs)
    })();
    let jobs = match tx {
        Ok(jobs) => jobs,
        Err(e) => {
            rollback(conn);
            let mut st = sh.lock();
            let mut back = done;
            back.append(&mut st.done);
            st.done = back;
            st.oldest_done.get_or_insert_with(Instant::now);
            return Err(e);
        }
    };
    honker_core::kick_after_commit(conn);
    let mut st = sh.lock();
    // The transaction committed, so every outcome has its result.
    for (d, r) in done.iter().zip(results) {
        match r {
            Some(Ok(s)) => s.count(&mut st.report),
            None => {}
            Some(Err(e)) if e.code() == "queue.lease_lost" || e.code() == "queue.not_found" => {
                st.report.lease_lost += 1;
            }
            Some(Err(e)) => st.report.record(e),
        }
        st.held.remove(&d.id);
    }
    drop(st);
    Ok(jobs)
}

/// One turn of shutdown: give back the prefetched jobs no handler started, commit the outcomes
/// in `done`, and once no handler runs (or the grace period ended) give back the jobs still
/// running. False when shutdown is complete.
fn shut_down_step(sh: &Shared, conn: &Connection, done: Vec<Done>, grace_end: Instant) -> bool {
    let not_started = sh.take_phase(Phase::Ready);
    release_all(sh, conn, not_started);
    if !done.is_empty()
        && let Err(e) = commit_outcomes(sh, conn, done, 0)
    {
        if !e.is_busy() {
            sh.lock().report.record(e);
        }
        if Instant::now() < grace_end {
            std::thread::sleep(BRIEF_PAUSE);
            return true;
        }
        // Out of time: these outcomes are dropped and their jobs come back when their leases
        // end (at-least-once).
        let mut st = sh.lock();
        let lost: Vec<_> = st.done.drain(..).map(|d| d.id).collect();
        for id in lost {
            st.held.remove(&id);
        }
    }
    {
        let st = sh.lock();
        let busy = st
            .held
            .values()
            .any(|h| matches!(h.phase, Phase::Running | Phase::Settling));
        let left = grace_end.saturating_duration_since(Instant::now());
        if busy && !left.is_zero() {
            if st.done.is_empty() {
                drop(sh.wait_for_writer(st, Some(left)));
            }
            return true;
        }
    }
    // Threads still in a handler: those of the jobs given back now, and those whose job's lease
    // was lost earlier (their job stays listed until their handler returns).
    let running = sh.take_phase(Phase::Running);
    {
        let mut st = sh.lock();
        let mut stuck: Vec<usize> = st
            .held
            .values()
            .filter(|h| h.phase == Phase::Released)
            .filter_map(|h| h.thread)
            .collect();
        stuck.sort_unstable();
        stuck.dedup();
        st.stuck_threads = stuck;
    }
    release_all(sh, conn, running);
    false
}

/// Release `jobs` (already marked released) in one transaction, without using an attempt,
/// counting them; a job whose lease was lost meanwhile is only forgotten. When the transaction
/// cannot be written, each job comes back when its lease expires.
pub(super) fn release_all(sh: &Shared, conn: &Connection, jobs: Vec<Held>) {
    if jobs.is_empty() {
        return;
    }
    let mut results = Vec::with_capacity(jobs.len());
    let tx = with_busy_retry(|| {
        results.clear();
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        for h in &jobs {
            results.push(sh.queue.release(conn, h.id, h.token));
        }
        match conn.prepare_cached("COMMIT")?.execute([]) {
            Ok(_) => Ok(()),
            Err(e) => {
                rollback(conn);
                Err(Error::from(e))
            }
        }
    });
    let mut st = sh.lock();
    match tx {
        Ok(()) => {
            for r in results {
                match r {
                    Ok(()) => st.report.released += 1,
                    // Already settled elsewhere (reclaimed after a lost lease, cancelled).
                    Err(e) if e.code() == "queue.lease_lost" || e.code() == "queue.not_found" => {
                        st.report.lease_lost += 1;
                    }
                    Err(e) => st.report.record(e),
                }
            }
        }
        Err(e) => {
            rollback(conn);
            st.report.record(e);
        }
    }
    for h in &jobs {
        // A job whose handler still runs stays listed (released) until it returns.
        if h.thread.is_none() || st.held.get(&h.id).is_some_and(|x| x.thread.is_none()) {
            st.held.remove(&h.id);
        }
    }
    sh.notify_writer(&st);
    drop(st);
    honker_core::kick_after_commit(conn);
}

/// One handler thread: run jobs as the writer hands them over; a plain worker hands each
/// outcome to the completer, a transactional one writes it in the handler's transaction.
pub(super) fn handler_loop(
    sh: &Shared,
    conn: &Connection,
    handler: &Handler,
    thread: usize,
    transactional: bool,
) {
    if !transactional {
        let mut next = sh.next_job(thread, None, None);
        while let Some(job) = next {
            let start = Instant::now();
            let outcome = run(handler, conn, &job);
            next = sh.next_job(thread, Some((&job, outcome)), Some(start.elapsed()));
        }
        return;
    }
    let mut ran = None;
    while let Some(job) = sh.next_job(thread, None, ran) {
        let start = Instant::now();
        let settled = run_in_transaction(sh, conn, handler, &job);
        ran = Some(start.elapsed());
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
        sh.notify_writer(&st);
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
            .then(|| settle(sh, conn, job.id, job.lease_token, &outcome));
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
            .then(|| settle(sh, conn, job.id, job.lease_token, &outcome));
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
            ours.then(|| settle(sh, conn, job.id, job.lease_token, &outcome))
        }
    }
}

fn rollback(conn: &Connection) {
    // A failed ROLLBACK means SQLite already rolled back on its own.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// How a job was settled.
#[derive(Debug)]
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

/// Write one outcome under `token` (all or nothing, in the caller's transaction if one is open);
/// `queue.lease_lost` when `token` no longer holds the job.
fn settle(
    sh: &Shared,
    conn: &Connection,
    id: crate::JobId,
    token: crate::LeaseToken,
    outcome: &Outcome,
) -> Result<Settled, Error> {
    let q = &sh.queue;
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
            with_busy_retry(|| q.ack_with_result(conn, id, token, result, None))
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
pub(super) fn heartbeat_loop(sh: &Shared, conn: &Connection) {
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

    /// The writer's sleep in the wake source, until a commit, `deadline` or the completer's
    /// deadline; a handler's first outcome kicks it awake.
    fn sleep_in_wake(
        &self,
        seen: Epoch,
        deadline: Option<Instant>,
        flush: Option<Instant>,
    ) -> Result<Epoch, Error> {
        {
            let mut st = self.lock();
            if !st.done.is_empty() || st.stopping {
                return Ok(seen);
            }
            st.writer_asleep = true;
        }
        let until = match (deadline, flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let r = self.wait(seen, until);
        self.lock().writer_asleep = false;
        r
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
