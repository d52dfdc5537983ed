//! Hidden benchmark helpers that `cargo xtask bench` runs as real processes: a listener and a
//! publisher for cross-process wake latency, a same-process latency run, an idle process whose
//! CPU is measured from outside, and a throughput loop; each with a raw-rusqlite baseline mode
//! doing the same SQL work without honker.
//!
//! Every helper prints `ready` (when it has one) and then one line `result key=value ...`, which
//! is all xtask parses.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use rusqlite::Connection;

use crate::commands::{listener, open};
use crate::stats::{Summary, now_ns};

const CHANNEL: &str = "bench";

/// The hidden benchmark subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Receive paced notifications and print wake-latency percentiles.
    #[command(name = "bench-listener", hide = true)]
    Listener(ListenerArgs),
    /// Send paced notifications carrying their send time.
    #[command(name = "bench-publisher", hide = true)]
    Publisher(PublisherArgs),
    /// Publisher and listener threads in one process; print wake-latency percentiles.
    #[command(name = "bench-same-process", hide = true)]
    SameProcess(SameProcessArgs),
    /// Sit idle (until stdin closes) so another process can measure this one's CPU time.
    #[command(name = "bench-idle", hide = true)]
    Idle(IdleArgs),
    /// Commit one notification per transaction as fast as possible; print ops/s.
    #[command(name = "bench-throughput", hide = true)]
    Throughput(ThroughputArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListenerArgs {
    #[arg(long)]
    db: PathBuf,
    /// Notifications to measure (after the warm-up ones).
    #[arg(long)]
    count: usize,
    /// Notifications to receive before measuring.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Baseline: no honker, a bare loop polling `PRAGMA data_version` then SELECTing.
    #[arg(long)]
    raw: bool,
    /// The raw loop's poll interval, microseconds.
    #[arg(long, default_value_t = 1000)]
    poll_us: u64,
    #[arg(long, default_value_t = 120_000)]
    timeout_ms: u64,
}

/// A paced sender of `{"seq","sent_ns"}` payloads (notifications here, stream events in
/// `bench_stream`, jobs in `bench_queue`).
#[derive(Debug, Args)]
pub(crate) struct PublisherArgs {
    #[arg(long)]
    pub(crate) db: PathBuf,
    /// How many to send.
    #[arg(long)]
    pub(crate) count: usize,
    /// Mean microseconds between sends (each gap is jittered by up to +-25%).
    #[arg(long, default_value_t = 1300)]
    pub(crate) interval_us: u64,
}

#[derive(Debug, Args)]
pub(crate) struct SameProcessArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    #[arg(long, default_value_t = 500)]
    interval_us: u64,
    /// Baseline: INSERT, then hand the wake to the listener thread over a channel; it SELECTs.
    #[arg(long)]
    raw: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum IdleMode {
    /// An open database and a listener parked in `recv`.
    Parked,
    /// An open database and a started wake source, but nobody waiting.
    Open,
    /// Baseline: a bare loop running a prepared `PRAGMA data_version` every millisecond.
    RawPoll,
}

#[derive(Debug, Args)]
pub(crate) struct IdleArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long, value_enum)]
    mode: IdleMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum WriteMode {
    /// `honker_stream::notify`, one per autocommit transaction.
    Notify,
    /// Baseline: the same row with one raw `INSERT` per autocommit transaction.
    Raw,
}

#[derive(Debug, Args)]
pub(crate) struct ThroughputArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    count: usize,
    #[arg(long, value_enum)]
    mode: WriteMode,
}

pub(crate) fn run(cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Listener(a) => bench_listener(&a),
        BenchCommand::Publisher(a) => bench_publisher(&a),
        BenchCommand::SameProcess(a) => same_process(&a),
        BenchCommand::Idle(a) => idle(&a),
        BenchCommand::Throughput(a) => throughput(&a),
    }
}

/// Print one line to stdout and flush it: the bench helpers talk to `cargo xtask bench` in lines.
pub(crate) fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// The send time carried in a bench payload `{"seq":..,"sent_ns":..}`.
pub(crate) fn sent_ns(payload: &str) -> Result<i64> {
    let v: serde_json::Value = serde_json::from_str(payload)?;
    v["sent_ns"].as_i64().context("payload without sent_ns")
}

