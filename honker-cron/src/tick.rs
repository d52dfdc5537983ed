//! Firing: one tick enqueues a job per due boundary and records each boundary in
//! `honker_fires` in the same transaction.
//!
//! # Why no leader is needed
//!
//! A tick runs in one `BEGIN IMMEDIATE` transaction (or a savepoint of the caller's): it reads
//! the due schedules, inserts one `honker_fires (schedule, fire_ms)` row per boundary it fires,
//! enqueues the job, and moves the schedule's `next_fire_ms` forward, all or nothing. Ticks of
//! different processes are serialised by SQLite's write lock, so the second one finds the
//! schedule already moved on; and the primary key of `honker_fires` refuses a second fire of a
//! boundary even if two processes computed it independently (clock skew, a re-registration that
//! recomputed the next fire from a clock that is behind). Any number of schedulers may tick one
//! file; a crashed one leaves nothing to clean up, because its transaction rolled back.
//!
//! # Which boundaries fire
//!
//! The boundaries due at `now` are those from the schedule's `next_fire_ms` up to `now` (and up
//! to `end_at_ms`). The latest of them is *on time* when `now` is at most the schedule's grace
//! period past it; every other due boundary was *missed* (its successor had already passed).
//! On-time boundaries fire; missed ones follow the misfire policy: `skip` drops them, `once`
//! fires one job at the latest missed boundary, `all` fires the latest `cap` of them. Then
//! `max_runs` truncates, and `overlap = skip` records a boundary without a job while the
//! previous fire's job is still pending, scheduled or running.
//!
//! # A schedule whose job the queue refuses
//!
//! When the queue refuses a schedule's job for a reason that lies in the schedule or the
//! queue's configuration (a `payload.*`, `queue.*` or `arg.*` error, such as a payload over a
//! limit lowered after the schedule was registered), the tick rolls back and runs again with
//! that schedule paused and the refusal in its `last_error`: it neither blocks the other
//! schedules nor makes schedulers spin on it. Resuming it fires from the first boundary after the resume; registering it again
//! (say, with a smaller payload) lifts such a pause and keeps its next fire, so its misfire
//! policy decides about the boundaries it missed. Any other error (busy, I/O, a full disk) fails
//! the whole tick, which then writes nothing.

use std::sync::Arc;

use honker_core::{Clock, Millis, kick_after_commit, write_atomically};
use honker_queue::{EnqueueOptions, JobId, JobState, Queue};
use rusqlite::{Connection, params};

use crate::error::{Error, Result};
use crate::expr::Schedule;
use crate::store::{
    DEFAULT_FIRE_RETENTION_MS, Misfire, Overlap, SELECT_COLUMNS, ScheduleInfo, info_from_row,
    next_fire, prune_fires,
};

/// Most due schedules one tick handles; a scheduler ticks again at once when more are due.
pub const TICK_BATCH: usize = 1000;

/// How many old fire rows one tick deletes at most.
const PRUNE_PER_TICK: usize = 100;

/// One boundary a tick handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    /// The schedule.
    pub schedule: String,
    /// The boundary.
    pub fire_ms: Millis,
    /// The job enqueued, or `None` when `overlap = skip` suppressed it.
    pub job_id: Option<JobId>,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Boundaries recorded, in order of schedule then time.
    pub fires: Vec<Fire>,
    /// Boundaries dropped by the misfire policy (approximate after a very long outage of a
    /// very frequent cron schedule).
    pub missed: u64,
    /// Schedules whose stored expression or zone no longer parses (their next fire is cleared).
    pub broken: Vec<String>,
    /// Schedules paused because the queue refused their job (see the module docs).
    pub refused: Vec<Refusal>,
}

/// A schedule a tick paused because the queue refused its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The schedule.
    pub schedule: String,
    /// The refusal's stable code, such as `payload.too_large`.
    pub code: &'static str,
    /// `code: message`, as stored in the schedule's `last_error`.
    pub error: String,
}

impl TickReport {
    /// How many jobs were enqueued.
    pub fn jobs(&self) -> usize {
        self.fires.iter().filter(|f| f.job_id.is_some()).count()
    }
}

