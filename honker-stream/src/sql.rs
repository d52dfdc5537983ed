//! The pub/sub SQL functions: `honker_notify` (alias `notify`), `honker_listen`,
//! `honker_listen_wait` and `honker_notify_prune`.
//!
//! Errors read `honker: <code>: <message>`; `SQLITE_BUSY` passes through untouched. Every
//! function checks all its arguments before it writes, so a refused call writes nothing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use honker_core::sql::{
    ANYWHERE, Call, DIRECT_ONLY, SqlFunction, arg_cancel_key, arg_i64, arg_non_negative,
    arg_opt_text, arg_text, option_u64, parse_options, register_functions,
};
use honker_core::{SystemClock, WakeProvider};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use crate::error::{Error, Result};
use crate::notify::{Notification, insert, listen};
use crate::retention::{Retention, prune_with_clock, retention};

const PRUNE_OPTIONS: &[&str] = &["max_age_ms", "max_rows"];
const PRUNE_OPTIONS_LIST: &str = "max_age_ms, max_rows";

/// Register the pub/sub and the durable-stream SQL functions on `conn`.
///
/// Streams: `honker_publish(topic, payload[, key])` -> offset; `honker_read(topic, after_offset,
/// limit)` and `honker_read_wait(topic, after_offset, limit, timeout_ms)` -> JSON array
/// `[{"offset","topic","key","payload":<embedded>,"created_ms"}]` (`stream.trimmed` when the
/// topic was trimmed past `after_offset`); `honker_commit_offset(consumer, topic, offset)` -> 1
/// when it advanced, 0 when not (nothing changed); `honker_offset(consumer, topic)` -> offset or
/// NULL; `honker_consumers(topic)` -> `[{"consumer","topic","offset","lag_events","lag_ms",
/// "updated_ms","behind_trim"}]`; `honker_consumer_remove(consumer, topic)` -> 1 or 0;
/// `honker_stream_trim(topic[, options])` with
/// `{"max_age_ms","max_events","through","force"}` (none: the stored policy) -> events deleted;
/// `honker_stream_configure(topic, options)` with `{"max_age_ms","max_events"}` -> the policy;
/// `honker_streams()` -> `[{"topic","events","payload_bytes","first","last","trimmed_through",
/// "consumers"}]`.
///
/// Pub/sub:
///
/// - `honker_notify(channel, payload)` and its alias `notify(channel, payload)` -> the new id.
///   Inside `BEGIN` (or a writing statement, or a trigger) the row is part of that transaction;
///   under a read-only statement in autocommit each call's row commits on its own. It does not
///   kick: the watcher sees the commit. Usable from triggers (`AFTER INSERT ... BEGIN SELECT
///   honker_notify(...); END`).
/// - `honker_listen(channel, after_id, limit)` -> JSON array text
///   `[{"id":..,"channel":..,"payload":<the payload, embedded as JSON>,"created_ms":..}]`.
/// - `honker_listen_wait(channel, after_id, limit, timeout_ms)` -> the same array, blocking
///   until at least one notification is there or `timeout_ms` passes (`[]`). It refuses to run
///   inside an open transaction (`wait.in_transaction`) and holds no read transaction while it
///   blocks, as long as the calling statement reads no table itself. It sleeps on
///   `wakes.wake_for(db_file)`, kept for the life of the connection.
/// - `honker_notify_prune([options])` with options `{"max_age_ms":..,"max_rows":..}` (missing
///   keys use the stored [`retention`](crate::retention())) -> rows deleted.
///
/// # Errors
///
/// SQLite's error when a function cannot be registered.
pub fn register(conn: &Connection, wakes: Arc<dyn WakeProvider>) -> rusqlite::Result<()> {
    register_functions(conn, Some(wakes.clone()), FUNCTIONS)?;
    crate::stream_sql::register(conn, wakes)
}

/// The pub/sub SQL functions: name, arguments, flags, handler.
const FUNCTIONS: &[SqlFunction] = &[
    SqlFunction::new("honker_notify", 2, ANYWHERE, notify),
    SqlFunction::new("notify", 2, ANYWHERE, notify),
    SqlFunction::new("honker_listen", 3, ANYWHERE, listen_fn),
    SqlFunction::args("honker_listen_wait", 4, 5, DIRECT_ONLY, listen_wait),
    SqlFunction::args("honker_notify_prune", 0, 1, DIRECT_ONLY, notify_prune),
    SqlFunction::new("honker_upkeep_stats", 0, ANYWHERE, |_| {
        Ok(crate::upkeep_stats().to_json().into())
    }),
];

