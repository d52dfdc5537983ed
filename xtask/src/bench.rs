//! `cargo xtask bench`: honker's cross-process figures, each against a raw baseline measured in
//! the same run, as one table of medians.
//!
//! xtask links none of honker's crates: it builds the release `honker` binary and drives its
//! hidden `bench-*` subcommands as real processes (listeners, publishers, idle processes), so the
//! figures are what an application sees. Each baseline is the same work done with bare rusqlite
//! in the same kind of process, so the ratio shows what honker adds on this machine today.
//!
//! Options: `--runs N` (default 5; each figure is the median of N runs), `--quick` (fewer
//! samples and a shorter idle window, for a smoke test), `--strict` (fail when a target is missed).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// How long any helper gets to say `ready` or print its result.
const HELPER_DEADLINE: Duration = Duration::from_secs(120);

/// Sizes of one bench session.
#[derive(Debug, Clone)]
struct Plan {
    runs: usize,
    /// Latency samples per run (after a warm-up of 20).
    latency_samples: usize,
    /// Mean gap between cross-process sends (jittered +-25% by the publisher).
    cross_interval_us: u64,
    /// Mean gap between same-process sends.
    same_interval_us: u64,
    /// Idle CPU measurement window.
    idle_window: Duration,
    /// Transactions per throughput run.
    throughput_ops: usize,
    strict: bool,
    /// Sections to run (`core`, `host`, `e2e`); empty is all.
    only: Vec<String>,
    /// Also measure honker 0.5's Python package in the host section.
    peer: bool,
    /// Also measure the Python binding in the host section.
    binding: bool,
    /// `--quick`: smaller figures everywhere.
    quick: bool,
}

/// The bench's sections, for `--only`.
const SECTIONS: [&str; 4] = ["core", "wake", "host", "e2e"];

impl Plan {
    /// Whether `section` runs in this session.
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }

    fn parse(args: &[String]) -> Result<Plan> {
        let mut plan = Plan {
            runs: 5,
            latency_samples: 1000,
            cross_interval_us: 1300,
            same_interval_us: 500,
            idle_window: Duration::from_secs(5),
            throughput_ops: 5000,
            strict: false,
            only: Vec::new(),
            peer: false,
            quick: false,
            binding: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--runs" => {
                    plan.runs = it
                        .next()
                        .context("--runs needs a number")?
                        .parse()
                        .context("--runs needs a number")?;
                    if plan.runs == 0 {
                        bail!("--runs must be at least 1");
                    }
                }
                "--quick" => {
                    plan.quick = true;
                    plan.latency_samples = 200;
                    plan.idle_window = Duration::from_secs(1);
                    plan.throughput_ops = 1000;
                }
                "--strict" => plan.strict = true,
                "--peer" => plan.peer = true,
                "--binding" => plan.binding = true,
                "--only" => {
                    let section = it.next().context("--only needs a section name")?;
                    if !SECTIONS.contains(&section.as_str()) {
                        bail!(
                            "unknown bench section {section:?}; sections: {}",
                            SECTIONS.join(", ")
                        );
                    }
                    plan.only.push(section.clone());
                }
                other => bail!(
                    "unknown bench argument {other:?}; usage: cargo xtask bench [--runs N] [--quick] [--strict] [--only SECTION]... [--peer] [--binding]"
                ),
            }
        }
        Ok(plan)
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let plan = Plan::parse(args)?;
    let root = repo_root();
    let mut report = String::from("# honker bench\n\n");
    let mut failed: Vec<String> = Vec::new();
    if plan.wants("core") {
        let (text, missed) = core_section(&root, &plan)?;
        report.push_str(&text);
        failed.extend(missed);
    }
    // `core` includes the wake rows; `wake` alone runs only them.
    if !plan.only.is_empty() && plan.wants("wake") && !plan.wants("core") {
        let (text, missed) = wake_section(&root, &plan)?;
        report.push_str(&text);
        failed.extend(missed);
    }
    if plan.wants("host") {
        let host = crate::bench_host::run(&crate::bench_host::HostPlan {
            runs: plan.runs,
            quick: plan.quick,
            peer: plan.peer,
            binding: plan.binding,
        })?;
        println!("{}", host.table);
        let _ = write!(
            report,
            "## Through a real host\n\n{}\n{HOST_NOTES}\n",
            host.table
        );
        failed.extend(host.missed);
    }
    if plan.wants("e2e") {
        e2e_section(&root, &plan, &mut report, &mut failed)?;
    }
    let out = root.join("target").join("bench-report.md");
    std::fs::create_dir_all(out.parent().expect("target dir"))?;
    std::fs::write(&out, report).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("bench: report written to {}", out.display());
    if !failed.is_empty() {
        eprintln!(
            "bench: {} target(s) missed: {}",
            failed.len(),
            failed.join("; ")
        );
        if plan.strict {
            bail!("{} target(s) missed", failed.len());
        }
    }
    Ok(())
}

/// The end-to-end queue section (`crate::bench_e2e`), appended to the report.
fn e2e_section(
    root: &Path,
    plan: &Plan,
    report: &mut String,
    failed: &mut Vec<String>,
) -> Result<()> {
    let e2e = crate::bench_e2e::run(
        root,
        &crate::bench_e2e::E2ePlan {
            runs: plan.runs,
            quick: plan.quick,
        },
    )?;
    println!("{}", e2e.table);
    let _ = write!(
        report,
        "## End to end\n\n{}\n{}\n",
        e2e.table,
        crate::bench_e2e::E2E_NOTES
    );
    failed.extend(e2e.missed);
    Ok(())
}

