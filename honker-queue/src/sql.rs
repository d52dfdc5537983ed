//! The queue, result, lock and rate-limit SQL functions of DESIGN §6.
//!
//! Errors read `honker: <code>: <message>`; `SQLITE_BUSY` passes through untouched. Every
//! function checks all its arguments before it writes, so a refused call writes nothing, and
//! every multi-statement write runs all-or-nothing (its own `BEGIN IMMEDIATE` in autocommit, a
//! savepoint inside the caller's transaction).

use std::sync::Arc;
use std::time::{Duration, Instant};

use honker_core::payload::with_payload;
use honker_core::sql::{
    ANYWHERE, Call, DIRECT_ONLY, SqlFunction, arg_cancel_key, arg_i64, arg_non_negative,
    arg_opt_text, arg_text, register_functions,
};
use honker_core::{Clock, SystemClock, WakeProvider, WakeSource};
use rusqlite::Connection;
use rusqlite::functions::Context;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::job::{ClaimedJob, JobId, JobInfo, LeaseToken, RetryOutcome};
use crate::options::{EnqueueOptions, QueueOptionsPatch, parse_object};
use crate::queue::Queue;

const PURGE_OPTIONS: &[&str] = &["older_than_ms"];

/// A SQL expression for the worker name of a row of `honker_jobs` (NULL unless it runs): its
/// claimer's (schema v8), or the name an older build wrote into the row itself. For queries of
/// `honker_jobs` under its own name (no alias), such as
/// `SELECT id, {JOB_WORKER} FROM honker_jobs WHERE state = 2`.
pub const JOB_WORKER: &str = "coalesce((SELECT c.worker FROM honker_claimers c
     WHERE c.id = honker_jobs.claimer), honker_jobs.worker)";

/// Register the queue SQL functions on `conn`.
///
/// Queue (`queue` is a name, `options` a JSON object text, ids and tokens INTEGER):
/// - `honker_queue_configure(queue, options)` -> the queue's options as JSON;
/// - `honker_enqueue(queue, payload[, options])` -> job id; `honker_enqueue_batch(queue,
///   payloads_array[, options])` -> JSON array of ids;
/// - `honker_claim(queue, worker, n[, lease_ms])` -> JSON array of
///   `{"id","queue","payload":<embedded>,"attempts","max_attempts","lease_token",
///   "lease_expires_ms","priority"}`;
/// - `honker_claim_wait(queue, worker, n, lease_ms, timeout_ms)` -> the same, blocking until
///   jobs are claimed or `timeout_ms` passes (`[]`); `lease_ms` may be NULL. It refuses to run
///   inside an open transaction (`wait.in_transaction`) and holds no read transaction while it
///   blocks, as long as the calling statement reads no table itself;
/// - `honker_ack(job_id, lease_token)` -> 1; `honker_ack_batch(pairs_json)` (`[[id, token],
///   ...]`) -> how many were still held; `honker_retry(job_id, lease_token[, delay_ms[,
///   error]])` -> `{"state":"retrying","run_at_ms":..}` or `{"state":"dead"}`;
///   `honker_release(job_id, lease_token)` -> 1; `honker_fail(job_id, lease_token, error)` -> 1;
///   `honker_heartbeat(job_id, lease_token, extend_ms)` -> new lease expiry. A stale token is
///   `queue.lease_lost`;
/// - `honker_cancel(job_id)` -> 1 or 0; `honker_job(job_id)` -> JSON object or NULL;
///   `honker_queue_stats(queue)` -> JSON object; `honker_next_due(queue)` -> ms or NULL;
/// - `honker_dead_list(queue[, limit])` -> JSON array, newest first;
///   `honker_dead_requeue(job_id)` -> 1 or 0; `honker_dead_requeue_all(queue)` -> count;
///   `honker_dead_purge(queue[, options])` with `{"older_than_ms":..}` (default 0: all) -> count.
///
/// Results: `honker_result_save(job_id, value[, ttl_ms])` -> 1, `honker_result_get(job_id)` ->
/// the value (JSON text) or NULL.
///
/// Locks and limits: `honker_lock_acquire(name, owner, ttl_ms)` -> fencing token or NULL,
/// `honker_lock_renew(name, token, ttl_ms)` -> 1 or 0, `honker_lock_release(name, token)` -> 1
/// or 0, `honker_rate_limit(name, limit, per_ms)` -> 1 (admitted) or 0 (refused, not counted).
///
/// # Errors
///
/// SQLite's error when a function cannot be registered.
pub fn register(conn: &Connection, wakes: Arc<dyn WakeProvider>) -> rusqlite::Result<()> {
    register_functions(conn, Some(wakes), FUNCTIONS)
}