/// Latency of one received payload.
pub(crate) fn latency(payload: &str, recv_ns: i64) -> Result<i64> {
    Ok(recv_ns - sent_ns(payload)?)
}

/// Print the `result` line of the samples after the first `warmup`, each field prefixed with
/// `prefix` fields (such as `backend=kernel `).
pub(crate) fn report_with(prefix: &str, mut samples: Vec<i64>, warmup: usize) -> Result<ExitCode> {
    let mut measured = samples.split_off(warmup.min(samples.len()));
    let s = Summary::of(&mut measured).context("no samples")?;
    say(&format!("result {prefix}{}", s.kv("")))?;
    Ok(ExitCode::SUCCESS)
}

fn report(samples: Vec<i64>, warmup: usize) -> Result<ExitCode> {
    report_with("", samples, warmup)
}

fn bench_listener(a: &ListenerArgs) -> Result<ExitCode> {
    let want = a.count + a.warmup;
    let deadline = Instant::now() + Duration::from_millis(a.timeout_ms);
    let mut samples = Vec::with_capacity(want);
    if a.raw {
        let conn = Connection::open(&a.db)?;
        conn.busy_timeout(honker_core::BUSY_TIMEOUT)?;
        let mut version = conn.prepare("PRAGMA data_version")?;
        let mut select = conn.prepare(
            "SELECT id, payload FROM honker_notifications WHERE channel = ?1 AND id > ?2 ORDER BY id",
        )?;
        let mut last_id: i64 = conn.query_row(
            "SELECT coalesce(max(id), 0) FROM honker_notifications",
            [],
            |r| r.get(0),
        )?;
        let mut seen_version: i64 = version.query_row([], |r| r.get(0))?;
        let poll = Duration::from_micros(a.poll_us);
        say("ready")?;
        while samples.len() < want {
            let v: i64 = version.query_row([], |r| r.get(0))?;
            if v == seen_version {
                if Instant::now() >= deadline {
                    bail!("timed out with {} of {want} notifications", samples.len());
                }
                thread::sleep(poll);
                continue;
            }
            seen_version = v;
            let mut rows = select.query(rusqlite::params![CHANNEL, last_id])?;
            while let Some(row) = rows.next()? {
                let recv_ns = now_ns();
                last_id = row.get(0)?;
                samples.push(latency(&row.get::<_, String>(1)?, recv_ns)?);
            }
        }
    } else {
        let mut l = listener(&a.db, CHANNEL)?;
        say("ready")?;
        while samples.len() < want {
            let Some(n) = l.recv(Some(deadline))? else {
                bail!("timed out with {} of {want} notifications", samples.len());
            };
            samples.push(latency(&n.payload, now_ns())?);
        }
    }
    report(samples, a.warmup)
}

/// A small deterministic generator for send jitter, so sends do not phase-lock with a poller.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    /// `mean` scaled by a factor in [0.75, 1.25).
    fn gap(&mut self, mean: Duration) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        mean.mul_f64(0.75 + unit * 0.5)
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

