//! `honker stream ls|tail|consumers|trim|publish`: inspect, follow and feed durable streams.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use honker_stream::{Offset, StartFrom, SubscribeOptions, Subscriber, Trim};

use crate::commands::open;

/// Arguments of `honker stream`.
#[derive(Debug, Args)]
pub(crate) struct StreamArgs {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db(), global = true)]
    db: PathBuf,
    #[command(subcommand)]
    command: StreamCommand,
}

#[derive(Debug, Subcommand)]
enum StreamCommand {
    /// List topics with their sizes, offsets and consumer counts.
    Ls,
    /// Print a topic's events (one JSON object per line); `-f` keeps following live events.
    Tail(TailArgs),
    /// List a topic's consumers with their committed offsets and lag.
    Consumers(TopicArg),
    /// Publish one event (a JSON payload) on a topic; prints its offset.
    Publish(PublishArgs),
    /// Trim a topic: by count, age or offset; never past a registered consumer unless --force.
    Trim(TrimArgs),
}

#[derive(Debug, Args)]
struct TopicArg {
    /// The topic.
    topic: String,
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// The topic.
    topic: String,
    /// The payload: JSON text, such as '{"order":17}'.
    payload: String,
    /// An optional key stored with the event.
    #[arg(long)]
    key: Option<String>,
}

#[derive(Debug, Args)]
struct TailArgs {
    /// The topic.
    topic: String,
    /// How many of the newest events to print first (default 10; 0 for none).
    #[arg(short = 'n', long, default_value_t = 10)]
    lines: i64,
    /// Start after this offset instead of showing the newest events.
    #[arg(long)]
    after: Option<i64>,
    /// Keep following: print live events as they are committed.
    #[arg(short = 'f', long)]
    follow: bool,
    /// With -f: exit after this many events in total.
    #[arg(long)]
    count: Option<u64>,
    /// With -f: exit after this many milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Args)]
struct TrimArgs {
    /// The topic.
    topic: String,
    /// Keep at most this many of the newest events.
    #[arg(long)]
    max_events: Option<i64>,
    /// Remove events older than this many milliseconds.
    #[arg(long)]
    max_age_ms: Option<i64>,
    /// Remove every event at or below this offset.
    #[arg(long)]
    through: Option<i64>,
    /// Also remove events that registered consumers have not committed past (they will get
    /// `stream.trimmed` on their next read).
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: &StreamArgs) -> Result<ExitCode> {
    let conn = open(&args.db)?;
    let mut out = std::io::stdout().lock();
    match &args.command {
        StreamCommand::Ls => {
            writeln!(
                out,
                "{:<24} {:>10} {:>12} {:>10} {:>10} {:>10} {:>9}",
                "TOPIC", "EVENTS", "BYTES", "FIRST", "LAST", "TRIMMED", "CONSUMERS"
            )?;
            for t in honker_stream::topics(&conn)? {
                let show = |o: Option<Offset>| o.map_or("-".to_owned(), |o| o.to_string());
                writeln!(
                    out,
                    "{:<24} {:>10} {:>12} {:>10} {:>10} {:>10} {:>9}",
                    t.topic,
                    t.events,
                    t.payload_bytes,
                    show(t.first),
                    show(t.last),
                    t.trimmed_through,
                    t.consumers
                )?;
            }
        }
        StreamCommand::Consumers(a) => {
            writeln!(
                out,
                "{:<24} {:>10} {:>10} {:>12}  NOTE",
                "CONSUMER", "OFFSET", "LAG", "LAG_MS"
            )?;
            for c in honker_stream::consumers(&conn, &a.topic)? {
                let note = if c.behind_trim {
                    "behind a forced trim"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{:<24} {:>10} {:>10} {:>12}  {note}",
                    c.consumer, c.committed, c.lag_events, c.lag_ms
                )?;
            }
        }
        StreamCommand::Trim(a) => {
            let r = honker_stream::trim(
                &conn,
                &a.topic,
                &Trim {
                    max_age_ms: a.max_age_ms,
                    max_events: a.max_events,
                    through: a.through.map(Offset),
                    force: a.force,
                },
            )?;
            writeln!(
                out,
                "deleted {} events; {} trimmed through offset {}{}",
                r.deleted,
                a.topic,
                r.trimmed_through,
                if r.held_back {
                    " (held back by a consumer; --force to pass it)"
                } else {
                    ""
                }
            )?;
        }
        StreamCommand::Publish(a) => {
            let offset = match &a.key {
                Some(k) => honker_stream::publish_keyed(&conn, &a.topic, k, &a.payload)?,
                None => honker_stream::publish(&conn, &a.topic, &a.payload)?,
            };
            writeln!(out, "{offset}")?;
        }
        StreamCommand::Tail(a) => {
            drop(out);
            return tail(args, a);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tail(args: &StreamArgs, a: &TailArgs) -> Result<ExitCode> {
    let conn = open(&args.db)?;
    let start = match a.after {
        Some(o) => o,
        None => {
            // The offset before the newest `lines` events (or the start of what is stored).
            let floor = honker_stream::trimmed_through(&conn, &a.topic)?.get();
            let nth: Option<i64> = conn
                .query_row(
                    r#"SELECT "offset" FROM honker_streams WHERE topic = ?1
                       ORDER BY "offset" DESC LIMIT 1 OFFSET ?2"#,
                    rusqlite::params![a.topic, a.lines],
                    |r| r.get(0),
                )
                .ok();
            let latest = honker_stream::topic_latest(&conn, &a.topic)?.map_or(0, Offset::get);
            if a.lines == 0 {
                latest.max(floor)
            } else {
                nth.unwrap_or(floor).max(floor)
            }
        }
    };
    let wake = crate::commands::wake_for(&args.db)
        .with_context(|| format!("cannot watch {} for commits", args.db.display()))?;
    let mut sub = Subscriber::new(
        conn,
        &a.topic,
        wake,
        SubscribeOptions {
            consumer: None,
            start: StartFrom::After(Offset(start)),
            ..SubscribeOptions::default()
        },
    )?;
    let deadline = if a.follow {
        a.timeout_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms))
    } else {
        Some(Instant::now())
    };
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    while a.count.is_none_or(|c| seen < c) {
        let Some(e) = sub.recv(deadline)? else {
            break;
        };
        seen += 1;
        let payload: serde_json::Value =
            serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::String(e.payload));
        let line = serde_json::json!({
            "offset": e.offset.get(),
            "topic": e.topic,
            "key": e.key,
            "payload": payload,
            "created_ms": e.created.get(),
        });
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
