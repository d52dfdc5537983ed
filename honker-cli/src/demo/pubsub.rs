//! The pub/sub section of `honker demo`: listener processes on one file, a publisher, and checks
//! that every listener got every notification exactly once and in order, with the cross-process
//! wake latency of each.
//!
//! The publisher sends the first half of the notifications as one burst (delivery under load:
//! listeners read many rows per wake) and the second half paced, one every `--pace-us`
//! microseconds. Wake latency is measured on the paced phase only: in a burst a notification
//! waits behind the ones committed before it, which measures throughput rather than wake-up.
//! Each payload carries its send time (`SystemTime` nanoseconds taken just before the commit, so
//! the commit is included); each listener subtracts it from its own receive time.
//!
//! A listener process talks to the demo over stdout, one line each: `ready <last_id>`,
//! `progress <received>`, and finally `report <json>`. The demo tells it on stdin, once
//! everything is sent, `done <id>`: the id of the last notification on its channel. A listener
//! that has been handed that id has been handed everything, so it reports at once instead of
//! waiting for a timeout, and whatever it lacks then is lost. When its stdin closes (the demo
//! is gone) it exits.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rusqlite::Connection;
use serde_json::json;

use super::{Children, DemoArgs, Progress, Section};
use crate::stats::{Summary, ms, now_ns};

const CHANNEL: &str = "demo";
const QUIET: &str = "quiet";
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long the demo waits for a listener process to start.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long after the last send the demo waits for every listener's report.
const REPORT_DEADLINE: Duration = Duration::from_secs(30);
/// How long a listener keeps reading after it has everything, to catch duplicates and strays.
const DRAIN: Duration = Duration::from_millis(100);

/// Arguments of the hidden `honker demo-listener`.
#[derive(Debug, Args)]
pub(crate) struct ListenerArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    channel: String,
    /// How many distinct notifications (`seq` 0..expect) to wait for.
    #[arg(long)]
    expect: u64,
    /// Give up (and report what arrived) after this many milliseconds.
    #[arg(long)]
    timeout_ms: u64,
    /// Throw away the notification with this `seq` (see `honker demo --drop-seq`).
    #[arg(long)]
    drop_seq: Option<u64>,
}

/// What one listener process saw.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct ListenerReport {
    channel: String,
    /// Notifications delivered, duplicates included.
    received: u64,
    /// Distinct `seq` values delivered.
    distinct: u64,
    /// `expect - distinct`.
    missing: u64,
    duplicates: u64,
    /// Deliveries whose id or `seq` went backwards.
    out_of_order: u64,
    /// Deliveries on another channel or with a payload the demo did not send.
    foreign: u64,
    /// Receive minus send time of each paced notification, in nanoseconds.
    latencies_ns: Vec<i64>,
    /// When the last burst notification arrived (`SystemTime` nanoseconds), 0 if none did.
    burst_done_ns: i64,
}

/// One listener process as the demo tracks it.
#[derive(Debug)]
struct Tracked {
    name: String,
    channel: &'static str,
    expect: u64,
    ready: bool,
    received: u64,
    report: Option<ListenerReport>,
    closed: bool,
}

enum Event {
    Ready(usize),
    Progress(usize, u64),
    Report(usize, Box<ListenerReport>),
    Closed(usize),
}

/// The section's outcome.
#[derive(Debug)]
pub(crate) struct PubSub {
    listeners: Vec<Tracked>,
    count: u64,
    burst: u64,
    pace_us: u64,
    burst_commit: Duration,
    burst_delivered: Option<Duration>,
    latency: Option<Summary>,
}

