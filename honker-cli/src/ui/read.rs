//! What the dashboard reads: the overview, the job list (filters, keyset paging, capped
//! counts), one job, cron schedules and the workers holding leases.
//!
//! Reads use the crates' APIs where they exist (`Queue::stats`, `honker_queue::job`,
//! `honker_cron::list`, `honker_stream::consumers`) and otherwise plain SQL against the columns
//! documented in `honker-core/src/schema/v*.sql`. Every list is bounded: keyset pages walk the
//! integer primary key in windows of [`SCAN_WINDOW`] ids, so no request reads more than a fixed
//! number of rows however large the file grows.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use honker_core::{Clock, SystemClock};
use honker_queue::sql::JOB_WORKER;
use honker_queue::{JobId, Queue};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::{Value, json};

/// Ids one job-list request walks per window of the primary key.
pub(crate) const SCAN_WINDOW: i64 = 50_000;
/// Windows one job-list request walks at most before it returns a cursor to continue from.
pub(crate) const MAX_WINDOWS: i64 = 4;
/// Counts stop here ("10000+").
pub(crate) const COUNT_CAP: i64 = 10_000;
/// Default and largest page of the job list.
pub(crate) const DEFAULT_PAGE: i64 = 50;
pub(crate) const MAX_PAGE: i64 = 500;
/// How much of a payload or an error the list shows.
const PREVIEW_CHARS: usize = 160;

pub(crate) fn now_ms() -> i64 {
    SystemClock.now().get()
}

/// A payload as JSON (it always is; a row written around honker that is not shows as a string).
pub(crate) fn payload_value(p: &str) -> Value {
    serde_json::from_str(p).unwrap_or_else(|_| Value::String(p.to_owned()))
}

fn preview(s: &str) -> String {
    if s.chars().count() <= PREVIEW_CHARS {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(PREVIEW_CHARS).collect();
        out.push('…');
        out
    }
}

/// Every queue the file knows of: with options, live jobs, dead letters or history.
///
/// A loose index scan (`min(queue) > previous` on each index that leads with the queue), so it
/// costs one index seek per queue and state, not a read of every job.
pub(crate) fn queue_names(conn: &Connection) -> Result<Vec<String>> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut stmt = conn.prepare_cached("SELECT name FROM honker_queues")?;
    for n in stmt.query_map([], |r| r.get::<_, String>(0))? {
        names.insert(n?);
    }
    let probes = [
        "SELECT min(queue) FROM honker_jobs WHERE state = 0 AND queue > ?1",
        "SELECT min(queue) FROM honker_jobs WHERE state = 1 AND queue > ?1",
        "SELECT min(queue) FROM honker_jobs WHERE state = 2 AND queue > ?1",
        "SELECT min(queue) FROM honker_dead WHERE queue > ?1",
        "SELECT min(queue) FROM honker_history WHERE queue > ?1",
    ];
    for sql in probes {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut after = String::new();
        while let Some(q) = stmt.query_row([&after], |r| r.get::<_, Option<String>>(0))? {
            names.insert(q.clone());
            after = q;
        }
    }
    Ok(names.into_iter().collect())
}

/// The overview's queue rows (without throughput, which `live` adds).
pub(crate) fn queues(conn: &Connection) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for name in queue_names(conn)? {
        let q = Queue::new(&name)?;
        let s = q.stats(conn)?;
        let o = q.options(conn)?;
        out.push(json!({
            "name": name,
            "pending": s.pending,
            "scheduled": s.scheduled,
            "running": s.running,
            "retrying": s.retrying,
            "dead": s.dead,
            "oldest_pending_age_ms": s.oldest_pending_age_ms,
            "next_due_ms": s.next_due.map(|t| t.get()),
            "paused": o.paused,
            "keep_history_ms": o.keep_history_ms,
        }));
    }
    Ok(out)
}

/// Stream topics with their consumers and lag.
pub(crate) fn streams(conn: &Connection) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for t in honker_stream::topics(conn)? {
        let consumers: Vec<Value> = honker_stream::consumers(conn, &t.topic)?
            .into_iter()
            .map(|c| {
                json!({
                    "consumer": c.consumer, "committed": c.committed.get(),
                    "lag_events": c.lag_events, "lag_ms": c.lag_ms,
                    "updated_ms": c.updated.get(), "behind_trim": c.behind_trim,
                })
            })
            .collect();
        out.push(json!({
            "topic": t.topic, "events": t.events, "payload_bytes": t.payload_bytes,
            "first": t.first.map(|o| o.get()), "last": t.last.map(|o| o.get()),
            "trimmed_through": t.trimmed_through.get(), "consumers": consumers,
        }));
    }
    Ok(out)
}