/// The queue's SQL functions: name, arguments, flags, handler.
const FUNCTIONS: &[SqlFunction] = &[
    SqlFunction::new("honker_queue_configure", 2, DIRECT_ONLY, configure),
    SqlFunction::args("honker_enqueue", 2, 3, ANYWHERE, enqueue),
    SqlFunction::args("honker_enqueue_batch", 2, 3, ANYWHERE, enqueue_batch),
    SqlFunction::args("honker_claim", 3, 4, DIRECT_ONLY, claim),
    SqlFunction::args("honker_claim_wait", 5, 6, DIRECT_ONLY, claim_wait),
    SqlFunction::new("honker_ack", 2, DIRECT_ONLY, ack),
    SqlFunction::new("honker_ack_batch", 1, DIRECT_ONLY, ack_batch_fn),
    SqlFunction::args("honker_retry", 2, 4, DIRECT_ONLY, retry),
    SqlFunction::new("honker_release", 2, DIRECT_ONLY, release),
    SqlFunction::new("honker_fail", 3, DIRECT_ONLY, fail),
    SqlFunction::new("honker_heartbeat", 3, DIRECT_ONLY, heartbeat),
    SqlFunction::new("honker_cancel", 1, DIRECT_ONLY, cancel),
    SqlFunction::new("honker_job", 1, ANYWHERE, job),
    SqlFunction::new("honker_queue_stats", 1, ANYWHERE, stats),
    SqlFunction::new("honker_next_due", 1, ANYWHERE, next_due),
    SqlFunction::args("honker_dead_list", 1, 2, ANYWHERE, dead_list),
    SqlFunction::new("honker_dead_requeue", 1, DIRECT_ONLY, dead_requeue),
    SqlFunction::new("honker_dead_requeue_all", 1, DIRECT_ONLY, dead_requeue_all),
    SqlFunction::args("honker_dead_purge", 1, 2, DIRECT_ONLY, dead_purge),
    SqlFunction::args("honker_result_save", 2, 3, DIRECT_ONLY, result_save),
    SqlFunction::new("honker_result_get", 1, ANYWHERE, result_get),
    SqlFunction::new("honker_lock_acquire", 3, DIRECT_ONLY, lock_acquire),
    SqlFunction::new("honker_lock_renew", 3, DIRECT_ONLY, lock_renew),
    SqlFunction::new("honker_lock_release", 2, DIRECT_ONLY, lock_release),
    SqlFunction::new("honker_rate_limit", 3, DIRECT_ONLY, rate_limit),
];

type Out = rusqlite::Result<SqlValue>;

fn configure(call: &Call<'_>) -> Out {
    let q = queue_arg(call, 0)?;
    let patch = QueueOptionsPatch::from_json(&arg_text(call, 1, "options")?)?;
    Ok(q.configure(call.conn(), &patch)?.to_json().into())
}

fn enqueue(call: &Call<'_>) -> Out {
    let q = queue_arg(call, 0)?;
    let payload = arg_text(call, 1, "payload")?;
    let opts = enqueue_options(call, 2)?;
    Ok(q.enqueue(call.conn(), &payload, &opts)?.0.into())
}

fn enqueue_batch(call: &Call<'_>) -> Out {
    let q = queue_arg(call, 0)?;
    let payloads = payload_array(&arg_text(call, 1, "payloads")?)?;
    let opts = enqueue_options(call, 2)?;
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let ids = q.enqueue_batch(call.conn(), &refs, &opts)?;
    Ok(Value::from(ids.iter().map(|i| i.0).collect::<Vec<_>>())
        .to_string()
        .into())
}

fn claim(call: &Call<'_>) -> Out {
    let (q, worker, n, lease) = claim_args(call)?;
    Ok(claimed_json(&q.claim(call.conn(), &worker, n, lease)?).into())
}

