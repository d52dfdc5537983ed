//! The Kernel backend on BSD and macOS: kqueue (never FSEvents) on the database's directory, which
//! reports entries created and removed, plus the `-wal` and `-journal` files, which report writes.
//! kqueue needs a descriptor per watched file: SQLite holds no POSIX locks on `-wal` or `-journal`,
//! so closing those is harmless; the db and `-shm` files are never watched (closing a descriptor
//! of them would drop the process's locks).

use std::path::Path;

use honker_core::WakeError;
use notify::{Config, KqueueWatcher, RecursiveMode, Watcher};

use super::events::{self, Names};
use crate::KernelOptions;
use crate::watch::Armed;

pub(super) const SOURCE: &str = "kqueue";

pub(super) fn arm(path: &Path, opts: KernelOptions) -> Result<Armed, WakeError> {
    events::arm(
        path,
        opts,
        |handler| KqueueWatcher::new(handler, Config::default()),
        |w: &mut KqueueWatcher, names: &Names| {
            w.watch(&names.dir, RecursiveMode::NonRecursive)?;
            add_files(w, names);
            Ok(())
        },
        add_files,
    )
}

/// Watch `-wal` and `-journal` if they exist now (they come and go with the journal mode and
/// checkpoints); a failure leaves the directory watch and the floor to catch commits.
fn add_files(w: &mut KqueueWatcher, names: &Names) {
    for p in [names.wal_path(), names.journal_path()] {
        if p.exists() {
            // Unwatch first, so re-adding never leaves a second descriptor open.
            w.unwatch(&p).ok();
            w.watch(&p, RecursiveMode::NonRecursive).ok();
        }
    }
}
