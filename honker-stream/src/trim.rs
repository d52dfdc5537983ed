//! Stream retention: trimming a topic by age, count or offset, per-topic policies applied
//! automatically, and the guarantee that a trim never outruns a registered consumer unless forced.
//!
//! A trim always removes a *prefix* of the topic (every event at or below a cut offset) and
//! records the cut as the topic's `trimmed_through` watermark. Unless forced, the cut is lowered
//! to the smallest offset committed by a registered consumer of the topic, so no consumer ever
//! loses an event it has not committed past. A forced trim may pass a consumer; that consumer's
//! next read fails with `stream.trimmed` naming the first available offset, never skipping
//! silently.

use honker_core::{Clock, Millis, SystemClock};
use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;
use crate::stream::{Offset, check_topic};

/// How often (in offsets) a publish also applies the stored topic policies: when
/// `offset % AUTO_TRIM_EVERY == 0`.
pub const AUTO_TRIM_EVERY: i64 = 256;

/// What to trim from one topic. Every limit that is set applies (the deepest cut wins); a trim
/// with no limit set removes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trim {
    /// Remove events older than this many milliseconds (and every event before them).
    pub max_age_ms: Option<i64>,
    /// Keep at most this many of the newest events.
    pub max_events: Option<i64>,
    /// Remove every event at or below this offset.
    pub through: Option<Offset>,
    /// Pass registered consumers that have not committed past the cut.
    pub force: bool,
}

/// What a trim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrimReport {
    /// Events deleted.
    pub deleted: usize,
    /// The topic's watermark afterwards: every event at or below it is gone.
    pub trimmed_through: Offset,
    /// Whether a registered consumer held the cut back (only when not forced).
    pub held_back: bool,
}

fn check_limit(name: &'static str, v: Option<i64>) -> Result<()> {
    match v {
        Some(v) if v < 0 => Err(honker_core::Error::InvalidArgument {
            name,
            reason: format!("must be >= 0, got {v}"),
        }
        .into()),
        _ => Ok(()),
    }
}

impl Trim {
    fn check(&self) -> Result<()> {
        check_limit("max_age_ms", self.max_age_ms)?;
        check_limit("max_events", self.max_events)?;
        check_limit("through", self.through.map(Offset::get))
    }
}

/// Trim `topic` now. All-or-nothing, in the caller's transaction when one is open.
///
/// # Errors
///
/// [`Error::BadName`](crate::Error::BadName); core `arg.invalid` for a negative limit; SQLite
/// errors.
pub fn trim(conn: &Connection, topic: &str, t: &Trim) -> Result<TrimReport> {
    trim_with(conn, &SystemClock, topic, t)
}

/// [`trim`] with "now" read from `clock`.
///
/// # Errors
///
/// As [`trim`].
pub fn trim_with(
    conn: &Connection,
    clock: &dyn Clock,
    topic: &str,
    t: &Trim,
) -> Result<TrimReport> {
    check_topic(topic)?;
    t.check()?;
    let now = clock.now();
    Ok(honker_core::write_atomically(conn, |c| {
        trim_at(c, topic, t, now)
    })?)
}

/// [`trim`] from inside a SQL function: under a savepoint (or directly inside a write statement),
/// since the calling statement holds the connection's transaction open (a `BEGIN` there would
/// fail).
pub(crate) fn trim_in_statement(
    conn: &Connection,
    topic: &str,
    t: &Trim,
    now: Millis,
) -> Result<TrimReport> {
    check_topic(topic)?;
    t.check()?;
    Ok(honker_core::nested_atomically(conn, |c| {
        trim_at(c, topic, t, now)
    })?)
}

