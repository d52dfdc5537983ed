//! The queue's life cycle: enqueue, claim under a fencing lease, ack, retry, release, fail,
//! heartbeat, and the bounded sweeps (due jobs, expired leases, expired jobs) a claim runs first.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use honker_core::{Clock, Millis, SystemClock, write_atomically};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::job::{ClaimedJob, JobId, LeaseToken, QueueStats, RetryOutcome};
use crate::options::{EnqueueOptions, QueueOptions, QueueOptionsPatch};

/// The longest queue, lock or rate-limit name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The most jobs one claim hands out.
pub const MAX_CLAIM: usize = 10_000;
/// Upper bound of rows each sweep of a claim moves (due jobs promoted, expired leases reclaimed,
/// expired jobs buried): a claim's cost stays bounded however much became due at once.
pub const SWEEP_LIMIT: i64 = 1024;

pub(crate) const STATE_READY: i64 = 0;
pub(crate) const STATE_SCHEDULED: i64 = 1;

/// A named queue: a value (name + clock), not a connection. Cheap to clone; every operation
/// takes the caller's connection and runs in the caller's transaction when there is one.
#[derive(Clone)]
pub struct Queue {
    name: Arc<str>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Check a queue, lock or rate-limit name: 1 to [`MAX_NAME_BYTES`] bytes, no control characters.
///
/// # Errors
///
/// [`Error::BadName`] (`queue.bad_name`).
pub fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_NAME_BYTES {
        "is longer than 256 bytes"
    } else if name.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(Error::BadName {
        shown: name.chars().take(64).collect(),
        reason,
    })
}

/// A live job row as it leaves `honker_jobs` for the dead letters.
struct Leaving {
    id: i64,
    queue: String,
    payload: String,
    priority: i64,
    attempts: i64,
    max_attempts: i64,
    dedup_key: Option<String>,
    last_error: Option<String>,
    created_ms: i64,
    claims: i64,
}

const LEAVING_COLUMNS: &str = "id, queue, payload, priority, attempts, max_attempts, dedup_key, last_error, created_ms, claims";

fn leaving(r: &rusqlite::Row<'_>) -> rusqlite::Result<Leaving> {
    Ok(Leaving {
        id: r.get(0)?,
        queue: r.get(1)?,
        payload: r.get(2)?,
        priority: r.get(3)?,
        attempts: r.get(4)?,
        max_attempts: r.get(5)?,
        dedup_key: r.get(6)?,
        last_error: r.get(7)?,
        created_ms: r.get(8)?,
        claims: r.get(9)?,
    })
}

/// What a claim's probe saw, in one read.
#[derive(Debug, Default)]
struct Probe {
    paused: bool,
    lease_ms: Option<i64>,
    has_ready: bool,
    next_scheduled: Option<i64>,
    next_lease_end: Option<i64>,
    next_expiry: Option<i64>,
}

