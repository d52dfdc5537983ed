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
    /// Also measure the Python binding (installed in a venv under `target/` each session).
    pub(crate) binding: bool,
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
        binding: false,
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
    if plan.binding {
        c.arg("--binding-py").arg(binding_python(&root, &so)?);
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

/// A venv of the host Python with `bindings/python` installed from this checkout (re-installed
/// every session, so the figures are of the binding as it is now), carrying the extension just
/// built.
fn binding_python(root: &Path, so: &Path) -> Result<PathBuf> {
    let venv = root.join("target/bench-binding");
    let py = venv.join("bin/python");
    if !py.exists() {
        cmd::run(Command::new(HOST_PY).arg("-m").arg("venv").arg(&venv))?;
    }
    eprintln!("bench: installing bindings/python into {}", venv.display());
    let pkg = root.join("bindings/python");
    cmd::run(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "-q",
                "--disable-pip-version-check",
                "--force-reinstall",
            ])
            .arg(&pkg)
            .env("HONKER_EXT_PATH", so),
    )?;
    // setuptools leaves its build tree in the source folder.
    let _ = std::fs::remove_dir_all(pkg.join("build"));
    let _ = std::fs::remove_dir_all(pkg.join("src/honker.egg-info"));
    Ok(py)
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

/// One variant's median of a figure: the rate, or the latency quantile `q`.
fn pick(median: &Value, variant: &str, q: Option<&str>) -> Option<f64> {
    match q {
        None => num(&median[variant]),
        Some(q) => num(&median[variant][q]),
    }
}

/// One table row to be: its label, which quantile (latencies), the ext/raw target and whether
/// it was met, and the floor against honker 0.5.
struct RowSpec {
    label: String,
    quantile: Option<&'static str>,
    target: String,
    pass: bool,
    peer_floor: f64,
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
    let binding = doc["binding"].as_bool().unwrap_or(false);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Host: {} (Debian's python3), and Debian's sqlite3 CLI for its row; medians of {} runs.\n",
        doc["host"].as_str().unwrap_or("?"),
        doc["runs"]
    );
    let mut head = String::from(
        "| figure | ext (after honker_setup) | raw SQL, same host | ext/raw | target |",
    );
    let mut rule = String::from("|---|---:|---:|---:|---:|");
    if binding {
        head.push_str(" Python binding | binding/raw |");
        rule.push_str("---:|---:|");
    }
    if peer {
        head.push_str(" honker 0.5 | ext/0.5 |");
        rule.push_str("---:|---:|");
        if binding {
            head.push_str(" binding/0.5 |");
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(t, "{head} pass |\n{rule}:-:|");
    let mut missed = Vec::new();
    let figures = doc["figures"].as_array().cloned().unwrap_or_default();
    for f in &figures {
        let key = f["key"].as_str().unwrap_or("");
        let label = f["label"].as_str().unwrap_or(key);
        let m = &f["median"];
        let rows: Vec<RowSpec> = match target(key) {
            Target::Rate {
                raw_floor,
                peer_floor,
            } => {
                let ok = match (pick(m, "ext", None), pick(m, "raw", None)) {
                    (Some(e), Some(r)) => e / r >= raw_floor,
                    _ => false,
                };
                vec![RowSpec {
                    label: label.to_owned(),
                    quantile: None,
                    target: format!(">= {raw_floor}x"),
                    pass: ok,
                    peer_floor,
                }]
            }
            Target::Latency { p50_us, p99_us } => [("p50", p50_us), ("p99", p99_us)]
                .into_iter()
                .map(|(q, ceiling)| RowSpec {
                    label: format!("{label} {q} (commit incl.)"),
                    quantile: Some(q),
                    target: format!("<= {}", us_cell(ceiling)),
                    pass: pick(m, "ext", Some(q)).is_some_and(|e| e <= ceiling),
                    peer_floor: 1.0,
                })
                .collect(),
        };
        let latency = matches!(target(key), Target::Latency { .. });
        let cell = |x: f64| if latency { us_cell(x) } else { rate_cell(x) };
        // "How many times better": rates divide, latencies invert.
        let better = |a: f64, b: f64| if latency { b / a } else { a / b };
        for spec in rows {
            let RowSpec {
                label: row_label,
                quantile,
                target: target_text,
                mut pass,
                peer_floor,
            } = spec;
            let pick = |v: &str| pick(m, v, quantile);
            let (Some(e), Some(r)) = (pick("ext"), pick("raw")) else {
                continue;
            };
            let mut row = format!(
                "| {row_label} | {} | {} | {:.2}x | {target_text} |",
                cell(e),
                cell(r),
                e / r
            );
            let b = pick("binding");
            if binding {
                match b {
                    Some(b) => {
                        let _ = write!(row, " {} | {:.2}x |", cell(b), b / r);
                    }
                    None => row.push_str(" — | — |"),
                }
            }
            if peer {
                match pick("peer") {
                    Some(p) => {
                        pass &= better(e, p) >= peer_floor;
                        let _ = write!(row, " {} | {:.2}x |", cell(p), better(e, p));
                        if binding {
                            match b {
                                Some(b) => {
                                    pass &= better(b, p) >= 1.0;
                                    let _ = write!(row, " {:.2}x |", better(b, p));
                                }
                                None => row.push_str(" — |"),
                            }
                        }
                    }
                    None => row.push_str(if binding {
                        " — | — | — |"
                    } else {
                        " — | — |"
                    }),
                }
            }
            let _ = writeln!(row, " {} |", if pass { "yes" } else { "**no**" });
            if !pass {
                missed.push(format!("host: {row_label}"));
            }
            t.push_str(&row);
        }
    }
    t.push_str(
        "\next/0.5 and binding/0.5: how many times better than honker 0.5 (rates: ours over theirs; \
         latencies: theirs over ours). The ext/0.5 floor is 2x on enqueue 100/tx, 1x elsewhere; \
         the binding must be ahead of 0.5 on every row.\n",
    );
    HostReport { table: t, missed }
}
