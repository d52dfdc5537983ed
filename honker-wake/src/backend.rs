//! The names of the wake backends, which of them this build has, and how one is chosen (from Rust,
//! from SQL, or from the `HONKER_WAKE_BACKEND` environment variable).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use honker_core::{WakeError, WakeSource};

use crate::watch::Arm;

/// The environment variable that picks the process's default backend (see [`Backend::from_env`]).
pub const BACKEND_ENV: &str = "HONKER_WAKE_BACKEND";

/// A wake backend, by name. Every backend has a name in every build; one whose cargo feature is
/// off fails to start with [`WakeError::NotCompiled`], so callers never write `cfg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Backend {
    /// [`DataVersion`](crate::DataVersion): poll `PRAGMA data_version` every millisecond. Always
    /// compiled; the default.
    DataVersion,
    /// [`StatPoll`](crate::StatPoll): `stat` the db and `-wal` files every millisecond, confirm
    /// with `data_version` (feature `stat`).
    StatPoll,
    /// [`Kernel`](crate::Kernel): inotify / kqueue events, confirmed with `data_version` (feature
    /// `kernel`).
    Kernel,
}

impl Backend {
    /// Every backend, compiled or not.
    pub const ALL: [Backend; 3] = [Backend::DataVersion, Backend::StatPoll, Backend::Kernel];

    /// The backend's name, as [`FromStr`], SQL and the environment variable take it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::DataVersion => "data_version",
            Backend::StatPoll => "stat",
            Backend::Kernel => "kernel",
        }
    }

    /// The cargo feature that compiles the backend (`None`: always compiled).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Backend::DataVersion => None,
            Backend::StatPoll => Some("stat"),
            Backend::Kernel => Some("kernel"),
        }
    }

    /// Whether this build has the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::DataVersion => true,
            Backend::StatPoll => cfg!(feature = "stat"),
            Backend::Kernel => cfg!(feature = "kernel"),
        }
    }

    /// The backends this build has, [`Backend::DataVersion`] first.
    pub fn compiled() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| b.is_compiled())
            .collect()
    }

    /// The backend a process uses unless told otherwise: [`Backend::Kernel`] on Linux when the
    /// `kernel` feature is on (inotify events settled on `data_version`: about a third of the
    /// 1 ms poll's latency, a small fraction of its idle CPU), [`Backend::DataVersion`] elsewhere
    /// until CI tests another platform's kernel backend.
    pub fn platform_default() -> Backend {
        if cfg!(all(
            feature = "kernel",
            target_os = "linux",
            not(honker_force_stat_poll)
        )) {
            Backend::Kernel
        } else {
            Backend::DataVersion
        }
    }

    /// The backend named by `HONKER_WAKE_BACKEND`, if the variable is set and not empty.
    ///
    /// # Errors
    ///
    /// [`UnknownBackend`] when the variable names no backend.
    pub fn from_env() -> Result<Option<Backend>, UnknownBackend> {
        match std::env::var(BACKEND_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
            _ => Ok(None),
        }
    }

    /// [`WakeError::NotCompiled`] when the backend is not in this build.
    ///
    /// # Errors
    ///
    /// As described.
    pub fn ensure_compiled(self) -> Result<(), WakeError> {
        match self.feature() {
            Some(feature) if !self.is_compiled() => Err(WakeError::NotCompiled {
                backend: self.name(),
                feature,
            }),
            _ => Ok(()),
        }
    }

    /// Start a watcher of this backend with default options, not shared through the Hub.
    ///
    /// # Errors
    ///
    /// [`WakeError::NotCompiled`] when the backend's feature is off; [`WakeError::Start`] as the
    /// backend's `start`.
    pub fn start(self, db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
        Ok(match self {
            Backend::DataVersion => Arc::new(crate::DataVersion::start(
                db_path,
                crate::DataVersionOptions::default(),
            )?),
            Backend::StatPoll => Arc::new(crate::StatPoll::start(
                db_path,
                crate::StatPollOptions::default(),
            )?),
            Backend::Kernel => Arc::new(crate::Kernel::start(
                db_path,
                crate::KernelOptions::default(),
            )?),
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = UnknownBackend;

    /// Names are case-insensitive: `data_version` (or `dataversion`, `poll`), `stat` (or
    /// `stat_poll`, `statpoll`), `kernel` (or `inotify`, `kqueue`).
    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "data_version" | "dataversion" | "poll" => Ok(Backend::DataVersion),
            "stat" | "stat_poll" | "statpoll" => Ok(Backend::StatPoll),
            "kernel" | "inotify" | "kqueue" => Ok(Backend::Kernel),
            _ => Err(UnknownBackend { name: s.to_owned() }),
        }
    }
}

