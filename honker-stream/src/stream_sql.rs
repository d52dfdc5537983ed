//! The stream SQL functions: `honker_publish`, `honker_read`, `honker_read_wait`,
//! `honker_commit_offset`, `honker_offset`, `honker_consumers`, `honker_stream_trim`, and the
//! additions `honker_stream_configure` and `honker_streams`.
//!
//! Errors read `honker: <code>: <message>`; `SQLITE_BUSY` passes through untouched. Every
//! function checks all its arguments before it writes, so a refused call writes nothing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use honker_core::sql::{
    ANYWHERE, Call, DIRECT_ONLY, SqlFunction, arg_cancel_key, arg_non_negative, arg_opt_text,
    arg_text, option_u64, parse_options, register_functions,
};
use honker_core::{SystemClock, WakeProvider};
use rusqlite::Connection;
use rusqlite::functions::Context;
use rusqlite::types::Value as SqlValue;

use crate::consumer::{
    ConsumerInfo, TopicInfo, commit_offset, committed_offset, consumers, remove_consumer, topics,
};
use crate::error::{Error, Result};
use crate::sql::to_usize;
use crate::stream::{Event, Offset, check_topic, insert, read};
use crate::trim::{TopicPolicy, Trim, set_topic_policy, topic_policy, trim_in_statement};

const TRIM_OPTIONS: &[&str] = &["max_age_ms", "max_events", "through", "force"];
const TRIM_OPTIONS_LIST: &str = "max_age_ms, max_events, through, force";
const POLICY_OPTIONS: &[&str] = &["max_age_ms", "max_events"];
const POLICY_OPTIONS_LIST: &str = "max_age_ms, max_events";

/// Register the stream functions (called by [`crate::sql::register`]).
///
/// - `honker_publish(topic, payload[, key])` -> the event's offset (global, commit order,
///   gaps within a topic). Part of the calling transaction, like `honker_notify`.
/// - `honker_read(topic, after_offset, limit)` -> JSON array text
///   `[{"offset":..,"topic":..,"key":..|null,"payload":<embedded JSON>,"created_ms":..}]`;
///   `stream.trimmed` when the topic was trimmed past `after_offset`.
/// - `honker_read_wait(topic, after_offset, limit, timeout_ms)` -> the same, blocking until at
///   least one event is there or the timeout passes (`[]`); refuses to run in a transaction.
/// - `honker_commit_offset(consumer, topic, offset)` -> 1 when the committed offset advanced,
///   0 when it did not (nothing changed).
/// - `honker_offset(consumer, topic)` -> the committed offset, or NULL for an unknown consumer.
/// - `honker_consumers(topic)` -> `[{"consumer":..,"topic":..,"offset":..,"lag_events":..,
///   "lag_ms":..,"updated_ms":..,"behind_trim":bool}]`.
/// - `honker_consumer_remove(consumer, topic)` -> 1 when it existed, 0 when not: forget a
///   consumer, so unforced trims no longer wait for its offset.
/// - `honker_stream_trim(topic[, options])` with `{"max_age_ms","max_events","through","force"}`
///   (no limit given: the topic's stored policy) -> events deleted.
/// - `honker_stream_configure(topic, options)` with `{"max_age_ms","max_events"}` (null or
///   absent: no limit) -> the stored policy as JSON.
/// - `honker_streams()` -> `[{"topic":..,"events":..,"payload_bytes":..,"first":..,"last":..,
///   "trimmed_through":..,"consumers":..}]`.
pub(crate) fn register(conn: &Connection, wakes: Arc<dyn WakeProvider>) -> rusqlite::Result<()> {
    register_functions(conn, Some(wakes), FUNCTIONS)
}

/// The stream SQL functions: name, arguments, flags, handler.
const FUNCTIONS: &[SqlFunction] = &[
    SqlFunction::args("honker_publish", 2, 3, ANYWHERE, publish),
    SqlFunction::new("honker_read", 3, ANYWHERE, read_fn),
    SqlFunction::args("honker_read_wait", 4, 5, DIRECT_ONLY, read_wait),
    SqlFunction::new("honker_commit_offset", 3, ANYWHERE, commit),
    SqlFunction::new("honker_offset", 2, ANYWHERE, offset),
    SqlFunction::new("honker_consumers", 1, ANYWHERE, consumers_fn),
    SqlFunction::new("honker_consumer_remove", 2, DIRECT_ONLY, consumer_remove),
    SqlFunction::args("honker_stream_trim", 1, 2, DIRECT_ONLY, stream_trim),
    SqlFunction::new("honker_stream_configure", 2, DIRECT_ONLY, stream_configure),
    SqlFunction::new("honker_streams", 0, ANYWHERE, streams),
];

