//! `cargo xtask bench` section `e2e`: end-to-end queue throughput, enqueue to ack, with 2
//! producer processes and 4 worker processes (`honker bench-e2e-*`), in two modes: producers and
//! workers together, and a pure drain (producers first, then the workers alone). Three worker
//! shapes, each with every job verified acked exactly once:
//! - the `Worker` runtime (4 handler threads per process, batch 128), producers on
//!   `enqueue_batch` (transactions of 100);
//! - a hand loop of `Queue::claim(128)` + `Queue::ack_batch` per process, same producers;
//! - the raw baseline: rusqlite with `honker_core::open`'s pragmas, claiming with
//!   `UPDATE ... LIMIT 128 RETURNING` and deleting the batch in one transaction, producers with
//!   raw INSERTs in transactions of 100.
//!
//! Also the fairness of the runtime (the smallest share of the 4 processes over the fair share,
//! and the longest a runtime process with free threads went without a claim while jobs were
//! pending), and one producer's enqueue rate in three shapes (`enqueue_batch` of 100, a loop of
//! 100 `enqueue` in one transaction, raw INSERTs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::bench::{Helper, build_honker, field};

const PRODUCERS: usize = 2;
const WORKERS: usize = 4;
/// How long any helper gets to say `ready` or print its result.
const DEADLINE: Duration = Duration::from_secs(600);

/// Options of the section.
#[derive(Debug, Clone)]
pub(crate) struct E2ePlan {
    pub(crate) runs: usize,
    pub(crate) quick: bool,
}

/// The section's table (markdown) and the figures that missed their targets.
pub(crate) struct E2eReport {
    pub(crate) table: String,
    pub(crate) missed: Vec<String>,
}

/// A worker shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Runtime,
    Direct,
    Raw,
}

impl Shape {
    fn mode(self) -> &'static str {
        match self {
            Shape::Runtime => "runtime",
            Shape::Direct => "direct",
            Shape::Raw => "raw",
        }
    }
}

const SHAPES: [Shape; 3] = [Shape::Runtime, Shape::Direct, Shape::Raw];

/// One measured end-to-end run.
#[derive(Debug, Clone, Copy)]
struct Run {
    jobs_per_s: f64,
    /// Smallest worker share over the fair share.
    fairness: f64,
    /// Longest stall of a worker while jobs were pending, ms.
    stall_ms: f64,
}

