//! Operations by job id alone, whatever its queue: look a job up (live, dead or done) and cancel
//! it.

use honker_core::Millis;
use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;
use crate::job::{JobId, JobInfo, JobState};
use crate::sql::JOB_WORKER;

/// Everything known about job `id`: live (pending, scheduled, running), dead, or done (acked, in a
/// queue that keeps a history); `None` when it was acked without history, cancelled, purged, or
/// never existed.
///
/// # Errors
///
/// SQLite errors.
pub fn job(conn: &Connection, id: JobId) -> Result<Option<JobInfo>> {
    let live = conn
        .prepare_cached(&format!(
            "SELECT queue, state, payload, priority, attempts, max_attempts, run_at,
                        expires_at, dedup_key, last_error, {JOB_WORKER}, lease_expires, created_ms
                 FROM honker_jobs WHERE id = ?1"
        ))?
        .query_row([id], |r| {
            Ok(JobInfo {
                id,
                queue: r.get(0)?,
                state: JobState::from_code(r.get(1)?),
                payload: r.get(2)?,
                priority: r.get(3)?,
                attempts: r.get(4)?,
                max_attempts: r.get(5)?,
                run_at: r.get(6)?,
                expires_at: r.get::<_, Option<i64>>(7)?.map(Millis),
                dedup_key: r.get(8)?,
                last_error: r.get(9)?,
                dead_reason: None,
                worker: r.get(10)?,
                lease_expires: r.get::<_, Option<i64>>(11)?.map(Millis),
                created: r.get(12)?,
            })
        })
        .optional()?;
    if live.is_some() {
        return Ok(live);
    }
    let dead = conn
        .prepare_cached(
            "SELECT queue, payload, priority, attempts, max_attempts, died_ms, dedup_key,
                    last_error, reason, created_ms
             FROM honker_dead WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(JobInfo {
                id,
                queue: r.get(0)?,
                state: JobState::Dead,
                payload: r.get(1)?,
                priority: r.get(2)?,
                attempts: r.get(3)?,
                max_attempts: r.get(4)?,
                run_at: r.get(5)?,
                expires_at: None,
                dedup_key: r.get(6)?,
                last_error: r.get(7)?,
                dead_reason: r.get(8)?,
                worker: None,
                lease_expires: None,
                created: r.get(9)?,
            })
        })
        .optional()?;
    if dead.is_some() {
        return Ok(dead);
    }
    Ok(conn
        .prepare_cached(
            "SELECT queue, payload, priority, attempts, done_ms, worker, created_ms, max_attempts
             FROM honker_history WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(JobInfo {
                id,
                queue: r.get(0)?,
                state: JobState::Done,
                payload: r.get(1)?,
                priority: r.get(2)?,
                attempts: r.get(3)?,
                max_attempts: r.get(7)?,
                run_at: r.get(4)?,
                expires_at: None,
                dedup_key: None,
                last_error: None,
                dead_reason: None,
                worker: r.get(5)?,
                lease_expires: None,
                created: r.get(6)?,
            })
        })
        .optional()?)
}

/// Cancel a live job (pending, scheduled or running): it is deleted, and a holder's later ack,
/// heartbeat, retry or fail is refused with `queue.lease_lost`. Returns whether a job was
/// cancelled (dead letters are not touched).
///
/// # Errors
///
/// SQLite errors.
pub fn cancel(conn: &Connection, id: JobId) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM honker_jobs WHERE id = ?1")?
        .execute([id])?;
    if n > 0 {
        honker_core::kick_after_commit(conn);
    }
    Ok(n > 0)
}