type Out = rusqlite::Result<SqlValue>;

fn publish(call: &Call<'_>) -> Out {
    let topic = arg_text(call, 0, "topic")?;
    let payload = arg_text(call, 1, "payload")?;
    let key = arg_opt_text(call, 2, "key")?;
    Ok(
        insert(call.conn(), &SystemClock, &topic, key.as_deref(), &payload)?
            .get()
            .into(),
    )
}

fn read_fn(call: &Call<'_>) -> Out {
    let (topic, after, limit) = read_args(call)?;
    Ok(events_json(&read(call.conn(), &topic, after, limit)?).into())
}

fn commit(call: &Call<'_>) -> Out {
    let consumer = arg_text(call, 0, "consumer")?;
    let topic = arg_text(call, 1, "topic")?;
    let offset = arg_non_negative(call, 2, "offset")?;
    let c = commit_offset(call.conn(), &consumer, &topic, Offset(offset))?;
    Ok(i64::from(c.advanced()).into())
}

fn offset(call: &Call<'_>) -> Out {
    let consumer = arg_text(call, 0, "consumer")?;
    let topic = arg_text(call, 1, "topic")?;
    Ok(committed_offset(call.conn(), &consumer, &topic)?
        .map(Offset::get)
        .into())
}

fn consumers_fn(call: &Call<'_>) -> Out {
    let topic = arg_text(call, 0, "topic")?;
    Ok(consumers_json(&consumers(call.conn(), &topic)?).into())
}

fn consumer_remove(call: &Call<'_>) -> Out {
    let consumer = arg_text(call, 0, "consumer")?;
    let topic = arg_text(call, 1, "topic")?;
    Ok(i64::from(remove_consumer(call.conn(), &consumer, &topic)?).into())
}

fn stream_trim(call: &Call<'_>) -> Out {
    let topic = arg_text(call, 0, "topic")?;
    let options = arg_opt_text(call, 1, "options")?;
    Ok(trim_from_options(call.conn(), &topic, options.as_deref())?.into())
}

fn stream_configure(call: &Call<'_>) -> Out {
    let topic = arg_text(call, 0, "topic")?;
    let options = arg_opt_text(call, 1, "options")?;
    Ok(configure_from_options(call.conn(), &topic, options.as_deref())?.into())
}

fn streams(call: &Call<'_>) -> Out {
    Ok(topics_json(&topics(call.conn())?).into())
}

fn read_args(ctx: &Context<'_>) -> rusqlite::Result<(String, Offset, usize)> {
    let topic = arg_text(ctx, 0, "topic")?;
    let after = arg_non_negative(ctx, 1, "after_offset")?;
    let limit = arg_non_negative(ctx, 2, "limit")?;
    Ok((topic, Offset(after), to_usize(limit)))
}

fn read_wait(call: &Call<'_>) -> Out {
    let (topic, after, limit) = read_args(call)?;
    let timeout_ms = arg_non_negative(call, 3, "timeout_ms")?;
    let cancel_key = arg_cancel_key(call, 4)?;
    honker_core::sql::nonzero_for_wait("limit", limit)?;
    check_topic(&topic)?;
    let conn = call.conn();
    let source = call.wake_for_wait(cancel_key.as_deref())?;
    let deadline = Instant::now().checked_add(Duration::from_millis(timeout_ms as u64));
    match crate::stream::read_wait(conn, source.as_ref(), &topic, after, limit, deadline) {
        Ok(events) => Ok(events_json(&events).into()),
        Err(e) => {
            if matches!(&e, Error::Core(honker_core::Error::Wake(w)) if w.code() != "wait.cancelled")
            {
                call.forget_wake();
            }
            Err(e.into())
        }
    }
}