impl Probe {
    fn earliest(&self) -> Option<i64> {
        [self.next_scheduled, self.next_lease_end, self.next_expiry]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Queue {
    /// A queue named `name`, on the system clock.
    ///
    /// # Errors
    ///
    /// `queue.bad_name` (see [`check_name`]).
    pub fn new(name: &str) -> Result<Queue> {
        Queue::with_clock(name, Arc::new(SystemClock))
    }

    /// A queue named `name` whose times come from `clock` (a settable one in tests).
    ///
    /// # Errors
    ///
    /// `queue.bad_name`.
    pub fn with_clock(name: &str, clock: Arc<dyn Clock>) -> Result<Queue> {
        check_name(name)?;
        Ok(Queue {
            name: name.into(),
            clock,
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The clock this queue reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now().get()
    }

    /// The queue's stored options, or the defaults when none are stored.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn options(&self, conn: &Connection) -> Result<QueueOptions> {
        let stored = conn
            .prepare_cached(
                "SELECT lease_ms, max_attempts, backoff_base_ms, backoff_cap_ms, dead_retention_ms,
                        max_payload_bytes, paused, keep_history_ms
                 FROM honker_queues WHERE name = ?1",
            )?
            .query_row([&*self.name], |r| {
                Ok(QueueOptions {
                    lease_ms: r.get(0)?,
                    max_attempts: r.get(1)?,
                    backoff_base_ms: r.get(2)?,
                    backoff_cap_ms: r.get(3)?,
                    dead_retention_ms: r.get(4)?,
                    max_payload_bytes: r.get::<_, i64>(5)?.try_into().unwrap_or(usize::MAX),
                    paused: r.get(6)?,
                    keep_history_ms: r.get(7)?,
                })
            })
            .optional()?;
        Ok(stored.unwrap_or_default())
    }

    /// Change some of the queue's options; returns them all as now stored.
    ///
    /// # Errors
    ///
    /// `queue.bad_option` for a value out of range (nothing written); SQLite errors.
    pub fn configure(&self, conn: &Connection, patch: &QueueOptionsPatch) -> Result<QueueOptions> {
        let now = self.now();
        let opts = write_atomically(conn, |c| {
            let o = patch.apply(&self.options(c).map_err(core)?).map_err(core)?;
            c.prepare_cached(
                "INSERT INTO honker_queues (name, lease_ms, max_attempts, backoff_base_ms,
                     backoff_cap_ms, dead_retention_ms, max_payload_bytes, paused, updated_ms,
                     keep_history_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (name) DO UPDATE SET lease_ms = excluded.lease_ms,
                     max_attempts = excluded.max_attempts, backoff_base_ms = excluded.backoff_base_ms,
                     backoff_cap_ms = excluded.backoff_cap_ms,
                     dead_retention_ms = excluded.dead_retention_ms,
                     max_payload_bytes = excluded.max_payload_bytes, paused = excluded.paused,
                     updated_ms = excluded.updated_ms, keep_history_ms = excluded.keep_history_ms",
            )?
            .execute(params![
                &*self.name,
                o.lease_ms,
                o.max_attempts,
                o.backoff_base_ms,
                o.backoff_cap_ms,
                o.dead_retention_ms,
                i64::try_from(o.max_payload_bytes).unwrap_or(i64::MAX),
                o.paused,
                now,
                o.keep_history_ms
            ])?;
            Ok(o)
        })
        .map_err(uncore)?;
        honker_core::kick_after_commit(conn);
        Ok(opts)
    }

    /// Enqueue one job in the caller's transaction (or its own, in autocommit); returns its id.
    ///
    /// With a `dedup_key` held by a live job of this queue, returns that job's id and writes
    /// nothing. After an autocommit write, same-process waiters are kicked.
    ///
    /// # Errors
    ///
    /// `queue.bad_option`, `payload.not_json`, `payload.too_large` (nothing written); SQLite errors.
    pub fn enqueue(
        &self,
        conn: &Connection,
        payload: &str,
        opts: &EnqueueOptions,
    ) -> Result<JobId> {
        opts.validate()?;
        let now = self.now();
        if opts.dedup_key.is_none() && payload.len() <= QueueOptions::default().max_payload_bytes {
            // The common case in one statement: the queue's limit and default attempts are read
            // by the INSERT itself. A payload over the queue's (lowered) limit inserts nothing
            // and falls through to the checked path below, which names the limit.
            honker_core::payload::check_json(payload, usize::MAX)?;
            if let Some(id) = self.insert_unless_too_large(conn, payload, opts, now)? {
                honker_core::kick_after_commit(conn);
                return Ok(id);
            }
        }
        let qopts = self.options(conn)?;
        honker_core::payload::check_json(payload, qopts.max_payload_bytes)?;
        let id = if opts.dedup_key.is_some() {
            // Insert-or-find must see one snapshot: the holder could be acked in between.
            write_atomically(conn, |c| {
                self.insert(c, payload, opts, &qopts, now).map_err(core)
            })
            .map_err(uncore)?
        } else {
            self.insert(conn, payload, opts, &qopts, now)?
        };
        honker_core::kick_after_commit(conn);
        Ok(id)
    }

    /// Enqueue many jobs with the same options, all or none; returns their ids in order.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Queue::enqueue); one bad payload refuses the whole batch.
    pub fn enqueue_batch(
        &self,
        conn: &Connection,
        payloads: &[&str],
        opts: &EnqueueOptions,
    ) -> Result<Vec<JobId>> {
        opts.validate()?;
        let qopts = self.options(conn)?;
        for p in payloads {
            honker_core::payload::check_json(p, qopts.max_payload_bytes)?;
        }
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let ids = write_atomically(conn, |c| {
            if opts.dedup_key.is_some() {
                return payloads
                    .iter()
                    .map(|p| self.insert(c, p, opts, &qopts, now).map_err(core))
                    .collect::<honker_core::Result<Vec<_>>>();
            }
            // Without a dedup key nothing can conflict: a plain INSERT and `last_insert_rowid`
            // per row, not `ON CONFLICT ... RETURNING` (which builds a temporary table per row).
            let run_at = opts.run_at(now);
            let state = if run_at <= now {
                STATE_READY
            } else {
                STATE_SCHEDULED
            };
            let max_attempts = opts.max_attempts.unwrap_or(qopts.max_attempts);
            let expires_at = opts.expires_at(now);
            let mut stmt = c.prepare_cached(
                "INSERT INTO honker_jobs (queue, state, payload, priority, run_at, attempts,
                     max_attempts, expires_at, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8)",
            )?;
            let mut ids = Vec::with_capacity(payloads.len());
            for p in payloads {
                stmt.execute(params![
                    &*self.name,
                    state,
                    p,
                    opts.priority,
                    run_at,
                    max_attempts,
                    expires_at,
                    now
                ])?;
                ids.push(JobId(c.last_insert_rowid()));
            }
            Ok(ids)
        })
        .map_err(uncore)?;
        honker_core::kick_after_commit(conn);
        Ok(ids)
    }

    /// Insert a job without a dedup key in one statement, unless the payload is over the queue's
    /// limit (then nothing is written and `None` is returned).
    fn insert_unless_too_large(
        &self,
        conn: &Connection,
        payload: &str,
        opts: &EnqueueOptions,
        now: i64,
    ) -> Result<Option<JobId>> {
        let run_at = opts.run_at(now);
        let state = if run_at <= now {
            STATE_READY
        } else {
            STATE_SCHEDULED
        };
        let defaults = QueueOptions::default();
        // `execute` + `last_insert_rowid` rather than `RETURNING`, which buffers its rows in a
        // temporary table; one LEFT JOIN reads the queue's row once.
        let n = conn
            .prepare_cached(
                "INSERT INTO honker_jobs (queue, state, payload, priority, run_at, attempts,
                     max_attempts, expires_at, created_ms)
                 SELECT ?1, ?2, ?3, ?4, ?5, 0, coalesce(?6, q.max_attempts, ?10), ?7, ?8
                 FROM (SELECT 1) LEFT JOIN honker_queues q ON q.name = ?1
                 WHERE ?9 <= coalesce(q.max_payload_bytes, ?11)",
            )?
            .execute(params![
                &*self.name,
                state,
                payload,
                opts.priority,
                run_at,
                opts.max_attempts,
                opts.expires_at(now),
                now,
                payload.len() as i64,
                defaults.max_attempts,
                defaults.max_payload_bytes as i64
            ])?;
        Ok((n == 1).then(|| JobId(conn.last_insert_rowid())))
    }

    fn insert(
        &self,
        conn: &Connection,
        payload: &str,
        opts: &EnqueueOptions,
        qopts: &QueueOptions,
        now: i64,
    ) -> Result<JobId> {
        let run_at = opts.run_at(now);
        let state = if run_at <= now {
            STATE_READY
        } else {
            STATE_SCHEDULED
        };
        let inserted = conn
            .prepare_cached(
                "INSERT INTO honker_jobs (queue, state, payload, priority, run_at, attempts,
                     max_attempts, expires_at, dedup_key, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9)
                 ON CONFLICT DO NOTHING
                 RETURNING id",
            )?
            .query_row(
                params![
                    &*self.name,
                    state,
                    payload,
                    opts.priority,
                    run_at,
                    opts.max_attempts.unwrap_or(qopts.max_attempts),
                    opts.expires_at(now),
                    opts.dedup_key,
                    now
                ],
                |r| r.get(0),
            )
            .optional()?;
        match inserted {
            Some(id) => Ok(JobId(id)),
            None => {
                let existing = conn
                    .prepare_cached(
                        "SELECT id FROM honker_jobs
                         WHERE queue = ?1 AND dedup_key = ?2 AND dedup_key IS NOT NULL",
                    )?
                    .query_row(params![&*self.name, opts.dedup_key], |r| r.get(0))?;
                Ok(JobId(existing))
            }
        }
    }