/// Call `send(seq, payload, sent_ns)` `count` times, one mean `interval_us` apart (each gap
/// jittered from `seed`), with the payload `{"seq":..,"sent_ns":..}` stamped just before the send:
/// the pacing of every latency bench's sender.
pub(crate) fn paced(
    count: usize,
    interval_us: u64,
    seed: u64,
    mut send: impl FnMut(usize, &str, i64) -> Result<()>,
) -> Result<()> {
    let mut jitter = Jitter(seed);
    let mean = Duration::from_micros(interval_us);
    let mut due = Instant::now();
    for seq in 0..count {
        due += jitter.gap(mean);
        sleep_until(due);
        let sent_ns = now_ns();
        send(
            seq,
            &format!(r#"{{"seq":{seq},"sent_ns":{sent_ns}}}"#),
            sent_ns,
        )?;
    }
    Ok(())
}

fn bench_publisher(a: &PublisherArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    paced(a.count, a.interval_us, 0x5eed, |_, payload, _| {
        honker_stream::notify(&conn, CHANNEL, payload)?;
        Ok(())
    })?;
    say(&format!("result sent={}", a.count))?;
    Ok(ExitCode::SUCCESS)
}

/// When each notification's commit finished, by `seq` (0 = not yet), shared by the publisher
/// and listener threads of the same-process bench.
type CommitTimes = Arc<Vec<AtomicI64>>;

/// Latency from commit to receipt of notification `seq`, waiting for the publisher to record
/// its commit time if the listener got there first (then the latency is 0).
fn since_commit(commits: &CommitTimes, seq: usize, recv_ns: i64) -> i64 {
    loop {
        let c = commits[seq].load(Ordering::Acquire);
        if c != 0 {
            return (recv_ns - c).max(0);
        }
        thread::yield_now();
    }
}

/// `(send-to-receive, commit-to-receive)` of one received payload.
fn both(payload: &str, recv_ns: i64, commits: &CommitTimes) -> Result<(i64, i64)> {
    let v: serde_json::Value = serde_json::from_str(payload)?;
    let sent = v["sent_ns"].as_i64().context("payload without sent_ns")?;
    let seq = v["seq"].as_u64().context("payload without seq")?;
    let seq = usize::try_from(seq)?;
    Ok((recv_ns - sent, since_commit(commits, seq, recv_ns)))
}

/// Publisher and listener threads in one process. Two latencies per notification: from before
/// the write (commit included, as cross-process) and from the end of the commit (the wake
/// itself: the Hub kick, the listener thread waking and its SELECT).
///
/// The publisher writes each notification with `notify()` inside its own short transaction and
/// calls `kick_after_commit` right after `COMMIT`, which is exactly what `notify()` does in
/// autocommit, so the commit's end can be timed between the two.
fn same_process(a: &SameProcessArgs) -> Result<ExitCode> {
    let want = a.count + a.warmup;
    let db = a.db.clone();
    let commits: CommitTimes = Arc::new((0..want).map(|_| AtomicI64::new(0)).collect());
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    // The raw baseline's wake: the publisher's "I committed" message.
    let (kick_tx, kick_rx) = mpsc::channel::<()>();
    let raw = a.raw;
    let reader_commits = commits.clone();
    let reader = thread::spawn(move || -> Result<Vec<(i64, i64)>> {
        let commits = reader_commits;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut samples = Vec::with_capacity(want);
        if raw {
            let conn = open(&db)?;
            let mut select = conn.prepare(
                "SELECT id, payload FROM honker_notifications WHERE channel = ?1 AND id > ?2 ORDER BY id",
            )?;
            let mut last_id: i64 = conn.query_row(
                "SELECT coalesce(max(id), 0) FROM honker_notifications",
                [],
                |r| r.get(0),
            )?;
            ready_tx.send(())?;
            while samples.len() < want {
                kick_rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .context("timed out waiting for the publisher")?;
                let mut rows = select.query(rusqlite::params![CHANNEL, last_id])?;
                while let Some(row) = rows.next()? {
                    let recv_ns = now_ns();
                    last_id = row.get(0)?;
                    samples.push(both(&row.get::<_, String>(1)?, recv_ns, &commits)?);
                }
            }
        } else {
            let mut l = listener(&db, CHANNEL)?;
            ready_tx.send(())?;
            while samples.len() < want {
                let Some(n) = l.recv(Some(deadline))? else {
                    bail!("timed out with {} of {want} notifications", samples.len());
                };
                samples.push(both(&n.payload, now_ns(), &commits)?);
            }
        }
        Ok(samples)
    });
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        return match reader.join() {
            Ok(Err(e)) => Err(e),
            _ => bail!("the listener thread did not start"),
        };
    }
    let conn = open(&a.db)?;
    let mut insert = conn.prepare(
        "INSERT INTO honker_notifications (channel, payload, created_ms) VALUES (?1, ?2, ?3)",
    )?;
    paced(
        commits.len(),
        a.interval_us,
        0xfeed,
        |seq, payload, sent_ns| {
            if a.raw {
                insert.execute(rusqlite::params![CHANNEL, payload, sent_ns / 1_000_000])?;
                commits[seq].store(now_ns(), Ordering::Release);
                // The reader may have finished on an error; its join reports it.
                let _ = kick_tx.send(());
            } else {
                let tx = conn.unchecked_transaction()?;
                honker_stream::notify(&tx, CHANNEL, payload)?;
                tx.commit()?;
                commits[seq].store(now_ns(), Ordering::Release);
                honker_core::kick_after_commit(&conn);
            }
            Ok(())
        },
    )?;
    let samples = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the listener thread panicked"))??;
    let measured = &samples[a.warmup.min(samples.len())..];
    let mut incl: Vec<i64> = measured.iter().map(|s| s.0).collect();
    let mut wake: Vec<i64> = measured.iter().map(|s| s.1).collect();
    let incl = Summary::of(&mut incl).context("no samples")?;
    let wake = Summary::of(&mut wake).context("no samples")?;
    say(&format!("result {} {}", incl.kv(""), wake.kv("c_")))?;
    Ok(ExitCode::SUCCESS)
}

