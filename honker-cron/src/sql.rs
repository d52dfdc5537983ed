//! The cron SQL functions: `honker_schedule`, `honker_unschedule`, `honker_schedule_pause`,
//! `honker_schedule_resume`, `honker_schedules`, `honker_cron_next` and `honker_cron_tick`.
//!
//! Errors read `honker: <code>: <message>`; `SQLITE_BUSY` passes through untouched. Every
//! function checks all its arguments before it writes, so a refused call writes nothing.

use honker_core::sql::{
    ANYWHERE, Call, DIRECT_ONLY, SqlFunction, arg_i64, arg_non_negative, arg_opt_text, arg_text,
    register_functions,
};
use honker_core::{Clock, Millis, SystemClock};
use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::Value as SqlValue;
use serde_json::{Value, json};

use crate::expr::{Schedule, Zone};
use crate::store::{self, Misfire, Overlap, ScheduleInfo, ScheduleOptions, ScheduleSpec};
use crate::tick::{TickReport, tick};

/// Most times `honker_cron_next` and `honker_schedules` list per schedule.
pub const MAX_UPCOMING: i64 = 1000;

/// Register the cron SQL functions on `conn`.
///
/// - `honker_schedule(name, cron, queue, payload[, options])` registers or updates a schedule
///   and returns its next fire time (ms, or NULL when finished). Options: `{"tz":..,
///   "priority":..,"max_attempts":..,"misfire":"skip"|"once"|"all","misfire_cap":..,
///   "grace_ms":..,"overlap":"allow"|"skip","max_runs":..,"end_at_ms":..}`.
/// - `honker_unschedule(name)` -> 1 if it existed, else 0.
/// - `honker_schedule_pause(name)`, `honker_schedule_resume(name)` -> 1 (`cron.not_found` for
///   an unknown name).
/// - `honker_schedules([n])` -> JSON array of every schedule with its next `n` (default 5) fire
///   times, and `last_error` (non-null when a tick paused the schedule because the queue
///   refused its job).
/// - `honker_cron_next(cron, after_ms[, tz[, n]])` -> the next fire time after `after_ms`
///   (INTEGER, NULL if none), or with `n` a JSON array of the next `n`. Marked deterministic:
///   it reads nothing but its arguments (the zone database is compiled in).
/// - `honker_cron_tick([now_ms])` -> JSON array `[{"schedule":..,"fire_ms":..,"job_id":..}]` of
///   the boundaries it fired (`now_ms` defaults to the system clock). A schedule whose job the
///   queue refuses is paused instead of fired, and is not in the array (see
///   [`tick`](crate::tick())).
///
/// # Errors
///
/// SQLite's error when a function cannot be registered.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    register_functions(conn, None, FUNCTIONS)
}

/// The cron SQL functions: name, arguments, flags, handler.
const FUNCTIONS: &[SqlFunction] = &[
    SqlFunction::args("honker_schedule", 4, 5, DIRECT_ONLY, schedule),
    SqlFunction::new("honker_unschedule", 1, DIRECT_ONLY, |call| {
        let name = arg_text(call, 0, "name")?;
        Ok(store::unschedule(call.conn(), &name)?.into())
    }),
    SqlFunction::new("honker_schedule_pause", 1, DIRECT_ONLY, |call| {
        let name = arg_text(call, 0, "name")?;
        store::pause(call.conn(), &name, SystemClock.now())?;
        Ok(1.into())
    }),
    SqlFunction::new("honker_schedule_resume", 1, DIRECT_ONLY, |call| {
        let name = arg_text(call, 0, "name")?;
        store::resume(call.conn(), &name, SystemClock.now())?;
        Ok(1.into())
    }),
    SqlFunction::args("honker_schedules", 0, 1, ANYWHERE, |call| {
        let n = if call.is_empty() {
            5
        } else {
            arg_upcoming(call, 0)?
        };
        let list = store::list(call.conn(), n)?;
        Ok(Value::Array(list.iter().map(info_json).collect())
            .to_string()
            .into())
    }),
    SqlFunction::args(
        "honker_cron_next",
        2,
        4,
        FunctionFlags::SQLITE_DETERMINISTIC.union(FunctionFlags::SQLITE_INNOCUOUS),
        cron_next,
    ),
    SqlFunction::args("honker_cron_tick", 0, 1, DIRECT_ONLY, |call| {
        let now = if call.is_empty() {
            SystemClock.now()
        } else {
            Millis(arg_i64(call, 0, "now_ms")?)
        };
        Ok(tick_json(&tick(call.conn(), now)?).to_string().into())
    }),
];