fn trim_at(
    conn: &Connection,
    topic: &str,
    t: &Trim,
    now: Millis,
) -> honker_core::Result<TrimReport> {
    let mut cut = t.through.unwrap_or(Offset::ZERO);
    if let Some(n) = t.max_events {
        let nth: Option<Offset> = conn
            .prepare_cached(
                r#"SELECT "offset" FROM honker_streams WHERE topic = ?1
                   ORDER BY "offset" DESC LIMIT 1 OFFSET ?2"#,
            )?
            .query_row(rusqlite::params![topic, n], |r| r.get(0))
            .optional()?;
        cut = cut.max(nth.unwrap_or(Offset::ZERO));
    }
    if let Some(age) = t.max_age_ms {
        // The newest event below the topic's oldest event young enough to keep, found walking
        // the topic's offsets from the oldest (no index on `created_ms`: see schema v7). The
        // walk visits only events it trims, and one more. An old event that follows a younger
        // one (the clock went back) waits for a later trim: retention keeps events longer,
        // never shorter.
        let old: Option<Offset> = conn
            .prepare_cached(
                r#"SELECT max("offset") FROM honker_streams WHERE topic = ?1 AND "offset" < coalesce(
                       (SELECT "offset" FROM honker_streams WHERE topic = ?1 AND created_ms >= ?2
                        ORDER BY "offset" LIMIT 1),
                       9223372036854775807)"#,
            )?
            .query_row(
                rusqlite::params![topic, now.get().saturating_sub(age)],
                |r| r.get(0),
            )?;
        cut = cut.max(old.unwrap_or(Offset::ZERO));
    }
    // Never past the newest event: the watermark names trimmed events, not future ones.
    let newest: Option<Offset> = conn
        .prepare_cached(r#"SELECT max("offset") FROM honker_streams WHERE topic = ?1"#)?
        .query_row([topic], |r| r.get(0))?;
    let previous: Offset = conn
        .prepare_cached("SELECT trimmed_through FROM honker_stream_topics WHERE topic = ?1")?
        .query_row([topic], |r| r.get(0))
        .optional()?
        .unwrap_or(Offset::ZERO);
    cut = cut.min(newest.unwrap_or(Offset::ZERO).max(previous));
    let mut held_back = false;
    if !t.force {
        let slowest: Option<Offset> = conn
            .prepare_cached("SELECT min(committed) FROM honker_consumers WHERE topic = ?1")?
            .query_row([topic], |r| r.get(0))?;
        if let Some(slowest) = slowest
            && slowest < cut
        {
            cut = slowest.max(previous);
            held_back = true;
        }
    }
    if cut <= previous {
        return Ok(TrimReport {
            deleted: 0,
            trimmed_through: previous,
            held_back,
        });
    }
    let deleted = conn
        .prepare_cached(r#"DELETE FROM honker_streams WHERE topic = ?1 AND "offset" <= ?2"#)?
        .execute(rusqlite::params![topic, cut])?;
    conn.prepare_cached(
        "INSERT INTO honker_stream_topics (topic, trimmed_through) VALUES (?1, ?2)
         ON CONFLICT (topic) DO UPDATE SET trimmed_through = excluded.trimmed_through
          WHERE excluded.trimmed_through > honker_stream_topics.trimmed_through",
    )?
    .execute(rusqlite::params![topic, cut])?;
    Ok(TrimReport {
        deleted,
        trimmed_through: cut,
        held_back,
    })
}

/// A topic's automatic retention policy; `None` fields do not limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicPolicy {
    /// Keep events younger than this many milliseconds.
    pub max_age_ms: Option<i64>,
    /// Keep at most this many events.
    pub max_events: Option<i64>,
}

/// Store `topic`'s policy (in the caller's transaction, if any). Publishes apply every stored
/// policy every [`AUTO_TRIM_EVERY`] offsets, never past a registered consumer.
///
/// # Errors
///
/// [`Error::BadName`](crate::Error::BadName); core `arg.invalid` for a negative limit; SQLite
/// errors.
pub fn set_topic_policy(conn: &Connection, topic: &str, p: &TopicPolicy) -> Result<()> {
    check_topic(topic)?;
    check_limit("max_age_ms", p.max_age_ms)?;
    check_limit("max_events", p.max_events)?;
    conn.prepare_cached(
        "INSERT INTO honker_stream_topics (topic, max_age_ms, max_events) VALUES (?1, ?2, ?3)
         ON CONFLICT (topic) DO UPDATE
            SET max_age_ms = excluded.max_age_ms, max_events = excluded.max_events",
    )?
    .execute(rusqlite::params![topic, p.max_age_ms, p.max_events])?;
    Ok(())
}

/// `topic`'s stored policy (all `None` when it has none).
///
/// # Errors
///
/// [`Error::BadName`](crate::Error::BadName); SQLite errors.
pub fn topic_policy(conn: &Connection, topic: &str) -> Result<TopicPolicy> {
    check_topic(topic)?;
    Ok(conn
        .prepare_cached("SELECT max_age_ms, max_events FROM honker_stream_topics WHERE topic = ?1")?
        .query_row([topic], |r| {
            Ok(TopicPolicy {
                max_age_ms: r.get(0)?,
                max_events: r.get(1)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// Apply every stored policy under one savepoint; best effort like pub/sub's automatic prune: a
/// failure is retried at the next turn and never fails the publish, unless SQLite rolled back
/// the caller's whole transaction with it.
pub(crate) fn auto_trim(conn: &Connection, now: Millis) -> Result<()> {
    let in_transaction = !conn.is_autocommit();
    let result = honker_core::nested_atomically(conn, |conn| {
        let policies: Vec<(String, TopicPolicy)> = conn
            .prepare_cached(
                "SELECT topic, max_age_ms, max_events FROM honker_stream_topics
                  WHERE max_age_ms IS NOT NULL OR max_events IS NOT NULL",
            )?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    TopicPolicy {
                        max_age_ms: r.get(1)?,
                        max_events: r.get(2)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (topic, p) in policies {
            let t = Trim {
                max_age_ms: p.max_age_ms,
                max_events: p.max_events,
                through: None,
                force: false,
            };
            trim_at(conn, &topic, &t, now)?;
        }
        Ok(())
    });
    crate::upkeep::TRIMS.count(result.as_ref().err().map(|e| format!("{}: {e}", e.code())));
    match result {
        Err(e) if in_transaction && conn.is_autocommit() => Err(e.into()),
        _ => Ok(()),
    }
}
