//! Bounded retention of notifications: the policy, where it is stored, and pruning.
//!
//! Notifications are ephemeral. Every [`PRUNE_EVERY`](crate::PRUNE_EVERY)th notify prunes by age
//! and by count, so the table stays bounded without a daemon; [`prune`] does the same on demand.
//! A listener that falls further behind than the retention window misses what was pruned.

use honker_core::schema::{meta_get, meta_set};
use honker_core::{Clock, Millis, SystemClock};
use rusqlite::Connection;

use crate::error::Result;

/// `honker_meta` key of the stored maximum age.
pub const MAX_AGE_KEY: &str = "notify.max_age_ms";
/// `honker_meta` key of the stored maximum row count.
pub const MAX_ROWS_KEY: &str = "notify.max_rows";

/// How long notifications are kept, and how many.
///
/// A prune deletes notifications created more than `max_age_ms` before now, and those whose id
/// is not among the newest `max_rows` ids (so at most `max_rows` rows remain). It never deletes
/// a notification that is both younger than `max_age_ms` and among the newest `max_rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Maximum age in milliseconds. Default: one hour (3 600 000).
    pub max_age_ms: i64,
    /// Maximum number of notifications kept (all channels together). Default: 100 000.
    pub max_rows: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_ms: 3_600_000,
            max_rows: 100_000,
        }
    }
}

impl Retention {
    fn check(&self, min: i64) -> Result<()> {
        for (name, v) in [("max_age_ms", self.max_age_ms), ("max_rows", self.max_rows)] {
            if v < min {
                return Err(honker_core::Error::InvalidArgument {
                    name,
                    reason: format!("must be >= {min}, got {v}"),
                }
                .into());
            }
        }
        Ok(())
    }
}

/// The retention policy stored in the database: the defaults, overridden by `honker_meta` keys
/// [`MAX_AGE_KEY`] and [`MAX_ROWS_KEY`].
///
/// # Errors
///
/// Core `arg.invalid` when a stored value is not a positive integer; SQLite errors.
pub fn retention(conn: &Connection) -> Result<Retention> {
    let mut r = Retention::default();
    for (key, field) in [
        (MAX_AGE_KEY, &mut r.max_age_ms),
        (MAX_ROWS_KEY, &mut r.max_rows),
    ] {
        match meta_get(conn, key)? {
            None => {}
            Some(rusqlite::types::Value::Integer(v)) if v >= 1 => *field = v,
            Some(other) => {
                return Err(honker_core::Error::InvalidArgument {
                    name: key,
                    reason: format!("stored value {other:?} is not a positive integer"),
                }
                .into());
            }
        }
    }
    Ok(r)
}

/// Store `r` as the policy of the automatic prune (in the caller's transaction, if any).
///
/// # Errors
///
/// Core `arg.invalid` when a field is below 1; SQLite errors.
pub fn set_retention(conn: &Connection, r: &Retention) -> Result<()> {
    r.check(1)?;
    Ok(honker_core::write_atomically(conn, |c| {
        meta_set(c, MAX_AGE_KEY, r.max_age_ms)?;
        meta_set(c, MAX_ROWS_KEY, r.max_rows)
    })?)
}

/// Delete notifications outside `r` now; returns how many were deleted.
///
/// Runs in the caller's transaction when one is open, all-or-nothing either way. Ids are never
/// reused afterwards: [`latest_id`](crate::latest_id) does not go backwards.
///
/// # Errors
///
/// Core `arg.invalid` when a field is negative; SQLite errors.
pub fn prune(conn: &Connection, r: &Retention) -> Result<usize> {
    prune_with_clock(conn, r, &SystemClock)
}

/// [`prune`] with "now" read from `clock`.
///
/// # Errors
///
/// As [`prune`].
pub fn prune_with_clock(conn: &Connection, r: &Retention, clock: &dyn Clock) -> Result<usize> {
    r.check(0)?;
    prune_at(conn, r, clock.now())
}

/// Both deletes all-or-nothing: under a savepoint (not `BEGIN IMMEDIATE`, because this also runs
/// inside SQL functions, where the calling statement is still running; each DELETE takes the write
/// lock when it starts, so a deferred transaction never has to upgrade a read), or directly when it
/// runs inside a write statement such as a trigger, where SQLite refuses savepoints.
fn prune_at(conn: &Connection, r: &Retention, now: Millis) -> Result<usize> {
    Ok(honker_core::nested_atomically(conn, |conn| {
        // Everything below the oldest row young enough to keep, found in id order (no index on
        // `created_ms`: see schema v7). The walk visits only rows it deletes, and one more. A
        // row that is old but follows a younger one (the clock went back) waits for the next
        // prune: retention keeps rows longer, never shorter.
        let by_age = conn
            .prepare_cached(
                "DELETE FROM honker_notifications WHERE id < coalesce(
                     (SELECT id FROM honker_notifications WHERE created_ms >= ?1 ORDER BY id LIMIT 1),
                     (SELECT max(id) + 1 FROM honker_notifications))",
            )?
            .execute([now.get().saturating_sub(r.max_age_ms)])?;
        let by_count = conn
            .prepare_cached(
                "DELETE FROM honker_notifications
                 WHERE id <= (SELECT coalesce(max(id), 0) FROM honker_notifications) - ?1",
            )?
            .execute([r.max_rows])?;
        Ok(by_age + by_count)
    })?)
}

/// The prune that [`notify`](crate::notify) runs every [`PRUNE_EVERY`](crate::PRUNE_EVERY) ids.
///
/// Best effort: a failure is retried at the next turn and does not fail the notify, unless
/// SQLite rolled back the caller's whole transaction with it (then the notification is gone too,
/// and the caller must hear about it).
pub(crate) fn auto_prune(conn: &Connection, now: Millis) -> Result<()> {
    let in_transaction = !conn.is_autocommit();
    let policy = retention(conn).unwrap_or_default();
    let result = prune_at(conn, &policy, now);
    crate::upkeep::PRUNES.count(result.as_ref().err().map(|e| format!("{}: {e}", e.code())));
    match result {
        Err(e) if in_transaction && conn.is_autocommit() => Err(e),
        _ => Ok(()),
    }
}