/// The cross-process figures through the `honker` binary: the report's text and the missed
/// targets.
fn core_section(root: &Path, plan: &Plan) -> Result<(String, Vec<String>)> {
    let honker = build_honker(root)?;
    let work = std::env::temp_dir().join(format!("honker-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let bench = Bench {
        honker,
        work: work.clone(),
        plan: plan.clone(),
    };
    let result = bench.measure();
    let _ = std::fs::remove_dir_all(&work);
    let samples = result?;

    let rows = samples.table();
    let table = render(&rows);
    let text = format!(
        "{}\n\n{table}\n{}\n{}{}\n{}\n",
        header(plan, &samples),
        NOTES,
        crate::bench_liveness::REDELIVERY_NOTES,
        QUEUE_NOTES,
        STREAM_NOTES
    );
    println!("{table}");
    let failed = rows
        .iter()
        .filter(|r| r.pass == Some(false))
        .map(|r| r.figure.clone())
        .collect();
    Ok((text, failed))
}

const HOST_NOTES: &str = "\
Method (`xtask/scripts/host_bench.py`):
- ext: `libhonker_ext.so` loaded into a stdlib `sqlite3` connection of Debian's `python3`, then `SELECT honker_setup()`; every operation is a call of honker's SQL functions, results parsed from their JSON as a binding does.
- raw: the same host, the PRAGMAs `honker_setup()` applies, honker's own tables and indexes (DDL read from a file the extension created in the same run), and plain SQL of the same shape (INSERT; the claim's UPDATE ... LIMIT n RETURNING; DELETE per job, in one transaction for a batch; SELECT pages). Claims and replay decode each payload with `json.loads` on the raw side too, since every consumer needs them decoded and the other variants hand them over decoded.
- binding (with `--binding`): honker's Python binding (`bindings/python`, installed in a venv of the same `python3`) through its API: `enqueue`, `transaction()`, `claim` + `ack` / `ack_many`, `notify`, `publish`, `read`, `listen`, `claim_wait`.
- honker 0.5 (with `--peer`): its Python package's API in its own interpreter, one call per operation.
- Every measurement is a child process on a fresh file; the variant that goes first rotates between runs. Enqueue/notify/publish: 5,000 operations (enqueue 100/tx: 50,000). Wake: a sender paced 2-6 ms apart takes `time.monotonic_ns()` before BEGIN and commits one notification / job carrying it; the listener blocked in `honker_listen_wait` / `honker_claim_wait` (raw: `PRAGMA data_version` polled every 1 ms, then the SELECT / claim) subtracts it on return; 20 warm-up samples dropped, 300 kept.
- sqlite3 CLI row: one script of 5,000 autocommit `SELECT honker_enqueue(...)` (after `.load` and `honker_setup()`) against 5,000 raw INSERTs after the same PRAGMAs, the whole `sqlite3` process timed.
";

const NOTES: &str = "\
Method:
- Each figure is the median over the runs; each run measures honker and its baseline back to back (alternating which goes first).
- Wake latency: a publisher process commits paced notifications (gaps jittered +-25% around the mean, so sends do not phase-lock with the 1 ms poll), each carrying its send time (`SystemTime`, taken before the commit, so the commit is included); the listener process subtracts it from its receive time. The first 20 are warm-up.
  Baseline: the same publisher, and a listener that is a bare rusqlite loop polling `PRAGMA data_version` every 1 ms and then SELECTing: the physical limit of the DataVersion backend.