/// Cron schedules with their next fires, last fire and lateness.
///
/// Lateness: for an unpaused schedule whose next boundary has passed, how long ago (no scheduler
/// ticked it yet); and for the last fire, how long after its boundary it fired.
pub(crate) fn schedules(conn: &Connection) -> Result<Vec<Value>> {
    let now = now_ms();
    let list = honker_cron::list(conn, 5)?;
    let mut fired_at = conn.prepare_cached(
        "SELECT fired_at_ms FROM honker_fires WHERE schedule = ?1 AND fire_ms = ?2",
    )?;
    let mut out = Vec::new();
    for s in list {
        let last_fired_at: Option<i64> = match s.last_fire {
            Some(f) => fired_at
                .query_row(params![s.name, f.get()], |r| r.get(0))
                .optional()?,
            None => None,
        };
        let next = s.next_fire.map(|t| t.get());
        let late_ms = match next {
            Some(t) if !s.paused && t < now => now - t,
            _ => 0,
        };
        out.push(json!({
            "name": s.name, "expr": s.expression, "tz": s.zone, "queue": s.queue,
            "payload": payload_value(&s.payload), "paused": s.paused,
            "refused": s.last_error.is_some(), "last_error": s.last_error,
            "next_fire_ms": next,
            "upcoming_ms": s.upcoming.iter().map(|t| t.get()).collect::<Vec<_>>(),
            "runs": s.runs, "last_fire_ms": s.last_fire.map(|t| t.get()),
            "last_fired_at_ms": last_fired_at,
            "last_fire_late_ms": last_fired_at.zip(s.last_fire).map(|(a, f)| (a - f.get()).max(0)),
            "late_ms": late_ms, "last_job_id": s.last_job_id,
        }));
    }
    Ok(out)
}

/// Pub/sub channels: rows kept, newest id and time, and how many arrived in the last minute.
pub(crate) fn channels(conn: &Connection) -> Result<Vec<Value>> {
    let now = now_ms();
    let mut stmt = conn.prepare_cached(
        "SELECT channel, count(*), max(id) FROM honker_notifications GROUP BY channel ORDER BY channel",
    )?;
    let rows: Vec<(String, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut recent = conn.prepare_cached(
        "SELECT count(*) FROM honker_notifications WHERE channel = ?1 AND id > ?2",
    )?;
    let mut newest =
        conn.prepare_cached("SELECT created_ms FROM honker_notifications WHERE id = ?1")?;
    // The newest notification older than a minute, found walking ids down from the newest (no
    // index on `created_ms`, see schema v7): only the last minute's rows are visited.
    let minute_ago_id: i64 = conn
        .prepare_cached(
            "SELECT coalesce(
                 (SELECT id FROM honker_notifications WHERE created_ms < ?1 ORDER BY id DESC LIMIT 1),
                 (SELECT coalesce(min(id), 1 << 62) - 1 FROM honker_notifications))",
        )?
        .query_row([now - 60_000], |r| r.get(0))?;
    let mut out = Vec::new();
    for (channel, rows, max_id) in rows {
        let last_minute: i64 = recent.query_row(params![channel, minute_ago_id], |r| r.get(0))?;
        let newest_ms: Option<i64> = newest.query_row([max_id], |r| r.get(0)).optional()?;
        out.push(json!({
            "channel": channel, "rows": rows, "newest_id": max_id,
            "newest_ms": newest_ms, "last_minute": last_minute,
        }));
    }
    Ok(out)
}

