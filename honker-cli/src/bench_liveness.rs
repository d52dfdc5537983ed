//! Hidden benchmark helpers for the redelivery figure of `cargo xtask bench` (issue 16): a holder
//! that claims jobs and waits to be killed with `kill -9`, and a taker, a [`Worker`] of another
//! process, that says when it holds every one of them.
//!
//! With liveness, the holder's jobs come back when the kernel releases its liveness lock; the
//! baseline holder claims the same way and then clears the holder of its claims, which is what
//! a claim writes where no lock file can be created (a read-only directory, an older build), so
//! its jobs come back only at lease expiry.
//!
//! Output follows the other helpers: `ready`, then (the taker) one `result key=value ...` line.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use honker_queue::{EnqueueOptions, Queue, Worker, WorkerOptions};

use crate::bench::say;
use crate::commands::{open, wake_for};
use crate::stats::now_ns;

/// The queue both helpers use.
const QUEUE: &str = "bench-liveness";

/// The hidden redelivery benchmark subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchLivenessCommand {
    /// Enqueue and claim jobs, say `ready`, then wait (to be killed) until stdin closes.
    #[command(name = "bench-liveness-holder", hide = true)]
    Holder(HolderArgs),
    /// Run a worker that says `ready`, then the wall-clock time at which it held every job.
    #[command(name = "bench-liveness-taker", hide = true)]
    Taker(TakerArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HolderArgs {
    #[arg(long)]
    db: PathBuf,
    /// Jobs to enqueue and hold.
    #[arg(long, default_value_t = 10)]
    jobs: usize,
    /// The lease of the claim, in milliseconds.
    #[arg(long)]
    lease_ms: i64,
    /// Baseline: claims without a liveness holder, so the jobs come back at lease expiry.
    #[arg(long)]
    no_liveness: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TakerArgs {
    #[arg(long)]
    db: PathBuf,
    /// Jobs to wait for.
    #[arg(long, default_value_t = 10)]
    jobs: usize,
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
}

pub(crate) fn run(cmd: BenchLivenessCommand) -> Result<ExitCode> {
    match cmd {
        BenchLivenessCommand::Holder(a) => holder(&a),
        BenchLivenessCommand::Taker(a) => taker(&a),
    }
}

fn holder(a: &HolderArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    let q = Queue::new(QUEUE)?;
    let payloads: Vec<String> = (0..a.jobs).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
    q.enqueue_batch(&conn, &payloads, &EnqueueOptions::default())?;
    let held = q.claim(&conn, "bench-holder", a.jobs, Some(a.lease_ms))?;
    if held.len() != a.jobs {
        bail!("claimed {} of {} jobs", held.len(), a.jobs);
    }
    let with_holder: i64 = conn.query_row(
        "SELECT count(*) FROM honker_jobs j JOIN honker_claimers c ON c.id = j.claimer
         WHERE j.queue = ?1 AND j.state = 2 AND c.holder != ''",
        [QUEUE],
        |r| r.get(0),
    )?;
    if a.no_liveness {
        conn.execute(
            "UPDATE honker_jobs SET claimer = NULL WHERE queue = ?1 AND state = 2",
            [QUEUE],
        )?;
    } else if with_holder != a.jobs as i64 {
        bail!(
            "{with_holder} of {} claims carry a liveness holder: {}",
            a.jobs,
            honker_core::liveness::status(&a.db)
                .err()
                .unwrap_or_default()
        );
    }
    say("ready")?;
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    Ok(ExitCode::SUCCESS)
}

fn taker(a: &TakerArgs) -> Result<ExitCode> {
    let wake = wake_for(&a.db)?;
    let backend = honker_wake::Hub::global()
        .backend_choice()
        .map_or_else(|_| "unknown".to_owned(), |(b, _)| b.to_string());
    let (tx, rx) = mpsc::channel();
    let seen = Mutex::new(HashSet::new());
    let want = a.jobs;
    let worker = Worker::start(
        &a.db,
        Queue::new(QUEUE)?,
        wake,
        WorkerOptions {
            threads: want,
            ..WorkerOptions::default()
        },
        move |job| {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.insert(job.id.0) && seen.len() == want {
                tx.send(now_ns()).ok();
            }
            Ok(None)
        },
    )?;
    // Let the worker's first claim find every job held and park it until the next lease end:
    // the figure is how soon a parked worker learns of the death.
    thread::sleep(Duration::from_millis(50));
    say("ready")?;
    let at = rx
        .recv_timeout(Duration::from_millis(a.timeout_ms))
        .with_context(|| format!("the worker did not get all {want} jobs"))?;
    say(&format!("result at_ns={at} backend={backend}"))?;
    worker.shutdown()?;
    Ok(ExitCode::SUCCESS)
}
