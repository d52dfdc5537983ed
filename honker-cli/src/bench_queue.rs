//! Hidden queue benchmark helpers that `cargo xtask bench` runs as real processes: a worker and a
//! producer for the cross-process enqueue commit -> handler start latency, an enqueue throughput
//! loop and a drain (claim + ack) throughput loop; each with a raw-rusqlite baseline mode doing
//! the same SQL work without honker.
//!
//! Like the pub/sub helpers, each prints `ready` (when it has one) and then one line
//! `result key=value ...`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use honker_queue::{EnqueueOptions, Queue, Worker, WorkerOptions};
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::bench::{PublisherArgs, paced, report_with, say, sent_ns};
use crate::commands::open;
use crate::stats::now_ns;

const QUEUE: &str = "bench";

/// The hidden queue benchmark subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchQueueCommand {
    /// Handle paced jobs and print enqueue -> handler-start latency percentiles.
    #[command(name = "bench-queue-worker", hide = true)]
    Worker(WorkerArgs),
    /// Enqueue paced jobs carrying their send time.
    #[command(name = "bench-queue-producer", hide = true)]
    Producer(ProducerArgs),
    /// Enqueue as fast as possible, `--batch` jobs per transaction; print jobs/s.
    #[command(name = "bench-queue-enqueue", hide = true)]
    Enqueue(EnqueueArgs),
    /// Fill the queue, then drain it (claim + ack, two transactions per job); print jobs/s.
    #[command(name = "bench-queue-drain", hide = true)]
    Drain(DrainArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[arg(long)]
    db: PathBuf,
    /// Jobs to measure (after the warm-up ones).
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Baseline: no honker, a bare loop polling `PRAGMA data_version`, then claiming with
    /// `UPDATE ... RETURNING` and deleting.
    #[arg(long)]
    raw: bool,
    /// The raw loop's poll interval, microseconds.
    #[arg(long, default_value_t = 1000)]
    poll_us: u64,
    #[arg(long, default_value_t = 120_000)]
    timeout_ms: u64,
}

/// The paced sender's flags, sending jobs.
#[derive(Debug, Args)]
pub(crate) struct ProducerArgs {
    #[command(flatten)]
    send: PublisherArgs,
    /// Baseline: a raw INSERT of the same row.
    #[arg(long)]
    raw: bool,
}

#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    #[arg(long)]
    db: PathBuf,
    /// Jobs to enqueue (after a warm-up).
    #[arg(long)]
    count: usize,
    /// Jobs per transaction.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Baseline: the same rows with prepared raw INSERTs into `honker_jobs`.
    #[arg(long)]
    raw: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    #[arg(long)]
    db: PathBuf,
    /// Jobs to drain.
    #[arg(long)]
    count: usize,
    /// Baseline: raw `UPDATE ... RETURNING` claims and `DELETE` acks.
    #[arg(long)]
    raw: bool,
    /// Without the `Worker`: a loop of `Queue::claim` and `Queue::ack` (or `ack_batch`) on one
    /// connection, the same shape as the raw loop.
    #[arg(long)]
    direct: bool,
    /// Jobs per claim (and per ack transaction) for `--direct` and `--raw`.
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

pub(crate) fn run(cmd: BenchQueueCommand) -> Result<ExitCode> {
    match cmd {
        BenchQueueCommand::Worker(a) => worker(&a),
        BenchQueueCommand::Producer(a) => producer(&a),
        BenchQueueCommand::Enqueue(a) => enqueue(&a),
        BenchQueueCommand::Drain(a) => drain(&a),
    }
}

/// The raw baseline's claim: the same statement shape as honker's claim of one job.
const RAW_CLAIM: &str =
    "UPDATE honker_jobs SET state = 2, attempts = attempts + 1, lease_token = ?2,
         lease_expires = ?3, worker = 'raw'
     WHERE id = (SELECT id FROM honker_jobs WHERE queue = ?1 AND state = 0
                 ORDER BY priority DESC, run_at, id LIMIT 1)
     RETURNING id, payload";