/// The processes holding leases now: per worker and queue, how many jobs, the earliest lease
/// expiry, and the first few job ids. `alive` stays null until OS-level liveness exists.
pub(crate) fn workers(conn: &Connection) -> Result<Vec<Value>> {
    let now = now_ms();
    let mut out = Vec::new();
    let mut held = conn.prepare_cached(&format!(
        "SELECT id FROM honker_jobs WHERE queue = ?1 AND state = 2 AND {JOB_WORKER} IS ?2
         ORDER BY lease_expires LIMIT 20"
    ))?;
    for queue in queue_names(conn)? {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {JOB_WORKER} AS w, count(*), min(lease_expires), max(lease_expires)
             FROM honker_jobs WHERE queue = ?1 AND state = 2 GROUP BY w ORDER BY w"
        ))?;
        let rows: Vec<(Option<String>, i64, i64, i64)> = stmt
            .query_map([&queue], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (worker, n, first, last) in rows {
            let ids: Vec<i64> = held
                .query_map(params![queue, worker], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            out.push(json!({
                "worker": worker, "queue": queue, "jobs": n, "job_ids": ids,
                "first_lease_expires_ms": first, "last_lease_expires_ms": last,
                "expired_leases": last < now, "alive": Value::Null,
            }));
        }
    }
    Ok(out)
}

/// Everything known about one job, or `None`.
pub(crate) fn job(conn: &Connection, id: i64) -> Result<Option<Value>> {
    let Some(j) = honker_queue::job(conn, JobId(id))? else {
        return Ok(None);
    };
    let lease: Option<(Option<i64>, i64)> = conn
        .prepare_cached("SELECT lease_token, claims FROM honker_jobs WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let claims = match lease {
        Some((_, c)) => Some(c),
        None => conn
            .prepare_cached("SELECT claims FROM honker_dead WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
    };
    let result = honker_queue::get_result(conn, &SystemClock, JobId(id))?;
    Ok(Some(json!({
        "id": id,
        "queue": j.queue,
        "state": j.state.as_str(),
        "payload": payload_value(&j.payload),
        "priority": j.priority,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "run_at_ms": j.run_at.get(),
        "expires_at_ms": j.expires_at.map(|t| t.get()),
        "dedup_key": j.dedup_key,
        "last_error": j.last_error,
        "dead_reason": j.dead_reason,
        "worker": j.worker,
        "lease_token": lease.and_then(|l| l.0),
        "lease_expires_ms": j.lease_expires.map(|t| t.get()),
        "claims": claims,
        "created_ms": j.created.get(),
        "result": result.as_deref().map(payload_value),
    })))
}

/// Which jobs a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateFilter {
    /// pending, scheduled and running (the default: what is not final yet).
    Live,
    Pending,
    Scheduled,
    Running,
    Dead,
    Done,
}

impl StateFilter {
    pub(crate) fn parse(s: &str) -> Result<StateFilter> {
        Ok(match s {
            "" | "live" => StateFilter::Live,
            "pending" => StateFilter::Pending,
            "scheduled" => StateFilter::Scheduled,
            "running" => StateFilter::Running,
            "dead" => StateFilter::Dead,
            "done" => StateFilter::Done,
            other => {
                bail!("unknown state {other:?} (live, pending, scheduled, running, dead, done)")
            }
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StateFilter::Live => "live",
            StateFilter::Pending => "pending",
            StateFilter::Scheduled => "scheduled",
            StateFilter::Running => "running",
            StateFilter::Dead => "dead",
            StateFilter::Done => "done",
        }
    }

    fn table(self) -> &'static str {
        match self {
            StateFilter::Dead => "honker_dead",
            StateFilter::Done => "honker_history",
            _ => "honker_jobs",
        }
    }
}

/// A job-list filter, as the page and the bulk actions give it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filter {
    pub(crate) queue: Option<String>,
    pub(crate) state: StateFilter,
    /// A JSON path into the payload (`$.user.id`; `user.id` is read as `$.user.id`).
    pub(crate) key: Option<String>,
    /// The value at `key`: JSON (`42`, `true`, `"x"`) or, if it does not parse, a string.
    /// Without it, the filter keeps jobs whose payload has the key.
    pub(crate) value: Option<String>,
    /// Text the last error contains (case-insensitive).
    pub(crate) error: Option<String>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            queue: None,
            state: StateFilter::Live,
            key: None,
            value: None,
            error: None,
        }
    }
}

/// Check a JSON path: `$` followed by `.name` or `[n]` steps; names of letters, digits, `_`, `-`.
pub(crate) fn json_path(key: &str) -> Result<String> {
    let path = if key.starts_with('$') {
        key.to_owned()
    } else {
        format!("$.{key}")
    };
    let mut rest = &path[1..];
    if rest.is_empty() {
        bail!("payload key {key:?} names no field");
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(r.len());
            if end == 0 {
                bail!("payload key {key:?}: empty field name");
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .filter(|&e| e > 0 && r[..e].bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| anyhow::anyhow!("payload key {key:?}: bad [index]"))?;
            rest = &r[end + 1..];
        } else {
            bail!("payload key {key:?}: expected .field or [index]");
        }
    }
    Ok(path)
}

