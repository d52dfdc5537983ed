//! The redelivery figure of `cargo xtask bench` (issue 16): how soon another worker process
//! holds every job of a worker killed with `kill -9`, through same-host liveness, against what
//! lease expiry gives when liveness is unavailable, measured in the same run.
//!
//! A round: `honker bench-liveness-holder` enqueues and claims [`JOBS`] jobs and says `ready`;
//! `honker bench-liveness-taker` starts a `Worker` on the same queue (its first claim finds
//! nothing free, so it parks until the next lease end) and says `ready`; then the holder is
//! killed with `kill -9`, and the figure is the wall-clock time from just before the kill until
//! the taker's handler has seen the last of the jobs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::bench::Helper;

/// Jobs the killed holder holds.
pub(crate) const JOBS: usize = 10;

/// The holder's lease with liveness: only liveness can bring its jobs back within a round.
pub(crate) const LEASE_MS: i64 = 600_000;

/// The baseline holder's lease (no liveness): short, so the round ends at its expiry.
pub(crate) const BASELINE_LEASE_MS: i64 = 1_000;

/// How long a round may take before it counts as failed.
const ROUND_DEADLINE: Duration = Duration::from_secs(60);

/// The method, for the report.
pub(crate) const REDELIVERY_NOTES: &str = "\
- Redelivery after `kill -9`: `honker bench-liveness-holder` enqueues and claims 10 jobs with a 10 min lease; `honker bench-liveness-taker` runs a `Worker` (10 threads, the default wake backend) on the same queue, parked after a first claim that found nothing free; the holder is killed with `kill -9`, and the figure is the wall-clock time from just before the kill until the taker's handlers have seen all 10 jobs (p50 and max over the runs, one round per run).
  Baseline, in the same run: the same holder with liveness unavailable (it clears the holder of its claims, as a claim does where no lock file can be created beside the database) and a 1 s lease, so the jobs come back at lease expiry; with the 10 min lease they would take 10 min, so the ratio to the 1 s baseline understates the gain by 600x.
";

/// One round, with (`liveness`) or without liveness, on a fresh `db`: nanoseconds from the kill
/// until the taker held every job, and the taker's wake backend.
pub(crate) fn round(honker: &Path, db: &Path, liveness: bool) -> Result<(f64, String)> {
    let lease = if liveness {
        LEASE_MS
    } else {
        BASELINE_LEASE_MS
    };
    let mut cmd = Command::new(honker);
    cmd.arg("bench-liveness-holder")
        .arg("--db")
        .arg(db)
        .args(["--jobs", &JOBS.to_string()])
        .args(["--lease-ms", &lease.to_string()])
        .stderr(Stdio::inherit());
    if !liveness {
        cmd.arg("--no-liveness");
    }
    let mut holder = Helper::spawn(cmd, "bench-liveness-holder")?.with_deadline(ROUND_DEADLINE);
    holder.wait_line("ready")?;
    let mut cmd = Command::new(honker);
    cmd.arg("bench-liveness-taker")
        .arg("--db")
        .arg(db)
        .args(["--jobs", &JOBS.to_string()])
        .args(["--timeout-ms", &ROUND_DEADLINE.as_millis().to_string()])
        .stderr(Stdio::inherit());
    let mut taker = Helper::spawn(cmd, "bench-liveness-taker")?.with_deadline(ROUND_DEADLINE);
    taker.wait_line("ready")?;
    let killed_at = now_ns();
    holder.kill9()?;
    let line = taker.wait_line("result")?;
    taker.finish()?;
    let back_at: i64 = word(&line, "at_ns")?
        .parse()
        .with_context(|| format!("bad at_ns in {line:?}"))?;
    Ok((
        (back_at - killed_at) as f64,
        word(&line, "backend")?.to_owned(),
    ))
}

/// The value of `key=` in a helper's `result` line.
fn word<'a>(line: &'a str, key: &str) -> Result<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .with_context(|| format!("no {key}= in {line:?}"))
}

/// Wall-clock nanoseconds, as the helpers report them.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