pub(crate) fn run(root: &Path, plan: &E2ePlan) -> Result<E2eReport> {
    let honker = build_honker(root)?;
    let work = std::env::temp_dir().join(format!("honker-bench-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let jobs = if plan.quick { 20_000 } else { 200_000 };
    let runs = plan.runs.max(3);
    let b = E2e {
        honker,
        work: work.clone(),
        jobs,
    };
    // [together|drain][shape] -> runs
    let mut results: Vec<Vec<Vec<Run>>> = vec![vec![Vec::new(); 3]; 2];
    let mut enqueue: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for r in 0..runs {
        for (k, shape) in rotated(r).into_iter().enumerate() {
            let _ = k;
            let si = SHAPES.iter().position(|s| *s == shape).expect("shape");
            for (mi, together) in [true, false].into_iter().enumerate() {
                let run = b.end_to_end(shape, together, r)?;
                eprintln!(
                    "bench e2e run {r}: {} {}: {:.0} jobs/s (fairness {:.2}, stall {:.0} ms)",
                    shape.mode(),
                    if together { "together" } else { "drain" },
                    run.jobs_per_s,
                    run.fairness,
                    run.stall_ms
                );
                results[mi][si].push(run);
            }
        }
        for (i, shape) in ["batch", "loop", "raw"].into_iter().enumerate() {
            let rate = b.enqueue_shape(shape, r)?;
            eprintln!("bench e2e run {r}: enqueue {shape}: {rate:.0} jobs/s");
            enqueue[i].push(rate);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(report(&results, &enqueue, jobs, runs))
}

/// The shapes in a different order each run, so none always goes first on a cold cache.
fn rotated(r: usize) -> [Shape; 3] {
    let mut s = SHAPES;
    s.rotate_left(r % 3);
    s
}

fn report(results: &[Vec<Vec<Run>>], enqueue: &[Vec<f64>], jobs: usize, runs: usize) -> E2eReport {
    let med = |v: &[Run], f: fn(&Run) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let rate = |mi: usize, si: usize| med(&results[mi][si], |r| r.jobs_per_s);
    // Ratios against raw within each run, then the median of the ratios.
    let ratio = |mi: usize, si: usize| {
        let v: Vec<f64> = results[mi][si]
            .iter()
            .zip(&results[mi][2])
            .map(|(a, raw)| a.jobs_per_s / raw.jobs_per_s)
            .collect();
        median(&v)
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "End to end, enqueue to ack: {PRODUCERS} producer processes ({jobs} small jobs, transactions of 100), {WORKERS} worker processes; medians of {runs} runs, ratios against raw in the same run\n"
    );
    let _ = writeln!(
        t,
        "| variant | producers and workers together | pure drain (producers first) | target |"
    );
    let _ = writeln!(t, "|---|---|---|---|");
    let mut missed = Vec::new();
    let names = [
        "`Worker` runtime (4 threads per process, batch 128)",
        "hand loop: `claim(128)` + `ack_batch`",
        "raw rusqlite (UPDATE ... LIMIT 128 RETURNING, then DELETE)",
    ];
    let floors = [0.7, 0.8];
    for si in 0..3 {
        let cell = |mi: usize| {
            if si == 2 {
                format!("{:.0} jobs/s", rate(mi, si))
            } else {
                format!("{:.0} jobs/s ({:.2}x raw)", rate(mi, si), ratio(mi, si))
            }
        };
        let target = if si == 2 {
            "-".to_owned()
        } else {
            format!(">= {:.1}x raw", floors[si])
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {target} |",
            names[si],
            cell(0),
            cell(1)
        );
        if si < 2 {
            for (mi, mode) in ["together", "drain"].into_iter().enumerate() {
                let r = ratio(mi, si);
                if r < floors[si] {
                    missed.push(format!(
                        "e2e {} {mode}: {r:.2}x raw (floor {:.1}x)",
                        SHAPES[si].mode(),
                        floors[si]
                    ));
                }
            }
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| runtime fairness | together | pure drain | target |\n|---|---|---|---|"
    );
    let fair = |mi: usize| med(&results[mi][0], |r| r.fairness);
    let worst_fair = |mi: usize| {
        results[mi][0]
            .iter()
            .map(|r| r.fairness)
            .fold(f64::INFINITY, f64::min)
    };
    let stall = |mi: usize| {
        results[mi][0]
            .iter()
            .map(|r| r.stall_ms)
            .fold(0.0, f64::max)
    };
    let _ = writeln!(
        t,
        "| smallest share / fair share (median; worst run) | {:.2}; {:.2} | {:.2}; {:.2} | >= 0.5 |",
        fair(0),
        worst_fair(0),
        fair(1),
        worst_fair(1)
    );
    let _ = writeln!(
        t,
        "| longest wait of a worker with free threads while jobs were pending (worst run) | {:.0} ms | {:.0} ms | <= 1000 ms |",
        stall(0),
        stall(1)
    );
    for (mi, mode) in ["together", "drain"].into_iter().enumerate() {
        if worst_fair(mi) < 0.5 {
            missed.push(format!(
                "e2e runtime fairness {mode}: {:.2}",
                worst_fair(mi)
            ));
        }
        if stall(mi) > 1000.0 {
            missed.push(format!("e2e runtime stall {mode}: {:.0} ms", stall(mi)));
        }
    }
    let _ = writeln!(t);
    let e = |i: usize| median(&enqueue[i]);
    let per_job_ratio = |i: usize| {
        let v: Vec<f64> = enqueue[2]
            .iter()
            .zip(&enqueue[i])
            .map(|(raw, x)| raw / x)
            .collect();
        median(&v)
    };
    let _ = writeln!(
        t,
        "| one producer, transactions of 100 | jobs/s | cost per job vs raw | target |\n|---|---|---|---|"
    );
    let _ = writeln!(
        t,
        "| `enqueue_batch` of 100 | {:.0} | {:.2}x | <= 2x, and faster than the loop |",
        e(0),
        per_job_ratio(0)
    );
    let _ = writeln!(
        t,
        "| loop of 100 `enqueue` in one transaction | {:.0} | {:.2}x | - |",
        e(1),
        per_job_ratio(1)
    );
    let _ = writeln!(t, "| raw INSERT | {:.0} | 1.00x | - |", e(2));
    if per_job_ratio(0) > 2.0 {
        missed.push(format!(
            "e2e enqueue_batch: {:.2}x raw per job",
            per_job_ratio(0)
        ));
    }
    let batch_vs_loop: Vec<f64> = enqueue[0]
        .iter()
        .zip(&enqueue[1])
        .map(|(b, l)| b / l)
        .collect();
    if median(&batch_vs_loop) <= 1.0 {
        missed.push("e2e enqueue_batch is not faster than a loop of enqueue".to_owned());
    }
    E2eReport { table: t, missed }
}

struct E2e {
    honker: PathBuf,
    work: PathBuf,
    jobs: usize,
}

impl E2e {
    fn fresh_db(&self, name: &str) -> Result<PathBuf> {
        let db = self.work.join(format!("{name}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let ok = Command::new(&self.honker)
            .arg("migrate")
            .arg("--db")
            .arg(&db)
            .stdout(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("honker migrate --db {} failed", db.display());
        }
        Ok(db)
    }

    fn producer(&self, db: &Path, index: usize, count: usize, shape: &str) -> Result<Helper> {
        let mut cmd = Command::new(&self.honker);
        cmd.arg("bench-e2e-producer")
            .arg("--db")
            .arg(db)
            .args(["--count", &count.to_string()])
            .args(["--batch", "100"])
            .args(["--index", &index.to_string()]);
        match shape {
            "raw" => {
                cmd.arg("--raw");
            }
            "loop" => {
                cmd.arg("--loop");
            }
            _ => {}
        }
        Ok(Helper::spawn(cmd, "bench-e2e-producer")?.with_deadline(DEADLINE))
    }

    fn worker(&self, db: &Path, shape: Shape, producers: usize) -> Result<Helper> {
        let mut cmd = Command::new(&self.honker);
        cmd.arg("bench-e2e-worker")
            .arg("--db")
            .arg(db)
            .args(["--mode", shape.mode()])
            .args(["--producers", &producers.to_string()])
            .args(["--batch", "128"])
            .args(["--threads", "4"]);
        Ok(Helper::spawn(cmd, "bench-e2e-worker")?.with_deadline(DEADLINE))
    }

    fn end_to_end(&self, shape: Shape, together: bool, run: usize) -> Result<Run> {
        let db = self.fresh_db(&format!(
            "e2e-{}-{}-{run}",
            shape.mode(),
            if together { "together" } else { "drain" }
        ))?;
        let per = self.jobs / PRODUCERS;
        let pshape = if shape == Shape::Raw { "raw" } else { "batch" };
        let start_producers = || -> Result<Vec<Helper>> {
            let mut ps = Vec::new();
            for i in 0..PRODUCERS {
                let mut p = self.producer(&db, i, per, pshape)?;
                p.wait_line("ready")?;
                ps.push(p);
            }
            Ok(ps)
        };
        let mut workers = Vec::new();
        let mut producers = Vec::new();
        if !together {
            producers = start_producers()?;
            for p in &mut producers {
                p.say("go")?;
            }
            for p in &mut producers {
                p.wait_line("result")?;
            }
            for p in producers.drain(..) {
                p.finish()?;
            }
        }
        for _ in 0..WORKERS {
            let mut w = self.worker(&db, shape, PRODUCERS)?;
            w.wait_line("ready")?;
            workers.push(w);
        }
        if together {
            producers = start_producers()?;
        }
        let go = wall_ns();
        for h in producers.iter_mut().chain(workers.iter_mut()) {
            h.say("go")?;
        }
        for p in &mut producers {
            p.wait_line("result")?;
        }
        let mut acked = Vec::new();
        let mut handled = 0.0;
        let mut end = 0.0f64;
        let mut stall = 0.0f64;
        for w in &mut workers {
            let line = w.wait_line("result")?;
            acked.push(field(&line, "acked")?);
            handled += field(&line, "handled")?;
            end = end.max(field(&line, "end_ns")?);
            stall = stall.max(field(&line, "stall_ms")?);
        }
        for h in producers.into_iter().chain(workers) {
            h.finish()?;
        }
        let total: f64 = acked.iter().sum();
        if total != self.jobs as f64 || handled != self.jobs as f64 {
            bail!(
                "{} {}: {total} jobs acked and {handled} handled of {} (each must be exactly once)",
                shape.mode(),
                if together { "together" } else { "drain" },
                self.jobs
            );
        }
        let fair = self.jobs as f64 / WORKERS as f64;
        let min = acked.iter().copied().fold(f64::INFINITY, f64::min);
        let secs = (end - go as f64) / 1e9;
        let _ = std::fs::remove_file(&db);
        Ok(Run {
            jobs_per_s: self.jobs as f64 / secs.max(1e-9),
            fairness: min / fair,
            stall_ms: stall,
        })
    }

    fn enqueue_shape(&self, shape: &str, run: usize) -> Result<f64> {
        let db = self.fresh_db(&format!("e2e-enqueue-{shape}-{run}"))?;
        let count = (self.jobs / 4).max(1000);
        let mut p = self.producer(&db, 0, count, shape)?;
        p.wait_line("ready")?;
        p.say("go")?;
        let line = p.wait_line("result")?;
        p.finish()?;
        field(&line, "jobs_per_s")
    }
}

fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
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

/// What the section measures, for the report.
pub(crate) const E2E_NOTES: &str = "\
End to end (`--only e2e`, `honker bench-e2e-*` processes): every process waits for one `go`; jobs/s is all jobs over the time from `go` to the last worker seeing the queue empty after both producers finished. Each worker process reports how many jobs it acked (committed) and handled; the run fails unless both sums equal the jobs enqueued. Fairness: the smallest of the 4 runtime processes' acked counts over a quarter of the jobs; the wait is the longest a runtime process held no job while jobs were pending. Enqueue shapes: one producer process alone, 50,000 jobs.
";
