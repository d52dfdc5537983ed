//! The cron section of `honker demo`: an `@every 200ms` schedule fired by two `honker scheduler`
//! processes at once, with no leader between them, and a check that the fires match the
//! boundaries one for one (none twice, none lost), each with exactly one job.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use honker_core::{Clock, SystemClock};
use honker_cron::{Misfire, Schedule, ScheduleOptions, ScheduleSpec};
use rusqlite::Connection;

use super::{Children, DemoArgs, Section};

const NAME: &str = "demo-beat";
const QUEUE: &str = "demo-cron";
const PERIOD_MS: i64 = 200;
const RUN_MS: i64 = 2_000;
const SCHEDULERS: usize = 2;
/// How long the demo waits for the scheduler processes to finish.
const DEADLINE: Duration = Duration::from_secs(60);

/// The section's outcome.
#[derive(Debug)]
pub(crate) struct CronSection {
    boundaries: usize,
    fires: usize,
    jobs: usize,
    duplicates: usize,
    missing: usize,
    max_late_ms: i64,
}

impl Section for CronSection {
    fn print(&self) {
        #[allow(clippy::print_stdout)]
        {
            println!();
            println!(
                "cron: {SCHEDULERS} `honker scheduler` processes ticking one @every {PERIOD_MS}ms schedule for {:.1} s, no leader",
                RUN_MS as f64 / 1000.0
            );
            println!(
                "  boundaries {}  fires {}  jobs {}  fired twice {}  missing {}  latest fire {} ms after its boundary",
                self.boundaries,
                self.fires,
                self.jobs,
                self.duplicates,
                self.missing,
                self.max_late_ms
            );
            println!(
                "  {}",
                if self.ok() {
                    "OK: one fire and one job per boundary, none twice, none missing"
                } else {
                    "FAILED: fires do not match boundaries one for one"
                }
            );
        }
    }

    fn ok(&self) -> bool {
        self.duplicates == 0
            && self.missing == 0
            && self.fires == self.boundaries
            && self.jobs == self.boundaries
    }
}

pub(crate) fn run(_args: &DemoArgs, db: &Path, conn: &Connection) -> Result<CronSection> {
    // Start a little ahead so both processes are up; `all` catches up anything a slow start
    // makes late, so every boundary must fire.
    let start = SystemClock.now().saturating_add(400);
    let end_at = start.0 + RUN_MS;
    let spec = ScheduleSpec::new(
        NAME,
        Schedule::parse(&format!("@every {PERIOD_MS}ms"))?,
        QUEUE,
        r#"{"demo":"beat"}"#,
    )
    .with_options(ScheduleOptions {
        misfire: Misfire::All { cap: 1000 },
        end_at_ms: Some(end_at),
        ..ScheduleOptions::default()
    });
    // A reused demo database: start from a clean schedule and history.
    honker_cron::unschedule(conn, NAME)?;
    let info = honker_cron::register(conn, &spec, start)?;
    let first = info.next_fire.context("the demo schedule has no fire")?.0;
    let expected: Vec<i64> = (0..)
        .map(|k| first + PERIOD_MS * k)
        .take_while(|t| *t <= end_at)
        .collect();

    let exe = std::env::current_exe().context("cannot find the honker executable")?;
    let mut children = Children::default();
    for _ in 0..SCHEDULERS {
        let child = Command::new(&exe)
            .arg("scheduler")
            .arg("--db")
            .arg(db)
            .arg("--until-ms")
            .arg((end_at + 800).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a scheduler process")?;
        children.0.push(child);
    }
    let deadline = Instant::now() + DEADLINE;
    for child in &mut children.0 {
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("a scheduler process failed: {status}");
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("a scheduler process did not finish in {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let fired: Vec<(i64, i64, Option<i64>)> = conn
        .prepare(
            "SELECT fire_ms, fired_at_ms, job_id FROM honker_fires WHERE schedule = ?1 ORDER BY fire_ms",
        )?
        .query_map([NAME], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let times: Vec<i64> = fired.iter().map(|f| f.0).collect();
    let mut distinct = times.clone();
    distinct.dedup();
    let missing = expected.iter().filter(|t| !times.contains(t)).count();
    let mut jobs = 0;
    for (_, _, job) in &fired {
        if let Some(id) = job {
            if honker_queue::job(conn, honker_queue::JobId(*id))?.is_some() {
                jobs += 1;
            }
            // The demo's jobs have no worker: remove them so reruns start clean.
            honker_queue::cancel(conn, honker_queue::JobId(*id))?;
        }
    }
    let max_late_ms = fired.iter().map(|f| f.1 - f.0).max().unwrap_or(0);
    Ok(CronSection {
        boundaries: expected.len(),
        fires: fired.len(),
        jobs,
        duplicates: times.len() - distinct.len(),
        missing,
        max_late_ms,
    })
}