pub(crate) fn run(args: &DemoArgs, db: &Path, conn: &Connection) -> Result<PubSub> {
    let burst = args.count / 2;
    let timeout_ms = 60_000 + args.count * (args.pace_us / 1000 + 1);
    let mut tracked = Vec::new();
    for i in 1..=args.listeners {
        tracked.push(Tracked::new(format!("listener {i}"), CHANNEL, args.count));
    }
    if args.quiet_check {
        tracked.push(Tracked::new("quiet listener".into(), QUIET, 1));
    }

    let exe = std::env::current_exe().context("cannot find the honker executable")?;
    let (tx, rx) = mpsc::channel();
    let mut children = Children::default();
    let mut stdins = Vec::new();
    for (idx, t) in tracked.iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.arg("demo-listener")
            .arg("--db")
            .arg(db)
            .args(["--channel", t.channel])
            .args(["--expect", &t.expect.to_string()])
            .args(["--timeout-ms", &timeout_ms.to_string()]);
        if let (0, Some(seq)) = (idx, args.drop_seq) {
            cmd.args(["--drop-seq", &seq.to_string()]);
        }
        // The child's stdin stays open as long as the demo runs: a listener whose stdin closes
        // knows the demo is gone and exits, so none outlives a killed demo.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", t.name))?;
        let stdout = child.stdout.take().context("listener stdout")?;
        stdins.push(child.stdin.take().context("listener stdin")?);
        children.0.push(child);
        let tx = tx.clone();
        thread::spawn(move || read_listener(idx, stdout, &tx));
    }
    drop(tx);

    let mut progress = Progress::new();
    let start_by = Instant::now() + START_DEADLINE;
    while !tracked.iter().all(|t| t.ready) {
        let left = start_by.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) => apply(&mut tracked, ev),
            Err(_) => bail!("listener processes did not start within {START_DEADLINE:?}"),
        }
        if let Some(t) = tracked.iter().find(|t| t.closed && !t.ready) {
            bail!("{} exited before it was ready", t.name);
        }
    }
    progress.show(&format!(
        "[pub/sub] {} listener processes ready; publishing {} notifications",
        tracked.len(),
        args.count
    ));

    // Publish: a burst, then a paced phase.
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    let burst_start = Instant::now();
    let mut burst_commit = Duration::ZERO;
    let mut burst_start_ns = 0;
    let mut paced_start = Instant::now();
    let pace = Duration::from_micros(args.pace_us);
    let mut last_demo_id = 0;
    for seq in 0..args.count {
        let paced = seq >= burst;
        if seq == burst {
            burst_commit = burst_start.elapsed();
            paced_start = Instant::now();
        }
        if paced {
            let due = paced_start + pace * u32::try_from(seq - burst).unwrap_or(u32::MAX);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        let sent_ns = now_ns();
        if seq == 0 {
            burst_start_ns = sent_ns;
        }
        let phase = if paced { "paced" } else { "burst" };
        let payload = json!({ "seq": seq, "phase": phase, "sent_ns": sent_ns }).to_string();
        last_demo_id = honker_stream::notify(conn, CHANNEL, &payload)
            .with_context(|| format!("publishing notification {seq}"))?;
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            drain(&rx, &mut tracked);
            progress.show(&progress_line(seq + 1, args.count, &tracked));
        }
    }
    if burst == args.count {
        burst_commit = burst_start.elapsed();
    }
    let payload = json!({ "seq": 0, "phase": "quiet", "sent_ns": now_ns() }).to_string();
    let last_quiet_id =
        honker_stream::notify(conn, QUIET, &payload).context("publishing on the quiet channel")?;
    for (t, stdin) in tracked.iter().zip(&mut stdins) {
        let id = if t.channel == QUIET {
            last_quiet_id
        } else {
            last_demo_id
        };
        // A listener that already exited is reported as such below.
        let _ = writeln!(stdin, "done {id}").and_then(|()| stdin.flush());
    }

    // Collect every report.
    let report_by = Instant::now() + REPORT_DEADLINE;
    while !tracked.iter().all(|t| t.report.is_some() || t.closed) {
        let now = Instant::now();
        if now >= report_by {
            break;
        }
        match rx.recv_timeout(PROGRESS_EVERY.min(report_by - now)) {
            Ok(ev) => apply(&mut tracked, ev),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_progress {
            next_progress = Instant::now() + PROGRESS_EVERY;
            progress.show(&progress_line(args.count, args.count, &tracked));
        }
    }
    progress.show(&progress_line(args.count, args.count, &tracked));
    progress.finish();
    drop(stdins);
    drop(children);

    let mut latencies: Vec<i64> = tracked
        .iter()
        .filter(|t| t.channel == CHANNEL)
        .filter_map(|t| t.report.as_ref())
        .flat_map(|r| r.latencies_ns.iter().copied())
        .collect();
    let burst_delivered = tracked
        .iter()
        .filter(|t| t.channel == CHANNEL)
        .map(|t| t.report.as_ref().map(|r| r.burst_done_ns))
        .collect::<Option<Vec<i64>>>()
        .and_then(|v| v.into_iter().max())
        .filter(|&done| done > 0 && burst > 0)
        .map(|done| Duration::from_nanos(u64::try_from(done - burst_start_ns).unwrap_or(0)));
    Ok(PubSub {
        latency: Summary::of(&mut latencies),
        listeners: tracked,
        count: args.count,
        burst,
        pace_us: args.pace_us,
        burst_commit,
        burst_delivered,
    })
}