    fn probe(&self, conn: &Connection) -> Result<Probe> {
        Ok(conn
            .prepare_cached(
                "SELECT (SELECT paused FROM honker_queues WHERE name = ?1),
                        (SELECT lease_ms FROM honker_queues WHERE name = ?1),
                        EXISTS (SELECT 1 FROM honker_jobs WHERE queue = ?1 AND state = 0),
                        (SELECT run_at FROM honker_jobs WHERE queue = ?1 AND state = 1
                         ORDER BY run_at LIMIT 1),
                        (SELECT lease_expires FROM honker_jobs WHERE queue = ?1 AND state = 2
                         ORDER BY lease_expires LIMIT 1),
                        (SELECT expires_at FROM honker_jobs
                         WHERE queue = ?1 AND expires_at IS NOT NULL ORDER BY expires_at LIMIT 1)",
            )?
            .query_row([&*self.name], |r| {
                Ok(Probe {
                    paused: r.get::<_, Option<bool>>(0)?.unwrap_or(false),
                    lease_ms: r.get(1)?,
                    has_ready: r.get(2)?,
                    next_scheduled: r.get(3)?,
                    next_lease_end: r.get(4)?,
                    next_expiry: r.get(5)?,
                })
            })?)
    }

    /// Claim up to `n` due jobs for `worker`, in order `priority DESC, run_at ASC, id ASC`, each
    /// under a fresh lease token for `lease_ms` (default: the queue's `lease_ms`).
    ///
    /// First, bounded by [`SWEEP_LIMIT`] rows each: jobs past `expires_at` go to the dead letters
    /// (`expired`), running jobs whose lease ran out go back to pending or, with no attempts
    /// left, to the dead letters (`attempts exhausted`), and due scheduled jobs become pending.
    /// Attempts count at claim. When nothing is due, nothing is written and no write lock is
    /// taken. A paused queue hands out nothing.
    ///
    /// # Errors
    ///
    /// `arg.invalid` for `lease_ms < 1`; SQLite errors (`db.busy`).
    pub fn claim(
        &self,
        conn: &Connection,
        worker: &str,
        n: usize,
        lease_ms: Option<i64>,
    ) -> Result<Vec<ClaimedJob>> {
        if let Some(l) = lease_ms {
            honker_core::at_least("lease_ms", l, 1)?;
        }
        let n = n.min(MAX_CLAIM);
        if n == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let mut probe = self.probe(conn)?;
        let db_path = conn.path().filter(|p| !p.is_empty()).map(Path::new);
        let holder = db_path.and_then(honker_core::liveness::holder);
        if let (Some(path), Some(_)) = (db_path, probe.next_lease_end)
            && !probe.paused
            && self.reclaim_from_dead_holders(conn, path, now)?
        {
            // Their leases now end now: the sweep below takes them back.
            probe.next_lease_end = Some(now);
        }
        if probe.paused || (!probe.has_ready && probe.earliest().is_none_or(|t| t > now)) {
            return Ok(Vec::new());
        }
        let lease = lease_ms
            .or(probe.lease_ms)
            .unwrap_or(QueueOptions::default().lease_ms);
        let claimer = claimer_id(conn, db_path, worker, holder.as_deref().unwrap_or(""))?;
        let expires = now.saturating_add(lease);
        // Two statements under the write lock: a read of the jobs in claim order, then one
        // UPDATE of the same jobs (the same subquery, which finds the same rows since nothing
        // can write in between). Each job's token is computed here by the formula the UPDATE
        // writes, from the claim count the read saw. `UPDATE ... RETURNING` in one statement
        // cost more: SQLite buffers the returned rows in an ephemeral table, and they come back
        // in rowid order, to be sorted again (ARCHITECTURE.md, "Where a worker's cycle goes").
        let take = |c: &Connection| -> honker_core::Result<Vec<ClaimedJob>> {
            // One draw of SQLite's random() per claim: the low 40 bits of every token of it.
            let draw: i64 = c
                .prepare_cached("SELECT random()")?
                .query_row([], |r| r.get(0))?;
            let jobs = c
                .prepare_cached(
                    "SELECT id, payload, attempts, max_attempts, claims, priority
                     FROM honker_jobs WHERE queue = ?1 AND state = 0
                     ORDER BY priority DESC, run_at, id LIMIT ?2 + 0",
                )?
                .query_map(params![&*self.name, n as i64], |r| {
                    let id = r.get(0)?;
                    let claims: i64 = r.get(4)?;
                    Ok(ClaimedJob {
                        id: JobId(id),
                        queue: self.name.to_string(),
                        payload: r.get(1)?,
                        attempts: r.get::<_, u32>(2)?.saturating_add(1),
                        max_attempts: r.get(3)?,
                        lease_token: LeaseToken(lease_token(claims, draw, id)),
                        lease_expires: Millis(expires),
                        priority: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if jobs.is_empty() {
                return Ok(jobs);
            }
            // The token is the job's claim count (`claims` before the update is read in SET)
            // in the high bits and 40 random bits below: the count rolls back with a
            // rolled-back claim, the random bits do not repeat, so a token is never handed out
            // twice (see `LeaseToken`). 53 bits in all, exact in every JSON reader. The random
            // bits are the claim's one draw plus the job's id, so the jobs of one claim get
            // distinct tokens. The claimer is a small integer (schema v8): the row grows as
            // little as it can, so fewer claims split a full page. Keep in step with
            // `lease_token`.
            let changed = c
                .prepare_cached(
                    "UPDATE honker_jobs SET state = 2, attempts = attempts + 1, claims = claims + 1,
                         lease_token = max(1, (((claims + 1) & 8191) << 40)
                             | (((?5 & 1099511627775) + id) & 1099511627775)),
                         lease_expires = ?3, claimer = ?4, worker = NULL, holder = NULL
                     WHERE id IN (SELECT id FROM honker_jobs WHERE queue = ?1 AND state = 0
                                  ORDER BY priority DESC, run_at, id LIMIT ?2 + 0)",
                )?
                .execute(params![&*self.name, n as i64, expires, claimer, draw])?;
            if changed != jobs.len() {
                // Cannot happen under the write lock; refuse rather than hand out wrong tokens.
                return Err(honker_core::Error::Sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
                    Some(format!(
                        "claim read {} jobs but updated {changed}",
                        jobs.len()
                    )),
                )));
            }
            Ok(jobs)
        };
        let jobs = if probe.earliest().is_some_and(|t| t <= now) {
            write_atomically(conn, |c| {
                self.sweep(c, &probe, now).map_err(core)?;
                take(c)
            })
            .map_err(uncore)?
        } else {
            // Nothing to sweep: the read and the UPDATE under one write lock, with no
            // savepoint inside a transaction (only the UPDATE writes).
            honker_core::read_then_write(conn, take)?
        };
        Ok(jobs)
    }

    /// End now the leases of every running job (in any queue) whose holder process is dead (its
    /// liveness lock is free, see [`honker_core::liveness`]); whether there were any. Looked at
    /// most once per [`ALIVE_FOR`](honker_core::liveness::ALIVE_FOR) per process and file, and at
    /// once after a lock file closed ([`honker_core::liveness::due`]); a live holder's answer is
    /// cached as long.
    fn reclaim_from_dead_holders(&self, conn: &Connection, db: &Path, now: i64) -> Result<bool> {
        if !honker_core::liveness::due(db) {
            return Ok(false);
        }
        // One pass over the running jobs (the partial leases index): there is no index on the
        // claimer, since keeping one cost every claim and every ack an index write (schema
        // v7). A job claimed by an older build names its holder itself (claimer NULL).
        let holders: Vec<String> = conn
            .prepare_cached(
                "SELECT c.holder FROM honker_claimers c
                 WHERE c.holder != '' AND c.id IN
                     (SELECT claimer FROM honker_jobs WHERE state = 2 AND claimer IS NOT NULL)
                 UNION
                 SELECT holder FROM honker_jobs
                 WHERE state = 2 AND claimer IS NULL AND holder IS NOT NULL",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut any = false;
        for h in holders {
            if honker_core::liveness::is_dead(db, &h) {
                // One statement: atomic by itself, and a failure leaves the leases to expire.
                conn.prepare_cached(
                    "UPDATE honker_jobs SET lease_expires = ?2
                     WHERE state = 2 AND lease_expires > ?2
                       AND (claimer IN (SELECT id FROM honker_claimers WHERE holder = ?1)
                            OR (claimer IS NULL AND holder = ?1))",
                )?
                .execute(params![h, now])?;
                any = true;
            }
        }
        Ok(any)
    }

    /// The sweeps a claim runs first; each is one indexed range, bounded by [`SWEEP_LIMIT`].
    fn sweep(&self, conn: &Connection, probe: &Probe, now: i64) -> Result<()> {
        if probe.next_expiry.is_some_and(|t| t <= now) {
            let rows = conn
                .prepare_cached(&format!(
                    "DELETE FROM honker_jobs WHERE id IN
                         (SELECT id FROM honker_jobs
                          WHERE queue = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2
                          ORDER BY expires_at LIMIT ?3 + 0)
                     RETURNING {LEAVING_COLUMNS}"
                ))?
                .query_map(params![&*self.name, now, SWEEP_LIMIT], leaving)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            self.bury(conn, &rows, "expired", None, now)?;
        }
        if probe.next_lease_end.is_some_and(|t| t <= now) {
            let rows = conn
                .prepare_cached(&format!(
                    "DELETE FROM honker_jobs WHERE id IN
                         (SELECT id FROM honker_jobs
                          WHERE queue = ?1 AND state = 2 AND lease_expires <= ?2
                          ORDER BY lease_expires LIMIT ?3 + 0)
                       AND attempts >= max_attempts
                     RETURNING {LEAVING_COLUMNS}"
                ))?
                .query_map(params![&*self.name, now, SWEEP_LIMIT], leaving)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            self.bury(
                conn,
                &rows,
                "attempts exhausted",
                Some("lease expired"),
                now,
            )?;
            conn.prepare_cached(
                "UPDATE honker_jobs SET state = 0, lease_token = NULL, lease_expires = NULL,
                     claimer = NULL, worker = NULL, holder = NULL, last_error = 'lease expired'
                 WHERE id IN (SELECT id FROM honker_jobs
                              WHERE queue = ?1 AND state = 2 AND lease_expires <= ?2
                              ORDER BY lease_expires LIMIT ?3 + 0)",
            )?
            .execute(params![&*self.name, now, SWEEP_LIMIT])?;
        }
        if probe.next_scheduled.is_some_and(|t| t <= now) {
            conn.prepare_cached(
                "UPDATE honker_jobs SET state = 0
                 WHERE id IN (SELECT id FROM honker_jobs
                              WHERE queue = ?1 AND state = 1 AND run_at <= ?2
                              ORDER BY run_at LIMIT ?3 + 0)",
            )?
            .execute(params![&*self.name, now, SWEEP_LIMIT])?;
        }
        Ok(())
    }

    /// Insert rows that just left `honker_jobs` into the dead letters, then apply the queue's
    /// dead-letter retention to a bounded number of old ones.
    fn bury(
        &self,
        conn: &Connection,
        rows: &[Leaving],
        reason: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = conn.prepare_cached(
            "INSERT INTO honker_dead (id, queue, payload, priority, attempts, max_attempts,
                 dedup_key, reason, last_error, created_ms, died_ms, claims)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for r in rows {
            insert.execute(params![
                r.id,
                r.queue,
                r.payload,
                r.priority,
                r.attempts,
                r.max_attempts,
                r.dedup_key,
                reason,
                error.map(str::to_owned).or_else(|| r.last_error.clone()),
                r.created_ms,
                now,
                r.claims
            ])?;
        }
        let retention = self.options(conn)?.dead_retention_ms;
        // A few old rows per burial keeps the table bounded without a sweep on any hot path:
        // each burial removes up to twice what it adds.
        conn.prepare_cached(
            "DELETE FROM honker_dead WHERE id IN
                 (SELECT id FROM honker_dead WHERE queue = ?1 AND died_ms < ?2
                  ORDER BY died_ms LIMIT ?3 + 0)",
        )?
        .execute(params![
            &*self.name,
            now.saturating_sub(retention),
            (rows.len() * 2) as i64
        ])?;
        Ok(())
    }

    /// Ack a job: it is done and leaves the queue.
    ///
    /// # Errors
    ///
    /// `queue.lease_lost` when `token` does not hold the job (nothing written); SQLite errors.
    pub fn ack(&self, conn: &Connection, id: JobId, token: LeaseToken) -> Result<()> {
        // One statement for queues without history; the multi-statement path only otherwise.
        if !finish_without_history(conn, id, token, Some(&self.name))? {
            let now = self.now();
            write_atomically(conn, |c| self.delete_held(c, id, token, now).map_err(core))
                .map_err(uncore)?;
        }
        honker_core::kick_after_commit(conn);
        Ok(())
    }

    /// Whether this queue keeps acked jobs in the history. Asked once for a batch of acks in one
    /// transaction: their deletes write on the snapshot this reads (SQLite refuses to upgrade a
    /// stale one), so the answer holds for the whole batch.
    pub(crate) fn keeps_history(&self, conn: &Connection) -> honker_core::Result<bool> {
        Ok(conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM honker_queues WHERE name = ?1 AND keep_history_ms > 0)",
            )?
            .query_row([&*self.name], |r| r.get(0))?)
    }

    /// For a queue that keeps no history (the caller asked [`Queue::keeps_history`] in this
    /// transaction): delete each of `jobs` still held under its token, telling `done` whether
    /// it was. One prepared statement for the batch, looked up once rather than per job.
    pub(crate) fn delete_held_each<T>(
        &self,
        conn: &Connection,
        jobs: impl IntoIterator<Item = (T, JobId, LeaseToken)>,
        mut done: impl FnMut(T, bool),
    ) -> honker_core::Result<()> {
        let mut delete = conn.prepare_cached(
            "DELETE FROM honker_jobs
             WHERE id = ?1 AND lease_token = ?2 AND state = 2 AND queue = ?3",
        )?;
        // The queue's name is bound once for the batch (a binding outlives each run's reset):
        // a text binding copies its string, once per job before.
        delete.raw_bind_parameter(3, &*self.name)?;
        for (tag, id, token) in jobs {
            delete.raw_bind_parameter(1, id)?;
            delete.raw_bind_parameter(2, token)?;
            done(tag, delete.raw_execute()? > 0);
        }
        Ok(())
    }

    fn delete_held(&self, conn: &Connection, id: JobId, token: LeaseToken, now: i64) -> Result<()> {
        if !finish_held(conn, id, token, Some(&self.name), now)? {
            return Err(Error::LeaseLost { id });
        }
        Ok(())
    }

    /// Ack many jobs in one transaction; returns how many were still held (the others, whose
    /// lease was lost, are left alone).
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn ack_batch(&self, conn: &Connection, jobs: &[(JobId, LeaseToken)]) -> Result<usize> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let acked = write_atomically(conn, |c| {
            let mut acked = 0;
            if self.keeps_history(c)? {
                for (id, token) in jobs {
                    acked += usize::from(finish_held(c, *id, *token, Some(&self.name), now)?);
                }
            } else {
                let each = jobs.iter().map(|&(id, token)| ((), id, token));
                self.delete_held_each(c, each, |(), ok| acked += usize::from(ok))?;
            }
            Ok(acked)
        })
        .map_err(uncore)?;
        honker_core::kick_after_commit(conn);
        Ok(acked)
    }

