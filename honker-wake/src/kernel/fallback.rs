//! The Kernel backend's portable fallback (other systems, or `--cfg honker_force_stat_poll`):
//! hints from `stat` every millisecond instead of kernel events, the same confirmation and floor.

use std::path::Path;
use std::time::Duration;

use honker_core::WakeError;

use crate::KernelOptions;
use crate::signature::StatTrigger;
use crate::watch::Armed;

pub(super) const SOURCE: &str = "stat";

pub(super) fn arm(path: &Path, opts: KernelOptions) -> Result<Armed, WakeError> {
    Ok(Armed {
        trigger: Box::new(StatTrigger::new(path, Duration::from_millis(1))),
        stopper: None,
        floor: opts.floor,
        trust_hints: opts.trust_raw_events,
    })
}