/// Append `cond` to `sql`, its `?#` numbered for `v` pushed onto `args` (after `?1`, `?2`:
/// the id range, and `?3`: the limit).
fn push(sql: &mut String, args: &mut Vec<SqlValue>, cond: &str, v: Option<SqlValue>) {
    if let Some(v) = v {
        args.push(v);
        sql.push_str(&cond.replace("?#", &format!("?{}", args.len() + 3)));
    } else {
        sql.push_str(cond);
    }
}

impl Filter {
    /// The WHERE clause (after the id range) and its parameters, numbered from `?4`
    /// (`?1`/`?2` are the id range, `?3` the limit).
    fn clause(&self, now: i64) -> Result<(String, Vec<SqlValue>)> {
        let mut sql = String::new();
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(q) = &self.queue {
            push(
                &mut sql,
                &mut args,
                " AND queue = ?#",
                Some(SqlValue::Text(q.clone())),
            );
        }
        match self.state {
            StateFilter::Live | StateFilter::Dead | StateFilter::Done => {}
            StateFilter::Pending => push(
                &mut sql,
                &mut args,
                " AND (state = 0 OR (state = 1 AND run_at <= ?#))",
                Some(SqlValue::Integer(now)),
            ),
            StateFilter::Scheduled => push(
                &mut sql,
                &mut args,
                " AND state = 1 AND run_at > ?#",
                Some(SqlValue::Integer(now)),
            ),
            StateFilter::Running => push(&mut sql, &mut args, " AND state = 2", None),
        }
        if let Some(key) = &self.key {
            let path = json_path(key)?;
            match &self.value {
                None => push(
                    &mut sql,
                    &mut args,
                    " AND json_type(payload, ?#) IS NOT NULL",
                    Some(SqlValue::Text(path)),
                ),
                Some(v) => {
                    // Compare as JSON: 42 matches the number, "42" the string.
                    let v: Value =
                        serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
                    args.push(SqlValue::Text(path));
                    let p = args.len() + 3;
                    args.push(SqlValue::Text(v.to_string()));
                    let w = args.len() + 3;
                    sql.push_str(&format!(
                        " AND json_type(payload, ?{p}) IS NOT NULL
                          AND json_quote(json_extract(payload, ?{p})) = json_quote(json_extract(?{w}, '$'))"
                    ));
                }
            }
        } else if self.value.is_some() {
            bail!("a payload value needs a payload key");
        }
        if let Some(e) = &self.error {
            if self.state == StateFilter::Done {
                bail!("done jobs keep no error");
            }
            push(
                &mut sql,
                &mut args,
                " AND instr(lower(last_error), lower(?#)) > 0",
                Some(SqlValue::Text(e.clone())),
            );
        }
        Ok((sql, args))
    }

    /// Whether the filter is only a queue and a state (counts then come from index ranges).
    fn is_simple(&self) -> bool {
        self.key.is_none() && self.value.is_none() && self.error.is_none()
    }
}

/// One page of a job list.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) jobs: Vec<Value>,
    /// Continue below this id (`None`: nothing older is left).
    pub(crate) next_before: Option<i64>,
    /// Matching jobs, exact when `count_exact`, else a lower bound capped at [`COUNT_CAP`] or
    /// counted among the newest ids only.
    pub(crate) count: i64,
    pub(crate) count_exact: bool,
    pub(crate) scanned_to: i64,
}

fn columns(state: StateFilter) -> String {
    match state {
        StateFilter::Dead => {
            "id, queue, 'dead', payload, priority, attempts, max_attempts, died_ms,
             created_ms, NULL, NULL, last_error, dedup_key, reason"
                .into()
        }
        StateFilter::Done => {
            "id, queue, 'done', payload, priority, attempts, max_attempts, done_ms,
             created_ms, worker, NULL, NULL, NULL, NULL"
                .into()
        }
        _ => format!(
            "id, queue, state, payload, priority, attempts, max_attempts, run_at, created_ms,
             {JOB_WORKER}, lease_expires, last_error, dedup_key, NULL"
        ),
    }
}