fn arg_upcoming(ctx: &Context<'_>, i: usize) -> rusqlite::Result<usize> {
    let n = arg_non_negative(ctx, i, "n")?;
    if n > MAX_UPCOMING {
        return Err(honker_core::Error::InvalidArgument {
            name: "n",
            reason: format!("must be at most {MAX_UPCOMING}, got {n}"),
        }
        .into());
    }
    Ok(n as usize)
}

fn schedule(ctx: &Call<'_>) -> rusqlite::Result<SqlValue> {
    let name = arg_text(ctx, 0, "name")?;
    let expr = arg_text(ctx, 1, "cron")?;
    let queue = arg_text(ctx, 2, "queue")?;
    let payload = arg_text(ctx, 3, "payload")?;
    let options = arg_opt_text(ctx, 4, "options")?;
    let parsed = ScheduleOptions::from_json(options.as_deref())?;
    let mut sched = Schedule::parse(&expr)?;
    if let Some(zone) = parsed.zone {
        sched = sched.with_zone(zone);
    }
    let spec = ScheduleSpec::new(&name, sched, &queue, &payload).with_options(parsed.options);
    let info = store::register(ctx.conn(), &spec, SystemClock.now())?;
    Ok(info.next_fire.map(|m| m.0).into())
}

fn cron_next(ctx: &Call<'_>) -> rusqlite::Result<SqlValue> {
    let expr = arg_text(ctx, 0, "cron")?;
    let after = arg_i64(ctx, 1, "after_ms")?;
    let zone = match arg_opt_text(ctx, 2, "tz")? {
        Some(name) => Zone::parse(&name)?,
        None => Zone::UTC,
    };
    let sched = Schedule::parse(&expr)?.with_zone(zone);
    if ctx.len() < 4 {
        return Ok(sched
            .next_after(Millis(after))
            .map_or(SqlValue::Null, |m| SqlValue::Integer(m.0)));
    }
    let n = arg_upcoming(ctx, 3)?;
    let times: Vec<i64> = sched
        .upcoming(Millis(after), n)
        .iter()
        .map(|m| m.0)
        .collect();
    Ok(SqlValue::Text(json!(times).to_string()))
}

fn info_json(info: &ScheduleInfo) -> Value {
    let o = &info.options;
    let (misfire, cap) = match o.misfire {
        Misfire::Skip => ("skip", None),
        Misfire::Once => ("once", None),
        Misfire::All { cap } => ("all", Some(cap)),
    };
    json!({
        "name": info.name,
        "cron": info.expression,
        "tz": info.zone,
        "queue": info.queue,
        "payload": serde_json::from_str::<Value>(&info.payload).unwrap_or(Value::Null),
        "priority": o.priority,
        "max_attempts": o.max_attempts,
        "misfire": misfire,
        "misfire_cap": cap,
        "grace_ms": o.grace_ms,
        "overlap": if o.overlap == Overlap::Skip { "skip" } else { "allow" },
        "max_runs": o.max_runs,
        "end_at_ms": o.end_at_ms,
        "paused": info.paused,
        "next_fire_ms": info.next_fire.map(|m| m.0),
        "runs": info.runs,
        "last_fire_ms": info.last_fire.map(|m| m.0),
        "last_job_id": info.last_job_id,
        "last_error": info.last_error,
        "upcoming": info.upcoming.iter().map(|m| m.0).collect::<Vec<_>>(),
    })
}

fn tick_json(report: &TickReport) -> Value {
    Value::Array(
        report
            .fires
            .iter()
            .map(|f| json!({"schedule": f.schedule, "fire_ms": f.fire_ms.0, "job_id": f.job_id.map(|j| j.0)}))
            .collect(),
    )
}
