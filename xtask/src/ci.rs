//! `cargo xtask ci`: every check CI runs, in order, failing fast, with per-step times at the end.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::{cmd, ext, metadata};

type StepFn = fn() -> anyhow::Result<()>;

/// The steps, in the order they run (key, title, step): cheap checks first so a typo fails in
/// seconds. `cargo xtask ci <key>...` runs only the named ones.
const STEPS: &[(&str, &str, StepFn)] = &[
    ("fmt", "fmt", fmt),
    ("clippy", "clippy (workspace)", clippy_workspace),
    ("clippy-ext", "clippy (honker-ext)", clippy_ext),
    ("ext", "extension build + sqlite3 smoke test", extension),
    ("tests", "tests", tests),
    (
        "host-bench",
        "host bench runs through Debian's python3 (one quick run, no targets)",
        host_bench,
    ),
    ("fuzz", "fuzz targets (cargo check)", fuzz_check),
    ("tidy", "tidy", tidy),
    ("powerset", "honker-wake feature powerset", wake_powerset),
    (
        "fallback",
        "honker-wake tests with the Kernel fallback forced (--cfg honker_force_stat_poll)",
        wake_fallback,
    ),
];

/// Run every step (or the ones named in `only`); stop at the first failure.
pub(crate) fn run(only: &[String]) -> anyhow::Result<()> {
    if let Some(unknown) = only
        .iter()
        .find(|k| !STEPS.iter().any(|(key, _, _)| key == k))
    {
        let keys: Vec<&str> = STEPS.iter().map(|(key, _, _)| *key).collect();
        anyhow::bail!("no ci step `{unknown}`; the steps are: {}", keys.join(", "));
    }
    let steps: Vec<_> = STEPS
        .iter()
        .filter(|(key, _, _)| only.is_empty() || only.iter().any(|k| k == key))
        .collect();
    let start = Instant::now();
    let mut times: Vec<(&str, Duration)> = Vec::new();
    for (i, (_, name, step)) in steps.iter().enumerate() {
        println!("\n==> [{}/{}] {name}", i + 1, steps.len());
        let t = Instant::now();
        let result = step();
        times.push((name, t.elapsed()));
        if let Err(e) = result {
            summary(&times, start.elapsed(), Some(name));
            return Err(e.context(format!("ci step `{name}` failed")));
        }
    }
    summary(&times, start.elapsed(), None);
    println!("ci: all {} steps passed", steps.len());
    Ok(())
}

fn summary(times: &[(&str, Duration)], total: Duration, failed: Option<&str>) {
    println!("\n==> ci summary");
    for (name, d) in times {
        let mark = if Some(*name) == failed {
            "FAILED"
        } else {
            "ok"
        };
        println!("  {:>8.1}s  {mark:<6}  {name}", d.as_secs_f64());
    }
    println!("  {:>8.1}s  total", total.as_secs_f64());
}

fn host_bench() -> anyhow::Result<()> {
    crate::bench_host::smoke()
}

fn fmt() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args(["fmt", "--all", "--check"]))?;
    cmd::run(cmd::cargo().args(["fmt", "--manifest-path", ext::MANIFEST, "--check"]))?;
    cmd::run(cmd::cargo().args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--check"]))
}

fn clippy_workspace() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

fn clippy_ext() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args([
        "clippy",
        "--manifest-path",
        ext::MANIFEST,
        "--",
        "-D",
        "warnings",
    ]))
}

fn tests() -> anyhow::Result<()> {
    // ext-tests load the extension from host processes. Built once here (a no-op after the ext
    // step) and handed over, so the test processes never build it, let alone in parallel.
    let so = ext::build()?;
    if cmd::has_cargo_subcommand("nextest") {
        cmd::run(
            cmd::cargo()
                .args(["nextest", "run", "--workspace"])
                .env("HONKER_EXT_PATH", &so),
        )?;
    } else {
        println!("(cargo-nextest is not installed: using cargo test)");
        cmd::run(
            cmd::cargo()
                .args(["test", "--workspace"])
                .env("HONKER_EXT_PATH", &so),
        )?;
    }
    // nextest does not run doctests.
    cmd::run(cmd::cargo().args(["test", "--workspace", "--doc"]))
}

fn extension() -> anyhow::Result<()> {
    let so = ext::build()?;
    println!("built {}", so.display());
    ext::smoke(&so)
}

fn fuzz_check() -> anyhow::Result<()> {
    // Only `cargo fuzz run` needs the fuzzer's instrumentation (`-s none` on stable); checking
    // the targets compile needs nothing but cargo.
    cmd::run(cmd::cargo().args([
        "check",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--all-targets",
    ]))
}

fn tidy() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args(["test", "-p", "xtask"]))
}

/// `cargo clippy -p honker-wake --no-default-features --features <subset> -- -D warnings` for every
/// subset of its features (what `cargo hack --feature-powerset` does, without installing
/// cargo-hack): every combination of `stat` and `kernel` builds, and without dead code.
fn wake_powerset() -> anyhow::Result<()> {
    let meta = metadata::no_deps(Path::new("Cargo.toml"))?;
    let features = metadata::features(metadata::package(&meta, "honker-wake")?);
    anyhow::ensure!(
        features.len() <= 10,
        "honker-wake has {} features: a powerset of 2^{} checks is too many; group them",
        features.len(),
        features.len()
    );
    println!(
        "honker-wake features: {}",
        if features.is_empty() {
            "(none besides default)".to_owned()
        } else {
            features.join(", ")
        }
    );
    for mask in 0u32..(1 << features.len()) {
        let subset: Vec<&str> = features
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, f)| f.as_str())
            .collect();
        let mut c = cmd::cargo();
        c.args(["clippy", "-p", "honker-wake", "--no-default-features"]);
        if !subset.is_empty() {
            c.args(["--features", &subset.join(",")]);
        }
        c.args(["--", "-D", "warnings"]);
        cmd::run(&mut c).with_context(|| format!("honker-wake with features {subset:?}"))?;
    }
    Ok(())
}

/// honker-wake's tests with `--cfg honker_force_stat_poll`, which makes the Kernel backend use its
/// portable `stat` fallback (what BSD-less, inotify-less systems get), so CI runs it on Linux. It
/// builds in a target directory of its own, since the cfg changes every crate's flags.
fn wake_fallback() -> anyhow::Result<()> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new("target").to_path_buf(), Into::into)
        .join("force-stat-poll");
    let mut c = cmd::cargo();
    c.args(["test", "-p", "honker-wake", "--features", "kernel"])
        .env("RUSTFLAGS", "--cfg honker_force_stat_poll")
        .env("CARGO_TARGET_DIR", &target);
    cmd::run(&mut c).context("honker-wake tests with honker_force_stat_poll")
}
