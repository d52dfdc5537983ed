//! The Kernel backend (feature `kernel`): file events from the kernel (inotify on Linux, kqueue on
//! BSD and macOS) through notify, driven by a `mio::Poll` with a `mio::Waker`, each event
//! confirmed with `PRAGMA data_version`, and a slow `data_version` poll as the floor.
//!
//! Per-OS code is picked by `#[cfg_attr(target_os, path)]`. Elsewhere, or when built with
//! `--cfg honker_force_stat_poll` (so CI exercises it on Linux), the portable fallback takes the
//! hints from `stat` instead.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use honker_core::WakeError;

use crate::backend::{Backend, backend_handle};
use crate::watch::{Arm, Watch};

#[cfg_attr(
    all(target_os = "linux", not(honker_force_stat_poll)),
    path = "kernel/inotify.rs"
)]
#[cfg_attr(
    all(
        any(
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "openbsd",
            target_os = "netbsd",
            target_os = "dragonfly"
        ),
        not(honker_force_stat_poll)
    ),
    path = "kernel/kqueue.rs"
)]
#[cfg_attr(
    any(
        honker_force_stat_poll,
        not(any(
            target_os = "linux",
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "openbsd",
            target_os = "netbsd",
            target_os = "dragonfly"
        ))
    ),
    path = "kernel/fallback.rs"
)]
mod imp;

#[cfg(all(
    not(honker_force_stat_poll),
    any(
        target_os = "linux",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    )
))]
mod events;

/// Options of the [`Kernel`] backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOptions {
    /// How often `PRAGMA data_version` is polled with no event at all (default 1 s): the floor
    /// that bounds latency if an event is ever missed. Each floor wake-up costs a cold thread
    /// about 50-70 µs of CPU on a loaded 2-core VM, so 1 s keeps an idle watcher near 0.07 ms of
    /// CPU per second (250 ms measured 0.26 ms/s).
    pub floor: Duration,
    /// Test hook, not part of the stable API: advance the epoch on every raw event without
    /// waiting for `data_version` to move (what this backend must never do; the conformance
    /// suite's control arm shows that it loses wakes).
    #[doc(hidden)]
    pub trust_raw_events: bool,
}

impl Default for KernelOptions {
    fn default() -> KernelOptions {
        KernelOptions {
            floor: Duration::from_secs(1),
            trust_raw_events: false,
        }
    }
}

/// The kernel-event wake backend.
///
/// **Guarantee:** as [`DataVersion`](crate::DataVersion): every commit by another connection after
/// [`start`](Kernel::start) advances the epoch. A file event is only a hint: in WAL mode the
/// writer's `pwrite` of the frames raises it *before* the commit is visible (the wal-index in
/// `-shm` is updated afterwards through `mmap`, which raises no event), so after each event the
/// watcher re-reads `data_version` in a short settle loop (back to back for 0.3 ms, every 50 µs
/// up to 2 ms, then backing off up to 1 s) and advances the epoch only when it moved. A queue
/// overflow is a wake by itself. A `data_version` poll every `floor` (1 s) bounds the latency
/// of anything the events miss.
/// **Cost:** while idle, one blocked thread (plus notify's event thread on kqueue; on Linux the watcher reads inotify itself) and one `data_version`
/// poll and one `stat` per second; per commit, a burst of polls for about 2 ms and a few more
/// backing off over the next second. One inotify instance and one
/// watch (on the directory) per watched file.
/// **Known problems:**
/// - inotify: `fs.inotify.max_user_instances` (often 128) and `max_user_watches` limit how many
///   files a user can watch; past them [`start`](Kernel::start) fails with [`WakeError::Start`]
///   (the Hub's caller can fall back to [`DataVersion`](crate::DataVersion)). Events from other
///   files in the same directory wake the watcher's thread (filtered by name, never a wake).
/// - NFS, SMB and other network file systems deliver no events for writes by other hosts (and WAL
///   does not work there at all); Docker bind mounts from another kernel (Docker Desktop on
///   macOS/Windows) deliver none for writes on the host side. The floor still catches commits,
///   within 1 s.
/// - macOS: this backend uses kqueue, never FSEvents, which coalesces events and does not report
///   writes made by the watching process itself. kqueue watches the directory and the `-wal` /
///   `-journal` files through descriptors of their own (SQLite holds no POSIX locks on those), never
///   the db or `-shm` file.
/// - The watcher never opens the db or `-shm` file: closing any descriptor of a file drops every
///   POSIX lock the process holds on it.
pub struct Kernel(Watch);

backend_handle!(Kernel);

impl Kernel {
    /// Start watching the database file at `db_path`.
    ///
    /// # Errors
    ///
    /// [`WakeError::Start`] as [`DataVersion::start`](crate::DataVersion::start), or when the
    /// kernel refuses a watch (inotify limits).
    pub fn start(db_path: &Path, opts: KernelOptions) -> Result<Kernel, WakeError> {
        Watch::start(db_path, Backend::Kernel, arm(opts), std::process::id, 0).map(Kernel)
    }

    /// Which event source this build uses: `"inotify"`, `"kqueue"` or `"stat"` (the fallback).
    pub fn event_source() -> &'static str {
        imp::SOURCE
    }
}

pub(crate) fn arm(opts: KernelOptions) -> Arm {
    Arc::new(move |path: &Path| {
        if std::env::var_os(FAIL_FOR_TESTS_ENV).is_some() {
            return Err(WakeError::Start {
                path: path.to_owned(),
                reason: format!("the kernel backend was told to fail by {FAIL_FOR_TESTS_ENV}"),
            });
        }
        imp::arm(path, opts)
    })
}

/// Set (to anything) in a test's child process, the kernel backend fails to start as it does at
/// the inotify instance or watch limits, so the default's fallback is tested without exhausting
/// the machine's limits.
pub(crate) const FAIL_FOR_TESTS_ENV: &str = "HONKER_WAKE_KERNEL_FAIL_FOR_TESTS";