/// Fire every boundary due at `now`; see the module docs for which ones.
///
/// Runs in the caller's transaction when there is one (under a savepoint), otherwise in its own
/// `BEGIN IMMEDIATE`, and kicks same-process waiters after committing. Also deletes up to 100
/// fire rows older than [`DEFAULT_FIRE_RETENTION_MS`].
///
/// # Errors
///
/// SQLite errors (`db.busy` when the write lock stays taken). On error nothing is written. A
/// queue refusing one schedule's job is not an error of the tick: that schedule is paused and
/// listed in [`TickReport::refused`].
pub fn tick(conn: &Connection, now: Millis) -> Result<TickReport> {
    // Schedules whose job the queue refused in an earlier attempt of this tick: each attempt
    // that meets a new refusal rolls back and runs again with that schedule paused, so the
    // common case pays for no per-schedule savepoint, and the loop ends (a paused schedule is
    // not due, so each attempt adds a different one).
    let mut refused: Vec<RefusedFire> = Vec::new();
    loop {
        // `write_atomically` rolls back only when its closure fails with a core error: carry
        // the cron error out beside it, so a failed attempt writes nothing.
        let mut failure = None;
        let outcome = write_atomically(conn, |c| {
            tick_in(c, now, &refused).map_err(|e| {
                let rollback = honker_core::Error::InvalidArgument {
                    name: "tick",
                    reason: e.to_string(),
                };
                failure = Some(e);
                rollback
            })
        });
        match (outcome, failure) {
            (Ok(report), _) => {
                kick_after_commit(conn);
                return Ok(report);
            }
            (Err(_), Some(Failure::Refused(r))) if refused.len() <= TICK_BATCH => refused.push(*r),
            (Err(_), Some(Failure::Refused(r))) => return Err(r.cause),
            (Err(_), Some(Failure::Other(e))) => return Err(e),
            (Err(core), None) => return Err(Error::Core(core)),
        }
    }
}

/// Why an attempt at a tick failed.
enum Failure {
    /// The queue refused one schedule's job: pause it and try again.
    Refused(Box<RefusedFire>),
    /// Anything else fails the tick.
    Other(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Other(e)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Failure {
        Failure::Other(e.into())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(r) => write!(f, "{}", r.cause),
            Failure::Other(e) => write!(f, "{e}"),
        }
    }
}

/// A refusal with the error it came from (kept to be returned if the retries run out).
struct RefusedFire {
    refusal: Refusal,
    cause: Error,
}

/// A clock stopped at one instant: jobs a tick enqueues are stamped with the tick's `now`.
#[derive(Debug)]
struct At(Millis);

impl Clock for At {
    fn now(&self) -> Millis {
        self.0
    }
}

