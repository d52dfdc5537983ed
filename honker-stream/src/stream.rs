//! Durable streams: publishing events, reading after an offset, and the blocking `read_wait`.
//!
//! Offsets are **global**: one sequence (`honker_streams.offset`, `AUTOINCREMENT`) shared by every
//! topic. They are assigned in commit order (SQLite has a single writer, which holds the write
//! lock from the insert to the commit), so a reader that has seen offset `n` has seen every
//! committed event below `n`. They are never reused, even after a trim. Within one topic they
//! strictly increase but have **gaps** (the offsets of other topics' events); treat an offset as
//! an ordered position, not a count. An offset taken by a publish that rolled back may be
//! assigned again, but no reader ever saw it.

use std::fmt;
use std::time::Instant;

use honker_core::payload::{DEFAULT_MAX_PAYLOAD_BYTES, check_json};
use honker_core::{Clock, Millis, SystemClock, WakeSource};
use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::trim;

/// A position in the stream: the offset of one event.
///
/// Offsets are global (one sequence for every topic), assigned in commit order, and never
/// reused, even after a trim; within one topic they increase but have gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl Offset {
    /// Before every event: reading after `Offset::ZERO` starts at the beginning of a topic.
    pub const ZERO: Offset = Offset(0);

    /// The raw number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<i64> for Offset {
    fn from(v: i64) -> Offset {
        Offset(v)
    }
}

impl ToSql for Offset {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl FromSql for Offset {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(Offset)
    }
}

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its offset.
    pub offset: Offset,
    /// The topic it was published to.
    pub topic: String,
    /// The publisher's key, if any.
    pub key: Option<String>,
    /// The payload, as the JSON text it was published with.
    pub payload: String,
    /// When it was published (by the publisher's clock).
    pub created: Millis,
}

/// The longest topic, consumer name or key accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

fn check_name(kind: &'static str, name: &str, allow_empty: bool) -> Result<()> {
    let reason = if name.is_empty() && !allow_empty {
        "is empty"
    } else if name.len() > MAX_NAME_BYTES {
        "is longer than 256 bytes"
    } else if name.contains('\0') {
        "contains a NUL character"
    } else {
        return Ok(());
    };
    Err(Error::BadName {
        kind,
        shown: name.chars().take(64).collect(),
        len: name.len(),
        reason,
    })
}

/// Check a topic name: non-empty, at most [`MAX_NAME_BYTES`] bytes, no NUL character.
///
/// # Errors
///
/// [`Error::BadName`] (`stream.bad_topic`).
pub fn check_topic(topic: &str) -> Result<()> {
    check_name("topic", topic, false)
}

/// Check a consumer name: the same rules as topics.
///
/// # Errors
///
/// [`Error::BadName`] (`stream.bad_consumer`).
pub fn check_consumer(consumer: &str) -> Result<()> {
    check_name("consumer", consumer, false)
}

fn check_key(key: &str) -> Result<()> {
    check_name("key", key, true)
}

fn check_after(after: Offset) -> Result<()> {
    if after.0 < 0 {
        return Err(honker_core::Error::InvalidArgument {
            name: "after_offset",
            reason: format!("must be >= 0, got {}", after.0),
        }
        .into());
    }
    Ok(())
}

/// Publish `payload` (JSON text) on `topic`; returns its offset.
///
/// Runs in the caller's transaction when one is open: a rollback publishes nothing, and the
/// event becomes visible to readers exactly when that transaction commits. In autocommit it
/// commits at once and kicks same-process readers ([`honker_core::kick_after_commit`]).
///
/// Every [`AUTO_TRIM_EVERY`](crate::AUTO_TRIM_EVERY)th offset also applies the stored
/// [topic policies](crate::set_topic_policy), in the same transaction (never past a registered
/// consumer).
///
/// # Errors
///
/// [`Error::BadName`]; core `payload.not_json` / `payload.too_large` (limit
/// [`DEFAULT_MAX_PAYLOAD_BYTES`]); `db.busy`, `db.read_only` and other SQLite errors. Nothing is
/// written when it fails.
pub fn publish(conn: &Connection, topic: &str, payload: &str) -> Result<Offset> {
    publish_with(conn, &SystemClock, topic, None, payload)
}

/// [`publish`] with a key (any text up to [`MAX_NAME_BYTES`] bytes, stored with the event).
///
/// # Errors
///
/// As [`publish`], and `stream.bad_key`.
pub fn publish_keyed(conn: &Connection, topic: &str, key: &str, payload: &str) -> Result<Offset> {
    publish_with(conn, &SystemClock, topic, Some(key), payload)
}

/// [`publish`] with an optional key and `created` read from `clock`.
///
/// # Errors
///
/// As [`publish_keyed`].
pub fn publish_with(
    conn: &Connection,
    clock: &dyn Clock,
    topic: &str,
    key: Option<&str>,
    payload: &str,
) -> Result<Offset> {
    let offset = insert(conn, clock, topic, key, payload)?;
    honker_core::kick_after_commit(conn);
    Ok(offset)
}

