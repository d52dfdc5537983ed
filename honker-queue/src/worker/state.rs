//! The state a worker's threads share: the jobs it holds, in which phase, the outcomes waiting
//! for the completer, and the counters; one mutex and a few condition variables, since every
//! change is a few field writes next to a job's run.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use honker_core::{Clock, Millis, WakeSource};

use super::{HandlerResult, WorkerReport};
use crate::{ClaimedJob, Error, JobId, LeaseToken, Queue};

/// More handler threads are woken for ready jobs only while the threads already on them would
/// take longer than this to work through them (at their mean time per job). Waking a sleeping
/// thread costs the waker about 20 µs on a 2-core VM (its CPU is woken from idle), and each one
/// woken competes for the CPUs with the writer holding the write lock: a stream of short jobs
/// is best left to one thread, a backlog of long ones gets every thread at once.
const WAKE_WORTH: Duration = Duration::from_micros(200);
/// The mean time per job a worker assumes before it has run any: long, so a first backlog
/// engages every thread.
const FIRST_MEAN: Duration = Duration::from_millis(1);
/// Jobs waited this long with no thread taking one while threads sleep: the running ones ran
/// far past the mean, so the writer wakes one more (see [`Shared::watch_ready`]).
pub(super) const STALL_AFTER: Duration = Duration::from_millis(1);

/// The resolved options.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) threads: usize,
    pub(super) batch: usize,
    /// Claimed jobs the worker may hold beyond one per handler thread.
    pub(super) prefetch: usize,
    pub(super) lease_ms: i64,
    pub(super) heartbeat_every: Duration,
    pub(super) shutdown_grace: Duration,
    /// The longest an outcome waits for the completer's transaction.
    pub(super) complete_every: Duration,
    /// Outcomes that make the completer commit at once.
    pub(super) complete_batch: usize,
}

impl Settings {
    /// The most jobs held at once: a slot per handler thread plus the prefetch buffer.
    pub(super) fn capacity(&self) -> usize {
        self.threads + self.prefetch
    }
}

/// Where a held job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Claimed, waiting for a handler thread.
    Ready,
    /// A handler runs it.
    Running,
    /// Its handler returned; its outcome waits for (or is in) the completer's transaction, or a
    /// transactional handler is writing it.
    Settling,
    /// Given back (shutdown) or lost (lease): its outcome must not be handed back.
    Released,
}

/// One job the worker holds.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) id: JobId,
    pub(super) token: LeaseToken,
    pub(super) phase: Phase,
    /// The handler thread running it, once one does.
    pub(super) thread: Option<usize>,
    pub(super) next_heartbeat: Instant,
}

/// What a handler did.
#[derive(Debug)]
pub(super) enum Outcome {
    Returned(HandlerResult),
    Panicked(String),
}

/// A handler's outcome waiting for the completer: written under the token the job was claimed
/// with, so a lease lost meanwhile refuses it.
#[derive(Debug)]
pub(super) struct Done {
    pub(super) id: JobId,
    pub(super) token: LeaseToken,
    pub(super) outcome: Outcome,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Claimed jobs waiting for a handler thread, in claim order.
    pub(super) ready: VecDeque<ClaimedJob>,
    /// Every job held, whatever its phase.
    pub(super) held: HashMap<JobId, Held>,
    /// Outcomes waiting for the completer, oldest first.
    pub(super) done: Vec<Done>,
    /// When the oldest of `done` arrived.
    pub(super) oldest_done: Option<Instant>,
    pub(super) stopping: bool,
    pub(super) heartbeat_stop: bool,
    /// The writer thread sleeps in the wake source: a first outcome must kick it.
    pub(super) writer_asleep: bool,
    /// The writer thread waits on its condition variable: a notice must wake it. Notices are
    /// sent only then, since each one is a system call even with nobody waiting.
    writer_waiting: bool,
    /// Handler threads waiting for a job (those woken but not yet back included).
    idle_handlers: usize,
    /// Handler threads woken for ready jobs that have not taken the lock yet.
    waking: usize,
    /// Handler threads running a job.
    running_handlers: usize,
    /// The running mean of a handler's time per job, in nanoseconds.
    mean_run_ns: u64,
    /// Ready jobs taken by handler threads so far: the writer's watch for stalls.
    takes: u64,
    /// The heartbeat thread waits with no deadline (it held nothing): new jobs must wake it.
    heartbeat_idle: bool,
    /// Handler threads left running a handler at shutdown.
    pub(super) stuck_threads: Vec<usize>,
    pub(super) report: WorkerReport,
}