fn ack(call: &Call<'_>) -> Out {
    let (id, token) = held_args(call)?;
    let conn = call.conn();
    queue_of_running(conn, id, token)?.ack(conn, id, token)?;
    Ok(1.into())
}

fn ack_batch_fn(call: &Call<'_>) -> Out {
    let pairs = ack_pairs(&arg_text(call, 0, "pairs")?)?;
    Ok((ack_batch(call.conn(), &pairs)? as i64).into())
}

fn retry(call: &Call<'_>) -> Out {
    let (id, token) = held_args(call)?;
    let delay = opt_i64_arg(call, 2, "delay_ms")?;
    let error = arg_opt_text(call, 3, "error")?;
    let conn = call.conn();
    let q = queue_of_running(conn, id, token)?;
    Ok(match q.retry(conn, id, token, delay, error.as_deref())? {
        RetryOutcome::Retrying { run_at } => {
            json!({"state": "retrying", "run_at_ms": run_at.get()}).to_string()
        }
        RetryOutcome::Dead => json!({"state": "dead"}).to_string(),
    }
    .into())
}

fn release(call: &Call<'_>) -> Out {
    let (id, token) = held_args(call)?;
    let conn = call.conn();
    queue_of_running(conn, id, token)?.release(conn, id, token)?;
    Ok(1.into())
}

fn fail(call: &Call<'_>) -> Out {
    let (id, token) = held_args(call)?;
    let error = arg_text(call, 2, "error")?;
    let conn = call.conn();
    queue_of_running(conn, id, token)?.fail(conn, id, token, &error)?;
    Ok(1.into())
}

fn heartbeat(call: &Call<'_>) -> Out {
    let (id, token) = held_args(call)?;
    let extend = arg_i64(call, 2, "extend_ms")?;
    let conn = call.conn();
    Ok(queue_of_running(conn, id, token)?
        .heartbeat(conn, id, token, extend)?
        .get()
        .into())
}

fn cancel(call: &Call<'_>) -> Out {
    let id = JobId(arg_i64(call, 0, "job_id")?);
    Ok(i64::from(crate::cancel(call.conn(), id)?).into())
}

fn job(call: &Call<'_>) -> Out {
    let id = JobId(arg_i64(call, 0, "job_id")?);
    Ok(crate::job(call.conn(), id)?.map(|j| job_json(&j)).into())
}

fn stats(call: &Call<'_>) -> Out {
    let q = queue_arg(call, 0)?;
    let s = q.stats(call.conn())?;
    Ok(json!({
        "queue": q.name(),
        "pending": s.pending,
        "scheduled": s.scheduled,
        "running": s.running,
        "retrying": s.retrying,
        "dead": s.dead,
        "oldest_pending_age_ms": s.oldest_pending_age_ms,
        "next_due_ms": s.next_due.map(|m| m.get()),
    })
    .to_string()
    .into())
}

fn next_due(call: &Call<'_>) -> Out {
    let q = queue_arg(call, 0)?;
    Ok(q.next_due(call.conn())?.map(|m| m.get()).into())
}

fn dead_list(call: &Call<'_>) -> Out {
    let q = queue_arg(call, 0)?;
    let limit = if call.len() > 1 {
        arg_non_negative(call, 1, "limit")?
    } else {
        100
    };
    let rows = q.dead_letters(call.conn(), usize::try_from(limit).unwrap_or(usize::MAX))?;
    let items: Vec<String> = rows
        .iter()
        .map(|d| {
            with_payload(
                &json!({
                    "id": d.id.0, "queue": d.queue,
                    "priority": d.priority, "attempts": d.attempts,
                    "max_attempts": d.max_attempts, "reason": d.reason,
                    "last_error": d.last_error, "created_ms": d.created.get(),
                    "died_ms": d.died.get(),
                }),
                &d.payload,
            )
        })
        .collect();
    Ok(format!("[{}]", items.join(",")).into())
}

fn dead_requeue(call: &Call<'_>) -> Out {
    let id = JobId(arg_i64(call, 0, "job_id")?);
    let conn = call.conn();
    let queue: Option<String> = rusqlite::OptionalExtension::optional(
        conn.prepare_cached("SELECT queue FROM honker_dead WHERE id = ?1")?
            .query_row([id], |r| r.get(0)),
    )?;
    let Some(queue) = queue else {
        return Ok(0.into());
    };
    Ok(i64::from(Queue::new(&queue)?.requeue_dead(conn, id)?).into())
}

