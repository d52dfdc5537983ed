//! `honker cron ls|next|add|rm|pause|resume` and `honker scheduler`: manage schedules and run the
//! leaderless scheduler loop.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use honker_core::{Clock, Millis, SystemClock};
use honker_cron::{Schedule, ScheduleOptions, ScheduleSpec, Scheduler, SchedulerOptions, Zone};

/// Arguments of `honker cron`.
#[derive(Debug, Args)]
pub(crate) struct CronArgs {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db(), global = true)]
    db: PathBuf,
    #[command(subcommand)]
    command: CronCommand,
}

#[derive(Debug, Subcommand)]
enum CronCommand {
    /// List schedules with their next fire times.
    Ls(LsArgs),
    /// Print the next fire times of an expression (nothing is stored).
    Next(NextArgs),
    /// Register a schedule, or update the one with that name.
    Add(AddArgs),
    /// Remove a schedule and its fire history.
    Rm(NameArg),
    /// Pause a schedule.
    Pause(NameArg),
    /// Resume a paused schedule (its next fire is computed from now).
    Resume(NameArg),
}

#[derive(Debug, Args)]
struct LsArgs {
    /// How many upcoming fire times to show per schedule.
    #[arg(short = 'n', long, default_value_t = 1)]
    next: usize,
    /// Print one JSON object per schedule instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct NextArgs {
    /// A cron expression (5 or 6 fields, @daily, ...) or `@every <n><ms|s|m|h|d>`.
    expr: String,
    /// IANA time zone of the expression.
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// How many fire times.
    #[arg(short = 'n', long, default_value_t = 5)]
    count: usize,
    /// Start after this instant (ms since the epoch) instead of now.
    #[arg(long)]
    after_ms: Option<i64>,
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The schedule's name (registering it again updates it).
    name: String,
    /// A cron expression or `@every <n><unit>`.
    expr: String,
    /// The queue each fire enqueues into.
    queue: String,
    /// The JSON payload of each fired job.
    #[arg(default_value = "{}")]
    payload: String,
    /// IANA time zone of the expression (default UTC).
    #[arg(long)]
    tz: Option<String>,
    /// More options as a JSON object: priority, max_attempts, misfire, misfire_cap, grace_ms,
    /// overlap, max_runs, end_at_ms.
    #[arg(long)]
    options: Option<String>,
}

#[derive(Debug, Args)]
struct NameArg {
    /// The schedule's name.
    name: String,
}

/// Arguments of `honker scheduler`.
#[derive(Debug, Args)]
pub(crate) struct SchedulerArgs {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db())]
    db: PathBuf,
    /// Stop after this many milliseconds (default: run until killed).
    #[arg(long)]
    for_ms: Option<u64>,
    /// Stop at this instant (ms since the epoch).
    #[arg(long)]
    until_ms: Option<i64>,
}