const RAW_ACK: &str = "DELETE FROM honker_jobs WHERE id = ?1 AND lease_token = ?2 AND state = 2";
const RAW_INSERT: &str =
    "INSERT INTO honker_jobs (queue, state, payload, priority, run_at, attempts,
         max_attempts, created_ms) VALUES (?1, 0, ?2, 0, ?3, 0, 5, ?3)";

fn worker(a: &WorkerArgs) -> Result<ExitCode> {
    let want = a.count + a.warmup;
    let deadline = Instant::now() + Duration::from_millis(a.timeout_ms);
    let mut samples = Vec::with_capacity(want);
    if a.raw {
        let conn = open(&a.db)?;
        let mut version = conn.prepare("PRAGMA data_version")?;
        let mut seen: i64 = version.query_row([], |r| r.get(0))?;
        let poll = Duration::from_micros(a.poll_us);
        let mut token = 0i64;
        say("ready")?;
        while samples.len() < want {
            let v: i64 = version.query_row([], |r| r.get(0))?;
            if v == seen {
                if Instant::now() >= deadline {
                    bail!("timed out with {} of {want} jobs", samples.len());
                }
                thread::sleep(poll);
                continue;
            }
            seen = v;
            loop {
                token += 1;
                let now_ms = now_ns() / 1_000_000;
                let claimed: Option<(i64, String)> = conn
                    .prepare_cached(RAW_CLAIM)?
                    .query_row(params![QUEUE, token, now_ms + 30_000], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })?;
                let Some((id, payload)) = claimed else { break };
                samples.push(now_ns() - sent_ns(&payload)?);
                conn.prepare_cached(RAW_ACK)?.execute(params![id, token])?;
            }
        }
    } else {
        let wake = honker_wake::wake_for(&a.db)?;
        let (tx, rx) = mpsc::channel::<i64>();
        let tx = std::sync::Mutex::new(tx);
        let w = Worker::start(
            &a.db,
            Queue::new(QUEUE)?,
            wake,
            WorkerOptions {
                threads: 1,
                ..WorkerOptions::default()
            },
            move |job| {
                let start = now_ns();
                let sent = sent_ns(&job.payload)
                    .map_err(|e| honker_queue::HandlerError::fail(e.to_string()))?;
                let _ = tx
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .send(start - sent);
                Ok(None)
            },
        )?;
        say("ready")?;
        while samples.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) => samples.push(s),
                Err(_) => bail!("timed out with {} of {want} jobs", samples.len()),
            }
        }
        w.shutdown()?;
    }
    report_with("", samples, a.warmup)
}

fn producer(a: &ProducerArgs) -> Result<ExitCode> {
    let conn = open(&a.send.db)?;
    let q = Queue::new(QUEUE)?;
    paced(
        a.send.count,
        a.send.interval_us,
        0x5eed,
        |_, payload, sent| {
            if a.raw {
                conn.prepare_cached(RAW_INSERT)?.execute(params![
                    QUEUE,
                    payload,
                    sent / 1_000_000
                ])?;
            } else {
                q.enqueue(&conn, payload, &EnqueueOptions::default())?;
            }
            Ok(())
        },
    )?;
    say(&format!("result sent={}", a.send.count))?;
    Ok(ExitCode::SUCCESS)
}

