//! Named consumers and their committed offsets; lag and topic introspection.
//!
//! A consumer is registered on a topic by its first commit (or by [`register_consumer`], which a
//! [`Subscriber`](crate::Subscriber) calls). Its committed offset only increases, and a trim that
//! is not forced never removes an event above it.

use honker_core::{Clock, Millis, SystemClock};
use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::stream::{Offset, check_consumer, check_topic, latest_offset, trimmed_through};

/// What [`commit_offset`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The committed offset moved up to the one given (or the consumer was registered with it).
    Advanced,
    /// The offset given was not above the one already committed: nothing changed.
    NotAdvanced {
        /// The offset that stays committed.
        committed: Offset,
    },
}

impl Commit {
    /// Whether the offset moved.
    pub fn advanced(self) -> bool {
        matches!(self, Commit::Advanced)
    }
}

/// Commit `offset` for `consumer` on `topic`: every event of the topic at or below it is done.
///
/// Monotonic: an offset at or below the committed one reports [`Commit::NotAdvanced`] and
/// changes nothing. One statement, in the caller's transaction when one is open, so "apply the
/// events' effects + advance the offset" commits (or rolls back) as one.
///
/// # Errors
///
/// [`Error::BadName`]; core `arg.invalid` for a negative offset; [`Error::OffsetAhead`] for an
/// offset not yet assigned; SQLite errors. Nothing is written when it fails.
pub fn commit_offset(
    conn: &Connection,
    consumer: &str,
    topic: &str,
    offset: Offset,
) -> Result<Commit> {
    commit_offset_with(conn, &SystemClock, consumer, topic, offset)
}

/// [`commit_offset`] with the update time read from `clock`.
///
/// # Errors
///
/// As [`commit_offset`].
pub fn commit_offset_with(
    conn: &Connection,
    clock: &dyn Clock,
    consumer: &str,
    topic: &str,
    offset: Offset,
) -> Result<Commit> {
    check_consumer(consumer)?;
    check_topic(topic)?;
    if offset.0 < 0 {
        return Err(honker_core::Error::InvalidArgument {
            name: "offset",
            reason: format!("must be >= 0, got {}", offset.0),
        }
        .into());
    }
    let latest = latest_offset(conn)?;
    if offset > latest {
        return Err(Error::OffsetAhead {
            topic: topic.to_owned(),
            offset: offset.0,
            latest: latest.0,
        });
    }
    let changed = conn
        .prepare_cached(
            "INSERT INTO honker_consumers (topic, consumer, committed, updated_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (topic, consumer) DO UPDATE
                SET committed = excluded.committed, updated_ms = excluded.updated_ms
              WHERE excluded.committed > honker_consumers.committed",
        )?
        .execute(rusqlite::params![topic, consumer, offset, clock.now()])?;
    if changed == 1 {
        return Ok(Commit::Advanced);
    }
    let committed = committed_offset(conn, consumer, topic)?.unwrap_or(offset);
    Ok(Commit::NotAdvanced { committed })
}

/// The offset `consumer` committed on `topic`, or `None` if it is not registered there.
///
/// # Errors
///
/// [`Error::BadName`]; SQLite errors.
pub fn committed_offset(conn: &Connection, consumer: &str, topic: &str) -> Result<Option<Offset>> {
    check_consumer(consumer)?;
    check_topic(topic)?;
    Ok(conn
        .prepare_cached(
            "SELECT committed FROM honker_consumers WHERE topic = ?1 AND consumer = ?2",
        )?
        .query_row([topic, consumer], |r| r.get(0))
        .optional()?)
}

/// Register `consumer` on `topic` at `offset` if it is not registered yet; returns the offset
/// it has committed now (the existing one, or `offset`).
///
/// # Errors
///
/// As [`commit_offset`].
pub fn register_consumer(
    conn: &Connection,
    consumer: &str,
    topic: &str,
    offset: Offset,
) -> Result<Offset> {
    match commit_offset_if_new(conn, consumer, topic, offset)? {
        Some(existing) => Ok(existing),
        None => Ok(offset),
    }
}

fn commit_offset_if_new(
    conn: &Connection,
    consumer: &str,
    topic: &str,
    offset: Offset,
) -> Result<Option<Offset>> {
    if let Some(existing) = committed_offset(conn, consumer, topic)? {
        return Ok(Some(existing));
    }
    match commit_offset(conn, consumer, topic, offset)? {
        Commit::Advanced => Ok(None),
        Commit::NotAdvanced { committed } => Ok(Some(committed)),
    }
}

