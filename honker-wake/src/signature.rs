//! What `stat` says about a database's files: the change signal of the StatPoll backend and of the
//! Kernel backend's portable fallback. Never opens a file (closing a descriptor of the database
//! would drop the POSIX locks SQLite holds on it in this process).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::watch::{Signal, Trigger};

/// `(dev, ino, size, mtime_ns)` of one file, or `None` when it does not exist.
type FileSig = Option<(u64, u64, u64, i128)>;

fn file_sig(path: &Path) -> FileSig {
    let meta = std::fs::metadata(path).ok()?;
    let (dev, ino) = dev_ino(&meta);
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    Some((dev, ino, meta.len(), mtime))
}

#[cfg(unix)]
fn dev_ino(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn dev_ino(_meta: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// The signature of a database: its own file and its `-wal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    db: FileSig,
    wal: FileSig,
}

/// A trigger that `stat`s the db and `-wal` files every `interval`: any difference, a shrink
/// included, is a hint; a db file with another inode (or none) is [`Signal::Moved`].
pub(crate) struct StatTrigger {
    db: PathBuf,
    wal: PathBuf,
    interval: Duration,
    last: Signature,
}

impl StatTrigger {
    /// Take the first signature now (before the watcher reads its baseline).
    pub(crate) fn new(db: &Path, interval: Duration) -> StatTrigger {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let mut t = StatTrigger {
            db: db.to_owned(),
            wal: PathBuf::from(wal),
            interval,
            last: Signature {
                db: None,
                wal: None,
            },
        };
        t.last = t.now();
        t
    }

    fn now(&self) -> Signature {
        Signature {
            db: file_sig(&self.db),
            wal: file_sig(&self.wal),
        }
    }
}

impl Trigger for StatTrigger {
    fn wait(&mut self, until: Instant, quit: &dyn Fn() -> bool) -> Signal {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || quit() {
                return Signal::Due;
            }
            thread::sleep(left.min(self.interval));
            let sig = self.now();
            if sig != self.last {
                let moved = match (sig.db, self.last.db) {
                    (Some(a), Some(b)) => (a.0, a.1) != (b.0, b.1),
                    _ => true,
                };
                self.last = sig;
                return if moved { Signal::Moved } else { Signal::Hint };
            }
        }
    }
}
