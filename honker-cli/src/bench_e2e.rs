//! Hidden end-to-end queue benchmark helpers that `cargo xtask bench --only e2e` runs as real
//! processes: producers enqueuing small jobs in transactions, and worker processes draining them
//! in one of three shapes (the `Worker` runtime, a hand loop of `Queue::claim` + `ack_batch`, or
//! raw rusqlite claiming with `UPDATE ... LIMIT n RETURNING` and deleting).
//!
//! A producer marks its end with a row in `bench_e2e_done`; a worker stops once every producer
//! has marked its end and it finds nothing left to claim. Each prints `ready`, waits for a `go`
//! line on stdin (so every process starts together), and ends with one `result key=value ...`
//! line.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use honker_queue::{EnqueueOptions, Queue, Worker, WorkerOptions};
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::bench::say;
use crate::commands::open;

const QUEUE: &str = "e2e";

/// The hidden end-to-end benchmark subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchE2eCommand {
    /// Enqueue `--count` small jobs, `--batch` per transaction, then mark the end.
    #[command(name = "bench-e2e-producer", hide = true)]
    Producer(ProducerArgs),
    /// Drain jobs until every producer is done and nothing is left; print what it acked.
    #[command(name = "bench-e2e-worker", hide = true)]
    Worker(WorkerArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ProducerArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    count: usize,
    /// Jobs per transaction.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Baseline: raw prepared INSERTs into `honker_jobs` in the same transactions.
    #[arg(long)]
    raw: bool,
    /// Instead of `enqueue_batch`: a loop of `enqueue` calls in one transaction per batch.
    #[arg(long = "loop")]
    one_by_one: bool,
    /// This producer's number (payloads are unique across producers).
    #[arg(long, default_value_t = 0)]
    index: usize,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[arg(long)]
    db: PathBuf,
    /// `runtime` (the `Worker`), `direct` (claim + ack_batch loop) or `raw`.
    #[arg(long)]
    mode: String,
    /// How many producers mark their end before the workers may stop.
    #[arg(long)]
    producers: i64,
    /// Jobs per claim.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Handler threads of the `Worker`.
    #[arg(long, default_value_t = 4)]
    threads: usize,
}

pub(crate) fn run(cmd: BenchE2eCommand) -> Result<ExitCode> {
    match cmd {
        BenchE2eCommand::Producer(a) => producer(&a),
        BenchE2eCommand::Worker(a) => worker(&a),
    }
}

const RAW_INSERT: &str =
    "INSERT INTO honker_jobs (queue, state, payload, priority, run_at, attempts,
         max_attempts, created_ms) VALUES (?1, 0, ?2, 0, ?3, 0, 3, ?3)";
const RAW_CLAIM: &str =
    "UPDATE honker_jobs SET state = 2, attempts = attempts + 1, lease_token = ?2,
         lease_expires = ?3, worker = 'raw'
     WHERE id IN (SELECT id FROM honker_jobs WHERE queue = ?1 AND state = 0
                  ORDER BY priority DESC, run_at, id LIMIT ?4 + 0)
     RETURNING id, payload";
const RAW_ACK: &str = "DELETE FROM honker_jobs WHERE id = ?1 AND lease_token = ?2 AND state = 2";

fn now_ms() -> i64 {
    wall_ns() / 1_000_000
}

