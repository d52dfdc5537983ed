//! Job results: saved in the same transaction as the ack, read back by id, optionally with a
//! time to live, and awaited with the wake loop of DESIGN §2.

use std::time::Instant;

use honker_core::{Clock, WakeSource, write_atomically};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::job::JobId;

/// How many expired results a save deletes at most: enough to keep the table bounded, never a
/// sweep of the whole table.
const EXPIRED_PER_SAVE: i64 = 16;

pub(crate) fn check_result(value: &str, ttl_ms: Option<i64>) -> Result<()> {
    if let Some(t) = ttl_ms {
        honker_core::at_least("ttl_ms", t, 1)?;
    }
    honker_core::payload::check_json(value, honker_core::payload::DEFAULT_MAX_PAYLOAD_BYTES)?;
    Ok(())
}

/// Save (or replace) the result of job `id`: JSON text, readable until `ttl_ms` from now
/// (`None`: kept). To save it atomically with the ack, use
/// [`Queue::ack_with_result`](crate::Queue::ack_with_result), or call this inside the same
/// transaction.
///
/// # Errors
///
/// `payload.not_json`, `payload.too_large` (1 MiB), `arg.invalid` for `ttl_ms < 1`; nothing
/// written on error.
pub fn save_result(
    conn: &Connection,
    clock: &dyn Clock,
    id: JobId,
    value: &str,
    ttl_ms: Option<i64>,
) -> Result<()> {
    check_result(value, ttl_ms)?;
    let now = clock.now().get();
    write_atomically(conn, |c| save_unchecked(c, now, id, value, ttl_ms))?;
    honker_core::kick_after_commit(conn);
    Ok(())
}

pub(crate) fn save_unchecked(
    conn: &Connection,
    now: i64,
    id: JobId,
    value: &str,
    ttl_ms: Option<i64>,
) -> honker_core::Result<()> {
    conn.prepare_cached(
        "INSERT INTO honker_results (job_id, value, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (job_id) DO UPDATE SET value = excluded.value,
             created_ms = excluded.created_ms, expires_ms = excluded.expires_ms",
    )?
    .execute(params![
        id,
        value,
        now,
        ttl_ms.map(|t| now.saturating_add(t))
    ])?;
    conn.prepare_cached(
        "DELETE FROM honker_results WHERE job_id IN
             (SELECT job_id FROM honker_results WHERE expires_ms IS NOT NULL AND expires_ms <= ?1
              ORDER BY expires_ms LIMIT ?2 + 0)",
    )?
    .execute(params![now, EXPIRED_PER_SAVE])?;
    Ok(())
}

/// The saved result of job `id`, unless there is none or it has expired.
///
/// # Errors
///
/// SQLite errors.
pub fn get_result(conn: &Connection, clock: &dyn Clock, id: JobId) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT value FROM honker_results
             WHERE job_id = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)",
        )?
        .query_row(params![id, clock.now().get()], |r| r.get(0))
        .optional()?)
}

/// Block until job `id` has a result, or until `deadline` (`None`: no deadline); `Ok(None)` at
/// the deadline. Follows the wake loop: sample the epoch, look, sleep past the sample; a result
/// committed at any point is seen.
///
/// # Errors
///
/// `wait.in_transaction` inside an open transaction on `conn` (its snapshot would hide the
/// result); wake errors; SQLite errors.
pub fn result_wait(
    conn: &Connection,
    clock: &dyn Clock,
    wake: &dyn WakeSource,
    id: JobId,
    deadline: Option<Instant>,
) -> Result<Option<String>> {
    honker_core::ensure_no_transaction(conn)?;
    loop {
        let seen = wake.epoch();
        if let Some(v) = get_result(conn, clock, id)? {
            return Ok(Some(v));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        wake.wait_past(seen, deadline)?;
    }
}
