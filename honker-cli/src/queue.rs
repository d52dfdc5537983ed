//! The queue commands: `honker queue stats|jobs|dead|requeue|purge`, `honker enqueue`, and
//! `honker worker -- CMD...` (in [`worker`]).

pub(crate) mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use honker_queue::{EnqueueOptions, JobId, Queue, QueueOptionsPatch};
use rusqlite::Connection;
use serde_json::json;

use crate::commands::open;

/// Arguments of `honker queue`.
#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Counts per queue: pending, scheduled, running, retrying, dead, oldest pending age, next due.
    Stats(StatsArgs),
    /// List a queue's live jobs (pending, scheduled, running).
    Jobs(JobsArgs),
    /// List a queue's dead letters, newest first.
    Dead(DeadArgs),
    /// Put dead letters back in their queue with their attempts reset.
    Requeue(RequeueArgs),
    /// Delete a queue's dead letters (all, or those older than --older-than-ms).
    Purge(PurgeArgs),
    /// Show a queue's options, or change some: `--set '{"max_attempts":5,"paused":true}'`.
    Configure(ConfigureArgs),
}

/// The database and, for most commands, the queue.
#[derive(Debug, Args)]
struct Target {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db())]
    db: PathBuf,
    /// The queue.
    #[arg(long)]
    queue: String,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db())]
    db: PathBuf,
    /// Only this queue (default: every queue with jobs, dead letters or options).
    #[arg(long)]
    queue: Option<String>,
    /// Print one JSON object per queue.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct JobsArgs {
    #[command(flatten)]
    target: Target,
    /// At most this many jobs, in claim order.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print one JSON object per job.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DeadArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print one JSON object per dead letter.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RequeueArgs {
    #[command(flatten)]
    target: Target,
    /// The dead letter to requeue.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    id: Option<i64>,
    /// Requeue every dead letter of the queue.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Args)]
struct PurgeArgs {
    #[command(flatten)]
    target: Target,
    /// Only dead letters that died at least this many milliseconds ago (default: all).
    #[arg(long, default_value_t = 0)]
    older_than_ms: i64,
}

#[derive(Debug, Args)]
struct ConfigureArgs {
    #[command(flatten)]
    target: Target,
    /// The options to change, as one JSON object (keys: lease_ms, max_attempts,
    /// backoff_base_ms, backoff_cap_ms, dead_retention_ms, max_payload_bytes, paused,
    /// keep_history_ms). Without it, the options are only shown.
    #[arg(long)]
    set: Option<String>,
}

/// Arguments of `honker enqueue`.
#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db())]
    db: PathBuf,
    /// The queue.
    #[arg(long)]
    queue: String,
    /// The payload: JSON text, such as '{"order":17}'.
    payload: String,
    /// Run the job no sooner than this many milliseconds from now.
    #[arg(long)]
    delay_ms: Option<i64>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i64,
    /// Attempts before the job goes to the dead letters (default: the queue's).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// A key unique among the queue's live jobs: a second enqueue returns the first job's id.
    #[arg(long)]
    dedup_key: Option<String>,
}

pub(crate) fn run(args: &QueueArgs) -> Result<ExitCode> {
    match &args.command {
        QueueCommand::Stats(a) => stats(a),
        QueueCommand::Jobs(a) => jobs(a),
        QueueCommand::Dead(a) => dead(a),
        QueueCommand::Requeue(a) => requeue(a),
        QueueCommand::Purge(a) => purge(a),
        QueueCommand::Configure(a) => configure(a),
    }
}

fn queue(name: &str) -> Result<Queue> {
    Queue::new(name).with_context(|| format!("bad queue name {name:?}"))
}

/// Every queue the database knows of: with options, live jobs or dead letters.
fn queue_names(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM honker_queues
         UNION SELECT DISTINCT queue FROM honker_jobs
         UNION SELECT DISTINCT queue FROM honker_dead
         ORDER BY 1",
    )?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

