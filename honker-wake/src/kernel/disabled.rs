//! The Kernel backend when the `kernel` feature is off: the same names, and
//! [`WakeError::NotCompiled`] from every way to start it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use honker_core::WakeError;

use crate::backend::Backend;
use crate::watch::Arm;

/// Options of the Kernel backend (compiled out: enable the `kernel` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOptions {
    /// How often `data_version` would be polled with no event.
    pub floor: Duration,
    /// Test hook, not part of the stable API.
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

/// The kernel-event backend, not compiled in this build: [`Kernel::start`] fails with
/// [`WakeError::NotCompiled`]. Enable the `kernel` feature of honker-wake.
#[derive(Debug)]
pub struct Kernel(std::convert::Infallible);

impl Kernel {
    /// Always fails: the backend is not compiled in.
    ///
    /// # Errors
    ///
    /// [`WakeError::NotCompiled`].
    pub fn start(_db_path: &Path, _opts: KernelOptions) -> Result<Kernel, WakeError> {
        Err(not_compiled())
    }

    /// The event source of this build: `"none"` (the backend is not compiled in).
    pub fn event_source() -> &'static str {
        "none"
    }

    /// The watched file (never reached: no value of this type exists).
    pub fn path(&self) -> &Path {
        match self.0 {}
    }

    /// How many threads wait (never reached).
    pub fn waiters(&self) -> usize {
        match self.0 {}
    }

    /// The watcher's counters (never reached).
    pub fn stats(&self) -> crate::WatcherStats {
        match self.0 {}
    }

    /// Whether the watcher failed (never reached).
    pub fn has_failed(&self) -> bool {
        match self.0 {}
    }
}

impl honker_core::WakeSource for Kernel {
    fn epoch(&self) -> honker_core::Epoch {
        match self.0 {}
    }

    fn wait_past(
        &self,
        _seen: honker_core::Epoch,
        _deadline: Option<std::time::Instant>,
    ) -> Result<honker_core::Epoch, WakeError> {
        match self.0 {}
    }

    fn kick(&self) {
        match self.0 {}
    }
}

fn not_compiled() -> WakeError {
    WakeError::NotCompiled {
        backend: Backend::Kernel.name(),
        feature: "kernel",
    }
}

pub(crate) fn arm(_opts: KernelOptions) -> Arm {
    Arc::new(|_path: &Path| Err(not_compiled()))
}
