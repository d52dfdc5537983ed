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
    /// Baseline of the kernel backend: a bare inotify-and-`data_version` loop, no honker code.
    #[command(name = "bench-wake-bare", hide = true)]
    Bare(WakeBareArgs),
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
        BenchWakeCommand::Bare(a) => bare_run(&a),
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

/// `bench-wake-bare`: the baseline of the kernel backend, with no honker code. A blocking read of
/// an inotify instance watching the database's directory (events on the db or `-wal` file name),
/// then `PRAGMA data_version` polled back to back (the event comes before the commit is visible)
/// until it moves, then the SELECT. No floor poll: it blocks in `read` until an event comes.
#[derive(Debug, Args)]
pub(crate) struct WakeBareArgs {
    #[arg(long)]
    db: PathBuf,
    /// Notifications to measure (after the warm-up ones); 0 with `--idle`.
    #[arg(long, default_value_t = 0)]
    count: usize,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    #[arg(long, default_value_t = 120_000)]
    timeout_ms: u64,
    /// Park in the loop until stdin closes (its CPU is measured outside).
    #[arg(long)]
    idle: bool,
}

#[cfg(target_os = "linux")]
mod bare {
    use std::ffi::OsString;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use anyhow::Result;
    use inotify::{EventMask, Inotify as Raw, WatchMask};
    use rusqlite::Connection;

    /// An inotify instance watching the directory of `db`, and the names that matter.
    pub(super) struct Inotify {
        raw: Raw,
        db: OsString,
        wal: OsString,
        buf: Vec<u8>,
    }

    impl Inotify {
        pub(super) fn new(db: &Path) -> Result<Inotify> {
            let dir = db.parent().unwrap_or(Path::new("."));
            let name = db.file_name().unwrap_or_default().to_owned();
            let mut wal = name.clone();
            wal.push("-wal");
            let raw = Raw::init()?;
            raw.watches()
                .add(dir, WatchMask::MODIFY | WatchMask::CLOSE_WRITE)?;
            Ok(Inotify {
                raw,
                db: name,
                wal,
                buf: vec![0; 4096],
            })
        }

        /// Block until events come; whether one named the db or `-wal` file (or the queue
        /// overflowed).
        pub(super) fn wait(&mut self) -> Result<bool> {
            let events = self.raw.read_events_blocking(&mut self.buf)?;
            let mut relevant = false;
            for e in events {
                if e.mask.contains(EventMask::Q_OVERFLOW)
                    || e.name.is_some_and(|n| n == self.db || n == self.wal)
                {
                    relevant = true;
                }
            }
            Ok(relevant)
        }
    }

    /// Poll `data_version` back to back until it moves from `seen` (at most 2 ms).
    pub(super) fn settle(conn: &Connection, seen: i64) -> Result<i64> {
        let mut stmt = conn.prepare_cached("PRAGMA data_version")?;
        let until = Instant::now() + Duration::from_millis(2);
        loop {
            let v: i64 = stmt.query_row([], |r| r.get(0))?;
            if v != seen || Instant::now() >= until {
                return Ok(v);
            }
            std::thread::yield_now();
        }
    }
}

#[cfg(target_os = "linux")]
pub(crate) fn bare_run(a: &WakeBareArgs) -> Result<ExitCode> {
    let conn = rusqlite::Connection::open(&a.db)?;
    conn.busy_timeout(honker_core::BUSY_TIMEOUT)?;
    let mut ino = bare::Inotify::new(&a.db)?;
    let mut last_id: i64 = conn.query_row(
        "SELECT coalesce(max(id), 0) FROM honker_notifications",
        [],
        |r| r.get(0),
    )?;
    let mut seen: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    let want = if a.idle {
        usize::MAX
    } else {
        a.count + a.warmup
    };
    let deadline = Instant::now() + Duration::from_millis(a.timeout_ms);
    let mut samples = Vec::with_capacity(if a.idle { 0 } else { want });
    if a.idle {
        // The loop runs on its own thread; the main thread waits for stdin to close.
        thread::spawn(|| {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
    }
    say("ready")?;
    let mut select = conn.prepare(
        "SELECT id, payload FROM honker_notifications WHERE channel = ?1 AND id > ?2 ORDER BY id",
    )?;
    while samples.len() < want {
        // No floor: the bare loop trusts the kernel to deliver every event.
        if !ino.wait()? {
            continue;
        }
        let v = bare::settle(&conn, seen)?;
        if v == seen {
            if !a.idle && Instant::now() >= deadline {
                bail!("timed out with {} of {want} notifications", samples.len());
            }
            continue;
        }
        seen = v;
        let mut rows = select.query(rusqlite::params![CHANNEL, last_id])?;
        while let Some(row) = rows.next()? {
            let recv = now_ns();
            last_id = row.get(0)?;
            samples.push(crate::bench::latency(&row.get::<_, String>(1)?, recv)?);
        }
    }
    report_with("backend=bare ", samples, a.warmup)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn bare_run(_: &WakeBareArgs) -> Result<ExitCode> {
    bail!("the bare inotify loop is Linux only")
}