impl State {
    fn new() -> State {
        State {
            mean_run_ns: u64::try_from(FIRST_MEAN.as_nanos()).unwrap_or(u64::MAX),
            ..State::default()
        }
    }

    /// Whether one more sleeping handler thread should be woken for the ready jobs: some are
    /// ready, a thread sleeps, and none runs or those running (and those already woken) would
    /// take longer than [`WAKE_WORTH`] to work through the ready jobs at the mean time per job.
    /// When it should, it is counted as woken: notify `jobs_cv` once the lock is dropped.
    fn wake_another(&mut self) -> bool {
        let asleep = self.idle_handlers.saturating_sub(self.waking);
        if asleep == 0 || self.ready.is_empty() {
            return false;
        }
        let on_it = (self.running_handlers + self.waking) as u128;
        let backlog = self.ready.len() as u128 * u128::from(self.mean_run_ns);
        let worth = on_it == 0 || backlog > WAKE_WORTH.as_nanos() * on_it;
        if worth {
            self.waking += 1;
        }
        worth
    }

    /// A handler thread ran a job for `d`.
    fn ran(&mut self, d: Duration) {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.running_handlers = self.running_handlers.saturating_sub(1);
        // A mean over the last few jobs (a quarter weight to the newest), so a change in the
        // jobs' length shows within a handful of them.
        self.mean_run_ns = self.mean_run_ns - self.mean_run_ns / 4 + d / 4;
    }

    /// Held jobs a handler has not finished yet (ready or running).
    pub(super) fn unfinished(&self) -> usize {
        self.held
            .values()
            .filter(|h| matches!(h.phase, Phase::Ready | Phase::Running))
            .count()
    }

    /// When the outcomes waiting must be committed: `Ok(())` now (stopping, a whole batch, no
    /// handler left to add one, or the oldest waited `complete_every`), `Err(Some(at))` at `at`
    /// unless a notice comes first, `Err(None)` when none wait.
    pub(super) fn flush_due(&self, s: &Settings, unfinished: usize) -> Result<(), Option<Instant>> {
        let Some(oldest) = self.oldest_done.filter(|_| !self.done.is_empty()) else {
            return Err(None);
        };
        let at = oldest + s.complete_every;
        if self.stopping
            || self.done.len() >= s.complete_batch
            || unfinished == 0
            || Instant::now() >= at
        {
            Ok(())
        } else {
            Err(Some(at))
        }
    }
}

#[derive(Debug)]
pub(super) struct Shared {
    state: Mutex<State>,
    /// Handler threads wait here for claimed jobs.
    jobs_cv: Condvar,
    /// The writer thread (and shutdown) wait here for outcomes and freed slots.
    writer_cv: Condvar,
    /// The heartbeat thread waits here for new held jobs or its next due heartbeat.
    heartbeat_cv: Condvar,
    pub(super) wake: Arc<dyn WakeSource>,
    pub(super) queue: Queue,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: Settings,
    pub(super) worker_id: String,
}

