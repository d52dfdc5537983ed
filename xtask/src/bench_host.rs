//! `cargo xtask bench` section `host`: honker through a real host (Debian's `python3` and its
//! stdlib `sqlite3`, plus the `sqlite3` CLI for one figure), each figure beside raw SQL of the
//! same shape in the same host and the same run, and, with `--peer`, beside honker 0.5's Python
//! package (the older project this one started from).
//!
//! The measuring is done by `xtask/scripts/host_bench.py` (a Python host is the point); this
//! module builds the extension, finds the host and the peer, runs the script and turns its JSON
//! into rows with the targets of the issue that asked for them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cmd, ext};

/// The host interpreter: Debian's, whose `sqlite3` module can load extensions.
const HOST_PY: &str = "/usr/bin/python3";

/// Options of the section.
#[derive(Debug, Clone)]
pub(crate) struct HostPlan {
    pub(crate) runs: usize,
    pub(crate) quick: bool,
    /// Also measure honker 0.5's Python package (set up under `target/` on first use).
    pub(crate) peer: bool,
}

/// A rate figure's floor against raw, or a latency figure's ceiling in microseconds.
enum Target {
    /// ext / raw >= this; and ext / peer >= `peer_floor`.
    Rate { raw_floor: f64, peer_floor: f64 },
    /// p50 and p99 of the extension at or under these (µs); ahead of the peer.
    Latency { p50_us: f64, p99_us: f64 },
}

fn target(key: &str) -> Target {
    let rate = |raw_floor, peer_floor| Target::Rate {
        raw_floor,
        peer_floor,
    };
    match key {
        "enqueue_100" => rate(0.5, 2.0),
        "claim_1" | "claim_128" => rate(0.7, 1.0),
        "replay" => rate(0.5, 1.0),
        "wake_notify" | "wake_enqueue" => Target::Latency {
            p50_us: 700.0,
            p99_us: 2000.0,
        },
        _ => rate(0.8, 1.0),
    }
}

/// The section's table (markdown) and the figures that missed their targets.
pub(crate) struct HostReport {
    pub(crate) table: String,
    pub(crate) missed: Vec<String>,
}

pub(crate) fn run(plan: &HostPlan) -> Result<HostReport> {
    let doc = measure(plan)?;
    Ok(render(&doc))
}

/// `cargo xtask ci`'s check that the section still runs end to end: one quick run, every
/// figure present and positive for both variants. No target is judged (a CI machine's speed
/// says nothing); the figures themselves come from `cargo xtask bench`.
pub(crate) fn smoke() -> Result<()> {
    let doc = measure(&HostPlan {
        runs: 1,
        quick: true,
        peer: false,
    })?;
    let figures = doc["figures"].as_array().context("no figures")?;
    if figures.len() < 10 {
        bail!("host bench measured {} figures, expected 10", figures.len());
    }
    for f in figures {
        for variant in ["ext", "raw"] {
            let m = &f["median"][variant];
            let v = m.as_f64().or_else(|| m["p50"].as_f64()).unwrap_or(0.0);
            if v <= 0.0 {
                bail!("host bench: {} has no {variant} figure: {m}", f["key"]);
            }
        }
    }
    println!(
        "host bench: {} figures measured through {HOST_PY}",
        figures.len()
    );
    Ok(())
}

fn measure(plan: &HostPlan) -> Result<Value> {
    let root = cmd::repo_root();
    let so = ext::build()?;
    check_host()?;
    let peer = if plan.peer {
        Some(peer_python(&root)?)
    } else {
        None
    };
    let script = root.join("xtask/scripts/host_bench.py");
    let mut c = Command::new(HOST_PY);
    c.arg(&script)
        .arg("--ext")
        .arg(&so)
        .args(["--runs", &plan.runs.to_string()]);
    if plan.quick {
        c.arg("--quick");
    }
    if let Some(p) = &peer {
        c.arg("--peer-py").arg(p);
    }
    eprintln!("bench: host section through {HOST_PY} (progress below)");
    let out = cmd::stdout(&mut c)?;
    let doc: Value = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .context("host_bench.py printed no JSON result")?;
    Ok(doc)
}