#[allow(clippy::print_stdout)]
fn stats(a: &StatsArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    let names = match &a.queue {
        Some(q) => vec![q.clone()],
        None => queue_names(&conn)?,
    };
    if names.is_empty() && !a.json {
        println!("no queues in {}", a.db.display());
    } else if !a.json {
        println!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}  next due",
            "queue", "pending", "scheduled", "running", "retrying", "dead", "oldest (ms)"
        );
    }
    let now = honker_core::Clock::now(&honker_core::SystemClock);
    for name in names {
        let s = queue(&name)?.stats(&conn)?;
        let next = s.next_due.map(|t| t.get() - now.get());
        if a.json {
            println!(
                "{}",
                json!({
                    "queue": name, "pending": s.pending, "scheduled": s.scheduled,
                    "running": s.running, "retrying": s.retrying, "dead": s.dead,
                    "oldest_pending_age_ms": s.oldest_pending_age_ms,
                    "next_due_ms": s.next_due.map(|t| t.get()),
                })
            );
        } else {
            println!(
                "{name:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}  {}",
                s.pending,
                s.scheduled,
                s.running,
                s.retrying,
                s.dead,
                s.oldest_pending_age_ms,
                match next {
                    Some(ms) if ms <= 0 => "now".to_owned(),
                    Some(ms) => format!("in {ms} ms"),
                    None => "-".to_owned(),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A payload as JSON (it always is; a corrupt row shows as a string).
fn payload_value(p: &str) -> serde_json::Value {
    serde_json::from_str(p).unwrap_or_else(|_| serde_json::Value::String(p.to_owned()))
}

#[allow(clippy::print_stdout)]
fn jobs(a: &JobsArgs) -> Result<ExitCode> {
    let conn = open(&a.target.db)?;
    let q = queue(&a.target.queue)?;
    // The live jobs in claim order: running first (they hold leases), then due, then scheduled.
    let mut stmt = conn.prepare(
        "SELECT id FROM honker_jobs WHERE queue = ?1
         ORDER BY state DESC, priority DESC, run_at, id LIMIT ?2 + 0",
    )?;
    let ids = stmt
        .query_map(rusqlite::params![q.name(), a.limit as i64], |r| {
            r.get::<_, i64>(0)
        })?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    if ids.is_empty() && !a.json {
        println!("no live jobs in queue {:?}", q.name());
    }
    for id in ids {
        let Some(j) = honker_queue::job(&conn, JobId(id))? else {
            continue; // finished between the two reads
        };
        if a.json {
            println!(
                "{}",
                json!({
                    "id": j.id.0, "state": j.state.as_str(), "attempts": j.attempts,
                    "max_attempts": j.max_attempts, "priority": j.priority,
                    "run_at_ms": j.run_at.get(), "worker": j.worker,
                    "lease_expires_ms": j.lease_expires.map(|t| t.get()),
                    "last_error": j.last_error, "payload": payload_value(&j.payload),
                })
            );
        } else {
            println!(
                "{:>8} {:<9} attempt {}/{} prio {} {}{}",
                j.id,
                j.state,
                j.attempts,
                j.max_attempts,
                j.priority,
                j.payload,
                j.last_error
                    .map(|e| format!("  (last error: {e})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn dead(a: &DeadArgs) -> Result<ExitCode> {
    let conn = open(&a.target.db)?;
    let q = queue(&a.target.queue)?;
    let dead = q.dead_letters(&conn, a.limit)?;
    if dead.is_empty() && !a.json {
        println!("no dead letters in queue {:?}", q.name());
    }
    for d in dead {
        if a.json {
            println!(
                "{}",
                json!({
                    "id": d.id.0, "reason": d.reason, "attempts": d.attempts,
                    "max_attempts": d.max_attempts, "last_error": d.last_error,
                    "died_ms": d.died.get(), "payload": payload_value(&d.payload),
                })
            );
        } else {
            println!(
                "{:>8} {} after {}/{} attempts: {}  {}",
                d.id,
                d.reason,
                d.attempts,
                d.max_attempts,
                d.last_error.as_deref().unwrap_or("-"),
                d.payload
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn requeue(a: &RequeueArgs) -> Result<ExitCode> {
    let conn = open(&a.target.db)?;
    let q = queue(&a.target.queue)?;
    let n = match a.id {
        Some(id) => {
            if !q.requeue_dead(&conn, JobId(id))? {
                bail!("no dead letter {id} in queue {:?}", q.name());
            }
            1
        }
        None => q.requeue_all_dead(&conn)?,
    };
    println!("requeued {n}");
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn purge(a: &PurgeArgs) -> Result<ExitCode> {
    let conn = open(&a.target.db)?;
    let n = queue(&a.target.queue)?.purge_dead(&conn, a.older_than_ms)?;
    println!("purged {n}");
    Ok(ExitCode::SUCCESS)
}

/// Print the queue's options as one JSON object, after applying `--set` if given.
#[allow(clippy::print_stdout)]
fn configure(a: &ConfigureArgs) -> Result<ExitCode> {
    let conn = open(&a.target.db)?;
    let q = queue(&a.target.queue)?;
    let options = match &a.set {
        Some(json) => q.configure(&conn, &QueueOptionsPatch::from_json(json)?)?,
        None => q.options(&conn)?,
    };
    println!("{}", options.to_json());
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
pub(crate) fn enqueue(a: &EnqueueArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    let q = queue(&a.queue)?;
    let opts = EnqueueOptions {
        delay_ms: a.delay_ms,
        priority: a.priority,
        max_attempts: a.max_attempts,
        dedup_key: a.dedup_key.clone(),
        ..EnqueueOptions::default()
    };
    let id = q.enqueue(&conn, &a.payload, &opts)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}
