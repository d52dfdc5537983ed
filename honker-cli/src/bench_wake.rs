//! Hidden benchmark helpers for the wake backends, driven by `cargo xtask bench`: a listener whose
//! wake source is the chosen backend (cross-process latency, against the shared
//! `bench-publisher`), and an idle process with a parked listener on the chosen backend (CPU per
//! idle second, measured from outside).
//!
//! Output follows the other helpers: `ready`, then one `result key=value ...` line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use honker_wake::{Backend, Hub};

use crate::bench::{report_with, say};
use crate::commands::open;
use crate::stats::now_ns;

/// The channel `bench-publisher` sends on.
const CHANNEL: &str = "bench";

/// The hidden wake-backend benchmark subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchWakeCommand {
    /// Receive paced notifications through one wake backend; print wake-latency percentiles.
    #[command(name = "bench-wake-listener", hide = true)]
    Listener(WakeListenerArgs),
    /// Park a listener on one wake backend until stdin closes (its CPU is measured outside).
    #[command(name = "bench-wake-idle", hide = true)]
    Idle(WakeIdleArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WakeListenerArgs {
    #[arg(long)]
    db: PathBuf,
    /// `data_version`, `stat` or `kernel`.
    #[arg(long)]
    backend: Backend,
    /// Notifications to measure (after the warm-up ones).
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    #[arg(long, default_value_t = 120_000)]
    timeout_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct WakeIdleArgs {
    #[arg(long)]
    db: PathBuf,
    /// `data_version`, `stat` or `kernel`.
    #[arg(long)]
    backend: Backend,
}

pub(crate) fn run(cmd: BenchWakeCommand) -> Result<ExitCode> {
    match cmd {
        BenchWakeCommand::Listener(a) => listener_run(&a),
        BenchWakeCommand::Idle(a) => idle(&a),
    }
}

fn listener(db: &Path, backend: Backend) -> Result<honker_stream::Listener> {
    let conn = open(db)?;
    let wake = Hub::global()
        .wake_for_with(db, backend)
        .with_context(|| format!("cannot watch {} with the {backend} backend", db.display()))?;
    Ok(honker_stream::Listener::new(conn, CHANNEL, wake)?)
}

fn listener_run(a: &WakeListenerArgs) -> Result<ExitCode> {
    let want = a.count + a.warmup;
    let deadline = Instant::now() + Duration::from_millis(a.timeout_ms);
    let mut samples = Vec::with_capacity(want);
    let mut l = listener(&a.db, a.backend)?;
    say("ready")?;
    while samples.len() < want {
        let Some(n) = l.recv(Some(deadline))? else {
            bail!("timed out with {} of {want} notifications", samples.len());
        };
        let recv = now_ns();
        let v: serde_json::Value = serde_json::from_str(&n.payload)?;
        let sent = v["sent_ns"].as_i64().context("payload without sent_ns")?;
        samples.push(recv - sent);
    }
    report_with(&format!("backend={} ", a.backend), samples, a.warmup)
}

fn idle(a: &WakeIdleArgs) -> Result<ExitCode> {
    let mut l = listener(&a.db, a.backend)?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        tx.send(()).ok();
        // Parks in the wake source's wait until a notification comes (none will).
        l.recv(None).ok();
    });
    rx.recv()?;
    say("ready")?;
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    Ok(ExitCode::SUCCESS)
}