    /// Ack a job and save its result (readable with [`crate::get_result`]) in one transaction.
    ///
    /// # Errors
    ///
    /// `payload.not_json`/`payload.too_large` for the result, `queue.lease_lost`; nothing is
    /// written on error.
    pub fn ack_with_result(
        &self,
        conn: &Connection,
        id: JobId,
        token: LeaseToken,
        result: &str,
        ttl_ms: Option<i64>,
    ) -> Result<()> {
        crate::results::check_result(result, ttl_ms)?;
        write_atomically(conn, |c| {
            self.delete_held(c, id, token, self.now()).map_err(core)?;
            crate::results::save_unchecked(c, self.now(), id, result, ttl_ms)
        })
        .map_err(uncore)?;
        honker_core::kick_after_commit(conn);
        Ok(())
    }

    /// Give a held job back for another attempt after `delay_ms` (default: the queue's backoff),
    /// recording `error`. A job that has used all its attempts goes to the dead letters instead.
    ///
    /// # Errors
    ///
    /// `arg.invalid` for a negative delay, `queue.lease_lost`; nothing written on error.
    pub fn retry(
        &self,
        conn: &Connection,
        id: JobId,
        token: LeaseToken,
        delay_ms: Option<i64>,
        error: Option<&str>,
    ) -> Result<RetryOutcome> {
        if let Some(d) = delay_ms {
            honker_core::at_least("delay_ms", d, 0)?;
        }
        let now = self.now();
        let outcome = write_atomically(conn, |c| {
            let held: Option<(u32, u32)> = c
                .prepare_cached(
                    "SELECT attempts, max_attempts FROM honker_jobs
                     WHERE id = ?1 AND lease_token = ?2 AND state = 2 AND queue = ?3",
                )?
                .query_row(params![id, token, &*self.name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((attempts, max_attempts)) = held else {
                return Err(core(Error::LeaseLost { id }));
            };
            if attempts >= max_attempts {
                self.bury_held(c, id, "attempts exhausted", error, now)
                    .map_err(core)?;
                return Ok(RetryOutcome::Dead);
            }
            let delay = match delay_ms {
                Some(d) => d,
                None => self.options(c).map_err(core)?.backoff_ms(id.0, attempts),
            };
            let run_at = now.saturating_add(delay);
            let state = if delay == 0 {
                STATE_READY
            } else {
                STATE_SCHEDULED
            };
            c.prepare_cached(
                "UPDATE honker_jobs SET state = ?2, run_at = ?3, lease_token = NULL,
                     lease_expires = NULL, claimer = NULL, worker = NULL, holder = NULL,
                     last_error = coalesce(?4, last_error)
                 WHERE id = ?1",
            )?
            .execute(params![id, state, run_at, error])?;
            Ok(RetryOutcome::Retrying {
                run_at: Millis(run_at),
            })
        })
        .map_err(uncore)?;
        honker_core::kick_after_commit(conn);
        Ok(outcome)
    }

    fn bury_held(
        &self,
        conn: &Connection,
        id: JobId,
        reason: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let rows = conn
            .prepare_cached(&format!(
                "DELETE FROM honker_jobs WHERE id = ?1 RETURNING {LEAVING_COLUMNS}"
            ))?
            .query_map([id], leaving)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        self.bury(conn, &rows, reason, error, now)
    }

    /// Give a held job back at once without using an attempt (for a graceful shutdown).
    ///
    /// # Errors
    ///
    /// `queue.lease_lost`; SQLite errors.
    pub fn release(&self, conn: &Connection, id: JobId, token: LeaseToken) -> Result<()> {
        let n = conn
            .prepare_cached(
                "UPDATE honker_jobs SET state = 0, attempts = max(attempts - 1, 0),
                     lease_token = NULL, lease_expires = NULL, claimer = NULL, worker = NULL,
                     holder = NULL
                 WHERE id = ?1 AND lease_token = ?2 AND state = 2 AND queue = ?3",
            )?
            .execute(params![id, token, &*self.name])?;
        if n == 0 {
            return Err(Error::LeaseLost { id });
        }
        honker_core::kick_after_commit(conn);
        Ok(())
    }

    /// Send a held job straight to the dead letters (`failed`), recording `error`.
    ///
    /// # Errors
    ///
    /// `queue.lease_lost`; SQLite errors.
    pub fn fail(&self, conn: &Connection, id: JobId, token: LeaseToken, error: &str) -> Result<()> {
        let now = self.now();
        write_atomically(conn, |c| {
            let held: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM honker_jobs
                     WHERE id = ?1 AND lease_token = ?2 AND state = 2 AND queue = ?3)",
                )?
                .query_row(params![id, token, &*self.name], |r| r.get(0))?;
            if !held {
                return Err(core(Error::LeaseLost { id }));
            }
            self.bury_held(c, id, "failed", Some(error), now)
                .map_err(core)
        })
        .map_err(uncore)?;
        honker_core::kick_after_commit(conn);
        Ok(())
    }