impl Tracked {
    fn new(name: String, channel: &'static str, expect: u64) -> Tracked {
        Tracked {
            name,
            channel,
            expect,
            ready: false,
            received: 0,
            report: None,
            closed: false,
        }
    }

    /// Notifications this listener should have had but did not (all of them without a report).
    fn lost(&self) -> u64 {
        self.report.as_ref().map_or(self.expect, |r| r.missing)
    }
}

fn apply(tracked: &mut [Tracked], ev: Event) {
    match ev {
        Event::Ready(i) => tracked[i].ready = true,
        Event::Progress(i, n) => tracked[i].received = n,
        Event::Report(i, r) => {
            tracked[i].received = r.distinct;
            tracked[i].report = Some(*r);
        }
        Event::Closed(i) => tracked[i].closed = true,
    }
}

fn drain(rx: &mpsc::Receiver<Event>, tracked: &mut [Tracked]) {
    while let Ok(ev) = rx.try_recv() {
        apply(tracked, ev);
    }
}

fn progress_line(sent: u64, count: u64, tracked: &[Tracked]) -> String {
    let got: Vec<String> = tracked.iter().map(|t| t.received.to_string()).collect();
    format!(
        "[pub/sub] sent {sent}/{count}  received {}",
        got.join(" / ")
    )
}