fn option_i64(
    map: &serde_json::Map<String, serde_json::Value>,
    key: &'static str,
) -> Result<Option<i64>> {
    Ok(option_u64(map, key)?.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
}

fn trim_from_options(conn: &Connection, topic: &str, options: Option<&str>) -> Result<i64> {
    check_topic(topic)?;
    let map = parse_options(options, TRIM_OPTIONS, TRIM_OPTIONS_LIST)?;
    let force = match map.get("force") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(other) => {
            return Err(honker_core::Error::InvalidArgument {
                name: "force",
                reason: format!("must be true or false, got {other}"),
            }
            .into());
        }
    };
    let mut t = Trim {
        max_age_ms: option_i64(&map, "max_age_ms")?,
        max_events: option_i64(&map, "max_events")?,
        through: option_i64(&map, "through")?.map(Offset),
        force,
    };
    if t.max_age_ms.is_none() && t.max_events.is_none() && t.through.is_none() {
        let p = topic_policy(conn, topic)?;
        t.max_age_ms = p.max_age_ms;
        t.max_events = p.max_events;
    }
    let now = honker_core::Clock::now(&SystemClock);
    let report = trim_in_statement(conn, topic, &t, now)?;
    Ok(i64::try_from(report.deleted).unwrap_or(i64::MAX))
}

fn configure_from_options(conn: &Connection, topic: &str, options: Option<&str>) -> Result<String> {
    check_topic(topic)?;
    let map = parse_options(options, POLICY_OPTIONS, POLICY_OPTIONS_LIST)?;
    let p = TopicPolicy {
        max_age_ms: option_i64(&map, "max_age_ms")?,
        max_events: option_i64(&map, "max_events")?,
    };
    set_topic_policy(conn, topic, &p)?;
    Ok(serde_json::json!({
        "topic": topic,
        "max_age_ms": p.max_age_ms,
        "max_events": p.max_events,
    })
    .to_string())
}

/// `[{"offset":..,"topic":..,"key":..,"payload":<embedded JSON>,"created_ms":..}, ...]`.
pub(crate) fn events_json(events: &[Event]) -> String {
    let mut out = String::with_capacity(events.len() * 160 + 2);
    out.push('[');
    // A page is of one topic: its name is escaped once.
    let mut topics = honker_core::payload::RepeatedName::default();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let topic = topics.json(&e.topic);
        let key = match &e.key {
            Some(k) => serde_json::Value::from(k.as_str()),
            None => serde_json::Value::Null,
        };
        let _ = write!(
            out,
            r#"{{"offset":{},"topic":{},"key":{},"payload":{},"created_ms":{}}}"#,
            e.offset,
            topic,
            key,
            honker_core::payload::embeddable(&e.payload),
            e.created.get()
        );
    }
    out.push(']');
    out
}

fn consumers_json(rows: &[ConsumerInfo]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|c| {
            serde_json::json!({
                "consumer": c.consumer,
                "topic": c.topic,
                "offset": c.committed.get(),
                "lag_events": c.lag_events,
                "lag_ms": c.lag_ms,
                "updated_ms": c.updated.get(),
                "behind_trim": c.behind_trim,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

fn topics_json(rows: &[TopicInfo]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|t| {
            serde_json::json!({
                "topic": t.topic,
                "events": t.events,
                "payload_bytes": t.payload_bytes,
                "first": t.first.map(Offset::get),
                "last": t.last.map(Offset::get),
                "trimmed_through": t.trimmed_through.get(),
                "consumers": t.consumers,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use honker_core::Millis;

    #[test]
    fn events_json_embeds_payloads_and_keys() {
        let events = [Event {
            offset: Offset(3),
            topic: "t\"".into(),
            key: Some("k".into()),
            payload: r#"{"a":[1]}"#.into(),
            created: Millis(9),
        }];
        let v: serde_json::Value = serde_json::from_str(&events_json(&events)).unwrap();
        assert_eq!(v[0]["offset"], 3);
        assert_eq!(v[0]["topic"], "t\"");
        assert_eq!(v[0]["key"], "k");
        assert_eq!(v[0]["payload"]["a"][0], 1);
        assert_eq!(events_json(&[]), "[]");
    }
}