fn tick_in(
    c: &Connection,
    now: Millis,
    refused: &[RefusedFire],
) -> std::result::Result<TickReport, Failure> {
    let mut report = TickReport::default();
    for r in refused {
        c.prepare_cached(
            "UPDATE honker_schedules SET paused = 1, last_error = ?2, updated_ms = ?3
             WHERE name = ?1",
        )?
        .execute(params![r.refusal.schedule, r.refusal.error, now.0])?;
        report.refused.push(r.refusal.clone());
    }
    let due: Vec<ScheduleInfo> = c
        .prepare_cached(&format!(
            "SELECT {SELECT_COLUMNS} FROM honker_schedules
             WHERE paused = 0 AND next_fire_ms <= ?1 ORDER BY next_fire_ms LIMIT ?2 + 0"
        ))?
        .query_map(params![now.0, TICK_BATCH as i64], info_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let clock: Arc<dyn Clock> = Arc::new(At(now));
    for info in due {
        match fire_schedule(c, &info, now, &clock, &mut report) {
            Ok(()) => {}
            Err(e) if refused_by_queue(&e) => {
                return Err(Failure::Refused(Box::new(RefusedFire {
                    refusal: Refusal {
                        schedule: info.name,
                        code: e.code(),
                        error: format!("{}: {e}", e.code()),
                    },
                    cause: e,
                })));
            }
            Err(e) => return Err(e.into()),
        }
    }
    prune_fires(
        c,
        Millis(now.0.saturating_sub(DEFAULT_FIRE_RETENTION_MS)),
        PRUNE_PER_TICK,
    )?;
    Ok(report)
}

fn fire_schedule(
    c: &Connection,
    info: &ScheduleInfo,
    now: Millis,
    clock: &Arc<dyn Clock>,
    report: &mut TickReport,
) -> Result<()> {
    let Some(first) = info.next_fire else {
        return Ok(());
    };
    let schedule = match Schedule::parse_in(&info.expression, &info.zone) {
        Ok(s) => s,
        Err(_) => {
            // Leave it for a human (`honker cron ls` shows it), but never due again, so
            // schedulers do not spin on it.
            c.prepare_cached("UPDATE honker_schedules SET next_fire_ms = NULL WHERE name = ?1")?
                .execute([&info.name])?;
            report.broken.push(info.name.clone());
            return Ok(());
        }
    };
    let o = &info.options;
    let until = Millis(o.end_at_ms.map_or(now.0, |end| end.min(now.0)));
    let keep = match o.misfire {
        Misfire::Skip => 1,
        // The latest missed boundary may be the one before an on-time one.
        Misfire::Once => 2,
        Misfire::All { cap } => cap as usize + 1,
    };
    // `first` is a boundary; the due ones are `first` and those after it up to `until`.
    let (count, boundaries) = if first <= until {
        let rest = schedule.due_between(first, until, keep);
        let mut all = Vec::with_capacity(rest.last.len() + 1);
        if (rest.count as usize) < keep {
            all.push(first);
        }
        all.extend(rest.last);
        (rest.count + 1, all)
    } else {
        (0, Vec::new())
    };
    let mut to_fire: Vec<Millis> = Vec::new();
    let mut missed_count = count;
    let on_time = boundaries
        .last()
        .copied()
        .filter(|last| now.0.saturating_sub(last.0) <= o.grace_ms);
    let missed: &[Millis] = match on_time {
        Some(_) => {
            missed_count -= 1;
            &boundaries[..boundaries.len() - 1]
        }
        None => &boundaries[..],
    };
    match o.misfire {
        Misfire::Skip => {}
        Misfire::Once => to_fire.extend(missed.last().copied()),
        Misfire::All { cap } => {
            to_fire.extend(&missed[missed.len().saturating_sub(cap as usize)..]);
        }
    }
    report.missed += missed_count - to_fire.len() as u64;
    to_fire.extend(on_time);
    if let Some(max) = o.max_runs {
        to_fire.truncate(max.saturating_sub(info.runs).min(usize::MAX as u64) as usize);
    }

    let queue = Queue::with_clock(&info.queue, Arc::clone(clock))?;
    let enqueue = EnqueueOptions {
        priority: o.priority,
        max_attempts: o.max_attempts,
        ..EnqueueOptions::default()
    };
    let mut runs = info.runs;
    let mut last_job = info.last_job_id;
    let mut last_fire = info.last_fire;
    for fire_ms in to_fire {
        let inserted = c
            .prepare_cached(
                "INSERT INTO honker_fires (schedule, fire_ms, fired_at_ms, job_id)
                 VALUES (?1, ?2, ?3, NULL) ON CONFLICT DO NOTHING",
            )?
            .execute(params![info.name, fire_ms.0, now.0])?;
        if inserted == 0 {
            // Fired already (by a process whose view of this schedule was different).
            continue;
        }
        last_fire = Some(fire_ms);
        if o.overlap == Overlap::Skip && previous_job_active(c, last_job)? {
            report.fires.push(Fire {
                schedule: info.name.clone(),
                fire_ms,
                job_id: None,
            });
            continue;
        }
        let id = queue.enqueue(c, &info.payload, &enqueue)?;
        c.prepare_cached(
            "UPDATE honker_fires SET job_id = ?3 WHERE schedule = ?1 AND fire_ms = ?2",
        )?
        .execute(params![info.name, fire_ms.0, id.0])?;
        runs += 1;
        last_job = Some(id.0);
        report.fires.push(Fire {
            schedule: info.name.clone(),
            fire_ms,
            job_id: Some(id),
        });
    }
    let next = next_fire(&schedule, o, runs, now);
    c.prepare_cached(
        "UPDATE honker_schedules SET next_fire_ms = ?2, runs = ?3, last_fire_ms = ?4,
             last_job_id = ?5 WHERE name = ?1",
    )?
    .execute(params![
        info.name,
        next.map(|n| n.0),
        runs as i64,
        last_fire.map(|m| m.0),
        last_job
    ])?;
    Ok(())
}

/// Whether `e` is the queue refusing a schedule's job for a reason in the schedule or the
/// queue's configuration, rather than a failure of the database.
fn refused_by_queue(e: &Error) -> bool {
    let code = e.code();
    ["payload.", "queue.", "arg."]
        .iter()
        .any(|p| code.starts_with(p))
}

fn previous_job_active(c: &Connection, job: Option<i64>) -> Result<bool> {
    let Some(id) = job else { return Ok(false) };
    Ok(
        match honker_queue::job(c, JobId(id)).map_err(Error::from)? {
            Some(info) => matches!(
                info.state,
                JobState::Pending | JobState::Scheduled | JobState::Running
            ),
            None => false,
        },
    )
}