fn row_json(r: &rusqlite::Row<'_>, now: i64) -> rusqlite::Result<Value> {
    let state: SqlValue = r.get(2)?;
    let run_at: i64 = r.get(7)?;
    let state = match state {
        SqlValue::Integer(0) => "pending",
        SqlValue::Integer(1) if run_at <= now => "pending",
        SqlValue::Integer(1) => "scheduled",
        SqlValue::Integer(_) => "running",
        SqlValue::Text(t) if t == "dead" => "dead",
        _ => "done",
    };
    let payload: String = r.get(3)?;
    let last_error: Option<String> = r.get(11)?;
    Ok(json!({
        "id": r.get::<_, i64>(0)?,
        "queue": r.get::<_, String>(1)?,
        "state": state,
        "payload_preview": preview(&payload),
        "priority": r.get::<_, i64>(4)?,
        "attempts": r.get::<_, i64>(5)?,
        "max_attempts": r.get::<_, i64>(6)?,
        "at_ms": run_at,
        "created_ms": r.get::<_, i64>(8)?,
        "worker": r.get::<_, Option<String>>(9)?,
        "lease_expires_ms": r.get::<_, Option<i64>>(10)?,
        "last_error": last_error.as_deref().map(preview),
        "dedup_key": r.get::<_, Option<String>>(12)?,
        "dead_reason": r.get::<_, Option<String>>(13)?,
    }))
}

/// The SELECT of one window of a list: ids in `[?1, ?2)`, newest first.
///
/// `NOT INDEXED` keeps the planner on the primary-key range: left to itself it may pick a
/// partial index on `(queue, ...)` and sort every job of the queue by id (a temp B-tree of a
/// million rows for a deep queue), where the window costs at most [`SCAN_WINDOW`] rows.
fn window_sql(filter: &Filter, select: &str, clause: &str) -> String {
    format!(
        "SELECT {select} FROM {} NOT INDEXED WHERE id >= ?1 AND id < ?2{clause} ORDER BY id DESC",
        filter.state.table()
    )
}

/// The largest id in the filter's table, plus one (the first `before` of a list).
fn top(conn: &Connection, state: StateFilter) -> Result<i64> {
    let sql = format!("SELECT coalesce(max(id), 0) + 1 FROM {}", state.table());
    Ok(conn.prepare_cached(&sql)?.query_row([], |r| r.get(0))?)
}

fn bottom(conn: &Connection, state: StateFilter) -> Result<i64> {
    let sql = format!("SELECT coalesce(min(id), 0) FROM {}", state.table());
    Ok(conn.prepare_cached(&sql)?.query_row([], |r| r.get(0))?)
}