/// Turn one listener process's stdout into events.
fn read_listener(idx: usize, stdout: std::process::ChildStdout, tx: &mpsc::Sender<Event>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let ev = match word {
            "ready" => Event::Ready(idx),
            "progress" => Event::Progress(idx, rest.trim().parse().unwrap_or(0)),
            "report" => match serde_json::from_str(rest) {
                Ok(r) => Event::Report(idx, Box::new(r)),
                Err(_) => continue,
            },
            _ => continue,
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
    let _ = tx.send(Event::Closed(idx));
}

impl Section for PubSub {
    fn print(&self) {
        let demo: Vec<&Tracked> = self
            .listeners
            .iter()
            .filter(|t| t.channel == CHANNEL)
            .collect();
        let lost: u64 = self.listeners.iter().map(Tracked::lost).sum();
        let sum = |f: fn(&ListenerReport) -> u64| -> u64 {
            self.listeners
                .iter()
                .filter_map(|t| t.report.as_ref())
                .map(f)
                .sum()
        };
        let received: Vec<String> = self
            .listeners
            .iter()
            .map(|t| match &t.report {
                Some(r) => format!("{}: {}", t.name, r.received),
                None => format!("{}: no report", t.name),
            })
            .collect();
        let paced = self.count - self.burst;
        #[allow(clippy::print_stdout)]
        {
            println!("pub/sub: NOTIFY/LISTEN across processes");
            println!(
                "  listeners     {} processes on {CHANNEL:?}{}",
                demo.len(),
                if self.listeners.len() > demo.len() {
                    format!(", 1 on {QUIET:?}")
                } else {
                    String::new()
                }
            );
            println!(
                "  sent          {} on {CHANNEL:?} ({} as one burst, {paced} paced one per {} ms), 1 on {QUIET:?}",
                self.count,
                self.burst,
                self.pace_us as f64 / 1000.0
            );
            println!("  received      {}", received.join(", "));
            println!(
                "  checks        lost: {lost}  duplicated: {}  out of order: {}  foreign: {}",
                sum(|r| r.duplicates),
                sum(|r| r.out_of_order),
                sum(|r| r.foreign),
            );
            if self.burst > 0 {
                let rate = self.burst as f64 / self.burst_commit.as_secs_f64().max(1e-9);
                let delivered = self
                    .burst_delivered
                    .map_or("-".to_string(), |d| ms(d.as_nanos() as i64));
                println!(
                    "  burst         {} committed in {} ({rate:.0}/s, one transaction each); all delivered after {delivered}",
                    self.burst,
                    ms(self.burst_commit.as_nanos() as i64),
                );
            }
            match &self.latency {
                Some(s) => println!("  wake latency  {s}"),
                None => println!("  wake latency  no samples"),
            }
            println!(
                "                (paced phase: publisher's send time, commit included, to the listener process holding the row)"
            );
            if self.ok() {
                println!(
                    "  => every listener got every notification exactly once, in order; nothing leaked across channels"
                );
            }
        }
    }

    fn ok(&self) -> bool {
        self.listeners.iter().all(|t| {
            t.lost() == 0
                && t.report
                    .as_ref()
                    .is_some_and(|r| r.duplicates == 0 && r.out_of_order == 0 && r.foreign == 0)
        })
    }
}

/// The hidden `honker demo-listener` process.
pub(crate) fn listener_child(args: &ListenerArgs) -> Result<std::process::ExitCode> {
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if let Some(id) = line
                .strip_prefix("done ")
                .and_then(|i| i.trim().parse::<i64>().ok())
            {
                let _ = done_tx.send(id);
            }
        }
        // The demo is gone: nobody will read a report.
        std::process::exit(3);
    });
    let mut listener = crate::commands::listener(&args.db, &args.channel)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", listener.last_id())?;
    out.flush()?;

    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    let mut r = ListenerReport {
        channel: args.channel.clone(),
        ..ListenerReport::default()
    };
    let mut seen = HashSet::new();
    let mut last_id = listener.last_id();
    let mut next_seq = 0u64;
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    let mut final_id = None;
    let mut draining_until = None;
    loop {
        let wait_until = draining_until.unwrap_or_else(|| next_progress.min(deadline));
        match listener.recv(Some(wait_until))? {
            Some(n) if is_dropped(&n, args.drop_seq) => {}
            Some(n) => {
                let recv_ns = now_ns();
                r.received += 1;
                if n.id <= last_id {
                    r.out_of_order += 1;
                }
                last_id = last_id.max(n.id);
                let payload: serde_json::Value =
                    serde_json::from_str(&n.payload).unwrap_or_default();
                let seq = payload["seq"].as_u64().filter(|&s| s < args.expect);
                match seq {
                    Some(seq) if n.channel == args.channel => {
                        if !seen.insert(seq) {
                            r.duplicates += 1;
                        } else if seq < next_seq {
                            r.out_of_order += 1;
                        }
                        next_seq = next_seq.max(seq + 1);
                        let sent_ns = payload["sent_ns"].as_i64().unwrap_or(recv_ns);
                        match payload["phase"].as_str() {
                            Some("paced") => r.latencies_ns.push(recv_ns - sent_ns),
                            Some("burst") => r.burst_done_ns = r.burst_done_ns.max(recv_ns),
                            _ => {}
                        }
                    }
                    _ => r.foreign += 1,
                }
            }
            None if draining_until.is_some() || Instant::now() >= deadline => break,
            None => {}
        }
        r.distinct = seen.len() as u64;
        if final_id.is_none() {
            final_id = done_rx.try_recv().ok();
        }
        // Everything arrived, or everything committed was handed over (what is missing then is
        // lost): keep reading a moment for duplicates and strays, then report.
        let handed_all = final_id.is_some_and(|f| listener.last_id() >= f);
        if draining_until.is_none() && (r.distinct >= args.expect || handed_all) {
            draining_until = Some(Instant::now() + DRAIN);
        }
        if Instant::now() >= next_progress {
            next_progress = Instant::now() + PROGRESS_EVERY;
            writeln!(out, "progress {}", r.distinct)?;
            out.flush()?;
        }
    }
    r.missing = args.expect - r.distinct.min(args.expect);
    writeln!(out, "report {}", serde_json::to_string(&r)?)?;
    out.flush()?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Whether `n` is the notification `--drop-seq` names.
fn is_dropped(n: &honker_stream::Notification, drop_seq: Option<u64>) -> bool {
    drop_seq.is_some_and(|d| {
        serde_json::from_str::<serde_json::Value>(&n.payload)
            .is_ok_and(|p| p["seq"].as_u64() == Some(d) && p["phase"] != "quiet")
    })
}