    /// Extend a held lease to `extend_ms` from now; returns the new expiry. A token whose job was
    /// reclaimed, acked, cancelled or buried can never extend it.
    ///
    /// # Errors
    ///
    /// `arg.invalid` for `extend_ms < 1`, `queue.lease_lost`; SQLite errors.
    pub fn heartbeat(
        &self,
        conn: &Connection,
        id: JobId,
        token: LeaseToken,
        extend_ms: i64,
    ) -> Result<Millis> {
        honker_core::at_least("extend_ms", extend_ms, 1)?;
        let until = self.now().saturating_add(extend_ms);
        let n = conn
            .prepare_cached(
                "UPDATE honker_jobs SET lease_expires = ?4
                 WHERE id = ?1 AND lease_token = ?2 AND state = 2 AND queue = ?3",
            )?
            .execute(params![id, token, &*self.name, until])?;
        if n == 0 {
            return Err(Error::LeaseLost { id });
        }
        Ok(Millis(until))
    }

    /// The earliest time something of this queue becomes due: a scheduled `run_at`, a lease
    /// expiry or an `expires_at` (possibly already past: a claim then has work to sweep).
    /// `None` when nothing is waiting for a time, or the queue is paused. A sleeping worker waits
    /// until then or until a commit, whichever comes first.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn next_due(&self, conn: &Connection) -> Result<Option<Millis>> {
        let p = self.probe(conn)?;
        Ok(if p.paused {
            None
        } else {
            p.earliest().map(Millis)
        })
    }

    /// Counts and times of this queue. Pending counts due scheduled jobs too (a claim would
    /// promote them). Cost: index ranges of the queue (not a hot path).
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn stats(&self, conn: &Connection) -> Result<QueueStats> {
        let now = self.now();
        let (ready, due, scheduled, running, retrying, dead, oldest_ready, oldest_due) = conn
            .prepare_cached(
                "SELECT (SELECT count(*) FROM honker_jobs WHERE queue = ?1 AND state = 0),
                        (SELECT count(*) FROM honker_jobs WHERE queue = ?1 AND state = 1 AND run_at <= ?2),
                        (SELECT count(*) FROM honker_jobs WHERE queue = ?1 AND state = 1 AND run_at > ?2),
                        (SELECT count(*) FROM honker_jobs WHERE queue = ?1 AND state = 2),
                        (SELECT count(*) FROM honker_jobs WHERE queue = ?1 AND state = 0 AND attempts > 0)
                      + (SELECT count(*) FROM honker_jobs WHERE queue = ?1 AND state = 1 AND attempts > 0),
                        (SELECT count(*) FROM honker_dead WHERE queue = ?1),
                        (SELECT min(run_at) FROM honker_jobs WHERE queue = ?1 AND state = 0),
                        (SELECT run_at FROM honker_jobs WHERE queue = ?1 AND state = 1 ORDER BY run_at LIMIT 1)",
            )?
            .query_row(params![&*self.name, now], |r| {
                Ok((
                    count(r.get(0)?),
                    count(r.get(1)?),
                    count(r.get(2)?),
                    count(r.get(3)?),
                    count(r.get(4)?),
                    count(r.get(5)?),
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            })?;
        let oldest = [oldest_ready, oldest_due.filter(|t| *t <= now)]
            .into_iter()
            .flatten()
            .min();
        Ok(QueueStats {
            pending: ready + due,
            scheduled,
            running,
            retrying,
            dead,
            oldest_pending_age_ms: oldest.map_or(0, |t| (now - t).max(0)),
            next_due: self.next_due(conn)?,
        })
    }
}

/// Delete a job held under `token` (of `queue`, when given) if its queue keeps no history: one
/// statement. Returns false when nothing was deleted (the lease is lost, or the queue keeps a
/// history and [`finish_held`] must copy the job first).
fn finish_without_history(
    conn: &Connection,
    id: JobId,
    token: LeaseToken,
    queue: Option<&str>,
) -> honker_core::Result<bool> {
    let n = conn
        .prepare_cached(
            "DELETE FROM honker_jobs
             WHERE id = ?1 AND lease_token = ?2 AND state = 2 AND (?3 IS NULL OR queue = ?3)
               AND NOT EXISTS (SELECT 1 FROM honker_queues q
                               WHERE q.name = honker_jobs.queue AND q.keep_history_ms > 0)",
        )?
        .execute(params![id, token, queue])?;
    Ok(n > 0)
}

/// Finish a job held under `token` (of `queue`, when given): copy it to the history when its
/// queue keeps one (trimming up to two expired history rows), then delete it. Runs in the
/// caller's transaction; returns false when `token` does not hold the job.
pub(crate) fn finish_held(
    conn: &Connection,
    id: JobId,
    token: LeaseToken,
    queue: Option<&str>,
    now: i64,
) -> honker_core::Result<bool> {
    if finish_without_history(conn, id, token, queue)? {
        return Ok(true);
    }
    let kept: Option<String> = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO honker_history (id, queue, payload, priority, attempts,
                 max_attempts, worker, created_ms, done_ms)
             SELECT j.id, j.queue, j.payload, j.priority, j.attempts, j.max_attempts,
                    coalesce((SELECT worker FROM honker_claimers WHERE id = j.claimer), j.worker),
                    j.created_ms, ?4
             FROM honker_jobs j JOIN honker_queues q ON q.name = j.queue
             WHERE j.id = ?1 AND j.lease_token = ?2 AND j.state = 2
               AND (?3 IS NULL OR j.queue = ?3) AND q.keep_history_ms > 0
             RETURNING queue",
        )?
        .query_row(params![id, token, queue, now], |r| r.get(0))
        .optional()?;
    let n = conn
        .prepare_cached(
            "DELETE FROM honker_jobs
             WHERE id = ?1 AND lease_token = ?2 AND state = 2 AND (?3 IS NULL OR queue = ?3)",
        )?
        .execute(params![id, token, queue])?;
    if let Some(q) = kept {
        conn.prepare_cached(
            "DELETE FROM honker_history WHERE id IN
                 (SELECT id FROM honker_history
                  WHERE queue = ?1
                    AND done_ms < ?2 - (SELECT keep_history_ms FROM honker_queues WHERE name = ?1)
                  ORDER BY done_ms LIMIT 2)",
        )?
        .execute(params![q, now])?;
    }
    Ok(n > 0)
}