/// Refuse early, and clearly, when the host cannot load extensions.
fn check_host() -> Result<()> {
    let ok = Command::new(HOST_PY)
        .args([
            "-c",
            "import sqlite3; sqlite3.connect(':memory:').enable_load_extension(True)",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!(
            "{HOST_PY} cannot load SQLite extensions (install Debian's python3; \
             pyenv's Python is built without enable_load_extension)"
        );
    }
    Ok(())
}

/// A Python with honker 0.5.0 importable: `PEER_PY` when set, else a venv under `target/`,
/// set up once the way `../shared/bench/peer-honker-0.5/README.md` describes (the package ships
/// only a manylinux_2_38 wheel; its bundled SQLite needs two symbols relaxed for glibc 2.36).
fn peer_python(root: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PEER_PY") {
        return Ok(PathBuf::from(p));
    }
    let venv = root.join("target/bench-peer-0.5");
    let py = venv.join("bin/python");
    let probe = |py: &Path| {
        Command::new(py)
            .args(["-c", "import honker"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if py.exists() && probe(&py) {
        return Ok(py);
    }
    let weaken = root.join("../shared/bench/peer-honker-0.5/weaken_glibc_ver.py");
    if !weaken.exists() {
        bail!(
            "--peer needs {} (or PEER_PY pointing at a python with honker 0.5.0)",
            weaken.display()
        );
    }
    if Command::new("patchelf").arg("--version").output().is_err() {
        bail!("--peer needs patchelf: apt-get install -y patchelf");
    }
    eprintln!("bench: setting up honker 0.5.0 in {}", venv.display());
    cmd::run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    let site = venv.join("lib/python3.11/site-packages");
    cmd::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "--no-deps"])
            .args(["--only-binary=:all:", "--platform", "manylinux_2_38_x86_64"])
            .args(["--python-version", "3.11", "--implementation", "cp"])
            .arg("--target")
            .arg(&site)
            .arg("honker==0.5.0"),
    )?;
    let libs = site.join("honker.libs");
    let lib = std::fs::read_dir(&libs)
        .with_context(|| format!("cannot list {}", libs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libsqlite3-"))
        })
        .with_context(|| format!("no libsqlite3-* in {}", libs.display()))?;
    cmd::run(
        Command::new("patchelf")
            .args(["--clear-symbol-version", "fmod"])
            .arg(&lib),
    )?;
    cmd::run(
        Command::new("python3")
            .arg(&weaken)
            .arg(&lib)
            .arg("GLIBC_2.38"),
    )?;
    if !probe(&py) {
        bail!(
            "honker 0.5.0 was installed in {} but does not import",
            venv.display()
        );
    }
    Ok(py)
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn rate_cell(x: f64) -> String {
    if x >= 10_000.0 {
        format!("{:.1}k/s", x / 1000.0)
    } else {
        format!("{x:.0}/s")
    }
}

fn us_cell(x: f64) -> String {
    format!("{:.3} ms", x / 1000.0)
}

fn render(doc: &Value) -> HostReport {
    let peer = doc["peer"].as_bool().unwrap_or(false);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Host: {} (Debian's python3), and Debian's sqlite3 CLI for its row; medians of {} runs.\n",
        doc["host"].as_str().unwrap_or("?"),
        doc["runs"]
    );
    if peer {
        t.push_str("| figure | ext (after honker_setup) | raw SQL, same host | ext/raw | target | honker 0.5 | ext/0.5 | target | pass |\n");
        t.push_str("|---|---:|---:|---:|---:|---:|---:|---:|:-:|\n");
    } else {
        t.push_str("| figure | ext (after honker_setup) | raw SQL, same host | ext/raw | target | pass |\n");
        t.push_str("|---|---:|---:|---:|---:|:-:|\n");
    }
    let mut missed = Vec::new();
    let figures = doc["figures"].as_array().cloned().unwrap_or_default();
    for f in &figures {
        let key = f["key"].as_str().unwrap_or("");
        let label = f["label"].as_str().unwrap_or(key);
        let m = &f["median"];
        match target(key) {
            Target::Rate {
                raw_floor,
                peer_floor,
            } => {
                let (Some(e), Some(r)) = (num(&m["ext"]), num(&m["raw"])) else {
                    continue;
                };
                let vs_raw = e / r;
                let mut pass = vs_raw >= raw_floor;
                let mut row = format!(
                    "| {label} | {} | {} | {vs_raw:.2}x | >= {raw_floor}x |",
                    rate_cell(e),
                    rate_cell(r)
                );
                if peer {
                    match num(&m["peer"]) {
                        Some(p) => {
                            let vs_peer = e / p;
                            pass &= vs_peer >= peer_floor;
                            let _ = write!(
                                row,
                                " {} | {vs_peer:.2}x | >= {peer_floor}x |",
                                rate_cell(p)
                            );
                        }
                        None => row.push_str(" — | — | — |"),
                    }
                }
                let _ = writeln!(row, " {} |", if pass { "yes" } else { "**no**" });
                if !pass {
                    missed.push(format!("host: {label}"));
                }
                t.push_str(&row);
            }
            Target::Latency { p50_us, p99_us } => {
                for (q, ceiling) in [("p50", p50_us), ("p99", p99_us)] {
                    let (Some(e), Some(r)) = (num(&m["ext"][q]), num(&m["raw"][q])) else {
                        continue;
                    };
                    let mut pass = e <= ceiling;
                    let mut row = format!(
                        "| {label} {q} (commit incl.) | {} | {} (1 ms data_version poll) | {:.2}x | <= {} |",
                        us_cell(e),
                        us_cell(r),
                        e / r,
                        us_cell(ceiling)
                    );
                    if peer {
                        match num(&m["peer"][q]) {
                            Some(p) => {
                                // Lower is better: the peer's latency over ours.
                                pass &= e <= p;
                                let _ =
                                    write!(row, " {} | {:.2}x faster | >= 1x |", us_cell(p), p / e);
                            }
                            None => row.push_str(" — | — | — |"),
                        }
                    }
                    let _ = writeln!(row, " {} |", if pass { "yes" } else { "**no**" });
                    if !pass {
                        missed.push(format!("host: {label} {q}"));
                    }
                    t.push_str(&row);
                }
            }
        }
    }
    HostReport { table: t, missed }
}
