//! Hidden stream benchmark helpers for `cargo xtask bench`: a subscriber process (a honker
//! `Subscriber`, or a raw rusqlite loop polling `PRAGMA data_version` as the baseline) and a
//! publisher process committing paced events that carry their send time.
//!
//! Each prints `ready` (the subscriber) and one `result key=value ...` line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use honker_stream::{StartFrom, SubscribeOptions, Subscriber};
use rusqlite::Connection;

use crate::bench::{PublisherArgs, latency, paced, report_with, say};
use crate::commands::open;
use crate::stats::now_ns;

const TOPIC: &str = "bench";

/// The hidden stream benchmark subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchStreamCommand {
    /// Receive paced stream events and print publish -> delivery latency percentiles.
    #[command(name = "bench-stream-subscriber", hide = true)]
    Subscriber(SubscriberArgs),
    /// Publish paced stream events carrying their send time.
    #[command(name = "bench-stream-publisher", hide = true)]
    Publisher(PublisherArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SubscriberArgs {
    #[arg(long)]
    db: PathBuf,
    /// Events to measure (after the warm-up ones).
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Baseline: no honker, a bare loop polling `PRAGMA data_version` every 1 ms, then an
    /// indexed SELECT after the last offset.
    #[arg(long)]
    raw: bool,
    #[arg(long, default_value_t = 120_000)]
    timeout_ms: u64,
}

pub(crate) fn run(cmd: BenchStreamCommand) -> Result<ExitCode> {
    match cmd {
        BenchStreamCommand::Subscriber(a) => subscriber(&a),
        BenchStreamCommand::Publisher(a) => publisher(&a),
    }
}

fn subscriber(a: &SubscriberArgs) -> Result<ExitCode> {
    let want = a.count + a.warmup;
    let deadline = Instant::now() + Duration::from_millis(a.timeout_ms);
    let mut samples = Vec::with_capacity(want);
    if a.raw {
        let conn = Connection::open(&a.db)?;
        conn.busy_timeout(honker_core::BUSY_TIMEOUT)?;
        let mut version = conn.prepare("PRAGMA data_version")?;
        let mut select = conn.prepare(
            r#"SELECT "offset", payload FROM honker_streams
               WHERE topic = ?1 AND "offset" > ?2 ORDER BY "offset""#,
        )?;
        let mut last: i64 = conn.query_row(
            r#"SELECT coalesce(max("offset"), 0) FROM honker_streams"#,
            [],
            |r| r.get(0),
        )?;
        let mut seen: i64 = version.query_row([], |r| r.get(0))?;
        say("ready")?;
        while samples.len() < want {
            let v: i64 = version.query_row([], |r| r.get(0))?;
            if v == seen {
                if Instant::now() >= deadline {
                    bail!("timed out with {} of {want} events", samples.len());
                }
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            seen = v;
            let mut rows = select.query(rusqlite::params![TOPIC, last])?;
            while let Some(row) = rows.next()? {
                let recv = now_ns();
                last = row.get(0)?;
                samples.push(latency(&row.get::<_, String>(1)?, recv)?);
            }
        }
    } else {
        let wake = honker_wake::wake_for(&a.db)?;
        let mut sub = Subscriber::new(
            open(&a.db)?,
            TOPIC,
            wake,
            SubscribeOptions {
                consumer: None,
                start: StartFrom::Latest,
                ..SubscribeOptions::default()
            },
        )?;
        say("ready")?;
        while samples.len() < want {
            let Some(e) = sub.recv(Some(deadline))? else {
                bail!("timed out with {} of {want} events", samples.len());
            };
            samples.push(latency(&e.payload, now_ns())?);
        }
    }
    report_with("", samples, a.warmup)
}

fn publisher(a: &PublisherArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    paced(a.count, a.interval_us, 0x5eed, |_, payload, _| {
        honker_stream::publish(&conn, TOPIC, payload)?;
        Ok(())
    })?;
    say(&format!("result sent={}", a.count))?;
    Ok(ExitCode::SUCCESS)
}