/// Run `honker cron ...`; errors print with their code through the shared printer.
pub(crate) fn run(args: &CronArgs) -> Result<ExitCode> {
    match &args.command {
        CronCommand::Ls(a) => ls(args, a),
        CronCommand::Next(a) => next(a),
        CronCommand::Add(a) => add(args, a),
        CronCommand::Rm(a) => {
            let conn = crate::commands::open(&args.db)?;
            if honker_cron::unschedule(&conn, &a.name)? {
                Ok(ExitCode::SUCCESS)
            } else {
                Err(honker_cron::Error::NotFound {
                    name: a.name.clone(),
                }
                .into())
            }
        }
        CronCommand::Pause(a) => {
            let conn = crate::commands::open(&args.db)?;
            honker_cron::pause(&conn, &a.name, SystemClock.now())?;
            Ok(ExitCode::SUCCESS)
        }
        CronCommand::Resume(a) => {
            let conn = crate::commands::open(&args.db)?;
            honker_cron::resume(&conn, &a.name, SystemClock.now())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn rfc3339(ms: Millis, zone: Zone) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms.0).map_or_else(
        || ms.to_string(),
        |t| {
            t.with_timezone(
                &zone
                    .name()
                    .parse::<chrono_tz::Tz>()
                    .unwrap_or(chrono_tz::UTC),
            )
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        },
    )
}

fn ls(args: &CronArgs, a: &LsArgs) -> Result<ExitCode> {
    let conn = crate::commands::open(&args.db)?;
    let list = honker_cron::list(&conn, a.next.max(1))?;
    let mut out = std::io::stdout().lock();
    if a.json {
        for s in &list {
            let json = serde_json::json!({
                "name": s.name, "cron": s.expression, "tz": s.zone, "queue": s.queue,
                "paused": s.paused, "last_error": s.last_error, "runs": s.runs,
                "next_fire_ms": s.next_fire.map(|m| m.0),
                "upcoming": s.upcoming.iter().map(|m| m.0).collect::<Vec<_>>(),
            });
            writeln!(out, "{json}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<20} {:<20} {:<18} {:<12} {:>6} {:<7} next",
        "name", "expression", "zone", "queue", "runs", "state"
    )?;
    for s in &list {
        let zone = Zone::parse(&s.zone).unwrap_or_default();
        let next: Vec<String> = s.upcoming.iter().map(|m| rfc3339(*m, zone)).collect();
        let state = if s.last_error.is_some() {
            "refused"
        } else if s.paused {
            "paused"
        } else if s.next_fire.is_none() {
            "done"
        } else {
            "active"
        };
        writeln!(
            out,
            "{:<20} {:<20} {:<18} {:<12} {:>6} {:<7} {}",
            s.name,
            s.expression,
            s.zone,
            s.queue,
            s.runs,
            state,
            if next.is_empty() {
                "-".into()
            } else {
                next.join(", ")
            }
        )?;
        if let Some(e) = &s.last_error {
            writeln!(out, "{:<20} paused by a tick: {e}", "")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn next(a: &NextArgs) -> Result<ExitCode> {
    let schedule = Schedule::parse_in(&a.expr, &a.tz)?;
    let after = a.after_ms.map_or_else(|| SystemClock.now(), Millis);
    let mut out = std::io::stdout().lock();
    for t in schedule.upcoming(after, a.count) {
        writeln!(out, "{}\t{}", t.0, rfc3339(t, schedule.zone()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn add(args: &CronArgs, a: &AddArgs) -> Result<ExitCode> {
    let parsed = ScheduleOptions::from_json(a.options.as_deref())?;
    let mut schedule = Schedule::parse(&a.expr)?;
    if let Some(tz) = &a.tz {
        schedule = schedule.with_zone(Zone::parse(tz)?);
    } else if let Some(zone) = parsed.zone {
        schedule = schedule.with_zone(zone);
    }
    let zone = schedule.zone();
    let spec =
        ScheduleSpec::new(&a.name, schedule, &a.queue, &a.payload).with_options(parsed.options);
    let conn = crate::commands::open(&args.db)?;
    let info = honker_cron::register(&conn, &spec, SystemClock.now())?;
    let mut out = std::io::stdout().lock();
    match info.next_fire {
        Some(t) => writeln!(out, "{} next fire {}", info.name, rfc3339(t, zone))?,
        None => writeln!(out, "{} has no fire left", info.name)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per thing a tick did: each fire, the missed boundaries, each schedule paused or
/// stopped.
fn log_tick(out: &mut impl Write, report: &honker_cron::TickReport) -> std::io::Result<()> {
    for f in &report.fires {
        let at = rfc3339(f.fire_ms, Zone::default());
        match f.job_id {
            Some(job) => writeln!(out, "fired {} at {at}: job {}", f.schedule, job.0)?,
            None => writeln!(
                out,
                "fired {} at {at}: no job (overlap = skip, the previous one is still active)",
                f.schedule
            )?,
        }
    }
    if report.missed > 0 {
        writeln!(out, "missed {} boundaries (misfire policy)", report.missed)?;
    }
    for r in &report.refused {
        writeln!(
            out,
            "paused {}: the queue refused its job: {}",
            r.schedule, r.error
        )?;
    }
    for name in &report.broken {
        writeln!(
            out,
            "stopped {name}: its expression or zone no longer parses"
        )?;
    }
    out.flush()
}

/// Run `honker scheduler`: tick the file's schedules until stopped, printing a line for each
/// fire (and each schedule paused or stopped), and a summary at the end.
pub(crate) fn scheduler(args: &SchedulerArgs) -> Result<ExitCode> {
    let wake = crate::commands::wake_for(&args.db)
        .with_context(|| format!("watching {}", args.db.display()))?;
    let log: honker_cron::TickHook = std::sync::Arc::new(|report: &honker_cron::TickReport| {
        // A closed stdout must not stop the scheduler: the log is best effort.
        let _ = log_tick(&mut std::io::stdout().lock(), report);
    });
    let opts = SchedulerOptions {
        on_tick: Some(log),
        ..SchedulerOptions::default()
    };
    let scheduler = Scheduler::start(&args.db, wake, opts)
        .with_context(|| format!("starting the scheduler on {}", args.db.display()))?;
    let stop_at = match (args.for_ms, args.until_ms) {
        (Some(ms), _) => Some(SystemClock.now().saturating_add(ms as i64)),
        (None, Some(at)) => Some(Millis(at)),
        (None, None) => None,
    };
    loop {
        let now = SystemClock.now();
        match stop_at {
            Some(at) if now >= at => break,
            Some(at) => std::thread::sleep(now.until(at).min(Duration::from_millis(500))),
            None => std::thread::sleep(Duration::from_secs(3600)),
        }
    }
    let report = scheduler.shutdown()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "scheduler fired {} jobs in {} ticks ({} failed ticks, {} schedules paused{})",
        report.jobs,
        report.ticks,
        report.errors,
        report.refused,
        report
            .last_error
            .map(|e| format!("; last: {e}"))
            .unwrap_or_default()
    )?;
    Ok(ExitCode::SUCCESS)
}
