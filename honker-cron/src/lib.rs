//! honker-cron: leaderless cron on an SQLite file, with per-schedule time zones, a misfire policy
//! and exactly-once fires into honker-queue.
//!
//! - [`Schedule`]: a cron expression (5 or 6 fields, names, `@daily`..., `L`/`W`/`#`) or an
//!   `@every 250ms` interval, in an IANA [`Zone`]; [`Schedule::next_after`] is the next boundary.
//!   The [`expr`] module documents the day-of-month/day-of-week and DST semantics.
//! - [`register`], [`unschedule`], [`pause`], [`resume`], [`list`], [`get`]: the schedules in
//!   `honker_schedules`, upserted by name.
//! - [`tick`]: fire every due boundary, each as one job enqueued together with a
//!   `honker_fires (schedule, fire_ms)` row in one transaction, so any number of processes can
//!   tick one file without a leader and no boundary ever fires twice.
//! - [`Scheduler`]: a thread that sleeps exactly until the next fire or a wake, and ticks.
//! - [`sql::register`]: the SQL functions `honker_schedule`, `honker_unschedule`,
//!   `honker_schedule_pause`, `honker_schedule_resume`, `honker_schedules`, `honker_cron_next`,
//!   `honker_cron_tick`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use honker_core::Millis;
//! use honker_cron::{Schedule, ScheduleSpec};
//!
//! let dir = tempfile::tempdir()?;
//! let conn = honker_core::open(dir.path().join("app.db"))?;
//! let every_minute = Schedule::parse_in("* * * * *", "Europe/Berlin")?;
//! let spec = ScheduleSpec::new("report", every_minute, "reports", r#"{"kind":"hourly"}"#);
//! let t0 = Millis(1_767_225_600_000); // 2026-01-01T00:00:00Z
//! let info = honker_cron::register(&conn, &spec, t0)?;
//! assert_eq!(info.next_fire, Some(Millis(t0.0 + 60_000)));
//! // Any number of processes may tick; each boundary fires once.
//! let fired = honker_cron::tick(&conn, Millis(t0.0 + 60_000))?;
//! assert_eq!(fired.jobs(), 1);
//! assert_eq!(honker_cron::tick(&conn, Millis(t0.0 + 60_000))?.jobs(), 0);
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! None. The IANA zone database is compiled in (chrono-tz), so the host's zone files and `TZ`
//! play no part.
//!
//! # Known limitations
//!
//! - Fire times are exact to the millisecond in the schedule, but a fire happens when some
//!   scheduler ticks: with no scheduler running, boundaries pass and are misfires when one
//!   starts. Cross-process latency of a schedule change reaching a sleeping scheduler is the wake
//!   backend's (about 1 ms with the default DataVersion watcher).
//! - A fire row is the dedup key of its boundary and is kept for 7 days; processes whose clocks
//!   differ by more than that could fire a boundary twice.
//! - A schedule whose job the queue refuses (say its payload is over a limit configured after
//!   the schedule was registered) is paused by the tick, with the refusal in
//!   [`ScheduleInfo::last_error`], rather than fired; the other schedules fire as usual (see
//!   [`tick()`]). It fires again once resumed or registered again.
//! - Everything in honker-core's known limitations (same host, no network file systems).
#![warn(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod error;
pub mod expr;
mod scheduler;
pub mod sql;
mod store;
mod tick;

pub use crate::error::{Error, Result};
pub use crate::expr::{MAX_EVERY_MS, Schedule, Zone};
pub use crate::scheduler::{Scheduler, SchedulerOptions, SchedulerReport, TickHook};
pub use crate::store::{
    DEFAULT_FIRE_RETENTION_MS, DEFAULT_GRACE_MS, DEFAULT_MISFIRE_CAP, MAX_NAME_BYTES, Misfire,
    Overlap, ParsedOptions, ScheduleInfo, ScheduleOptions, ScheduleSpec, check_name, get, list,
    next_due, pause, prune_fires, register, resume, unschedule,
};
pub use crate::tick::{Fire, Refusal, TICK_BATCH, TickReport, tick};
