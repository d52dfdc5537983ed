//! honker-cron: the leaderless cron scheduler (not built yet).
//!
//! This crate is reserved for honker's cron: schedules parsed with croner in per-schedule IANA
//! time zones, a misfire policy, and fires that enqueue a job into `honker-queue` together with a
//! unique `(schedule, fire time)` row, so any number of schedulers can tick one file without a
//! leader. None of that exists yet: it is issue 6, which needs the queue (issue 4) first. Until
//! then this crate exports nothing.
//!
//! # Features
//!
//! None.
//!
//! # Known limitations
//!
//! The scheduler is not implemented yet.
#![warn(missing_docs)]
#![forbid(unsafe_code)]
