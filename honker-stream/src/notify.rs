//! Publishing and reading notifications: `notify`, `listen`, `latest_id`, and the channel rules.

use honker_core::payload::{DEFAULT_MAX_PAYLOAD_BYTES, check_json};
use honker_core::{Clock, Millis, SystemClock};
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::retention;

/// A notification's id: assigned in commit order, never reused (even after a prune).
pub type NotificationId = i64;

/// The longest channel name accepted, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 256;

/// One published notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Its id; ids grow in commit order.
    pub id: NotificationId,
    /// The channel it was published on.
    pub channel: String,
    /// The payload, as the JSON text it was published with.
    pub payload: String,
    /// When it was published (by the publisher's clock).
    pub created: Millis,
}

/// Check a channel name: non-empty, at most [`MAX_CHANNEL_BYTES`] bytes, no NUL character.
///
/// # Errors
///
/// [`Error::BadChannel`].
pub fn check_channel(channel: &str) -> Result<()> {
    let reason = if channel.is_empty() {
        "is empty"
    } else if channel.len() > MAX_CHANNEL_BYTES {
        "is longer than 256 bytes"
    } else if channel.contains('\0') {
        "contains a NUL character"
    } else {
        return Ok(());
    };
    Err(Error::BadChannel {
        shown: channel.chars().take(64).collect(),
        len: channel.len(),
        reason,
    })
}

/// Publish `payload` (JSON text) on `channel`; returns the new notification's id.
///
/// The row is written in the caller's transaction when one is open, so a rollback drops the
/// notification and listeners never see it. In autocommit it commits at once, and
/// same-process listeners are kicked ([`honker_core::kick_after_commit`]) so they wake without
/// waiting for the watcher's next poll.
///
/// Every 1024th id also prunes old notifications by the stored [retention](crate::retention())
/// policy, in the same transaction; a failed prune is retried at the next turn and never fails
/// the notify.
///
/// # Errors
///
/// [`Error::BadChannel`]; core `payload.not_json` / `payload.too_large` (the payload limit is
/// [`DEFAULT_MAX_PAYLOAD_BYTES`]); `db.busy`, `db.read_only` and other SQLite errors. Nothing is
/// written when it fails.
pub fn notify(conn: &Connection, channel: &str, payload: &str) -> Result<NotificationId> {
    notify_with_clock(conn, &SystemClock, channel, payload)
}

/// [`notify`] with `created` (and the automatic prune's cut-off) read from `clock`.
///
/// # Errors
///
/// As [`notify`].
pub fn notify_with_clock(
    conn: &Connection,
    clock: &dyn Clock,
    channel: &str,
    payload: &str,
) -> Result<NotificationId> {
    let id = insert(conn, clock, channel, payload)?;
    honker_core::kick_after_commit(conn);
    Ok(id)
}

/// How often (in ids) an insert also prunes: when `id % PRUNE_EVERY == 0`.
pub const PRUNE_EVERY: i64 = 1024;

/// Validate, insert and (every [`PRUNE_EVERY`] ids) prune; never kicks. The SQL functions use
/// this directly: inside a statement the commit has not happened yet, and the watcher will see it.
pub(crate) fn insert(
    conn: &Connection,
    clock: &dyn Clock,
    channel: &str,
    payload: &str,
) -> Result<NotificationId> {
    check_channel(channel)?;
    check_json(payload, DEFAULT_MAX_PAYLOAD_BYTES)?;
    let now = clock.now();
    conn.prepare_cached(
        "INSERT INTO honker_notifications (channel, payload, created_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(rusqlite::params![channel, payload, now])?;
    let id = conn.last_insert_rowid();
    if id % PRUNE_EVERY == 0 {
        retention::auto_prune(conn, now)?;
    }
    Ok(id)
}

/// Up to `limit` notifications on `channel` with an id above `after_id`, oldest first.
///
/// A plain indexed read (`(channel, id)`), run as its own statement: in autocommit it sees every
/// commit made before it started. Notifications older than the retention window may be gone.
///
/// # Errors
///
/// [`Error::BadChannel`]; SQLite errors.
pub fn listen(
    conn: &Connection,
    channel: &str,
    after_id: NotificationId,
    limit: usize,
) -> Result<Vec<Notification>> {
    check_channel(channel)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, payload, created_ms FROM honker_notifications
         WHERE channel = ?1 AND id > ?2 ORDER BY id LIMIT ?3 + 0",
    )?;
    let rows = stmt.query_map(rusqlite::params![channel, after_id, limit], |r| {
        Ok(Notification {
            id: r.get(0)?,
            channel: r.get(1)?,
            payload: r.get(2)?,
            created: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The newest notification id ever assigned (0 if none), on any channel.
///
/// Read from `sqlite_sequence`, so it never goes backwards when notifications are pruned.
///
/// # Errors
///
/// SQLite errors.
pub fn latest_id(conn: &Connection) -> Result<NotificationId> {
    Ok(conn
        .prepare_cached(
            "SELECT max(
                coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'honker_notifications'), 0),
                coalesce((SELECT max(id) FROM honker_notifications), 0))",
        )?
        .query_row([], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_rules() {
        check_channel("orders").unwrap();
        check_channel(&"x".repeat(MAX_CHANNEL_BYTES)).unwrap();
        for bad in [
            String::new(),
            "x".repeat(MAX_CHANNEL_BYTES + 1),
            "a\0b".into(),
        ] {
            assert_eq!(
                check_channel(&bad).unwrap_err().code(),
                "notify.bad_channel"
            );
        }
    }
}
