//! What each thread of a worker does: the claimer's wake loop, the handler threads (running the
//! handler, in a transaction for transactional workers, and settling the job) and heartbeats.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use honker_core::Epoch;
use rusqlite::Connection;

use super::state::{Held, Phase, Shared};
use super::{
    BRIEF_PAUSE, BRIEF_RETRIES, Handler, HandlerError, HandlerResult, MAX_ERROR_PAUSE,
    WorkerReport, with_busy_retry,
};
use crate::{ClaimedJob, Error};

/// The claiming thread: the wake loop of DESIGN.md §2.
pub(super) fn claim_loop(sh: &Shared, conn: &Connection) {
    let mut brief_left = 0u32;
    let mut error_pause = BRIEF_PAUSE;
    loop {
        // 1. Sample before looking: a commit after this moves the epoch past `seen`. The stop
        //    flag is part of the look: sampled after the flag was checked, a shutdown kick
        //    landing between the two would be inside the sample, and the wait below would sleep
        //    through it.
        let seen = sh.wake.epoch();
        let Some(free) = sh.wait_for_free_slots() else {
            return;
        };
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
pub(super) fn handler_loop(
    sh: &Shared,
    conn: &Connection,
    handler: &Handler,
    thread: usize,
    transactional: bool,
) {
    let mut next = sh.next_job(thread);
    while let Some(job) = next {
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
            next = sh.next_job(thread);
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
        // With nothing claimed for it, this thread keeps its slot and claims its next job
        // itself: no hand-over between threads while the queue has work.
        let keep_slot = !st.stopping && st.ready.is_empty();
        if keep_slot {
            st.reserved += 1;
        }
        drop(st);
        next = if keep_slot {
            claim_own(sh, conn, thread).or_else(|| sh.next_job(thread))
        } else {
            sh.notify_slots();
            sh.next_job(thread)
        };
    }
}

/// The fast path after a job is settled: claim the thread's next job on its own connection,
/// under the slot it reserved (so the claimer does not claim for it meanwhile). `None` when
/// nothing is due or the claim failed: the claimer's wake loop takes over from there.
fn claim_own(sh: &Shared, conn: &Connection, thread: usize) -> Option<ClaimedJob> {
    let claimed = sh
        .queue
        .claim(conn, &sh.worker_id, 1, Some(sh.settings.lease_ms));
    let mut st = sh.lock();
    st.reserved -= 1;
    st.report.claims += 1;
    let job = match claimed {
        Ok(mut jobs) if !jobs.is_empty() => jobs.swap_remove(0),
        other => {
            match other {
                Err(e) if !e.is_busy() => st.report.record(e),
                _ => st.report.empty_claims += 1,
            }
            drop(st);
            sh.notify_slots();
            return None;
        }
    };
    st.report.claimed += 1;
    // Claimed as shutdown began: leave it for shutdown to give back, unstarted.
    let stopping = st.stopping;
    st.held.insert(
        job.id,
        Held {
            id: job.id,
            token: job.lease_token,
            phase: if stopping {
                Phase::Ready
            } else {
                Phase::Running
            },
            thread: (!stopping).then_some(thread),
            next_heartbeat: Instant::now() + sh.settings.heartbeat_every,
        },
    );
    drop(st);
    sh.notify_heartbeat();
    if stopping {
        sh.notify_slots();
        return None;
    }
    Some(job)
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