/// Block until stdin closes: the parent ends an idle helper by dropping its stdin, and the
/// helper never outlives a parent that died.
fn wait_for_stdin_eof() {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
}

fn idle(a: &IdleArgs) -> Result<ExitCode> {
    // Kept alive until the end of the function.
    let mut _keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    match a.mode {
        IdleMode::Parked => {
            let mut l = listener(&a.db, CHANNEL)?;
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let _ = tx.send(());
                // Parks in the wake source's wait until a notification comes (none will).
                let _ = l.recv(None);
            });
            rx.recv()?;
        }
        IdleMode::Open => {
            let conn = open(&a.db)?;
            let wake = honker_wake::wake_for(&a.db)?;
            _keep.push(Box::new(conn));
            _keep.push(Box::new(wake));
        }
        IdleMode::RawPoll => {
            let db = a.db.clone();
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || raw_poll(&db, &tx));
            rx.recv()??;
        }
    }
    say("ready")?;
    wait_for_stdin_eof();
    Ok(ExitCode::SUCCESS)
}

/// The idle baseline: what a hand-written poller of `PRAGMA data_version` costs.
fn raw_poll(db: &Path, ready: &mpsc::Sender<Result<()>>) {
    let setup = || -> Result<Connection> { Ok(Connection::open(db)?) };
    let conn = match setup() {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut stmt = match conn.prepare("PRAGMA data_version") {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut last = 0i64;
    loop {
        if let Ok(v) = stmt.query_row([], |r| r.get::<_, i64>(0)) {
            last = last.max(v);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn throughput(a: &ThroughputArgs) -> Result<ExitCode> {
    let conn = open(&a.db)?;
    let write = |seq: usize| -> Result<()> {
        let payload = format!(r#"{{"seq":{seq}}}"#);
        match a.mode {
            WriteMode::Notify => {
                honker_stream::notify(&conn, CHANNEL, &payload)?;
            }
            WriteMode::Raw => {
                conn.prepare_cached(
                    "INSERT INTO honker_notifications (channel, payload, created_ms) VALUES (?1, ?2, ?3)",
                )?
                .execute(rusqlite::params![CHANNEL, payload, now_ns() / 1_000_000])?;
            }
        }
        Ok(())
    };
    let warmup = 200.min(a.count);
    for seq in 0..warmup {
        write(seq)?;
    }
    let start = Instant::now();
    for seq in warmup..warmup + a.count {
        write(seq)?;
    }
    let secs = start.elapsed().as_secs_f64();
    say(&format!(
        "result ops_per_s={:.1} n={}",
        a.count as f64 / secs.max(1e-9),
        a.count
    ))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter_of_the_mean() {
        let mut j = Jitter(1);
        let mean = Duration::from_micros(1000);
        for _ in 0..1000 {
            let g = j.gap(mean);
            assert!(g >= Duration::from_micros(750) && g < Duration::from_micros(1250));
        }
    }

    #[test]
    fn latency_reads_sent_ns() {
        assert_eq!(latency(r#"{"seq":1,"sent_ns":100}"#, 350).unwrap(), 250);
        assert!(latency(r#"{"seq":1}"#, 350).is_err());
    }
}