/// A backend name that names no backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown wake backend {name:?}; expected one of data_version, stat, kernel")]
pub struct UnknownBackend {
    /// The name given.
    pub name: String,
}

impl UnknownBackend {
    /// The stable error code, `arg.invalid`.
    pub fn code(&self) -> &'static str {
        "arg.invalid"
    }
}

/// The options of every backend, as the Hub starts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendOptions {
    /// Options of [`Backend::DataVersion`].
    pub data_version: crate::DataVersionOptions,
    /// Options of [`Backend::StatPoll`].
    pub stat: crate::StatPollOptions,
    /// Options of [`Backend::Kernel`].
    pub kernel: crate::KernelOptions,
}

impl BackendOptions {
    /// The trigger builder of `backend` with these options.
    pub(crate) fn arm(&self, backend: Backend) -> Arm {
        match backend {
            Backend::DataVersion => crate::data_version::arm(self.data_version),
            Backend::StatPoll => crate::stat_poll::arm(self.stat),
            Backend::Kernel => crate::kernel::arm(self.kernel),
        }
    }
}

/// The methods every backend's handle has: a thin wrapper around the shared watcher.
macro_rules! backend_handle {
    ($ty:ident) => {
        impl $ty {
            /// The watched file (canonical path).
            pub fn path(&self) -> &std::path::Path {
                self.0.path()
            }

            /// How many threads are blocked in `wait_past` on this watcher now.
            pub fn waiters(&self) -> usize {
                self.0.waiters()
            }

            /// The counters of this process's watcher.
            pub fn stats(&self) -> $crate::WatcherStats {
                self.0.stats()
            }

            /// Whether the watcher of this process stopped for good (file replaced, watcher
            /// died).
            pub fn has_failed(&self) -> bool {
                self.0.has_failed()
            }
        }

        impl honker_core::WakeSource for $ty {
            fn epoch(&self) -> honker_core::Epoch {
                self.0.epoch()
            }

            fn wait_past(
                &self,
                seen: honker_core::Epoch,
                deadline: Option<std::time::Instant>,
            ) -> Result<honker_core::Epoch, honker_core::WakeError> {
                self.0.wait_past(seen, deadline)
            }

            fn kick(&self) {
                self.0.kick()
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.0).finish()
            }
        }
    };
}

pub(crate) use backend_handle;

/// What the handle of a backend compiled out of this build holds: no value exists, so its
/// [`backend_handle!`] methods can never run.
#[cfg(any(not(feature = "kernel"), not(feature = "stat")))]
#[derive(Debug)]
pub(crate) enum NotCompiled {}

#[cfg(any(not(feature = "kernel"), not(feature = "stat")))]
impl NotCompiled {
    pub(crate) fn path(&self) -> &std::path::Path {
        match *self {}
    }

    pub(crate) fn waiters(&self) -> usize {
        match *self {}
    }

    pub(crate) fn stats(&self) -> crate::WatcherStats {
        match *self {}
    }

    pub(crate) fn has_failed(&self) -> bool {
        match *self {}
    }

    pub(crate) fn epoch(&self) -> honker_core::Epoch {
        match *self {}
    }

    pub(crate) fn wait_past(
        &self,
        _seen: honker_core::Epoch,
        _deadline: Option<std::time::Instant>,
    ) -> Result<honker_core::Epoch, honker_core::WakeError> {
        match *self {}
    }

    pub(crate) fn kick(&self) {
        match *self {}
    }
}