type Out = rusqlite::Result<SqlValue>;

fn notify(call: &Call<'_>) -> Out {
    let channel = arg_text(call, 0, "channel")?;
    let payload = arg_text(call, 1, "payload")?;
    Ok(insert(call.conn(), &SystemClock, &channel, &payload)?.into())
}

fn listen_fn(call: &Call<'_>) -> Out {
    let channel = arg_text(call, 0, "channel")?;
    let after_id = arg_i64(call, 1, "after_id")?;
    let limit = arg_non_negative(call, 2, "limit")?;
    let rows = listen(call.conn(), &channel, after_id, to_usize(limit))?;
    Ok(json_array(&rows).into())
}

fn notify_prune(call: &Call<'_>) -> Out {
    let options = arg_opt_text(call, 0, "options")?;
    Ok(prune_from_options(call.conn(), options.as_deref())?.into())
}

pub(crate) fn to_usize(v: i64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn prune_from_options(conn: &Connection, options: Option<&str>) -> Result<i64> {
    let map = parse_options(options, PRUNE_OPTIONS, PRUNE_OPTIONS_LIST)?;
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let given_age = option_u64(&map, "max_age_ms")?.map(as_i64);
    let given_rows = option_u64(&map, "max_rows")?.map(as_i64);
    let r = match (given_age, given_rows) {
        (Some(max_age_ms), Some(max_rows)) => Retention {
            max_age_ms,
            max_rows,
        },
        _ => {
            let stored = retention(conn)?;
            Retention {
                max_age_ms: given_age.unwrap_or(stored.max_age_ms),
                max_rows: given_rows.unwrap_or(stored.max_rows),
            }
        }
    };
    let deleted = prune_with_clock(conn, &r, &SystemClock)?;
    Ok(i64::try_from(deleted).unwrap_or(i64::MAX))
}

fn listen_wait(call: &Call<'_>) -> Out {
    let channel = arg_text(call, 0, "channel")?;
    let after_id = arg_i64(call, 1, "after_id")?;
    let limit = to_usize(arg_non_negative(call, 2, "limit")?);
    let timeout_ms = arg_non_negative(call, 3, "timeout_ms")?;
    let cancel_key = arg_cancel_key(call, 4)?;
    honker_core::sql::nonzero_for_wait("limit", limit)?;
    let conn = call.conn();
    let source = call.wake_for_wait(cancel_key.as_deref())?;
    let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms as u64));
    loop {
        // DESIGN §2: sample, then look with a fresh statement, then sleep past the sample.
        let seen = source.epoch();
        let rows = listen(conn, &channel, after_id, limit)?;
        if !rows.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(json_array(&rows).into());
        }
        if let Err(e) = source.wait_past(seen, deadline) {
            if e.code() != "wait.cancelled" {
                call.forget_wake();
            }
            return Err(Error::from(e).into());
        }
    }
}

/// `[{"id":..,"channel":..,"payload":<embedded JSON>,"created_ms":..}, ...]`.
fn json_array(rows: &[Notification]) -> String {
    let mut out = String::with_capacity(rows.len() * 128 + 2);
    out.push('[');
    for (i, n) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let channel = serde_json::Value::from(n.channel.as_str());
        // Payloads are checked on the way in; a row written around honker that is not JSON is
        // embedded as a JSON string so the array stays valid.
        let payload = honker_core::payload::embeddable(&n.payload);
        let _ = write!(
            out,
            r#"{{"id":{},"channel":{},"payload":{},"created_ms":{}}}"#,
            n.id,
            channel,
            payload,
            n.created.get()
        );
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use honker_core::Millis;

    #[test]
    fn json_array_embeds_payloads_and_escapes_channels() {
        let rows = [
            Notification {
                id: 1,
                channel: "a\"b".into(),
                payload: " {\"k\": [1, 2]} ".into(),
                created: Millis(5),
            },
            Notification {
                id: 2,
                channel: "c".into(),
                payload: "not json".into(),
                created: Millis(6),
            },
        ];
        let text = json_array(&rows);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["channel"], "a\"b");
        assert_eq!(v[0]["payload"]["k"][1], 2);
        assert_eq!(v[0]["created_ms"], 5);
        assert_eq!(v[1]["payload"], "not json");
        assert_eq!(json_array(&[]), "[]");
    }
}