- Same-process wake: publisher and listener threads in one process, through `notify()` in a short transaction, `COMMIT`, then `kick_after_commit` (what `notify()` does by itself in autocommit; the Hub's kick wakes the `Listener`).
  The target applies to commit -> listener (the wake itself: kick, thread wake-up, the listener's SELECT); `commit incl.` also counts the write and commit, as the cross-process figures do.
  Baseline: a raw INSERT, then a std channel message to the reader thread, which SELECTs.
- Idle CPU: on-CPU time of the whole process (all threads, `/proc/<pid>/task/*/schedstat`, or utime+stime from `/proc/<pid>/stat` where schedstat is absent) over the window, after a 1 s settle.
  Baseline: a bare loop running a prepared `PRAGMA data_version` every 1 ms.
- Wake backends (`wake <backend>` rows): the same paced publisher against `honker bench-wake-listener --backend <backend>` (a Listener whose wake source is that backend from the Hub); baseline: the raw 1 ms `data_version` listener above. Idle CPU: a parked listener per backend and the raw 1 ms poll loop, all measured in one window, in ms of CPU per second.
- Throughput: one notification per autocommit transaction (WAL, synchronous=NORMAL), vs one raw INSERT of the same row per autocommit transaction on a connection with the same settings.";

/// Where the figures come from.
#[derive(Debug)]
struct Bench {
    honker: PathBuf,
    work: PathBuf,
    plan: Plan,
}

/// Latency percentiles of one run, nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// One figure's samples: honker's and its raw baseline's, one entry per run each.
#[derive(Debug)]
struct Paired<T> {
    honker: Vec<T>,
    raw: Vec<T>,
}

impl<T> Default for Paired<T> {
    fn default() -> Self {
        Paired {
            honker: Vec::new(),
            raw: Vec::new(),
        }
    }
}

impl<T> Paired<T> {
    /// Record one run's sample, honker's or (`raw`) the baseline's.
    fn push(&mut self, raw: bool, sample: T) {
        if raw {
            self.raw.push(sample);
        } else {
            self.honker.push(sample);
        }
    }
}

/// Everything measured, one entry per run.
#[derive(Debug, Default)]
struct Samples {
    cross: Paired<Latency>,
    /// Same process, from before the write (commit included).
    same: Paired<Latency>,
    /// Same process, from the end of the commit: the wake itself.
    same_wake: Paired<Latency>,
    idle_parked: Vec<f64>,
    idle_open: Vec<f64>,
    idle_raw: Vec<f64>,
    notify_ops: Vec<f64>,
    raw_ops: Vec<f64>,
    /// The queue's figures (see `measure_queue`).
    queue: QueueSamples,
    /// The stream's figures (see `measure_stream`).
    stream: StreamSamples,
    cpu_source: &'static str,
    /// Per wake backend ([`WAKE_BACKENDS`]): cross-process latency and idle CPU (% of a core).
    wake: [Vec<Latency>; 4],
    wake_idle: [Vec<f64>; 4],
    /// The raw `data_version` poll loop, idle, measured in the same window as `wake_idle`.
    wake_idle_raw: Vec<f64>,
    /// Nanoseconds from a holder's `kill -9` until another process held all its jobs: through
    /// liveness, and (`raw`) at lease expiry with liveness unavailable (`crate::bench_liveness`).
    redelivery: Paired<f64>,
    /// The taker's wake backend in the redelivery rounds.
    redelivery_backend: String,
}

impl Bench {
    fn measure(&self) -> Result<Samples> {
        let mut s = Samples::default();
        let runs = self.plan.runs;
        for run in 0..runs {
            let tag = format!("run {}/{runs}", run + 1);
            let flip = run % 2 == 1;

            for raw in order(flip) {
                let l = self.cross_process(run, raw)?;
                progress(
                    &tag,
                    &format!("cross-process wake{}", suffix(raw)),
                    &lat(&l),
                );
                s.cross.push(raw, l);
            }
            for raw in order(flip) {
                let (incl, wake) = self.same_process(run, raw)?;
                progress(
                    &tag,
                    &format!("same-process wake from commit{}", suffix(raw)),
                    &lat(&wake),
                );
                s.same.push(raw, incl);
                s.same_wake.push(raw, wake);
            }
            let (parked, open, raw, source) = self.idle(run)?;
            s.cpu_source = source;
            progress(
                &tag,
                "idle CPU",
                &format!("parked {parked:.3}%  open {open:.3}%  raw poll {raw:.3}%"),
            );
            s.idle_parked.push(parked);
            s.idle_open.push(open);
            s.idle_raw.push(raw);
            for raw in order(flip) {
                let ops = self.throughput(run, raw)?;
                progress(
                    &tag,
                    &format!("throughput{}", suffix(raw)),
                    &format!("{ops:.0} ops/s"),
                );
                if raw {
                    s.raw_ops.push(ops);
                } else {
                    s.notify_ops.push(ops);
                }
            }
            self.measure_queue(run, flip, &tag, &mut s.queue)?;
            self.measure_stream(run, flip, &tag, &mut s.stream)?;
            self.wake_backends(run, &tag, &mut s)?;
        }
        Ok(s)
    }

    fn db(&self, name: &str, run: usize) -> PathBuf {
        self.work.join(format!("{name}-{run}.db"))
    }

    fn honker(&self) -> Command {
        let mut c = Command::new(&self.honker);
        c.stderr(Stdio::inherit());
        c
    }

    /// Create the database (schema included) before any helper touches it.
    fn fresh_db(&self, name: &str, run: usize) -> Result<PathBuf> {
        let db = self.db(name, run);
        let out = self
            .honker()
            .arg("migrate")
            .arg("--db")
            .arg(&db)
            .stdout(Stdio::null())
            .status()?;
        if !out.success() {
            bail!("honker migrate --db {} failed", db.display());
        }
        Ok(db)
    }

    fn cross_process(&self, run: usize, raw: bool) -> Result<Latency> {
        let db = self.fresh_db(if raw { "cross-raw" } else { "cross" }, run)?;
        self.paced_latency(
            &db,
            ("bench-listener", raw_flag(raw)),
            ("bench-publisher", &[]),
        )
    }

    /// One cross-process latency measurement on `db`: start `receiver` (a hidden `honker bench-*`
    /// command that says `ready`, then `result ...` once it has its samples), then run `sender`,
    /// which paces one message per `cross_interval_us` at it. Each is a command name and its
    /// extra arguments.
    fn paced_latency(
        &self,
        db: &Path,
        receiver: (&'static str, &[&str]),
        sender: (&'static str, &[&str]),
    ) -> Result<Latency> {
        let mut cmd = self.honker();
        cmd.arg(receiver.0)
            .arg("--db")
            .arg(db)
            .args(["--count", &self.plan.latency_samples.to_string()])
            .args(receiver.1);
        let mut rx = Helper::spawn(cmd, receiver.0)?;
        rx.wait_line("ready")?;
        let mut cmd = self.honker();
        cmd.arg(sender.0)
            .arg("--db")
            .arg(db)
            .args(["--count", &(self.plan.latency_samples + 20).to_string()])
            .args(["--interval-us", &self.plan.cross_interval_us.to_string()])
            .args(sender.1);
        let mut tx = Helper::spawn(cmd, sender.0)?;
        tx.wait_line("result")?;
        tx.finish()?;
        let line = rx.wait_line("result")?;
        rx.finish()?;
        latency_of(&line, "")
    }

    /// (from before the write, from the end of the commit)
    fn same_process(&self, run: usize, raw: bool) -> Result<(Latency, Latency)> {
        let db = self.fresh_db(if raw { "same-raw" } else { "same" }, run)?;
        let mut cmd = self.honker();
        cmd.arg("bench-same-process")
            .arg("--db")
            .arg(&db)
            .args(["--count", &self.plan.latency_samples.to_string()])
            .args(["--interval-us", &self.plan.same_interval_us.to_string()]);
        if raw {
            cmd.arg("--raw");
        }
        let mut h = Helper::spawn(cmd, "bench-same-process")?;
        let line = h.wait_line("result")?;
        h.finish()?;
        Ok((latency_of(&line, "")?, latency_of(&line, "c_")?))
    }

    /// CPU percent of one core for (parked listener, open db without waiters, raw poll loop).
    fn idle(&self, run: usize) -> Result<(f64, f64, f64, &'static str)> {
        let mut helpers = Vec::new();
        for mode in ["parked", "open", "raw-poll"] {
            let db = self.fresh_db(&format!("idle-{mode}"), run)?;
            let mut cmd = self.honker();
            cmd.arg("bench-idle")
                .arg("--db")
                .arg(&db)
                .args(["--mode", mode]);
            let mut h = Helper::spawn(cmd, "bench-idle")?;
            h.wait_line("ready")?;
            helpers.push(h);
        }
        // Let start-up work (schema checks, watcher start) finish before measuring.
        thread::sleep(Duration::from_secs(1));
        let mut before = Vec::new();
        let mut source = "";
        for h in &helpers {
            let (ns, src) = cpu_ns(h.child.id())?;
            before.push(ns);
            source = src;
        }
        let start = Instant::now();
        thread::sleep(self.plan.idle_window);
        let mut pct = Vec::new();
        for (h, b) in helpers.iter().zip(&before) {
            let (ns, _) = cpu_ns(h.child.id())?;
            pct.push((ns - b) as f64 / start.elapsed().as_nanos() as f64 * 100.0);
        }
        for h in helpers {
            h.finish()?;
        }
        Ok((pct[0], pct[1], pct[2], source))
    }

    fn throughput(&self, run: usize, raw: bool) -> Result<f64> {
        let db = self.fresh_db(if raw { "tput-raw" } else { "tput" }, run)?;
        let mut cmd = self.honker();
        cmd.arg("bench-throughput")
            .arg("--db")
            .arg(&db)
            .args(["--count", &self.plan.throughput_ops.to_string()])
            .args(["--mode", if raw { "raw" } else { "notify" }]);
        let mut h = Helper::spawn(cmd, "bench-throughput")?;
        let line = h.wait_line("result")?;
        h.finish()?;
        field(&line, "ops_per_s")
    }
}

fn order(flip: bool) -> [bool; 2] {
    if flip { [true, false] } else { [false, true] }
}

fn suffix(raw: bool) -> &'static str {
    if raw { " (raw baseline)" } else { "" }
}

fn progress(tag: &str, what: &str, value: &str) {
    eprintln!("bench: {tag}: {what}: {value}");
}

fn lat(l: &Latency) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  max {}",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.max)
    )
}

fn ms(ns: f64) -> String {
    if ns < 100_000.0 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{:.3} ms", ns / 1e6)
    }
}