impl Shared {
    pub(super) fn new(
        queue: Queue,
        wake: Arc<dyn WakeSource>,
        settings: Settings,
        worker_id: String,
    ) -> Shared {
        Shared {
            state: Mutex::new(State::new()),
            jobs_cv: Condvar::new(),
            writer_cv: Condvar::new(),
            heartbeat_cv: Condvar::new(),
            wake,
            clock: queue.clock().clone(),
            queue,
            settings,
            worker_id,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Handlers run outside the lock and every update is a few field writes, so a poisoned
        // lock (a panic in the worker's own code) still holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait on `cv` (one of ours), for at most `d` when given.
    fn wait_on<'a>(
        cv: &Condvar,
        st: MutexGuard<'a, State>,
        d: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match d {
            Some(d) => cv.wait_timeout(st, d).unwrap_or_else(|p| p.into_inner()).0,
            None => cv.wait(st).unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// For the writer thread (the only one that waits here) and shutdown: wait at most `d` (or
    /// until notified) for outcomes or freed slots.
    pub(super) fn wait_for_writer<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        d: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        st.writer_waiting = true;
        let mut st = Shared::wait_on(&self.writer_cv, st, d);
        st.writer_waiting = false;
        st
    }

    /// Something the writer waits for happened (an outcome, a freed slot): wake it if it waits.
    /// Called with the lock held across the change, so a writer about to wait sees the change.
    pub(super) fn notify_writer(&self, st: &State) {
        if st.writer_waiting {
            self.writer_cv.notify_all();
        }
    }

    /// Stopping (or the heartbeat's stop): every thread re-checks.
    pub(super) fn notify_everyone(&self) {
        self.jobs_cv.notify_all();
        self.writer_cv.notify_all();
        self.heartbeat_cv.notify_all();
    }

    /// Hand freshly claimed jobs (their claim committed) to the handler threads.
    pub(super) fn hand_over(&self, jobs: Vec<ClaimedJob>) {
        let next_heartbeat = Instant::now() + self.settings.heartbeat_every;
        let mut st = self.lock();
        st.report.claimed += jobs.len() as u64;
        let heartbeat_idle = st.heartbeat_idle;
        for job in jobs {
            st.held.insert(
                job.id,
                Held {
                    id: job.id,
                    token: job.lease_token,
                    phase: Phase::Ready,
                    thread: None,
                    next_heartbeat,
                },
            );
            st.ready.push_back(job);
        }
        // One sleeping handler thread at most (busy ones take the next job as they finish):
        // each thread that takes a job wakes the next one if the backlog is worth it. And the
        // heartbeat thread only when it waits with no deadline: the new jobs are due no sooner
        // than any it already holds.
        let wake = st.wake_another();
        drop(st);
        if wake {
            self.jobs_cv.notify_one();
        }
        if heartbeat_idle {
            self.heartbeat_cv.notify_one();
        }
    }

    /// For handler thread `thread`: record how long its last job `ran`, hand over the outcome of
    /// the job it `finished`, if any (see [`Shared::push_outcome`]), then return the next job,
    /// blocking; `None` when stopping. One lock for all, since a short handler does little else.
    pub(super) fn next_job(
        &self,
        thread: usize,
        finished: Option<(&ClaimedJob, Outcome)>,
        ran: Option<Duration>,
    ) -> Option<ClaimedJob> {
        let mut st = self.lock();
        if let Some(d) = ran {
            st.ran(d);
        }
        let mut kick =
            finished.is_some_and(|(job, outcome)| self.push_outcome(&mut st, job, outcome));
        let next = loop {
            if st.stopping {
                break None;
            }
            if let Some(job) = Shared::take_ready(&mut st, thread) {
                st.running_handlers += 1;
                st.takes += 1;
                if st.wake_another() {
                    drop(st);
                    self.jobs_cv.notify_one();
                    if kick {
                        self.wake.kick();
                    }
                    return Some(job);
                }
                break Some(job);
            }
            if kick {
                // Kick the writer out of the wake source before this thread sleeps.
                drop(st);
                self.wake.kick();
                kick = false;
                st = self.lock();
                continue;
            }
            st.idle_handlers += 1;
            st = Shared::wait_on(&self.jobs_cv, st, None);
            st.idle_handlers -= 1;
            st.waking = st.waking.saturating_sub(1);
        };
        drop(st);
        if kick {
            self.wake.kick();
        }
        next
    }

    /// The first ready job still ours (one released meanwhile, by shutdown or a lost lease, is
    /// no longer ours to run), marked as run by `thread`.
    fn take_ready(st: &mut State, thread: usize) -> Option<ClaimedJob> {
        while let Some(job) = st.ready.pop_front() {
            if let Some(h) = st.held.get_mut(&job.id).filter(|h| h.phase == Phase::Ready) {
                h.phase = Phase::Running;
                h.thread = Some(thread);
                return Some(job);
            }
        }
        None
    }

    /// Queue a handler's outcome for the completer, unless the job's lease was lost or shutdown
    /// released it (then the outcome is dropped and the job forgotten here). True when the
    /// writer sleeps in the wake source and must be kicked (once the lock is dropped).
    fn push_outcome(&self, st: &mut State, job: &ClaimedJob, outcome: Outcome) -> bool {
        if !self.settling(st, job.id) {
            return false;
        }
        if st.done.is_empty() {
            st.oldest_done = Some(Instant::now());
        }
        st.done.push(Done {
            id: job.id,
            token: job.lease_token,
            outcome,
        });
        // The writer needs to hear only of a first outcome (to start its deadline), of a full
        // batch and of the last running job's outcome: not of every job. Asleep in the wake
        // source (nothing to claim) it hears by a kick; waiting on its condition variable by the
        // notice.
        let first = st.done.len() == 1;
        let notify = first
            || st.done.len() >= self.settings.complete_batch
            || (st.ready.is_empty() && !st.held.values().any(|h| h.phase == Phase::Running));
        if notify {
            self.notify_writer(st);
        }
        st.writer_asleep && first
    }

    /// For the writer, on each turn: when jobs are ready and threads sleep but no thread took a
    /// job since `watch` was taken [`STALL_AFTER`] ago (the running threads ran far past the
    /// mean), wake one more. `watch` is the take count and when it was seen; returns when to
    /// look again, if jobs wait for a thread.
    pub(super) fn watch_ready(
        &self,
        st: &mut State,
        watch: &mut (u64, Instant),
    ) -> Option<Instant> {
        let now = Instant::now();
        if st.ready.is_empty() || st.idle_handlers.saturating_sub(st.waking) == 0 {
            *watch = (st.takes, now);
            return None;
        }
        if st.takes != watch.0 {
            *watch = (st.takes, now);
        } else if now >= watch.1 + STALL_AFTER {
            st.waking += 1;
            self.jobs_cv.notify_one();
            *watch = (st.takes, now);
        }
        Some(watch.1 + STALL_AFTER)
    }

    /// Mark `id` as settling if it is still running under our lease; false when its lease was
    /// lost or shutdown released it (then it is forgotten here).
    pub(super) fn start_settling(&self, id: JobId) -> bool {
        let mut st = self.lock();
        self.settling(&mut st, id)
    }

    fn settling(&self, st: &mut State, id: JobId) -> bool {
        match st.held.get_mut(&id) {
            Some(h) if h.phase == Phase::Running => {
                h.phase = Phase::Settling;
                true
            }
            Some(h) if h.phase == Phase::Released => {
                // Shutdown gave it back (and counted it) or the heartbeat found the lease lost.
                st.held.remove(&id);
                self.notify_writer(st);
                false
            }
            _ => false,
        }
    }

    /// Mark every held job in `phase` as released and return them, for giving back.
    pub(super) fn take_phase(&self, phase: Phase) -> Vec<Held> {
        let mut st = self.lock();
        let mut out = Vec::new();
        for h in st.held.values_mut() {
            if h.phase == phase {
                h.phase = Phase::Released;
                out.push(h.clone());
            }
        }
        if phase == Phase::Ready {
            st.ready.clear();
        }
        out
    }

    /// Block until some held job is due a heartbeat and return those; `None` once told to stop.
    pub(super) fn next_heartbeats(&self) -> Option<Vec<(JobId, LeaseToken)>> {
        let mut st = self.lock();
        loop {
            if st.heartbeat_stop {
                return None;
            }
            let now = Instant::now();
            // Prefetched jobs and outcomes waiting for the completer keep their leases too.
            let live = st.held.values().filter(|h| h.phase != Phase::Released);
            let due: Vec<(JobId, LeaseToken)> = live
                .clone()
                .filter(|h| h.next_heartbeat <= now)
                .map(|h| (h.id, h.token))
                .collect();
            if !due.is_empty() {
                return Some(due);
            }
            let next = live.map(|h| h.next_heartbeat).min();
            st.heartbeat_idle = next.is_none();
            st = Shared::wait_on(&self.heartbeat_cv, st, next.map(|n| n - now));
            st.heartbeat_idle = false;
        }
    }

    /// Record the outcome of a heartbeat of `id`.
    pub(super) fn heartbeat_done(&self, id: JobId, r: Result<Millis, Error>) {
        let every = self.settings.heartbeat_every;
        let mut st = self.lock();
        st.report.heartbeats += 1;
        match r {
            Ok(_) => {
                if let Some(h) = st.held.get_mut(&id) {
                    h.next_heartbeat = Instant::now() + every;
                }
            }
            Err(e) if e.code() == "queue.lease_lost" || e.code() == "queue.not_found" => {
                // Reclaimed after an expiry, or cancelled: a settling job's outcome is refused
                // by its token when the completer writes it; anything else must not run or
                // hand its outcome back.
                let lost = match st.held.get_mut(&id) {
                    Some(h) if matches!(h.phase, Phase::Ready | Phase::Running) => {
                        h.phase = Phase::Released;
                        true
                    }
                    _ => false,
                };
                if lost {
                    st.report.lease_lost += 1;
                    // A prefetched job nobody runs is forgotten at once.
                    if st.held.get(&id).is_some_and(|h| h.thread.is_none()) {
                        st.held.remove(&id);
                        self.notify_writer(&st);
                    }
                }
            }
            Err(e) => {
                // Busy or failing: try again well before the lease runs out.
                if let Some(h) = st.held.get_mut(&id) {
                    h.next_heartbeat = Instant::now() + (every / 4).max(Duration::from_millis(10));
                }
                if !e.is_busy() {
                    st.report.record(e);
                }
            }
        }
    }

    /// The claimer cannot go on: record why and stop claiming.
    pub(super) fn fail(&self, e: Error) {
        let mut st = self.lock();
        if st.report.fatal.is_none() {
            st.report.fatal = Some(e);
        }
    }

    /// The `Instant` at which the queue's clock reads `at` (rounded up a millisecond, so a wake
    /// at the deadline finds the job due).
    pub(super) fn instant_of(&self, at: Millis) -> Instant {
        let now = self.clock.now();
        Instant::now() + now.until(at) + Duration::from_millis(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(st: &mut State, n: usize) {
        for i in 0..n {
            st.ready.push_back(ClaimedJob {
                id: JobId(i as i64 + 1),
                queue: "q".into(),
                payload: "{}".into(),
                attempts: 1,
                max_attempts: 3,
                lease_token: LeaseToken(1),
                lease_expires: Millis(0),
                priority: 0,
            });
        }
    }

    /// How many of the sleeping threads `wake_another` wakes, one call after another.
    fn wakes(st: &mut State) -> usize {
        std::iter::from_fn(|| st.wake_another().then_some(())).count()
    }

    #[test]
    fn a_first_backlog_wakes_every_sleeping_thread_and_no_more() {
        let mut st = State::new();
        st.idle_handlers = 4;
        ready(&mut st, 8);
        assert_eq!(wakes(&mut st), 4);
        assert_eq!(st.waking, 4);
    }

    #[test]
    fn nothing_ready_or_nobody_asleep_wakes_nobody() {
        let mut st = State::new();
        st.idle_handlers = 4;
        assert_eq!(wakes(&mut st), 0);
        let mut st = State::new();
        ready(&mut st, 8);
        assert_eq!(wakes(&mut st), 0);
    }

    #[test]
    fn short_jobs_stay_on_the_running_thread_until_their_backlog_is_worth_a_wake() {
        let mut st = State::new();
        st.idle_handlers = 5;
        st.running_handlers = 2;
        // The mean settles on the jobs' length within a few dozen jobs.
        for _ in 0..64 {
            st.running_handlers += 1;
            st.ran(Duration::from_micros(5));
        }
        assert!(st.mean_run_ns.abs_diff(5_000) < 100, "{}", st.mean_run_ns);
        assert_eq!(st.running_handlers, 2);
        // 2 running, 40 ready at 5 µs: 100 µs each, under WAKE_WORTH.
        ready(&mut st, 40);
        assert_eq!(wakes(&mut st), 0);
        // 2 running, 180 ready: 900 µs of work, 450 µs each, so a third thread (300 µs each), a
        // fourth (225 µs) and a fifth; with 5 on it, 180 µs each: a sixth is not worth it.
        ready(&mut st, 140);
        assert_eq!(wakes(&mut st), 3);
        // With nobody running, one thread is always woken for ready jobs.
        st.running_handlers = 0;
        st.waking = 0;
        st.ready.truncate(1);
        assert_eq!(wakes(&mut st), 1);
    }

    #[test]
    fn a_long_job_lifts_the_mean_at_once() {
        let mut st = State::new();
        for _ in 0..64 {
            st.running_handlers += 1;
            st.ran(Duration::from_micros(2));
        }
        st.running_handlers += 1;
        st.ran(Duration::from_millis(10));
        assert!(st.mean_run_ns >= 2_000_000, "{}", st.mean_run_ns);
    }
}