fn dead_requeue_all(call: &Call<'_>) -> Out {
    let q = queue_arg(call, 0)?;
    Ok((q.requeue_all_dead(call.conn())? as i64).into())
}

fn dead_purge(call: &Call<'_>) -> Out {
    let q = queue_arg(call, 0)?;
    let options = arg_opt_text(call, 1, "options")?;
    let map = parse_object(options.as_deref(), PURGE_OPTIONS, "older_than_ms")?;
    let older = crate::options::opt_i64(&map, "older_than_ms")?.unwrap_or(0);
    if older < 0 {
        return Err(Error::bad_option("older_than_ms", "must be >= 0").into());
    }
    Ok((q.purge_dead(call.conn(), older)? as i64).into())
}

fn result_save(call: &Call<'_>) -> Out {
    let id = JobId(arg_i64(call, 0, "job_id")?);
    let value = arg_text(call, 1, "value")?;
    let ttl = opt_i64_arg(call, 2, "ttl_ms")?;
    crate::save_result(call.conn(), &SystemClock, id, &value, ttl)?;
    Ok(1.into())
}

fn result_get(call: &Call<'_>) -> Out {
    let id = JobId(arg_i64(call, 0, "job_id")?);
    Ok(crate::get_result(call.conn(), &SystemClock, id)?.into())
}

fn lock_acquire(call: &Call<'_>) -> Out {
    let name = arg_text(call, 0, "name")?;
    let owner = arg_text(call, 1, "owner")?;
    let ttl = arg_i64(call, 2, "ttl_ms")?;
    Ok(crate::lock_acquire(call.conn(), &SystemClock, &name, &owner, ttl)?.into())
}

fn lock_renew(call: &Call<'_>) -> Out {
    let name = arg_text(call, 0, "name")?;
    let token = arg_i64(call, 1, "token")?;
    let ttl = arg_i64(call, 2, "ttl_ms")?;
    Ok(i64::from(crate::lock_renew(
        call.conn(),
        &SystemClock,
        &name,
        token,
        ttl,
    )?)
    .into())
}

fn lock_release(call: &Call<'_>) -> Out {
    let name = arg_text(call, 0, "name")?;
    let token = arg_i64(call, 1, "token")?;
    Ok(i64::from(crate::lock_release(
        call.conn(),
        &SystemClock,
        &name,
        token,
    )?)
    .into())
}

fn rate_limit(call: &Call<'_>) -> Out {
    let name = arg_text(call, 0, "name")?;
    let limit = arg_i64(call, 1, "limit")?;
    let per = arg_i64(call, 2, "per_ms")?;
    Ok(i64::from(crate::rate_limit(
        call.conn(),
        &SystemClock,
        &name,
        limit,
        per,
    )?)
    .into())
}

