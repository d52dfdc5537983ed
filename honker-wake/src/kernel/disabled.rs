//! The Kernel backend when the `kernel` feature is off: the same names, and
//! [`WakeError::NotCompiled`] from every way to start it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use honker_core::WakeError;

use crate::backend::{Backend, NotCompiled, backend_handle};
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
pub struct Kernel(NotCompiled);

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
}

backend_handle!(Kernel);

fn not_compiled() -> WakeError {
    WakeError::NotCompiled {
        backend: Backend::Kernel.name(),
        feature: "kernel",
    }
}

pub(crate) fn arm(_opts: KernelOptions) -> Arm {
    Arc::new(|_path: &Path| Err(not_compiled()))
}