/// A helper process and the lines of its stdout.
#[derive(Debug)]
pub(crate) struct Helper {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// How long [`wait_line`](Helper::wait_line) waits ([`HELPER_DEADLINE`] unless set).
    deadline: Duration,
}

impl Helper {
    pub(crate) fn spawn(mut cmd: Command, name: &'static str) -> Result<Helper> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start honker {name}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("helper stdout")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Helper {
            name,
            child,
            stdin,
            lines: rx,
            deadline: HELPER_DEADLINE,
        })
    }

    /// Wait up to `deadline` for each line instead (helpers with long runs).
    pub(crate) fn with_deadline(mut self, deadline: Duration) -> Helper {
        self.deadline = deadline;
        self
    }

    /// Write one line to the helper's stdin.
    pub(crate) fn say(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("helper stdin")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// The next line starting with `word`, skipping others.
    pub(crate) fn wait_line(&mut self, word: &str) -> Result<String> {
        let limit = self.deadline;
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.split_whitespace().next() == Some(word) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "honker {} printed no `{word}` line within {limit:?}",
                        self.name
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!(
                        "honker {} exited ({status}) before printing `{word}`",
                        self.name
                    )
                }
            }
        }
    }

    /// Close stdin (which ends idle helpers) and wait for a successful exit.
    pub(crate) fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            bail!("honker {} failed ({status})", self.name);
        }
        Ok(())
    }

    /// `kill -9` the helper (a crash, not a shutdown) and reap it.
    pub(crate) fn kill9(mut self) -> Result<()> {
        self.child
            .kill()
            .with_context(|| format!("cannot kill honker {}", self.name))?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Only reached with the child still running when an error cut the run short.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn field(line: &str, key: &str) -> Result<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .with_context(|| format!("no {key}= in {line:?}"))?
        .parse()
        .with_context(|| format!("bad {key} in {line:?}"))
}

/// The percentiles in a result line, keys prefixed with `prefix`.
/// The `--raw` flag of a bench helper when measuring the raw baseline.
fn raw_flag(raw: bool) -> &'static [&'static str] {
    if raw { &["--raw"] } else { &[] }
}

fn latency_of(line: &str, prefix: &str) -> Result<Latency> {
    let get = |k: &str| field(line, &format!("{prefix}{k}"));
    Ok(Latency {
        p50: get("p50_ns")?,
        p90: get("p90_ns")?,
        p99: get("p99_ns")?,
        max: get("max_ns")?,
    })
}

/// Total on-CPU nanoseconds of process `pid`, all threads, and where the figure came from.
fn cpu_ns(pid: u32) -> Result<(u64, &'static str)> {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let mut total = 0u64;
    let mut any = false;
    if let Ok(entries) = std::fs::read_dir(&tasks) {
        for e in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = text
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
            {
                total += ns;
                any = true;
            }
        }
    }
    if any && total > 0 {
        return Ok((total, "schedstat"));
    }
    // utime + stime in clock ticks; 100 per second on every Linux we target (USER_HZ).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .context("unexpected /proc/pid/stat")?
        .1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).context("no utime")?.parse::<u64>()?
        + f.get(12).context("no stime")?.parse::<u64>()?;
    Ok((ticks * 10_000_000, "/proc/pid/stat utime+stime"))
}