fn queue_arg(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Queue> {
    Ok(Queue::new(&arg_text(ctx, i, "queue")?)?)
}

fn opt_i64_arg(ctx: &Context<'_>, i: usize, name: &'static str) -> rusqlite::Result<Option<i64>> {
    if i >= ctx.len() || matches!(ctx.get_raw(i), ValueRef::Null) {
        return Ok(None);
    }
    arg_i64(ctx, i, name).map(Some)
}

fn enqueue_options(ctx: &Context<'_>, i: usize) -> rusqlite::Result<EnqueueOptions> {
    Ok(match arg_opt_text(ctx, i, "options")? {
        Some(t) => EnqueueOptions::from_json(&t)?,
        None => EnqueueOptions::default(),
    })
}

fn held_args(ctx: &Context<'_>) -> rusqlite::Result<(JobId, LeaseToken)> {
    Ok((
        JobId(arg_i64(ctx, 0, "job_id")?),
        LeaseToken(arg_i64(ctx, 1, "lease_token")?),
    ))
}

fn claim_args(ctx: &Context<'_>) -> rusqlite::Result<(Queue, String, usize, Option<i64>)> {
    let q = queue_arg(ctx, 0)?;
    let worker = arg_text(ctx, 1, "worker")?;
    let n = arg_non_negative(ctx, 2, "n")?;
    let lease = opt_i64_arg(ctx, 3, "lease_ms")?;
    Ok((q, worker, usize::try_from(n).unwrap_or(usize::MAX), lease))
}

/// The queue of the job held under `token`: SQL callers name only the job and token.
fn queue_of_running(conn: &Connection, id: JobId, token: LeaseToken) -> Result<Queue> {
    let queue: Option<String> = rusqlite::OptionalExtension::optional(
        conn.prepare_cached(
            "SELECT queue FROM honker_jobs WHERE id = ?1 AND lease_token = ?2 AND state = 2",
        )?
        .query_row(rusqlite::params![id, token], |r| r.get(0)),
    )?;
    match queue {
        Some(q) => Queue::new(&q),
        None => Err(Error::LeaseLost { id }),
    }
}

/// `[[id, token], ...]` or `[{"id":..,"lease_token":..}, ...]`.
fn ack_pairs(text: &str) -> Result<Vec<(JobId, LeaseToken)>> {
    let bad = |reason: &str| {
        Error::Core(honker_core::Error::InvalidArgument {
            name: "pairs",
            reason: reason.to_owned(),
        })
    };
    let v: Value = serde_json::from_str(text).map_err(|e| {
        bad(&format!(
            "must be a JSON array of [job_id, lease_token]: {e}"
        ))
    })?;
    let Value::Array(items) = v else {
        return Err(bad("must be a JSON array of [job_id, lease_token]"));
    };
    items
        .iter()
        .map(|item| {
            let (id, token) = match item {
                Value::Array(p) if p.len() == 2 => (p[0].as_i64(), p[1].as_i64()),
                Value::Object(o) => (
                    o.get("id").and_then(Value::as_i64),
                    o.get("lease_token").and_then(Value::as_i64),
                ),
                _ => (None, None),
            };
            match (id, token) {
                (Some(i), Some(t)) => Ok((JobId(i), LeaseToken(t))),
                _ => Err(bad(&format!("{item} is not [job_id, lease_token]"))),
            }
        })
        .collect()
}

/// Ack pairs whatever their queues, all in one transaction.
fn ack_batch(conn: &Connection, pairs: &[(JobId, LeaseToken)]) -> Result<usize> {
    if pairs.is_empty() {
        return Ok(0);
    }
    let now = SystemClock.now().get();
    let n = honker_core::write_atomically(conn, |c| {
        let mut n = 0;
        for (id, token) in pairs {
            n += usize::from(crate::queue::finish_held(c, *id, *token, None, now)?);
        }
        Ok(n)
    })?;
    honker_core::kick_after_commit(conn);
    Ok(n)
}

fn payload_array(text: &str) -> Result<Vec<String>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|source| honker_core::Error::PayloadNotJson { source })?;
    let Value::Array(items) = v else {
        return Err(honker_core::Error::InvalidArgument {
            name: "payloads",
            reason: "must be a JSON array of payloads".into(),
        }
        .into());
    };
    Ok(items.iter().map(Value::to_string).collect())
}

/// The claimed jobs as a JSON array, each payload embedded as the text the producer stored, so
/// no JSON layer reorders its keys or respells its numbers.
fn claimed_json(jobs: &[ClaimedJob]) -> String {
    use std::fmt::Write as _;
    // Written by hand, keys in the order serde_json's map gives them (sorted) with the payload
    // last: this runs for every claimed job, and building a map per job cost more than the
    // claim's own UPDATE for small payloads.
    let mut out = String::with_capacity(jobs.len() * 192 + 2);
    out.push('[');
    // Every job of one claim is of one queue: its name is escaped once.
    let mut queues = honker_core::payload::RepeatedName::default();
    for (i, j) in jobs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let q = queues.json(&j.queue);
        let _ = write!(
            out,
            r#"{{"attempts":{},"id":{},"lease_expires_ms":{},"lease_token":{},"max_attempts":{},"priority":{},"queue":{q},"payload":{}}}"#,
            j.attempts,
            j.id.0,
            j.lease_expires.get(),
            j.lease_token.0,
            j.max_attempts,
            j.priority,
            honker_core::payload::embeddable(&j.payload),
        );
    }
    out.push(']');
    out
}