/// Validate, insert, and every [`AUTO_TRIM_EVERY`](crate::AUTO_TRIM_EVERY) offsets apply the
/// topic policies; never kicks (the SQL function runs inside a statement, before the commit).
pub(crate) fn insert(
    conn: &Connection,
    clock: &dyn Clock,
    topic: &str,
    key: Option<&str>,
    payload: &str,
) -> Result<Offset> {
    check_topic(topic)?;
    if let Some(k) = key {
        check_key(k)?;
    }
    check_json(payload, DEFAULT_MAX_PAYLOAD_BYTES)?;
    let now = clock.now();
    conn.prepare_cached(
        "INSERT INTO honker_streams (topic, key, payload, created_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(rusqlite::params![topic, key, payload, now])?;
    let offset = conn.last_insert_rowid();
    if offset % trim::AUTO_TRIM_EVERY == 0 {
        trim::auto_trim(conn, now)?;
    }
    Ok(Offset(offset))
}

/// Up to `limit` events of `topic` with an offset above `after`, oldest first.
///
/// An indexed range read (`(topic, offset)`). In autocommit it sees every commit made before
/// it started.
///
/// # Errors
///
/// [`Error::Trimmed`] when the topic was trimmed past `after` (events this reader never saw are
/// gone; nothing is skipped silently); [`Error::BadName`]; core `arg.invalid` for a negative
/// `after`; SQLite errors.
pub fn read(conn: &Connection, topic: &str, after: Offset, limit: usize) -> Result<Vec<Event>> {
    check_topic(topic)?;
    check_after(after)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let events = conn
        .prepare_cached(
            r#"SELECT "offset", topic, key, payload, created_ms FROM honker_streams
               WHERE topic = ?1 AND "offset" > ?2 ORDER BY "offset" LIMIT ?3 + 0"#,
        )?
        .query_map(rusqlite::params![topic, after, limit], |r| {
            Ok(Event {
                offset: r.get(0)?,
                topic: r.get(1)?,
                key: r.get(2)?,
                payload: r.get(3)?,
                created: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Checked after the read: the watermark only grows, so if it is still at or below `after`
    // now, no event the read could have returned was trimmed before it ran.
    let through = trimmed_through(conn, topic)?;
    if after < through {
        return Err(Error::Trimmed {
            topic: topic.to_owned(),
            after: after.0,
            trimmed_through: through.0,
            first_available: first_available(conn, topic)?.map(Offset::get),
        });
    }
    Ok(events)
}

/// Block until `topic` has events after `after` or `deadline` passes, then return up to `limit`
/// of them (empty at the deadline; `None` waits for ever).
///
/// Follows the wake loop of DESIGN.md §2: sample the epoch of `wake` (a wake source of the same
/// file), read with a fresh statement, and sleep past the sample only when that read found
/// nothing. With a deadline already past it reads once.
///
/// # Errors
///
/// Core `wait.in_transaction` inside an open transaction on `conn`; `wake.*` when the wake source
/// fails; as [`read`].
pub fn read_wait(
    conn: &Connection,
    wake: &dyn WakeSource,
    topic: &str,
    after: Offset,
    limit: usize,
    deadline: Option<Instant>,
) -> Result<Vec<Event>> {
    check_topic(topic)?;
    check_after(after)?;
    loop {
        honker_core::ensure_no_transaction(conn)?;
        let seen = wake.epoch();
        let events = read(conn, topic, after, limit)?;
        if !events.is_empty() || limit == 0 || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(events);
        }
        wake.wait_past(seen, deadline)?;
    }
}

/// The newest offset ever assigned, on any topic (0 before the first publish).
///
/// Read from `sqlite_sequence`, so it never goes backwards when events are trimmed.
///
/// # Errors
///
/// SQLite errors.
pub fn latest_offset(conn: &Connection) -> Result<Offset> {
    Ok(conn
        .prepare_cached(
            r#"SELECT max(
                coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'honker_streams'), 0),
                coalesce((SELECT max("offset") FROM honker_streams), 0))"#,
        )?
        .query_row([], |r| r.get(0))?)
}

/// The newest event offset of `topic` (`None` when it holds no event).
///
/// # Errors
///
/// SQLite errors.
pub fn topic_latest(conn: &Connection, topic: &str) -> Result<Option<Offset>> {
    Ok(conn
        .prepare_cached(r#"SELECT max("offset") FROM honker_streams WHERE topic = ?1"#)?
        .query_row([topic], |r| r.get(0))?)
}

/// The oldest event still stored on `topic` (`None` when it holds no event).
///
/// # Errors
///
/// SQLite errors.
pub fn first_available(conn: &Connection, topic: &str) -> Result<Option<Offset>> {
    Ok(conn
        .prepare_cached(r#"SELECT min("offset") FROM honker_streams WHERE topic = ?1"#)?
        .query_row([topic], |r| r.get(0))?)
}

/// Every event of `topic` at or below this offset has been trimmed (0 when never trimmed).
/// Reading after anything below it fails with [`Error::Trimmed`].
///
/// # Errors
///
/// SQLite errors.
pub fn trimmed_through(conn: &Connection, topic: &str) -> Result<Offset> {
    Ok(conn
        .prepare_cached("SELECT trimmed_through FROM honker_stream_topics WHERE topic = ?1")?
        .query_row([topic], |r| r.get(0))
        .optional()?
        .unwrap_or(Offset::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        check_topic("orders").unwrap();
        check_key("").unwrap();
        for (bad, code) in [
            (String::new(), "stream.bad_topic"),
            ("x".repeat(MAX_NAME_BYTES + 1), "stream.bad_topic"),
            ("a\0b".into(), "stream.bad_topic"),
        ] {
            assert_eq!(check_topic(&bad).unwrap_err().code(), code);
        }
        assert_eq!(
            check_consumer("").unwrap_err().code(),
            "stream.bad_consumer"
        );
        assert_eq!(check_key("a\0").unwrap_err().code(), "stream.bad_key");
    }
}