/// Forget `consumer` on `topic` (trims stop waiting for it); returns whether it was registered.
///
/// # Errors
///
/// [`Error::BadName`]; SQLite errors.
pub fn remove_consumer(conn: &Connection, consumer: &str, topic: &str) -> Result<bool> {
    check_consumer(consumer)?;
    check_topic(topic)?;
    let n = conn
        .prepare_cached("DELETE FROM honker_consumers WHERE topic = ?1 AND consumer = ?2")?
        .execute([topic, consumer])?;
    Ok(n == 1)
}

/// One consumer of a topic, with its lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The consumer's name.
    pub consumer: String,
    /// The topic.
    pub topic: String,
    /// Its committed offset.
    pub committed: Offset,
    /// How many stored events of the topic are above its committed offset.
    pub lag_events: i64,
    /// How old the oldest of those events is, in milliseconds (0 when it is caught up).
    pub lag_ms: i64,
    /// When its offset last advanced.
    pub updated: Millis,
    /// Whether a forced trim removed events it had not committed past (its next read fails with
    /// `stream.trimmed`).
    pub behind_trim: bool,
}

/// The consumers of `topic`, by name, with their lag measured at `clock`'s now.
///
/// Lag in events counts the stored events above the committed offset: an index range count, so
/// it costs in proportion to the lag.
///
/// # Errors
///
/// [`Error::BadName`]; SQLite errors.
pub fn consumers(conn: &Connection, topic: &str) -> Result<Vec<ConsumerInfo>> {
    consumers_with(conn, &SystemClock, topic)
}

/// [`consumers`] with "now" read from `clock`.
///
/// # Errors
///
/// As [`consumers`].
pub fn consumers_with(
    conn: &Connection,
    clock: &dyn Clock,
    topic: &str,
) -> Result<Vec<ConsumerInfo>> {
    check_topic(topic)?;
    let now = clock.now().get();
    let through = trimmed_through(conn, topic)?;
    let mut stmt = conn.prepare_cached(
        r#"SELECT c.consumer, c.committed, c.updated_ms,
                  (SELECT count(*) FROM honker_streams s
                    WHERE s.topic = c.topic AND s."offset" > c.committed),
                  (SELECT s.created_ms FROM honker_streams s
                    WHERE s.topic = c.topic AND s."offset" > c.committed
                    ORDER BY s."offset" LIMIT 1)
             FROM honker_consumers c WHERE c.topic = ?1 ORDER BY c.consumer"#,
    )?;
    let rows = stmt.query_map([topic], |r| {
        let committed: Offset = r.get(1)?;
        let oldest: Option<i64> = r.get(4)?;
        Ok(ConsumerInfo {
            consumer: r.get(0)?,
            topic: topic.to_owned(),
            committed,
            updated: r.get(2)?,
            lag_events: r.get(3)?,
            lag_ms: oldest.map_or(0, |c| now.saturating_sub(c).max(0)),
            behind_trim: committed < through,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// One topic: its size and bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic.
    pub topic: String,
    /// How many events it stores.
    pub events: i64,
    /// The total size of their payloads, in bytes.
    pub payload_bytes: i64,
    /// Its oldest stored offset (`None` when empty).
    pub first: Option<Offset>,
    /// Its newest stored offset (`None` when empty).
    pub last: Option<Offset>,
    /// Every event at or below this offset was trimmed.
    pub trimmed_through: Offset,
    /// How many consumers are registered on it.
    pub consumers: i64,
}

/// Every topic that stores events, has consumers, or has a policy, by name.
///
/// An introspection query (for `honker stream ls`): it reads every event once.
///
/// # Errors
///
/// SQLite errors.
pub fn topics(conn: &Connection) -> Result<Vec<TopicInfo>> {
    let mut stmt = conn.prepare_cached(
        r#"WITH names AS (
                SELECT DISTINCT topic FROM honker_streams
                UNION SELECT topic FROM honker_consumers
                UNION SELECT topic FROM honker_stream_topics)
           SELECT n.topic,
                  (SELECT count(*) FROM honker_streams s WHERE s.topic = n.topic),
                  (SELECT coalesce(sum(length(CAST(s.payload AS BLOB))), 0)
                     FROM honker_streams s WHERE s.topic = n.topic),
                  (SELECT min("offset") FROM honker_streams s WHERE s.topic = n.topic),
                  (SELECT max("offset") FROM honker_streams s WHERE s.topic = n.topic),
                  coalesce((SELECT trimmed_through FROM honker_stream_topics t
                             WHERE t.topic = n.topic), 0),
                  (SELECT count(*) FROM honker_consumers c WHERE c.topic = n.topic)
             FROM names n ORDER BY n.topic"#,
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(TopicInfo {
            topic: r.get(0)?,
            events: r.get(1)?,
            payload_bytes: r.get(2)?,
            first: r.get(3)?,
            last: r.get(4)?,
            trimmed_through: r.get(5)?,
            consumers: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