fn enqueue(a: &EnqueueArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    let q = Queue::new(QUEUE)?;
    let batch = a.batch.max(1);
    let write = |conn: &Connection, first: usize| -> Result<()> {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        for seq in first..first + batch {
            let payload = format!(r#"{{"seq":{seq}}}"#);
            if a.raw {
                tx.prepare_cached(RAW_INSERT)?.execute(params![
                    QUEUE,
                    payload,
                    now_ns() / 1_000_000
                ])?;
            } else {
                q.enqueue(&tx, &payload, &EnqueueOptions::default())?;
            }
        }
        tx.commit()?;
        if !a.raw {
            honker_core::kick_after_commit(conn);
        }
        Ok(())
    };
    let warm = (200 / batch).max(1);
    for i in 0..warm {
        write(&conn, i * batch)?;
    }
    let txns = a.count.div_ceil(batch);
    let start = Instant::now();
    for i in 0..txns {
        write(&conn, (warm + i) * batch)?;
    }
    let secs = start.elapsed().as_secs_f64();
    say(&format!(
        "result ops_per_s={:.1} n={}",
        (txns * batch) as f64 / secs.max(1e-9),
        txns * batch
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The raw baseline of batch claims: one `UPDATE ... RETURNING` of `batch` jobs, then one
/// transaction deleting them.
fn raw_drain_batches(conn: &Connection, count: usize, batch: usize) -> Result<()> {
    let claim = "UPDATE honker_jobs SET state = 2, attempts = attempts + 1, lease_token = ?2,
             lease_expires = ?3, worker = 'raw'
         WHERE id IN (SELECT id FROM honker_jobs WHERE queue = ?1 AND state = 0
                      ORDER BY priority DESC, run_at, id LIMIT ?4 + 0)
         RETURNING id, payload";
    let mut token = 0i64;
    let mut done = 0;
    while done < count {
        token += 1;
        let now_ms = now_ns() / 1_000_000;
        let ids: Vec<i64> = conn
            .prepare_cached(claim)?
            .query_map(params![QUEUE, token, now_ms + 30_000, batch as i64], |r| {
                r.get(0)
            })?
            .collect::<rusqlite::Result<_>>()?;
        if ids.is_empty() {
            bail!("the queue ran dry at {done} of {count}");
        }
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        for id in &ids {
            tx.prepare_cached(RAW_ACK)?.execute(params![id, token])?;
        }
        tx.commit()?;
        done += ids.len();
    }
    Ok(())
}

fn drain(a: &DrainArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    let q = Queue::new(QUEUE)?;
    // Fill (not timed), in large transactions.
    let payloads: Vec<String> = (0..a.count).map(|i| format!(r#"{{"seq":{i}}}"#)).collect();
    for chunk in payloads.chunks(1000) {
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        q.enqueue_batch(&tx, &refs, &EnqueueOptions::default())?;
        tx.commit()?;
    }
    let batch = a.batch.max(1);
    let start = Instant::now();
    if a.raw && batch > 1 {
        raw_drain_batches(&conn, a.count, batch)?;
    } else if a.raw {
        let mut token = 0i64;
        let mut done = 0;
        while done < a.count {
            token += 1;
            let now_ms = now_ns() / 1_000_000;
            let (id, _payload): (i64, String) = conn
                .prepare_cached(RAW_CLAIM)?
                .query_row(params![QUEUE, token, now_ms + 30_000], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            conn.prepare_cached(RAW_ACK)?.execute(params![id, token])?;
            done += 1;
        }
    } else if a.direct {
        let mut done = 0;
        while done < a.count {
            let jobs = q.claim(&conn, "bench", batch, None)?;
            if jobs.is_empty() {
                bail!("the queue ran dry at {done} of {}", a.count);
            }
            if batch == 1 {
                q.ack(&conn, jobs[0].id, jobs[0].lease_token)?;
            } else {
                let held: Vec<_> = jobs.iter().map(|j| (j.id, j.lease_token)).collect();
                q.ack_batch(&conn, &held)?;
            }
            done += jobs.len();
        }
    } else {
        let wake = honker_wake::wake_for(&a.db)?;
        let w = Worker::start(
            &a.db,
            q,
            wake,
            WorkerOptions {
                threads: 1,
                batch: 1,
                ..WorkerOptions::default()
            },
            |_| Ok(None),
        )?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while w.report().acked < a.count as u64 {
            if Instant::now() >= deadline {
                bail!("drain timed out at {} of {}", w.report().acked, a.count);
            }
            thread::sleep(Duration::from_millis(1));
        }
        w.shutdown()?;
    }
    let secs = start.elapsed().as_secs_f64();
    say(&format!(
        "result ops_per_s={:.1} n={}",
        a.count as f64 / secs.max(1e-9),
        a.count
    ))?;
    Ok(ExitCode::SUCCESS)
}
