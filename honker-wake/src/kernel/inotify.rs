//! The Kernel backend on Linux: one inotify watch on the database's directory (never on the db or
//! `-shm` file; inotify watches by path and holds no descriptor of the watched files).

use std::path::Path;

use honker_core::WakeError;
use notify::{Config, INotifyWatcher, RecursiveMode, Watcher};

use super::events::{self, Names};
use crate::KernelOptions;
use crate::watch::Armed;

pub(super) const SOURCE: &str = "inotify";

pub(super) fn arm(path: &Path, opts: KernelOptions) -> Result<Armed, WakeError> {
    events::arm(
        path,
        opts,
        |handler| INotifyWatcher::new(handler, Config::default()),
        |w: &mut INotifyWatcher, names: &Names| w.watch(&names.dir, RecursiveMode::NonRecursive),
        |_, _| {},
    )
}
