//! Dead letters: list them, requeue one or all of a queue (attempts reset), purge by age.
//! The automatic retention runs a few rows at a time whenever a job dies (see `Queue::claim`).

use honker_core::{Millis, write_atomically};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::job::JobId;
use crate::queue::{Queue, core, uncore};

/// A job in the dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadJob {
    /// The job (a requeue puts it back under this id).
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its payload (JSON text).
    pub payload: String,
    /// Its priority.
    pub priority: i64,
    /// Attempts used.
    pub attempts: u32,
    /// Attempts it was allowed.
    pub max_attempts: u32,
    /// `attempts exhausted`, `expired` or `failed`.
    pub reason: String,
    /// The last error recorded.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created: Millis,
    /// When it died.
    pub died: Millis,
}

impl Queue {
    /// Up to `limit` dead letters of this queue, newest first.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn dead_letters(&self, conn: &Connection, limit: usize) -> Result<Vec<DeadJob>> {
        Ok(conn
            .prepare_cached(
                "SELECT id, queue, payload, priority, attempts, max_attempts, reason, last_error,
                        created_ms, died_ms
                 FROM honker_dead WHERE queue = ?1 ORDER BY died_ms DESC, id DESC LIMIT ?2 + 0",
            )?
            .query_map(
                params![self.name(), i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(DeadJob {
                        id: r.get(0)?,
                        queue: r.get(1)?,
                        payload: r.get(2)?,
                        priority: r.get(3)?,
                        attempts: r.get(4)?,
                        max_attempts: r.get(5)?,
                        reason: r.get(6)?,
                        last_error: r.get(7)?,
                        created: r.get(8)?,
                        died: r.get(9)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Put dead job `id` of this queue back as pending, due now, with its attempts reset to 0.
    /// Returns false when there is no such dead job.
    ///
    /// # Errors
    ///
    /// `queue.dedup_conflict` when a live job holds its dedup key (nothing written); SQLite errors.
    pub fn requeue_dead(&self, conn: &Connection, id: JobId) -> Result<bool> {
        let now = self.now();
        let done = write_atomically(conn, |c| {
            let key: Option<Option<String>> = c
                .prepare_cached("SELECT dedup_key FROM honker_dead WHERE id = ?1 AND queue = ?2")?
                .query_row(params![id, self.name()], |r| r.get(0))
                .optional()?;
            let Some(key) = key else {
                return Ok(false);
            };
            if let Some(key) = key {
                let existing: Option<i64> = c
                    .prepare_cached(
                        "SELECT id FROM honker_jobs
                         WHERE queue = ?1 AND dedup_key = ?2 AND dedup_key IS NOT NULL",
                    )?
                    .query_row(params![self.name(), key], |r| r.get(0))
                    .optional()?;
                if let Some(existing) = existing {
                    return Err(core(Error::DedupConflict {
                        id,
                        existing: JobId(existing),
                    }));
                }
            }
            self.revive(c, "d.id = ?1", "d.id = ?1", params![id, now])?;
            Ok(true)
        })
        .map_err(uncore)?;
        if done {
            honker_core::kick_after_commit(conn);
        }
        Ok(done)
    }

    /// Requeue every dead job of this queue (attempts reset, due now); jobs whose dedup key is
    /// held by a live job stay dead. Returns how many were requeued.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn requeue_all_dead(&self, conn: &Connection) -> Result<usize> {
        let now = self.now();
        let n = write_atomically(conn, |c| {
            self.revive(
                c,
                "d.queue = ?1 AND (d.dedup_key IS NULL OR NOT EXISTS (SELECT 1 FROM honker_jobs j
                     WHERE j.queue = d.queue AND j.dedup_key = d.dedup_key))",
                "d.queue = ?1",
                params![self.name(), now],
            )
        })
        .map_err(uncore)?;
        if n > 0 {
            honker_core::kick_after_commit(conn);
        }
        Ok(n)
    }

    /// Move the dead rows matching `filter` (over `honker_dead d`; `?2` is now) back to pending,
    /// then delete the dead rows within `scope` whose id is live again.
    fn revive(
        &self,
        conn: &Connection,
        filter: &str,
        scope: &str,
        args: impl rusqlite::Params + Clone,
    ) -> honker_core::Result<usize> {
        let n = conn
            .prepare_cached(&format!(
                "INSERT OR IGNORE INTO honker_jobs (id, queue, state, payload, priority, run_at, attempts,
                     max_attempts, dedup_key, last_error, created_ms, claims)
                 SELECT d.id, d.queue, 0, d.payload, d.priority, ?2, 0, d.max_attempts,
                        d.dedup_key, d.last_error, d.created_ms, d.claims
                 FROM honker_dead d WHERE {filter}"
            ))?
            .execute(args.clone())?;
        // The rows just inserted are exactly the dead rows whose id is now live again.
        conn.prepare_cached(&format!(
            "DELETE FROM honker_dead WHERE id IN (SELECT d.id FROM honker_dead d
                 WHERE {scope} AND ?2 = ?2
                 AND EXISTS (SELECT 1 FROM honker_jobs j WHERE j.id = d.id))"
        ))?
        .execute(args)?;
        Ok(n)
    }

    /// Delete this queue's dead letters that died more than `older_than_ms` ago; returns how
    /// many. `0` purges them all.
    ///
    /// # Errors
    ///
    /// `arg.invalid` for a negative age; SQLite errors.
    pub fn purge_dead(&self, conn: &Connection, older_than_ms: i64) -> Result<usize> {
        honker_core::at_least("older_than_ms", older_than_ms, 0)?;
        let cutoff = self.now().saturating_sub(older_than_ms);
        Ok(conn
            .prepare_cached("DELETE FROM honker_dead WHERE queue = ?1 AND died_ms <= ?2")?
            .execute(params![self.name(), cutoff])?)
    }
}
