//! The queue section of `honker demo`: jobs enqueued in the same transaction as a business row
//! (and one rolled back, which leaves no job), worker processes that handle each job and ack it
//! in one transaction with their own write, and a final check that every job ran exactly once,
//! with the cross-process latency from the enqueue's commit to the handler's start.
//!
//! The demo writes each order row and its job in one `BEGIN IMMEDIATE` transaction and records
//! when the `COMMIT` returned. Each worker process runs a transactional `Worker`: the handler
//! inserts a `demo_queue_handled` row and the ack commits with it, so a job handled twice would
//! show as two rows, and a job lost would show as none. A worker reports, when the demo closes
//! its stdin, when each handler started (`SystemTime` nanoseconds, comparable across processes).
//! With two or more workers, the busiest one is killed with `kill -9` a third of the way through
//! the burst: the jobs it held come back as soon as the kernel releases its liveness lock (not at
//! their 1 s lease expiry), and the check still
//! finds each job handled once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use honker_queue::{EnqueueOptions, Queue, Worker, WorkerOptions};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde_json::json;

use super::{Children, DemoArgs, Progress, Section};
use crate::stats::{Summary, ms, now_ns};

const QUEUE: &str = "demo-orders";
/// How long the demo waits for worker processes to start, and for the jobs to be handled.
const DEADLINE: Duration = Duration::from_secs(60);
/// The demo workers' lease: a killed worker's jobs are claimed again this long after its last
/// heartbeat.
const LEASE_MS: i64 = 1000;

/// Arguments of the hidden `honker demo-queue-worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[arg(long)]
    db: PathBuf,
    /// The demo run this worker belongs to (rows are tagged with it).
    #[arg(long)]
    run: i64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The lease of each claim: how soon a killed worker's jobs come back.
    #[arg(long, default_value_t = 1000)]
    lease_ms: i64,
}

/// What one worker process reports when the demo closes its stdin.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct WorkerReport {
    pid: u32,
    acked: u64,
    retried: u64,
    lease_lost: u64,
    errors: u64,
    /// `(job id, handler start ns)` of every job this worker handled.
    starts: Vec<(i64, i64)>,
}

/// The section's outcome.
#[derive(Debug)]
pub(crate) struct QueueSection {
    workers: usize,
    jobs: u64,
    rolled_back_absent: bool,
    handled_once: u64,
    handled_twice: u64,
    missing: u64,
    redelivered: u64,
    orders_without_job_row: u64,
    reports: Vec<Option<WorkerReport>>,
    /// The worker killed with `kill -9` mid-burst, when there are two or more.
    killed: Option<Killed>,
    burst_drain: Option<Duration>,
    latency: Option<Summary>,
}

/// What the queue section saw of the worker it killed.
#[derive(Debug, Clone, Copy)]
struct Killed {
    /// Its index among the workers.
    index: usize,
    /// How many jobs it held just before the kill.
    held: u64,
    /// How many of those it still committed (handled row and ack) before the kill landed: they
    /// are done, so they come back to nobody.
    finished_first: u64,
    /// How soon the others took the rest back.
    back_after: Option<Duration>,
}

/// Create the demo's business tables (idempotent).
fn create_tables(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS demo_queue_orders (
             id INTEGER PRIMARY KEY, run INTEGER NOT NULL, seq INTEGER NOT NULL, job_id INTEGER
         );
         CREATE TABLE IF NOT EXISTS demo_queue_handled (
             job_id INTEGER NOT NULL, run INTEGER NOT NULL, pid INTEGER NOT NULL,
             attempts INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS demo_queue_handled_by_run ON demo_queue_handled (run, job_id);
         CREATE INDEX IF NOT EXISTS demo_queue_orders_by_run ON demo_queue_orders (run, seq);",
    )?;
    Ok(())
}

/// One order row and its job, in one transaction; returns the job id and when COMMIT returned.
fn place_order(conn: &Connection, q: &Queue, run: i64, seq: u64) -> Result<(i64, i64)> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO demo_queue_orders (run, seq) VALUES (?1, ?2)",
        rusqlite::params![run, seq as i64],
    )?;
    let order = tx.last_insert_rowid();
    let payload = json!({ "run": run, "seq": seq, "order": order }).to_string();
    let job = q.enqueue(&tx, &payload, &EnqueueOptions::default())?;
    tx.execute(
        "UPDATE demo_queue_orders SET job_id = ?1 WHERE id = ?2",
        rusqlite::params![job.0, order],
    )?;
    tx.commit()?;
    let committed = now_ns();
    honker_core::kick_after_commit(conn);
    Ok((job.0, committed))
}