/// Wall-clock nanoseconds, comparable between processes.
fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn ensure_done_table(conn: &Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS bench_e2e_done (producer INTEGER PRIMARY KEY)")
        .or_else(|e| {
            // Another process created it at the same moment.
            if conn.table_exists(None, "bench_e2e_done")? {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    Ok(())
}

/// Print `ready` and block until the bench says `go`.
fn ready_then_go() -> Result<()> {
    say("ready")?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "go" {
        bail!("expected `go` on stdin, got {line:?}");
    }
    Ok(())
}

fn producer(a: &ProducerArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    ensure_done_table(&conn)?;
    let q = Queue::new(QUEUE)?;
    let payloads: Vec<String> = (0..a.count)
        .map(|i| format!(r#"{{"p":{},"seq":{i}}}"#, a.index))
        .collect();
    ready_then_go()?;
    let start = Instant::now();
    for chunk in payloads.chunks(a.batch.max(1)) {
        if a.raw {
            let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
            let now = now_ms();
            for p in chunk {
                tx.prepare_cached(RAW_INSERT)?
                    .execute(params![QUEUE, p, now])?;
            }
            tx.commit()?;
        } else if a.one_by_one {
            let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
            for p in chunk {
                q.enqueue(&tx, p, &EnqueueOptions::default())?;
            }
            tx.commit()?;
            honker_core::kick_after_commit(&conn);
        } else {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            q.enqueue_batch(&conn, &refs, &EnqueueOptions::default())?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    conn.execute(
        "INSERT INTO bench_e2e_done (producer) VALUES (?1)",
        [a.index as i64],
    )?;
    honker_core::kick_after_commit(&conn);
    say(&format!(
        "result jobs_per_s={:.1} n={} end_ns={}",
        a.count as f64 / secs.max(1e-9),
        a.count,
        wall_ns()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Whether every producer marked its end.
fn producers_done(conn: &Connection, producers: i64) -> Result<bool> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM bench_e2e_done")?
        .query_row([], |r| r.get(0))?;
    Ok(n >= producers)
}

/// Whether the queue has no job left at all (pending, scheduled or running).
fn queue_empty(conn: &Connection) -> Result<bool> {
    let any: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM honker_jobs WHERE queue = ?1)")?
        .query_row([QUEUE], |r| r.get(0))?;
    Ok(!any)
}

/// Whether jobs wait to be claimed.
fn pending(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM honker_jobs WHERE queue = ?1 AND state = 0)")?
        .query_row([QUEUE], |r| r.get(0))?)
}

fn worker(a: &WorkerArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    ensure_done_table(&conn)?;
    let q = Queue::new(QUEUE)?;
    let batch = a.batch.max(1);
    let result = match a.mode.as_str() {
        "runtime" => runtime(a, &conn, q, batch)?,
        "direct" => {
            ready_then_go()?;
            let start = wall_ns();
            let mut acked = 0u64;
            let mut stall = Stall::new();
            let mut claims = 0u64;
            loop {
                stall.idle_from_now();
                claims += 1;
                let jobs = q.claim(&conn, "direct", batch, None)?;
                if jobs.is_empty() {
                    stall.reset();
                    if producers_done(&conn, a.producers)? && queue_empty(&conn)? {
                        break;
                    }
                    thread::sleep(Duration::from_micros(500));
                    continue;
                }
                stall.progress();
                let held: Vec<_> = jobs.iter().map(|j| (j.id, j.lease_token)).collect();
                acked += q.ack_batch(&conn, &held)? as u64;
            }
            Outcome {
                acked,
                handled: acked,
                start,
                end: wall_ns(),
                stall_ms: stall.max_ms(),
                claims,
            }
        }
        "raw" => {
            ready_then_go()?;
            let start = wall_ns();
            let mut acked = 0u64;
            let mut token = 0i64;
            let mut stall = Stall::new();
            loop {
                token += 1;
                stall.idle_from_now();
                let ids: Vec<i64> = conn
                    .prepare_cached(RAW_CLAIM)?
                    .query_map(
                        params![QUEUE, token, now_ms() + 30_000, batch as i64],
                        |r| r.get(0),
                    )?
                    .collect::<rusqlite::Result<_>>()?;
                if ids.is_empty() {
                    stall.reset();
                    if producers_done(&conn, a.producers)? && queue_empty(&conn)? {
                        break;
                    }
                    thread::sleep(Duration::from_micros(500));
                    continue;
                }
                stall.progress();
                let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
                for id in &ids {
                    acked += tx.prepare_cached(RAW_ACK)?.execute(params![id, token])? as u64;
                }
                tx.commit()?;
            }
            Outcome {
                acked,
                handled: acked,
                start,
                end: wall_ns(),
                stall_ms: stall.max_ms(),
                claims: token as u64,
            }
        }
        other => bail!("unknown --mode {other:?}: runtime, direct or raw"),
    };
    say(&format!(
        "result acked={} handled={} start_ns={} end_ns={} stall_ms={:.1} claims={}",
        result.acked, result.handled, result.start, result.end, result.stall_ms, result.claims
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// What one worker process did.
struct Outcome {
    acked: u64,
    handled: u64,
    start: i64,
    end: i64,
    /// The longest time this worker went without claiming anything while the queue was not
    /// known to be finished.
    stall_ms: f64,
    /// Claim statements run (each in a write transaction of its own or with the outcomes).
    claims: u64,
}

/// The longest stretch without progress.
struct Stall {
    since: Option<Instant>,
    max: Duration,
}

impl Stall {
    fn new() -> Stall {
        Stall {
            since: None,
            max: Duration::ZERO,
        }
    }
    /// Start a stretch now (a claim begins: its wait for the lock counts).
    fn idle_from_now(&mut self) {
        self.since = Some(Instant::now());
    }
    /// The stretch did not count (nothing was pending).
    fn reset(&mut self) {
        self.since = None;
    }
    fn idle(&mut self) {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.max = self.max.max(since.elapsed());
    }
    fn progress(&mut self) {
        if let Some(s) = self.since.take() {
            self.max = self.max.max(s.elapsed());
        }
    }
    fn max_ms(&self) -> f64 {
        self.max.as_secs_f64() * 1000.0
    }
}

fn runtime(a: &WorkerArgs, conn: &Connection, q: Queue, batch: usize) -> Result<Outcome> {
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let wake = crate::commands::wake_for(&a.db)?;
    ready_then_go()?;
    let start = wall_ns();
    let w = Worker::start(
        &a.db,
        q,
        wake,
        WorkerOptions {
            threads: a.threads.max(1),
            batch,
            ..WorkerOptions::default()
        },
        move |_| {
            h.fetch_add(1, Ordering::Relaxed);
            Ok(None)
        },
    )
    .context("cannot start the worker")?;
    let mut stall = Stall::new();
    let mut last_claimed = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        thread::sleep(Duration::from_millis(2));
        let r = w.report();
        if r.claimed != last_claimed {
            last_claimed = r.claimed;
            stall.progress();
        } else if w.held() == 0 {
            // Idle with free threads: a stall while jobs are pending that it could take.
            if producers_done(conn, a.producers)? && queue_empty(conn)? {
                break;
            }
            if pending(conn)? {
                stall.idle();
            } else {
                stall.reset();
            }
        }
        if let Some(e) = &r.fatal {
            bail!("the worker failed: {e}");
        }
        if Instant::now() > deadline {
            bail!("the worker did not finish within 600 s: {r:?}");
        }
    }
    let end = wall_ns();
    let report = w.shutdown()?;
    if report.error_count > 0 {
        bail!(
            "the worker met {} errors: {:?}",
            report.error_count,
            report.errors
        );
    }
    Ok(Outcome {
        acked: report.acked,
        handled: handled.load(Ordering::Relaxed),
        start,
        end,
        stall_ms: stall.max_ms(),
        claims: report.claims,
    })
}