/// One line of the table.
#[derive(Debug)]
struct Row {
    figure: String,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
    /// `None` for figures without a target.
    pass: Option<bool>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Picks one percentile out of a run's [`Latency`].
type Pick = fn(&Latency) -> f64;

fn med(v: &[Latency], f: Pick) -> f64 {
    median(&v.iter().map(f).collect::<Vec<_>>())
}

impl Samples {
    fn table(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let lat_row = |figure: &str, v: f64, b: f64, target_ms: Option<f64>| Row {
            figure: figure.into(),
            value: ms(v),
            baseline: ms(b),
            ratio: format!("{:.2}x", v / b),
            target: target_ms.map_or("-".into(), |t| format!("<= {}", ms(t * 1e6))),
            pass: target_ms.map(|t| v <= t * 1e6),
        };
        let fields: [(&str, Pick); 4] = [
            ("p50", |l| l.p50),
            ("p90", |l| l.p90),
            ("p99", |l| l.p99),
            ("max", |l| l.max),
        ];
        for (name, f) in fields {
            let target = match name {
                "p50" => Some(0.7),
                "p99" => Some(2.0),
                _ => None,
            };
            rows.push(lat_row(
                &format!("cross-process wake {name} (DataVersion 1 ms, commit incl.)"),
                med(&self.cross.honker, f),
                med(&self.cross.raw, f),
                target,
            ));
        }
        for (name, f) in [fields[0], fields[2]] {
            let target = (name == "p50").then_some(0.05);
            rows.push(lat_row(
                &format!("same-process wake {name}, commit -> listener (Hub kick)"),
                med(&self.same_wake.honker, f),
                med(&self.same_wake.raw, f),
                target,
            ));
        }
        rows.push(lat_row(
            "same-process wake p50, commit incl.",
            med(&self.same.honker, fields[0].1),
            med(&self.same.raw, fields[0].1),
            None,
        ));
        let raw_idle = median(&self.idle_raw);
        let parked = median(&self.idle_parked);
        rows.push(Row {
            figure: "idle CPU, open db + parked listener".into(),
            value: format!("{parked:.3}% CPU"),
            baseline: format!("{raw_idle:.3}% CPU"),
            ratio: format!("{:.2}x", parked / raw_idle),
            target: "<= 1.20x".into(),
            pass: Some(parked <= 1.2 * raw_idle),
        });
        let open = median(&self.idle_open);
        rows.push(Row {
            figure: "idle CPU, open db + wake source, no waiter".into(),
            value: format!("{open:.3}% CPU"),
            baseline: format!("{raw_idle:.3}% CPU"),
            ratio: format!("{:.2}x", open / raw_idle),
            target: "~0 (<= 0.05% CPU)".into(),
            pass: Some(open <= 0.05),
        });
        self.wake_rows(&mut rows);
        let n = median(&self.notify_ops);
        let r = median(&self.raw_ops);
        rows.push(Row {
            figure: "notify throughput, 1 per transaction".into(),
            value: format!("{n:.0} ops/s"),
            baseline: format!("{r:.0} ops/s"),
            ratio: format!("{:.2}x", n / r),
            target: ">= 0.80x".into(),
            pass: Some(n >= 0.8 * r),
        });
        self.queue.rows(&mut rows, &lat_row);
        self.stream.rows(&mut rows, &lat_row);
        rows
    }
}

/// The wake backends `cargo xtask bench` compares, by the names `honker bench-wake-*` take.
/// The last, `bare`, is no backend: `honker bench-wake-bare`, the kernel backend's baseline.
const WAKE_BACKENDS: [&str; 4] = ["data_version", "stat", "kernel", BARE];

/// The bare inotify-and-`data_version` loop (no honker code), measured beside the backends.
const BARE: &str = "bare";

/// The listener and idle commands of one entry of [`WAKE_BACKENDS`].
fn wake_cmds(backend: &'static str) -> [(&'static str, Vec<&'static str>); 2] {
    if backend == BARE {
        [
            ("bench-wake-bare", vec![]),
            ("bench-wake-bare", vec!["--idle"]),
        ]
    } else {
        [
            ("bench-wake-listener", vec!["--backend", backend]),
            ("bench-wake-idle", vec!["--backend", backend]),
        ]
    }
}

impl Bench {
    /// Cross-process latency through each wake backend (the shared `bench-publisher` against
    /// `bench-wake-listener --backend B`), then the idle CPU of a parked listener on each backend
    /// and of the raw poll loop, all in one window.
    fn wake_backends(&self, run: usize, tag: &str, s: &mut Samples) -> Result<()> {
        let mut order: Vec<usize> = (0..WAKE_BACKENDS.len()).collect();
        order.rotate_left(run % WAKE_BACKENDS.len());
        for i in order {
            let backend = WAKE_BACKENDS[i];
            let db = self.fresh_db(&format!("wake-{backend}"), run)?;
            let [(listener, args), _] = wake_cmds(backend);
            let l = self.paced_latency(&db, (listener, &args), ("bench-publisher", &[]))?;
            progress(
                tag,
                &format!("wake backend {backend}: cross-process"),
                &lat(&l),
            );
            s.wake[i].push(l);
        }
        let mut helpers = Vec::new();
        for backend in WAKE_BACKENDS {
            let db = self.fresh_db(&format!("wake-idle-{backend}"), run)?;
            let [_, (idle, args)] = wake_cmds(backend);
            let mut cmd = self.honker();
            cmd.arg(idle).arg("--db").arg(&db).args(args);
            let mut h = Helper::spawn(cmd, idle)?;
            h.wait_line("ready")?;
            helpers.push(h);
        }
        let db = self.fresh_db("wake-idle-raw", run)?;
        let mut cmd = self.honker();
        cmd.arg("bench-idle")
            .arg("--db")
            .arg(&db)
            .args(["--mode", "raw-poll"]);
        let mut h = Helper::spawn(cmd, "bench-idle")?;
        h.wait_line("ready")?;
        helpers.push(h);
        // Let start-up work finish before measuring.
        thread::sleep(Duration::from_secs(1));
        let before: Vec<u64> = helpers
            .iter()
            .map(|h| cpu_ns(h.child.id()).map(|c| c.0))
            .collect::<Result<_>>()?;
        let start = Instant::now();
        thread::sleep(self.plan.idle_window);
        let mut pct = Vec::new();
        for (h, b) in helpers.iter().zip(&before) {
            let (ns, _) = cpu_ns(h.child.id())?;
            pct.push((ns - b) as f64 / start.elapsed().as_nanos() as f64 * 100.0);
        }
        for h in helpers {
            h.finish()?;
        }
        for (i, p) in pct.iter().take(WAKE_BACKENDS.len()).enumerate() {
            s.wake_idle[i].push(*p);
        }
        let raw = pct[WAKE_BACKENDS.len()];
        s.wake_idle_raw.push(raw);
        self.redelivery(run, tag, s)?;
        progress(
            tag,
            "wake backends: idle CPU (ms/s)",
            &format!(
                "data_version {:.3}  stat {:.3}  kernel {:.3}  bare inotify {:.3}  raw poll {:.3}",
                pct[0] * 10.0,
                pct[1] * 10.0,
                pct[2] * 10.0,
                pct[3] * 10.0,
                raw * 10.0
            ),
        );
        Ok(())
    }
}

impl Bench {
    /// One redelivery round with liveness and one at lease expiry without it, alternating which
    /// goes first (see `crate::bench_liveness`).
    fn redelivery(&self, run: usize, tag: &str, s: &mut Samples) -> Result<()> {
        for raw in order(run % 2 == 1) {
            let db = self.fresh_db(if raw { "redeliver-lease" } else { "redeliver" }, run)?;
            let (ns, backend) = crate::bench_liveness::round(&self.honker, &db, !raw)?;
            progress(
                tag,
                &format!(
                    "redelivery after kill -9, all {} jobs back{}",
                    crate::bench_liveness::JOBS,
                    if raw {
                        " (lease expiry, no liveness)"
                    } else {
                        " (liveness)"
                    }
                ),
                &ms(ns),
            );
            s.redelivery.push(raw, ns);
            s.redelivery_backend = backend;
        }
        Ok(())
    }
}

impl Samples {
    /// Redelivery after `kill -9` through liveness against lease expiry without it (p50 and
    /// max over the runs); the bound is 100 ms for every round.
    fn redelivery_rows(&self, rows: &mut Vec<Row>) {
        use crate::bench_liveness::{BASELINE_LEASE_MS, JOBS, LEASE_MS};
        let r = &self.redelivery;
        if r.honker.is_empty() || r.raw.is_empty() {
            return;
        }
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        for (name, v, b) in [
            ("p50", median(&r.honker), median(&r.raw)),
            ("max", max(&r.honker), max(&r.raw)),
        ] {
            let target = (name == "max").then_some(100.0);
            rows.push(Row {
                figure: format!(
                    "redelivery after kill -9: all {JOBS} jobs held by another worker, {name} \
                     (liveness, {} min lease, {} wake; baseline: lease expiry, no liveness, {} s lease)",
                    LEASE_MS / 60_000,
                    self.redelivery_backend,
                    BASELINE_LEASE_MS / 1000
                ),
                value: ms(v),
                baseline: ms(b),
                ratio: format!("{:.4}x", v / b),
                target: target.map_or("-".into(), |t| format!("<= {}", ms(t * 1e6))),
                pass: target.map(|t| v <= t * 1e6),
            });
        }
    }
}

impl Samples {
    /// Per backend: cross-process latency p50/p90/p99/max against the raw 1 ms `data_version`
    /// listener, and idle CPU of a parked listener against the raw poll loop.
    fn wake_rows(&self, rows: &mut Vec<Row>) {
        let fields: [(&str, Pick); 4] = [
            ("p50", |l| l.p50),
            ("p90", |l| l.p90),
            ("p99", |l| l.p99),
            ("max", |l| l.max),
        ];
        self.bare_rows(rows);
        let dv_idle = median(&self.wake_idle[0]);
        let raw_idle = median(&self.wake_idle_raw);
        for (i, backend) in WAKE_BACKENDS.iter().enumerate() {
            for (name, f) in fields {
                let v = med(&self.wake[i], f);
                let b = med(&self.cross.raw, f);
                let target_ms = (*backend == "kernel" && name == "p50").then_some(0.1);
                rows.push(Row {
                    figure: if *backend == BARE {
                        format!("wake bare inotify loop (no honker): cross-process {name}")
                    } else {
                        format!("wake {backend}: cross-process {name} (commit incl.)")
                    },
                    value: ms(v),
                    baseline: ms(b),
                    ratio: format!("{:.2}x", v / b),
                    target: target_ms.map_or("-".into(), |t| format!("<= {}", ms(t * 1e6))),
                    pass: target_ms.map(|t| v <= t * 1e6),
                });
            }
            let idle = median(&self.wake_idle[i]);
            let (target, pass) = match *backend {
                "kernel" => ("<= 0.200 ms/s".to_string(), Some(idle * 10.0 <= 0.2)),
                "stat" => (
                    format!("<= data_version ({:.3} ms/s)", dv_idle * 10.0),
                    Some(idle <= dv_idle),
                ),
                _ => ("-".to_string(), None),
            };
            rows.push(Row {
                figure: if *backend == BARE {
                    "wake bare inotify loop (no honker): idle CPU".to_string()
                } else {
                    format!("wake {backend}: idle CPU, parked listener")
                },
                value: format!("{:.3} ms/s", idle * 10.0),
                baseline: format!("{:.3} ms/s", raw_idle * 10.0),
                ratio: format!("{:.2}x", idle / raw_idle),
                target,
                pass,
            });
        }
        self.redelivery_rows(rows);
    }
}

impl Samples {
    /// The kernel backend against the bare inotify loop of the same run (p50, p99).
    fn bare_rows(&self, rows: &mut Vec<Row>) {
        let kernel = WAKE_BACKENDS.iter().position(|b| *b == "kernel");
        let bare = WAKE_BACKENDS.iter().position(|b| *b == BARE);
        let (Some(k), Some(b)) = (kernel, bare) else {
            return;
        };
        for (name, f) in [("p50", (|l| l.p50) as Pick), ("p99", |l| l.p99)] {
            let (v, base) = (med(&self.wake[k], f), med(&self.wake[b], f));
            rows.push(Row {
                figure: format!("wake kernel vs bare inotify loop: cross-process {name}"),
                value: ms(v),
                baseline: ms(base),
                ratio: format!("{:.2}x", v / base),
                target: "-".into(),
                pass: None,
            });
        }
    }
}

/// `--only wake`: the wake backends and the bare inotify loop alone (with the raw 1 ms
/// `data_version` listener their rows compare against), for iterating on the wake path.
fn wake_section(root: &Path, plan: &Plan) -> Result<(String, Vec<String>)> {
    let honker = build_honker(root)?;
    let work = std::env::temp_dir().join(format!("honker-bench-wake-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let bench = Bench {
        honker,
        work: work.clone(),
        plan: plan.clone(),
    };
    let measure = || -> Result<Samples> {
        let mut s = Samples::default();
        for run in 0..plan.runs {
            let tag = format!("run {}/{}", run + 1, plan.runs);
            let l = bench.cross_process(run, true)?;
            progress(&tag, "cross-process wake (raw)", &lat(&l));
            s.cross.push(true, l);
            bench.wake_backends(run, &tag, &mut s)?;
        }
        Ok(s)
    };
    let result = measure();
    let _ = std::fs::remove_dir_all(&work);
    let samples = result?;
    let mut rows = Vec::new();
    samples.wake_rows(&mut rows);
    let table = render(&rows);
    println!("{table}");
    let failed = rows
        .iter()
        .filter(|r| r.pass == Some(false))
        .map(|r| r.figure.clone())
        .collect();
    Ok((
        format!(
            "## Wake backends\n\n{table}\nMethod:\n{}",
            crate::bench_liveness::REDELIVERY_NOTES
        ),
        failed,
    ))
}

fn render(rows: &[Row]) -> String {
    let head = ["figure", "value", "baseline", "ratio", "target", "result"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.figure.clone(),
                r.value.clone(),
                r.baseline.clone(),
                r.ratio.clone(),
                r.target.clone(),
                match r.pass {
                    Some(true) => "pass".into(),
                    Some(false) => "FAIL".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let padded: Vec<String> = cols
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = String::new();
    out.push_str(&line(&head.map(String::from)));
    out.push('\n');
    let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

fn header(plan: &Plan, s: &Samples) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Measured at unix time {secs} on {cores} cores: medians of {} runs; {} latency samples per run \
         (cross-process sends every ~{} us, same-process every ~{} us); idle window {:?} (CPU from {}); \
         {} transactions per throughput run.",
        plan.runs,
        plan.latency_samples,
        plan.cross_interval_us,
        plan.same_interval_us,
        plan.idle_window,
        s.cpu_source,
        plan.throughput_ops
    )
}

/// The repository root (the parent of this crate's directory).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// Build the release `honker` binary and return its path.
pub(crate) fn build_honker(root: &Path) -> Result<PathBuf> {
    eprintln!("bench: cargo build --release -p honker-cli");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "honker-cli"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release -p honker-cli failed ({status})");
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => root.join(t),
        None => root.join("target"),
    };
    let bin = target.join("release").join("honker");
    if !bin.is_file() {
        bail!("built honker not found at {}", bin.display());
    }
    std::io::stderr().flush()?;
    Ok(bin)
}

const QUEUE_NOTES: &str = "\
Queue (honker-queue, driven through `honker bench-queue-*` processes):
- Enqueue -> handler start: a producer process enqueues paced jobs (same pacing as the wake figures), each carrying its send time taken before the commit; a worker process running a `Worker` (1 handler thread, queue otherwise empty, so depth 0-1) subtracts it when its handler starts.
  Baseline: the same producer doing a raw INSERT into `honker_jobs`, and a worker that is a bare rusqlite loop polling `PRAGMA data_version` every 1 ms, then claiming with `UPDATE ... RETURNING` and deleting.
- Enqueue throughput: `Queue::enqueue` 1 job per `BEGIN IMMEDIATE` transaction, and 100 per transaction, vs prepared raw INSERTs of the same rows into `honker_jobs`.
- Claim + ack throughput, depth = the number of jobs drained (5000, or 50000 for batches of 128; 1000/10000 with --quick), filled untimed: `Queue::claim` of 1 then `Queue::ack` (two transactions per job), and `Queue::claim` of 128 then one `ack_batch`, each vs the same loop in raw SQL (`UPDATE ... RETURNING` of 1 or 128, then `DELETE`s in one transaction).
  Through the runtime: the queue is drained by a `Worker` with 1 handler thread and batch 1 (one claim transaction and one ack transaction per job, plus the hand-over between its threads), vs a raw loop of `UPDATE ... RETURNING` (the same claim statement shape, one job) and `DELETE` on one connection.";

/// Everything the queue rows need, one entry per run.
#[derive(Debug, Default)]
struct QueueSamples {
    latency: Paired<Latency>,
    enqueue_1: Paired<f64>,
    enqueue_100: Paired<f64>,
    drain: Paired<f64>,
    /// `Queue::claim` + `Queue::ack` loops, by batch size (1, 128).
    direct_1: Paired<f64>,
    direct_128: Paired<f64>,
}

impl Bench {
    /// The queue's figures for one run, each against its raw baseline.
    fn measure_queue(&self, run: usize, flip: bool, tag: &str, q: &mut QueueSamples) -> Result<()> {
        for raw in order(flip) {
            let l = self.queue_latency(run, raw)?;
            progress(
                tag,
                &format!("queue enqueue -> handler{}", suffix(raw)),
                &lat(&l),
            );
            q.latency.push(raw, l);
        }
        for batch in [1usize, 100] {
            for raw in order(flip) {
                let ops = self.queue_enqueue(run, batch, raw)?;
                progress(
                    tag,
                    &format!("queue enqueue, {batch} per transaction{}", suffix(raw)),
                    &format!("{ops:.0} jobs/s"),
                );
                let v = if batch == 1 {
                    &mut q.enqueue_1
                } else {
                    &mut q.enqueue_100
                };
                v.push(raw, ops);
            }
        }
        for raw in order(flip) {
            let ops = self.queue_drain(run, raw, None)?;
            progress(
                tag,
                &format!("queue claim + ack via Worker{}", suffix(raw)),
                &format!("{ops:.0} jobs/s"),
            );
            q.drain.push(raw, ops);
        }
        for batch in [1usize, 128] {
            for raw in order(flip) {
                let ops = self.queue_drain(run, raw, Some(batch))?;
                progress(
                    tag,
                    &format!("queue claim {batch} + ack {batch}{}", suffix(raw)),
                    &format!("{ops:.0} jobs/s"),
                );
                let v = if batch == 1 {
                    &mut q.direct_1
                } else {
                    &mut q.direct_128
                };
                v.push(raw, ops);
            }
        }
        Ok(())
    }

    fn queue_latency(&self, run: usize, raw: bool) -> Result<Latency> {
        let db = self.fresh_db(if raw { "qlat-raw" } else { "qlat" }, run)?;
        self.paced_latency(
            &db,
            ("bench-queue-worker", raw_flag(raw)),
            ("bench-queue-producer", raw_flag(raw)),
        )
    }

    fn queue_enqueue(&self, run: usize, batch: usize, raw: bool) -> Result<f64> {
        let name = format!("qenq{batch}{}", if raw { "-raw" } else { "" });
        let db = self.fresh_db(&name, run)?;
        let mut cmd = self.honker();
        cmd.arg("bench-queue-enqueue")
            .arg("--db")
            .arg(&db)
            .args([
                "--count",
                &(self.plan.throughput_ops * batch.min(10)).to_string(),
            ])
            .args(["--batch", &batch.to_string()]);
        if raw {
            cmd.arg("--raw");
        }
        let mut h = Helper::spawn(cmd, "bench-queue-enqueue")?;
        let line = h.wait_line("result")?;
        h.finish()?;
        field(&line, "ops_per_s")
    }

    /// Drain throughput: through a `Worker` (`direct: None`), or `Queue::claim`/`ack` loops
    /// claiming `Some(batch)` jobs at a time.
    fn queue_drain(&self, run: usize, raw: bool, direct: Option<usize>) -> Result<f64> {
        let name = format!(
            "qdrain{}{}",
            direct.map_or(String::new(), |b| format!("-direct{b}")),
            if raw { "-raw" } else { "" }
        );
        let db = self.fresh_db(&name, run)?;
        let mut cmd = self.honker();
        let count = self.plan.throughput_ops * direct.map_or(1, |b| b.min(10));
        cmd.arg("bench-queue-drain")
            .arg("--db")
            .arg(&db)
            .args(["--count", &count.to_string()]);
        if raw {
            cmd.arg("--raw");
        }
        if let Some(b) = direct {
            cmd.args(["--batch", &b.to_string()]);
            if !raw {
                cmd.arg("--direct");
            }
        }
        let mut h = Helper::spawn(cmd, "bench-queue-drain")?;
        let line = h.wait_line("result")?;
        h.finish()?;
        field(&line, "ops_per_s")
    }
}

/// Makes a latency row: (figure, value ns, baseline ns, target ms).
type LatRow<'a> = &'a dyn Fn(&str, f64, f64, Option<f64>) -> Row;

/// The p50 row (held to `p50_target_ms`) and the p99 row of one cross-process latency figure,
/// honker's samples against the raw baseline's.
fn p50_p99_rows(
    rows: &mut Vec<Row>,
    lat_row: LatRow<'_>,
    [p50_label, p99_label]: [&str; 2],
    (honker, raw): (&[Latency], &[Latency]),
    p50_target_ms: f64,
) {
    let p50: Pick = |l| l.p50;
    let p99: Pick = |l| l.p99;
    rows.push(lat_row(
        p50_label,
        med(honker, p50),
        med(raw, p50),
        Some(p50_target_ms),
    ));
    rows.push(lat_row(p99_label, med(honker, p99), med(raw, p99), None));
}

impl QueueSamples {
    fn rows(&self, rows: &mut Vec<Row>, lat_row: LatRow<'_>) {
        if self.latency.honker.is_empty() {
            return;
        }
        p50_p99_rows(
            rows,
            lat_row,
            [
                "queue enqueue commit -> handler start p50 (cross-process, depth 0-1)",
                "queue enqueue commit -> handler start p99",
            ],
            (&self.latency.honker, &self.latency.raw),
            1.0,
        );
        let ops_row = |figure: &str, p: &Paired<f64>, min_ratio: f64| {
            let (v, b) = (median(&p.honker), median(&p.raw));
            Row {
                figure: figure.into(),
                value: format!("{v:.0} jobs/s"),
                baseline: format!("{b:.0} jobs/s"),
                ratio: format!("{:.2}x", v / b),
                target: format!(">= {min_ratio:.2}x"),
                pass: Some(v >= min_ratio * b),
            }
        };
        rows.push(ops_row(
            "queue enqueue, 1 job per transaction",
            &self.enqueue_1,
            0.8,
        ));
        rows.push(ops_row(
            "queue enqueue, 100 jobs per transaction",
            &self.enqueue_100,
            0.5,
        ));
        rows.push(ops_row(
            "queue claim 1 + ack 1 (Queue::claim/ack, two transactions per job)",
            &self.direct_1,
            0.7,
        ));
        rows.push(ops_row(
            "queue claim 128 + ack 128 (Queue::claim/ack_batch)",
            &self.direct_128,
            0.6,
        ));
        rows.push(ops_row(
            "queue claim + ack via Worker (1 thread, batch 1, two transactions per job)",
            &self.drain,
            0.7,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn fields_are_read_from_result_lines() {
        let line = "result n=10 p50_ns=600000 p90_ns=900000 p99_ns=1500000 max_ns=2000000 \
                    c_n=10 c_p50_ns=6 c_p90_ns=9 c_p99_ns=15 c_max_ns=20";
        let l = latency_of(line, "").unwrap();
        assert_eq!((l.p50, l.p99, l.max), (600_000.0, 1_500_000.0, 2_000_000.0));
        let c = latency_of(line, "c_").unwrap();
        assert_eq!((c.p50, c.p90, c.p99, c.max), (6.0, 9.0, 15.0, 20.0));
        assert!(field("result n=1", "ops_per_s").is_err());
    }

    #[test]
    fn bench_arguments_are_checked() {
        assert_eq!(Plan::parse(&["--runs".into(), "3".into()]).unwrap().runs, 3);
        assert!(Plan::parse(&["--runs".into(), "0".into()]).is_err());
        assert!(Plan::parse(&["--bogus".into()]).is_err());
    }
}

const STREAM_NOTES: &str = "\
Streams (honker-stream, driven through `honker bench-stream-*` processes):
- Publish -> subscriber delivery: a publisher process commits paced `publish()` calls (same pacing as the wake figures), each event carrying its send time taken before the commit; a subscriber process running a `Subscriber` (anonymous, from the latest offset, default DataVersion wake) subtracts it on receipt.
  Baseline: the same publisher, and a subscriber that is a bare rusqlite loop polling `PRAGMA data_version` every 1 ms, then SELECTing events after its last offset.
- Publish throughput and replay against raw rusqlite are criterion benches: `cargo bench -p honker-stream --bench stream`.";

/// Everything the stream rows need, one entry per run.
#[derive(Debug, Default)]
struct StreamSamples {
    latency: Paired<Latency>,
}

impl Bench {
    /// Cross-process publish -> subscriber delivery, honker and raw, in alternating order.
    fn measure_stream(
        &self,
        run: usize,
        flip: bool,
        tag: &str,
        st: &mut StreamSamples,
    ) -> Result<()> {
        for raw in order(flip) {
            let db = self.fresh_db(if raw { "stream-raw" } else { "stream" }, run)?;
            let l = self.paced_latency(
                &db,
                ("bench-stream-subscriber", raw_flag(raw)),
                ("bench-stream-publisher", &[]),
            )?;
            progress(
                tag,
                &format!("stream publish -> subscriber{}", suffix(raw)),
                &lat(&l),
            );
            st.latency.push(raw, l);
        }
        Ok(())
    }
}

impl StreamSamples {
    fn rows(&self, rows: &mut Vec<Row>, lat_row: LatRow<'_>) {
        if self.latency.honker.is_empty() {
            return;
        }
        p50_p99_rows(
            rows,
            lat_row,
            [
                "stream publish -> subscriber delivery p50 (cross-process, commit incl.)",
                "stream publish -> subscriber delivery p99",
            ],
            (&self.latency.honker, &self.latency.raw),
            1.0,
        );
    }
}
