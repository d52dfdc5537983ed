//! honker-wake: the [`WakeSource`](honker_core::WakeSource) backends that notice commits to a
//! database file, and the process-wide [`Hub`] that shares one watcher per file among all waiters.
//!
//! - [`DataVersion`] (the default backend): a thread with its own read-only connection that runs
//!   `PRAGMA data_version` every millisecond while somebody waits, and parks while nobody does.
//! - [`StatPoll`] (feature `stat`) and [`Kernel`] (feature `kernel`): the same watcher, woken by a
//!   change of the files' `stat` or by an inotify/kqueue event; either is only a hint, confirmed
//!   with `data_version` before the epoch advances.
//! - [`Backend`]: every backend by name, compiled or not (a backend whose feature is off returns
//!   [`WakeError::NotCompiled`](honker_core::WakeError::NotCompiled), so callers never write
//!   `cfg`); [`Hub::wake_for_with`] picks one, `HONKER_WAKE_BACKEND` or
//!   `SELECT honker_wake_backend('kernel')` set the process's default.
//! - [`Hub`] / [`wake_for`]: one watcher per (device, inode) per process, fork-aware, with the
//!   same-process commit kick installed through [`honker_core::set_kick_hook`].
//! - [`sql::register`]: the SQL functions `honker_epoch()` and `honker_wait(epoch, timeout_ms)`.
//!
//! Every consumer follows the loop of DESIGN.md §2: sample the epoch, look for work, and only then
//! wait past the sampled epoch. A commit after the sample makes the wait return at once.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, Instant};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("app.db");
//! let writer = honker_core::open(&path)?;
//! let wake = honker_wake::wake_for(&path)?;
//!
//! let seen = wake.epoch(); // 1. sample before looking
//! // 2. look for work (nothing yet); meanwhile another connection commits:
//! let other = honker_core::open(&path)?;
//! other.execute_batch("CREATE TABLE IF NOT EXISTS jobs(x); INSERT INTO jobs VALUES (1);")?;
//! // 3. sleep past the sample: the commit above makes this return at once.
//! let now = wake.wait_past(seen, Some(Instant::now() + Duration::from_secs(30)))?;
//! assert!(now > seen);
//! # drop(writer);
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! `default = []`: the [`DataVersion`] backend and the [`Hub`].
//!
//! | feature  | backend      | guarantee (all: no lost wake)             | cost while a waiter is parked        |
//! |----------|--------------|-------------------------------------------|--------------------------------------|
//! | -        | [`DataVersion`] | latency ≤ poll interval (1 ms)         | 1 `data_version`/ms (~1% of a core)  |
//! | `stat`   | [`StatPoll`] | ≤ 1 ms after the files change; same-size rewrites within one mtime tick ≤ 20 ms | 2 `stat`/ms + 1 `data_version`/20 ms |
//! | `kernel` | [`Kernel`]   | event + settle (~0.1 ms); floor 1 s       | 1 wake-up/s (~0.07 ms CPU/s)        |
//!
//! The Kernel backend uses inotify on Linux and kqueue on BSD/macOS (never FSEvents), each picked by
//! `#[cfg_attr(target_os, path)]`; elsewhere, or built with `--cfg honker_force_stat_poll` (how CI
//! runs it on Linux), it takes its hints from `stat`. Each backend's docs list its guarantee, its
//! cost and its known problems. `cargo bench -p honker-wake --features stat,kernel` compares them.
//!
//! # Known limitations
//!
//! - Every waiter and writer must be on the same host: WAL needs shared memory, so network file
//!   systems (NFS, SMB) and Docker bind mounts from another kernel (Docker Desktop on macOS and
//!   Windows) do not work, and commits made through them may never wake anyone.
//! - Cross-process wake latency is bounded by the poll interval (1 ms by default). Each file with
//!   at least one waiter costs one `PRAGMA data_version` per interval, about 1% of one core at
//!   1 ms (measured on a 2-core Linux VM); a file nobody waits on costs nothing, its watcher
//!   thread is parked. Same-process writers that call [`honker_core::kick_after_commit`] wake
//!   waiters in microseconds.
//! - The watcher's connection is read-only, so it cannot roll back a hot journal that a crashed
//!   writer left in rollback-journal mode; until an application connection rolls it back, its
//!   polls may fail. If they keep failing for 5 s, waits fail with
//!   [`WakeError::WatcherDied`](honker_core::WakeError::WatcherDied) and the next
//!   [`Hub::wake_for`] starts a fresh watcher.
//! - Kernel events (feature `kernel`) need a local file system: NFS/SMB and Docker bind mounts from
//!   another kernel deliver no events for other hosts' writes (the 1 s floor still catches them);
//!   inotify's `max_user_instances` (often 128) and `max_user_watches` bound how many files a user
//!   can watch; macOS FSEvents is never used (it coalesces and misses same-process writes), kqueue
//!   is.
//! - `stat` polling (feature `stat`) on NFS sees attribute-cache-delayed sizes and times; its
//!   `data_version` floor (20 ms) still catches commits.
//! - A replaced or deleted file is noticed by `stat` every 250 ms while somebody waits (at once from
//!   a kernel event, else within 1 s, for [`Kernel`]); waits then fail with
//!   [`WakeError::Replaced`](honker_core::WakeError::Replaced).
//! - After a `fork`, a handle starts a new watcher in the child on its first wait. A `fork` while
//!   another thread holds the Hub's lock (for the microseconds of a lookup) leaves that lock held
//!   in the child, as with any mutex.
#![warn(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod backend;
mod data_version;
mod file_id;
mod hub;
mod info;
#[cfg_attr(not(feature = "kernel"), path = "kernel/disabled.rs")]
mod kernel;
// The Kernel backend uses it only in its portable fallback (other systems, or
// `--cfg honker_force_stat_poll`).
#[cfg(any(feature = "stat", feature = "kernel"))]
#[cfg_attr(not(feature = "stat"), allow(dead_code))]
mod signature;
pub mod sql;
#[cfg_attr(not(feature = "stat"), path = "stat_poll/disabled.rs")]
mod stat_poll;
mod watch;

pub use crate::backend::{BACKEND_ENV, Backend, BackendOptions, UnknownBackend};
pub use crate::data_version::{DataVersion, DataVersionOptions};
pub use crate::hub::{Hub, wake_for};
pub use crate::info::{Info, LITESTREAM_NOTE, info};
pub use crate::kernel::{Kernel, KernelOptions};
pub use crate::stat_poll::{StatPoll, StatPollOptions};
pub use crate::watch::WatcherStats;