pub(crate) fn run(args: &DemoArgs, db: &Path, conn: &Connection) -> Result<QueueSection> {
    create_tables(conn)?;
    let q = Queue::new(QUEUE)?;
    let run = now_ns() / 1_000;
    let jobs = args.jobs;
    let mut progress = Progress::new();

    // A transaction that rolls back takes its job with it.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO demo_queue_orders (run, seq) VALUES (?1, -1)",
        [run],
    )?;
    let doomed = q.enqueue(&tx, r#"{"rolled_back":true}"#, &EnqueueOptions::default())?;
    tx.rollback()?;
    let rolled_back_absent = honker_queue::job(conn, doomed)?.is_none()
        && conn.query_row(
            "SELECT count(*) FROM demo_queue_orders WHERE run = ?1 AND seq = -1",
            [run],
            |r| r.get::<_, i64>(0),
        )? == 0;

    // Worker processes.
    let exe = std::env::current_exe().context("cannot find the honker executable")?;
    let mut children = Children::default();
    let mut stdins = Vec::new();
    let (tx_ev, rx_ev) = mpsc::channel::<(usize, String)>();
    for i in 0..(args.queue_workers as usize) {
        let mut child = Command::new(&exe)
            .arg("demo-queue-worker")
            .arg("--db")
            .arg(db)
            .args(["--run", &run.to_string()])
            .args(["--lease-ms", &LEASE_MS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a demo queue worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        stdins.push(child.stdin.take().context("worker stdin")?);
        children.0.push(child);
        let tx_ev = tx_ev.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx_ev.send((i, line)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx_ev);
    let mut ready = 0;
    let mut worker_ids = vec![String::new(); args.queue_workers as usize];
    let start_by = Instant::now() + DEADLINE;
    let mut reports: Vec<Option<WorkerReport>> =
        (0..(args.queue_workers as usize)).map(|_| None).collect();
    while ready < (args.queue_workers as usize) {
        let left = start_by.saturating_duration_since(Instant::now());
        match rx_ev.recv_timeout(left) {
            Ok((i, l)) if l.starts_with("ready") => {
                worker_ids[i] = l.trim_start_matches("ready").trim().to_owned();
                ready += 1;
            }
            Ok(_) => {}
            Err(_) => bail!("queue worker processes did not start within {DEADLINE:?}"),
        }
    }
    progress.show(&format!(
        "[queue] {} worker processes ready; enqueueing {jobs} jobs, each with an order row",
        (args.queue_workers as usize)
    ));

    // Half as a burst, half paced for latency.
    let burst = jobs / 2;
    let mut commits: HashMap<i64, (i64, bool)> = HashMap::new();
    let burst_start = Instant::now();
    for seq in 0..burst {
        let (id, at) = place_order(conn, &q, run, seq)?;
        commits.insert(id, (at, false));
    }
    let handled = |conn: &Connection| -> Result<i64> {
        Ok(conn.query_row(
            "SELECT count(DISTINCT job_id) FROM demo_queue_handled WHERE run = ?1",
            [run],
            |r| r.get(0),
        )?)
    };
    let wait_for = |target: i64, progress: &mut Progress| -> Result<bool> {
        let until = Instant::now() + DEADLINE;
        loop {
            let n = handled(conn)?;
            progress.show(&format!("[queue] handled {n}/{jobs}"));
            if n >= target {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(10));
        }
    };
    // Crash one worker mid-burst: the jobs it holds must come back (when their leases expire)
    // and still be handled once, since a handler's write commits only with its ack.
    let mut killed = None;
    if args.queue_workers >= 2 && burst >= 3 {
        wait_for((burst / 3) as i64, &mut progress)?;
        // The busiest worker so far: the one most likely to be holding jobs right now.
        let mut busiest = (0, -1i64);
        for (i, c) in children.0.iter().enumerate() {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM demo_queue_handled WHERE run = ?1 AND pid = ?2",
                rusqlite::params![run, c.id()],
                |r| r.get(0),
            )?;
            if n > busiest.1 {
                busiest = (i, n);
            }
        }
        let victim = busiest.0;
        let child = &mut children.0[victim];
        let held_by_victim = |conn: &Connection| -> Result<Vec<i64>> {
            Ok(conn
                .prepare(
                    "SELECT id FROM honker_jobs WHERE queue = ?1 AND state = 2
                     AND claimer IN (SELECT id FROM honker_claimers WHERE worker = ?2)",
                )?
                .query_map(rusqlite::params![QUEUE, worker_ids[victim]], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        };
        let held = held_by_victim(conn)?;
        let victim_pid = child.id();
        let kill_at = Instant::now();
        child.kill().context("cannot kill a demo worker")?;
        let _ = child.wait();
        // How soon the others take the dead worker's jobs back: its liveness lock is released
        // by the kernel when it dies, long before its leases would expire.
        let mut back_after = None;
        while kill_at.elapsed() < DEADLINE {
            if held_by_victim(conn)?.is_empty() {
                back_after = Some(kill_at.elapsed());
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        // A job counted as held can still have committed between the count and the kill: its
        // handled row and ack are one transaction, so it is done and must not come back.
        let mut finished_first = 0u64;
        for id in &held {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM demo_queue_handled WHERE run = ?1 AND job_id = ?2 AND pid = ?3",
                rusqlite::params![run, id, victim_pid],
                |r| r.get(0),
            )?;
            finished_first += u64::from(n > 0);
        }
        killed = Some(Killed {
            index: victim,
            held: held.len() as u64,
            finished_first,
            back_after,
        });
    }
    let burst_drain = if wait_for(burst as i64, &mut progress)? {
        Some(burst_start.elapsed())
    } else {
        None
    };
    let pace = Duration::from_micros(args.pace_us.max(1));
    for seq in burst..jobs {
        thread::sleep(pace);
        let (id, at) = place_order(conn, &q, run, seq)?;
        commits.insert(id, (at, true));
    }
    wait_for(jobs as i64, &mut progress)?;
    // Let the workers finish what they hold, then ask for their reports.
    drop(stdins);
    let report_by = Instant::now() + DEADLINE;
    let expected = |i: usize| killed.is_none_or(|k| k.index != i);
    while (0..reports.len()).any(|i| expected(i) && reports[i].is_none()) {
        let left = report_by.saturating_duration_since(Instant::now());
        match rx_ev.recv_timeout(left) {
            Ok((i, l)) => {
                if let Some(r) = l.strip_prefix("report ") {
                    reports[i] = serde_json::from_str(r).ok();
                }
            }
            Err(_) => break,
        }
    }
    progress.finish();
    drop(children);

    // The checks, from the database.
    let per_job: Vec<(i64, i64, i64)> = conn
        .prepare(
            "SELECT o.job_id, count(h.job_id), coalesce(max(h.attempts), 0)
             FROM demo_queue_orders o LEFT JOIN demo_queue_handled h
                  ON h.job_id = o.job_id AND h.run = o.run
             WHERE o.run = ?1 GROUP BY o.id",
        )?
        .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let handled_once = per_job.iter().filter(|p| p.1 == 1).count() as u64;
    let handled_twice = per_job.iter().filter(|p| p.1 > 1).count() as u64;
    let missing = per_job.iter().filter(|p| p.1 == 0).count() as u64;
    let redelivered = per_job.iter().filter(|p| p.2 > 1).count() as u64;
    let orders_without_job_row = jobs.saturating_sub(per_job.len() as u64);
    let mut latencies: Vec<i64> = reports
        .iter()
        .flatten()
        .flat_map(|r| r.starts.iter())
        .filter_map(|(id, start)| match commits.get(id) {
            Some((at, true)) => Some(start - at),
            _ => None,
        })
        .collect();
    Ok(QueueSection {
        workers: (args.queue_workers as usize),
        jobs,
        rolled_back_absent,
        handled_once,
        handled_twice,
        missing,
        redelivered,
        orders_without_job_row,
        reports,
        killed,
        burst_drain,
        latency: Summary::of(&mut latencies),
    })
}

impl Section for QueueSection {
    fn print(&self) {
        let sum =
            |f: fn(&WorkerReport) -> u64| -> u64 { self.reports.iter().flatten().map(f).sum() };
        let per_worker: Vec<String> = self
            .reports
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Some(r) => format!("worker {}: {}", i + 1, r.acked),
                None if self.killed.is_some_and(|k| k.index == i) => {
                    format!("worker {}: killed", i + 1)
                }
                None => format!("worker {}: no report", i + 1),
            })
            .collect();
        #[allow(clippy::print_stdout)]
        {
            println!();
            println!("queue: jobs enqueued with their business row, handled by worker processes");
            println!(
                "  rollback      a job enqueued in a rolled-back transaction: {}",
                if self.rolled_back_absent {
                    "gone, with its order row"
                } else {
                    "STILL THERE"
                }
            );
            println!(
                "  enqueued      {} jobs, each in the transaction of its order row ({} as a burst, the rest paced)",
                self.jobs,
                self.jobs / 2
            );
            println!(
                "  workers       {} processes (transactional handlers: each handled-row commits with its ack)",
                self.workers
            );
            println!("  acked         {}", per_worker.join(", "));
            println!(
                "  checks        handled once: {}  twice or more: {}  never: {}  orders without a job: {}",
                self.handled_once, self.handled_twice, self.missing, self.orders_without_job_row
            );
            if let Some(k) = self.killed {
                let first = match k.finished_first {
                    0 => String::new(),
                    n => format!("; {n} of them committed before the kill landed"),
                };
                println!(
                    "  crash         worker {} killed with kill -9 mid-burst, holding {} claimed job(s) (writes of its unfinished handlers rolled back with it{first})",
                    k.index + 1,
                    k.held
                );
                let back = k.back_after.map_or("not within the deadline".into(), |d| {
                    format!("{:.1} ms after the kill", d.as_secs_f64() * 1e3)
                });
                println!(
                    "  liveness      the others took its jobs back {back}: the kernel released its liveness lock when it died (its {LEASE_MS} ms lease is the bound only for a live but stuck worker)"
                );
            }
            println!(
                "  redeliveries  {} (a job runs again only when its holder died or its lease expired; each is counted once above); lost leases {}, retries {}, errors {}",
                self.redelivered,
                sum(|r| r.lease_lost),
                sum(|r| r.retried),
                sum(|r| r.errors)
            );
            if let Some(d) = self.burst_drain {
                println!(
                    "  burst         {} jobs enqueued and handled in {} (the crash recovery included)",
                    self.jobs / 2,
                    ms(d.as_nanos() as i64)
                );
            }
            match &self.latency {
                Some(s) => println!("  latency       {s}"),
                None => println!("  latency       no samples"),
            }
            println!(
                "                (paced jobs: enqueue COMMIT returned -> handler started in a worker process)"
            );
            if self.ok() {
                println!(
                    "  => each job was handled once, none twice, none lost; the rolled-back one never existed"
                );
            }
        }
    }

    fn ok(&self) -> bool {
        self.rolled_back_absent
            && self.handled_twice == 0
            && self.missing == 0
            && self.orders_without_job_row == 0
            && self.handled_once == self.jobs
            && self
                .killed
                .is_none_or(|k| self.redelivered + k.finished_first >= k.held)
            && self
                .reports
                .iter()
                .enumerate()
                .all(|(i, r)| r.is_some() || self.killed.is_some_and(|k| k.index == i))
    }
}

/// The hidden `honker demo-queue-worker` process.
pub(crate) fn worker_child(args: &WorkerArgs) -> Result<std::process::ExitCode> {
    let wake = crate::commands::wake_for(&args.db)
        .with_context(|| format!("cannot watch {}", args.db.display()))?;
    let run = args.run;
    let starts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = starts.clone();
    let worker = Worker::start_transactional(
        &args.db,
        Queue::new(QUEUE)?,
        wake,
        WorkerOptions {
            threads: args.threads,
            lease_ms: Some(args.lease_ms),
            ..WorkerOptions::default()
        },
        move |conn, job| {
            let started = now_ns();
            conn.execute(
                "INSERT INTO demo_queue_handled (job_id, run, pid, attempts) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![job.id.0, run, std::process::id(), job.attempts],
            )?;
            s2.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((job.id.0, started));
            Ok(None)
        },
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", worker.worker_id())?;
    out.flush()?;
    // Until the demo closes stdin (or dies).
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
        sink.clear();
    }
    let r = worker.shutdown()?;
    let report = WorkerReport {
        pid: std::process::id(),
        acked: r.acked,
        retried: r.retried,
        lease_lost: r.lease_lost,
        errors: r.error_count,
        starts: std::mem::take(&mut *starts.lock().unwrap_or_else(|p| p.into_inner())),
    };
    writeln!(out, "report {}", serde_json::to_string(&report)?)?;
    out.flush()?;
    Ok(std::process::ExitCode::SUCCESS)
}