fn job_json(j: &JobInfo) -> String {
    with_payload(
        &json!({
            "id": j.id.0, "queue": j.queue, "state": j.state.as_str(),
            "priority": j.priority, "attempts": j.attempts, "max_attempts": j.max_attempts,
            "run_at_ms": j.run_at.get(), "expires_at_ms": j.expires_at.map(|m| m.get()),
            "dedup_key": j.dedup_key, "last_error": j.last_error, "dead_reason": j.dead_reason,
            "worker": j.worker, "lease_expires_ms": j.lease_expires.map(|m| m.get()),
            "created_ms": j.created.get(),
        }),
        &j.payload,
    )
}

fn claim_wait(call: &Call<'_>) -> Out {
    let (q, worker, n, lease) = claim_args(call)?;
    let timeout_ms = arg_non_negative(call, 4, "timeout_ms")?;
    let cancel_key = arg_cancel_key(call, 5)?;
    honker_core::sql::nonzero_for_wait("n", n)?;
    if let Some(l) = lease {
        honker_core::at_least("lease_ms", l, 1)?;
    }
    let conn = call.conn();
    let source = call.wake_for_wait(cancel_key.as_deref())?;
    let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms as u64));
    let jobs = wait_loop(conn, &q, &*source, &worker, n, lease, deadline).inspect_err(|e| {
        if matches!(e, Error::Core(honker_core::Error::Wake(w)) if w.code() != "wait.cancelled") {
            call.forget_wake();
        }
    })?;
    Ok(claimed_json(&jobs).into())
}

/// DESIGN §2: sample the epoch, claim with fresh statements, then sleep past the sample until a
/// commit, the queue's next due time, or the deadline.
pub(crate) fn wait_loop(
    conn: &Connection,
    q: &Queue,
    wake: &dyn WakeSource,
    worker: &str,
    n: usize,
    lease: Option<i64>,
    deadline: Option<Instant>,
) -> Result<Vec<ClaimedJob>> {
    loop {
        let seen = wake.epoch();
        let jobs = q.claim(conn, worker, n, lease)?;
        let now = Instant::now();
        if !jobs.is_empty() || deadline.is_some_and(|d| now >= d) {
            return Ok(jobs);
        }
        let due = q.next_due(conn)?.map(|t| {
            // Something due now but not claimable this instant (a sweep ran out of its bound, or
            // a clock step): look again very soon rather than spin.
            let ms = (t.get() - q.clock().now().get()).max(1);
            now + Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX).min(86_400_000))
        });
        let until = match (deadline, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        wake.wait_past(seen, until)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use honker_core::Millis;

    /// The hand-written JSON is the one the general serializer writes, for names and payloads
    /// that need escaping or are not JSON at all.
    #[test]
    fn claimed_json_matches_the_serializer() {
        let job = |id, queue: &str, payload: &str| ClaimedJob {
            id: JobId(id),
            queue: queue.to_owned(),
            payload: payload.to_owned(),
            attempts: 2,
            max_attempts: 5,
            lease_token: LeaseToken((3 << 40) | 12345),
            lease_expires: Millis(1_796_214_998_170),
            priority: -7,
        };
        let jobs = [
            job(1, "emails", r#"{"to":"a"}"#),
            job(2, "emails", " [1, 2.50, \"ü\"] "),
            job(3, "q\"uo\\te\u{1}é", "not json"),
            job(i64::MAX, "", "null"),
        ];
        let expected: Vec<String> = jobs
            .iter()
            .map(|j| {
                with_payload(
                    &json!({
                        "id": j.id.0, "queue": j.queue,
                        "attempts": j.attempts, "max_attempts": j.max_attempts,
                        "lease_token": j.lease_token.0,
                        "lease_expires_ms": j.lease_expires.get(),
                        "priority": j.priority,
                    }),
                    &j.payload,
                )
            })
            .collect();
        assert_eq!(claimed_json(&jobs), format!("[{}]", expected.join(",")));
        assert_eq!(claimed_json(&[]), "[]");
        let parsed: Value = serde_json::from_str(&claimed_json(&jobs)).unwrap();
        assert_eq!(parsed[2]["payload"], "not json");
        assert_eq!(parsed[2]["queue"], "q\"uo\\te\u{1}é");
    }
}
