//! `honker worker --queue Q -- CMD...`: a honker `Worker` that runs a command per job, with the
//! payload on its stdin. Exit status 0 acks the job (a JSON stdout, if any, is saved as the
//! job's result); any other status retries it with the command's stderr as the error.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use honker_queue::{ClaimedJob, HandlerError, HandlerResult, Queue, Worker, WorkerOptions};

/// How much of a failing command's stderr is kept as the job's error.
const MAX_ERROR_BYTES: usize = 4000;

/// Arguments of `honker worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db())]
    db: PathBuf,
    /// The queue to work on.
    #[arg(long)]
    queue: String,
    /// How many jobs run at once (each in its own CMD process).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// The lease of each claim in milliseconds (default: the queue's); heartbeats keep it
    /// alive while CMD runs.
    #[arg(long)]
    lease_ms: Option<i64>,
    /// Stop after this many jobs were settled (acked, retried or failed).
    #[arg(long)]
    max_jobs: Option<u64>,
    /// Stop once no job has been settled for this many milliseconds.
    #[arg(long)]
    idle_exit_ms: Option<u64>,
    /// Shut down gracefully (finish running jobs, give back the rest) when stdin closes.
    /// Killing the worker instead (Ctrl-C, SIGTERM) stops it at once: the jobs it held come
    /// back when their leases expire, with the attempt counted.
    #[arg(long)]
    until_stdin_closes: bool,
    /// Print nothing per job.
    #[arg(long, short)]
    quiet: bool,
    /// The command to run per job, after `--`: its stdin is the payload, and it sees
    /// HONKER_QUEUE, HONKER_JOB_ID and HONKER_JOB_ATTEMPTS in its environment.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

pub(crate) fn run(a: &WorkerArgs) -> Result<ExitCode> {
    let conn = crate::commands::open(&a.db)?;
    drop(conn);
    let queue = Queue::new(&a.queue).with_context(|| format!("bad queue name {:?}", a.queue))?;
    let wake = crate::commands::wake_for(&a.db)
        .with_context(|| format!("cannot watch {} for commits", a.db.display()))?;
    let command = Arc::new(a.command.clone());
    let quiet = a.quiet;
    let worker = Worker::start(
        &a.db,
        queue,
        wake,
        WorkerOptions {
            threads: a.concurrency as usize,
            lease_ms: a.lease_ms,
            ..WorkerOptions::default()
        },
        move |job| run_command(&command, job, quiet),
    )?;
    #[allow(clippy::print_stderr)]
    if !quiet {
        eprintln!(
            "honker worker {} on queue {:?} in {} ({} at a time): {}",
            worker.worker_id(),
            a.queue,
            a.db.display(),
            a.concurrency,
            a.command.join(" ")
        );
    }
    let (stdin_tx, stdin_rx) = std::sync::mpsc::channel::<()>();
    // Without --until-stdin-closes the sender stays here and never sends.
    let mut _never = None;
    if a.until_stdin_closes {
        thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = stdin_tx.send(());
        });
    } else {
        _never = Some(stdin_tx);
    }
    let mut last_settled = 0;
    let mut last_change = Instant::now();
    loop {
        // The worker does the waiting on the database; this loop only watches local counters
        // and the exit conditions.
        match stdin_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if worker.has_failed() {
            break;
        }
        let r = worker.report();
        let settled = r.acked + r.retried + r.failed;
        if settled != last_settled {
            last_settled = settled;
            last_change = Instant::now();
        }
        if a.max_jobs.is_some_and(|m| settled >= m) {
            break;
        }
        if a.idle_exit_ms
            .is_some_and(|ms| last_change.elapsed() >= Duration::from_millis(ms))
        {
            break;
        }
    }
    let report = worker.shutdown()?;
    #[allow(clippy::print_stderr)]
    if !quiet {
        eprintln!(
            "honker worker: {} acked, {} retried ({} dead), {} released on shutdown, {} lost leases",
            report.acked, report.retried, report.dead, report.released, report.lease_lost
        );
    }
    if let Some(e) = report.fatal {
        return Err(e).context("the worker stopped");
    }
    if let Some(e) = report.errors.into_iter().next() {
        bail!(
            "the worker met {} error(s), the first: {e}",
            report.error_count
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Run the command for one job.
fn run_command(command: &[String], job: &ClaimedJob, quiet: bool) -> HandlerResult {
    let started = Instant::now();
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .env("HONKER_QUEUE", &job.queue)
        .env("HONKER_JOB_ID", job.id.to_string())
        .env("HONKER_JOB_ATTEMPTS", job.attempts.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HandlerError::retry(format!("cannot run {}: {e}", command[0])))?;
    let payload = job.payload.clone();
    let mut stdin = child.stdin.take();
    // Write from a thread: a command that reads slowly must not block the reading of its output.
    let writer = thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            // A command that exits without reading its stdin is fine.
            let _ = s.write_all(payload.as_bytes());
        }
    });
    let out = child
        .wait_with_output()
        .map_err(|e| HandlerError::retry(format!("waiting for {}: {e}", command[0])))?;
    let _ = writer.join();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    #[allow(clippy::print_stderr)]
    if !quiet {
        if !stderr.is_empty() {
            eprint!("{stderr}");
        }
        eprintln!(
            "job {} attempt {}/{}: {} in {:.1} ms",
            job.id,
            job.attempts,
            job.max_attempts,
            if out.status.success() {
                "ok".to_owned()
            } else {
                format!("failed ({})", out.status)
            },
            took.as_secs_f64() * 1e3
        );
    }
    if out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let trimmed = stdout.trim();
        // A JSON stdout is the job's result; anything else is passed through.
        if !trimmed.is_empty() && serde_json::from_str::<serde_json::Value>(trimmed).is_ok() {
            return Ok(Some(trimmed.to_owned()));
        }
        if !trimmed.is_empty() {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&out.stdout);
        }
        return Ok(None);
    }
    let mut msg = stderr.trim().to_owned();
    if msg.is_empty() {
        msg = format!("{} exited with {}", command[0], out.status);
    } else {
        msg = format!("{} ({})", tail(&msg, MAX_ERROR_BYTES), out.status);
    }
    Err(HandlerError::retry(msg))
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_at_a_char_boundary() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("aé", 1), "");
    }
}