/// Up to `limit` jobs matching `filter` with ids below `before` (or the newest), newest first.
pub(crate) fn jobs(
    conn: &Connection,
    filter: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Page> {
    let now = now_ms();
    let limit = limit.clamp(1, MAX_PAGE);
    let (clause, args) = filter.clause(now)?;
    let sql = format!(
        "{} LIMIT ?3 + 0",
        window_sql(filter, &columns(filter.state), &clause)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let floor = bottom(conn, filter.state)?;
    let mut hi = match before {
        Some(b) => b,
        None => top(conn, filter.state)?,
    };
    let mut jobs = Vec::new();
    let mut windows = 0;
    while hi > floor && (jobs.len() as i64) < limit && windows < MAX_WINDOWS {
        let lo = (hi - SCAN_WINDOW).max(floor);
        let want = limit - jobs.len() as i64;
        let mut all: Vec<SqlValue> = vec![
            SqlValue::Integer(lo),
            SqlValue::Integer(hi),
            SqlValue::Integer(want),
        ];
        all.extend(args.iter().cloned());
        let rows: Vec<Value> = stmt
            .query_map(params_from_iter(all), |r| row_json(r, now))?
            .collect::<rusqlite::Result<_>>()?;
        let full = rows.len() as i64 == want;
        let last = rows.last().and_then(|j| j["id"].as_i64());
        jobs.extend(rows);
        hi = match (full, last) {
            (true, Some(id)) => id,
            _ => lo,
        };
        windows += 1;
    }
    let next_before = (hi > floor).then_some(hi);
    let (count, count_exact) = count(conn, filter, &clause, &args)?;
    Ok(Page {
        jobs,
        next_before,
        count,
        count_exact,
        scanned_to: hi,
    })
}

/// How many jobs match: from the index-served per-state counts when the filter is a queue and
/// a state, else counted among the newest `SCAN_WINDOW * MAX_WINDOWS` ids and capped at
/// [`COUNT_CAP`].
fn count(
    conn: &Connection,
    filter: &Filter,
    clause: &str,
    args: &[SqlValue],
) -> Result<(i64, bool)> {
    if filter.is_simple()
        && let Some(q) = &filter.queue
    {
        let s = Queue::new(q)?.stats(conn)?;
        let n = match filter.state {
            StateFilter::Live => s.pending + s.scheduled + s.running,
            StateFilter::Pending => s.pending,
            StateFilter::Scheduled => s.scheduled,
            StateFilter::Running => s.running,
            StateFilter::Dead => s.dead,
            StateFilter::Done => {
                return Ok((
                    conn.prepare_cached("SELECT count(*) FROM honker_history WHERE queue = ?1")?
                        .query_row([q], |r| r.get(0))?,
                    true,
                ));
            }
        };
        return Ok((n as i64, true));
    }
    let hi = top(conn, filter.state)?;
    let lo = (hi - SCAN_WINDOW * MAX_WINDOWS).max(bottom(conn, filter.state)?);
    let sql = format!(
        "SELECT count(*) FROM ({} LIMIT ?3 + 0)",
        window_sql(filter, "1", clause)
    );
    let mut all: Vec<SqlValue> = vec![
        SqlValue::Integer(lo),
        SqlValue::Integer(hi),
        SqlValue::Integer(COUNT_CAP + 1),
    ];
    all.extend(args.iter().cloned());
    let n: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(all), |r| r.get(0))?;
    let floor = bottom(conn, filter.state)?;
    Ok((n.min(COUNT_CAP), n <= COUNT_CAP && lo <= floor))
}

/// Ids matching `filter` below `before`, newest first, at most `limit`, walking at most
/// `SCAN_WINDOW` ids: for the bulk actions, which call it inside their own short transaction.
/// Returns the ids and where to continue (`None`: done).
pub(crate) fn matching_ids(
    conn: &Connection,
    filter: &Filter,
    before: i64,
    limit: i64,
) -> Result<(Vec<i64>, Option<i64>)> {
    let now = now_ms();
    let (clause, args) = filter.clause(now)?;
    let sql = format!("{} LIMIT ?3 + 0", window_sql(filter, "id", &clause));
    let floor = bottom(conn, filter.state)?;
    if before <= floor {
        return Ok((Vec::new(), None));
    }
    let lo = (before - SCAN_WINDOW).max(floor);
    let mut all: Vec<SqlValue> = vec![
        SqlValue::Integer(lo),
        SqlValue::Integer(before),
        SqlValue::Integer(limit),
    ];
    all.extend(args);
    let ids: Vec<i64> = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(all), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let next = if ids.len() as i64 == limit {
        ids.last().copied()
    } else {
        Some(lo)
    };
    Ok((ids, next.filter(|&n| n > floor)))
}

/// The first `before` of a bulk walk over `state`'s table.
pub(crate) fn first_before(conn: &Connection, state: StateFilter) -> Result<i64> {
    top(conn, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = honker_core::open(dir.path().join("r.db")).unwrap();
        (dir, conn)
    }

    fn plan(conn: &Connection, sql: &str, n: usize) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let vals: Vec<SqlValue> = (0..n).map(|_| SqlValue::Integer(1)).collect();
        stmt.query_map(params_from_iter(vals), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn assert_no_scan(conn: &Connection, sql: &str, n: usize) {
        let p = plan(conn, sql, n);
        assert!(
            p.iter().all(|l| !l.starts_with("SCAN honker_")),
            "{sql}\nplan: {p:#?}"
        );
    }

    #[test]
    fn every_list_window_and_count_is_served_by_the_primary_key_or_an_index() {
        let (_d, conn) = db();
        let states = [
            StateFilter::Live,
            StateFilter::Pending,
            StateFilter::Scheduled,
            StateFilter::Running,
            StateFilter::Dead,
            StateFilter::Done,
        ];
        for state in states {
            let f = Filter {
                queue: Some("q".into()),
                state,
                key: Some("user.id".into()),
                value: Some("7".into()),
                error: (state != StateFilter::Done).then(|| "boom".into()),
            };
            let (clause, args) = f.clause(0).unwrap();
            let list = format!("{} LIMIT ?3 + 0", window_sql(&f, &columns(state), &clause));
            assert_no_scan(&conn, &list, args.len() + 3);
            let p = plan(&conn, &list, args.len() + 3);
            assert!(
                p.iter()
                    .any(|l| l.contains("INTEGER PRIMARY KEY (rowid>? AND rowid<?)")),
                "a window walks the primary key range: {p:#?}"
            );
            assert!(
                p.iter().all(|l| !l.contains("TEMP B-TREE")),
                "no sort: {p:#?}"
            );
            let count = format!(
                "SELECT count(*) FROM ({} LIMIT ?3 + 0)",
                window_sql(&f, "1", &clause)
            );
            assert_no_scan(&conn, &count, args.len() + 3);
            let p = plan(&conn, &count, args.len() + 3);
            assert!(
                p.iter().all(|l| !l.contains("TEMP B-TREE")),
                "no sort: {p:#?}"
            );
        }
        for sql in [
            "SELECT min(queue) FROM honker_jobs WHERE state = 0 AND queue > ?1",
            "SELECT min(queue) FROM honker_jobs WHERE state = 1 AND queue > ?1",
            "SELECT min(queue) FROM honker_jobs WHERE state = 2 AND queue > ?1",
            "SELECT min(queue) FROM honker_dead WHERE queue > ?1",
            "SELECT min(queue) FROM honker_history WHERE queue > ?1",
        ] {
            assert_no_scan(&conn, sql, 1);
        }
    }

    #[test]
    fn json_paths_are_checked_before_they_reach_sql() {
        assert_eq!(json_path("user.id").unwrap(), "$.user.id");
        assert_eq!(json_path("$.items[2].sku").unwrap(), "$.items[2].sku");
        for bad in ["$", "a..b", "a[x]", "a']; DROP TABLE x; --", "a b", "$.a[]"] {
            assert!(json_path(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn filters_match_payload_keys_as_json_and_errors_as_text() {
        let (_d, conn) = db();
        let q = Queue::new("q").unwrap();
        let o = honker_queue::EnqueueOptions::default();
        let a = q
            .enqueue(&conn, r#"{"user":{"id":7},"n":"7"}"#, &o)
            .unwrap();
        let b = q.enqueue(&conn, r#"{"user":{"id":"7"}}"#, &o).unwrap();
        let _c = q.enqueue(&conn, r#"{"other":1}"#, &o).unwrap();
        let ids = |f: Filter| -> Vec<i64> {
            jobs(&conn, &f, None, 50)
                .unwrap()
                .jobs
                .iter()
                .map(|j| j["id"].as_i64().unwrap())
                .collect()
        };
        let key = |k: &str, v: Option<&str>| Filter {
            key: Some(k.into()),
            value: v.map(Into::into),
            ..Filter::default()
        };
        assert_eq!(ids(key("user.id", Some("7"))), vec![a.0]);
        assert_eq!(ids(key("user.id", Some("\"7\""))), vec![b.0]);
        assert_eq!(ids(key("user.id", None)), vec![b.0, a.0]);
        assert_eq!(ids(key("n", Some("7"))), Vec::<i64>::new());
        assert_eq!(ids(key("n", Some("\"7\""))), vec![a.0]);
        let claimed = q.claim(&conn, "w", 1, None).unwrap();
        q.retry(
            &conn,
            claimed[0].id,
            claimed[0].lease_token,
            Some(60_000),
            Some("Disk FULL on /var"),
        )
        .unwrap();
        let f = Filter {
            error: Some("disk full".into()),
            ..Filter::default()
        };
        assert_eq!(ids(f), vec![claimed[0].id.0]);
    }

    #[test]
    fn pages_continue_below_their_cursor_and_see_every_job_once() {
        let (_d, conn) = db();
        let q = Queue::new("q").unwrap();
        let o = honker_queue::EnqueueOptions::default();
        let payloads: Vec<String> = (0..120).map(|i| format!(r#"{{"i":{i}}}"#)).collect();
        let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
        q.enqueue_batch(&conn, &refs, &o).unwrap();
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let p = jobs(&conn, &Filter::default(), before, 50).unwrap();
            assert_eq!(
                (p.count, p.count_exact),
                (120, true),
                "the window covers every id"
            );
            seen.extend(p.jobs.iter().map(|j| j["id"].as_i64().unwrap()));
            match p.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(seen, sorted);
        assert_eq!(seen.len(), 120);
    }
}