/// The lease token of a claim for a job claimed `claims` times before, with the claim's random
/// `draw`: the formula the claim's UPDATE writes (see `LeaseToken`).
fn lease_token(claims: i64, draw: i64, id: i64) -> i64 {
    const LOW: i64 = (1 << 40) - 1;
    (((claims.wrapping_add(1) & 8191) << 40) | ((draw & LOW).wrapping_add(id) & LOW)).max(1)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Carry a queue error through [`write_atomically`], whose closure returns core errors.
pub(crate) fn core(e: Error) -> honker_core::Error {
    match e {
        Error::Core(c) => c,
        other => {
            honker_core::Error::Sqlite(rusqlite::Error::UserFunctionError(Box::new(Carried(other))))
        }
    }
}

/// Undo [`core`].
pub(crate) fn uncore(e: honker_core::Error) -> Error {
    match e {
        honker_core::Error::Sqlite(rusqlite::Error::UserFunctionError(b)) => {
            match b.downcast::<Carried>() {
                Ok(c) => c.0,
                Err(b) => Error::Core(honker_core::Error::Sqlite(
                    rusqlite::Error::UserFunctionError(b),
                )),
            }
        }
        other => Error::Core(other),
    }
}

/// A queue error wrapped to pass through a closure that returns core errors.
#[derive(Debug)]
struct Carried(Error);

impl fmt::Display for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Carried {}

/// The id of the `(worker, holder)` claimer in `honker_claimers` (schema v8; `holder` is '' when
/// this process has no liveness lock file), added by its first claim in the file. Adding one
/// first forgets the claimers whose process is gone and which no running job names, so the table
/// holds about one row per live claimer. In the caller's transaction if there is one: a claim
/// that rolls back takes its new row back with it.
fn claimer_id(conn: &Connection, db: Option<&Path>, worker: &str, holder: &str) -> Result<i64> {
    let find = |c: &Connection| {
        c.prepare_cached("SELECT id FROM honker_claimers WHERE worker = ?1 AND holder = ?2")?
            .query_row(params![worker, holder], |r| r.get::<_, i64>(0))
            .optional()
    };
    if let Some(id) = find(conn)? {
        return Ok(id);
    }
    if let Some(db) = db {
        let gone: Vec<(i64, String)> = conn
            .prepare_cached(
                "SELECT id, holder FROM honker_claimers
                 WHERE holder != '' AND id NOT IN
                     (SELECT claimer FROM honker_jobs WHERE state = 2 AND claimer IS NOT NULL)",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .filter(|(_, h)| honker_core::liveness::is_gone(db, h))
            .collect();
        for (id, _) in gone {
            // A gone process never claims again, so nothing can name this row after the look.
            conn.prepare_cached("DELETE FROM honker_claimers WHERE id = ?1")?
                .execute([id])?;
        }
    }
    conn.prepare_cached("INSERT OR IGNORE INTO honker_claimers (worker, holder) VALUES (?1, ?2)")?
        .execute(params![worker, holder])?;
    Ok(find(conn)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_computed_here_is_the_one_the_claim_writes() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut sql = conn
            .prepare(
                "SELECT max(1, (((?1 + 1) & 8191) << 40)
                     | (((?2 & 1099511627775) + ?3) & 1099511627775))",
            )
            .unwrap();
        let draws = [
            0,
            1,
            -1,
            i64::MIN,
            i64::MAX,
            0x00ff_ffff_ffff,
            -0x0100_0000_0000,
        ];
        for claims in [0, 1, 8190, 8191, 8192, 1 << 40] {
            for draw in draws {
                for id in [1, 2, 1 << 39, (1 << 40) - 1, 1 << 40, i64::MAX >> 2] {
                    let want: i64 = sql.query_row([claims, draw, id], |r| r.get(0)).unwrap();
                    assert_eq!(
                        super::lease_token(claims, draw, id),
                        want,
                        "claims {claims}, draw {draw}, id {id}"
                    );
                }
            }
        }
    }
}
