//! The event half of the Kernel backend shared by inotify and kqueue: notify's event handler turns
//! events about the database's files into flags and wakes a `mio::Poll`, on which the watcher
//! thread blocks; the same `mio::Waker` stops it.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use honker_core::WakeError;
use mio::{Events, Poll, Token, Waker};
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};

use crate::KernelOptions;
use crate::watch::{Armed, Signal, Stopper, Trigger};

// kqueue only: on Linux the watcher reads inotify itself (inotify.rs).
#[cfg_attr(target_os = "linux", allow(dead_code))]
const WAKE: Token = Token(0);

/// What the event handler saw since the watcher thread last looked.
// kqueue only: on Linux the watcher reads inotify itself (inotify.rs).
#[cfg_attr(target_os = "linux", allow(dead_code))]
#[derive(Debug, Default)]
struct Flags {
    hint: AtomicBool,
    overflow: AtomicBool,
    moved: AtomicBool,
    released: AtomicBool,
}

/// The file names that matter in the watched directory.
#[derive(Debug, Clone)]
pub(super) struct Names {
    pub(super) dir: PathBuf,
    pub(super) db: OsString,
    pub(super) wal: OsString,
    pub(super) journal: OsString,
}

impl Names {
    pub(super) fn of(db_path: &Path) -> Result<Names, WakeError> {
        let (Some(dir), Some(name)) = (db_path.parent(), db_path.file_name()) else {
            return Err(WakeError::Start {
                path: db_path.to_owned(),
                reason: "the path has no directory and file name".into(),
            });
        };
        let with = |suffix: &str| {
            let mut n = name.to_owned();
            n.push(suffix);
            n
        };
        Ok(Names {
            dir: dir.to_owned(),
            db: name.to_owned(),
            wal: with("-wal"),
            journal: with("-journal"),
        })
    }

    // Only kqueue watches these files by descriptor; inotify watches the directory alone.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub(super) fn wal_path(&self) -> PathBuf {
        self.dir.join(&self.wal)
    }

    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub(super) fn journal_path(&self) -> PathBuf {
        self.dir.join(&self.journal)
    }
}

/// Turn one notify event into flags; returns whether anything was flagged.
// kqueue only: on Linux the watcher reads inotify itself (inotify.rs).
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn classify(names: &Names, flags: &Flags, res: notify::Result<notify::Event>) -> bool {
    let event = match res {
        Ok(e) => e,
        // An error from the event source may mean lost events: treat it as an overflow.
        Err(_) => {
            flags.overflow.store(true, Ordering::Release);
            return true;
        }
    };
    if event.need_rescan() {
        flags.overflow.store(true, Ordering::Release);
        return true;
    }
    // A claiming process's liveness lock closes after writing only when the process ends (its
    // checkers open it read-only): wake claimers so they take its jobs back.
    if matches!(
        event.kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
    ) && event.paths.iter().any(|p| {
        p.file_name()
            .is_some_and(|n| honker_core::liveness::is_lock_file(&names.db, n))
    }) {
        flags.released.store(true, Ordering::Release);
        return true;
    }
    let relevant = match event.kind {
        // Opening and reading are not changes (every reader opens and reads).
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    };
    if !relevant {
        return false;
    }
    let mut any = false;
    for p in &event.paths {
        let Some(name) = p.file_name() else { continue };
        if name == names.db {
            any = true;
            if matches!(
                event.kind,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
            ) {
                flags.moved.store(true, Ordering::Release);
            }
        } else if name == names.wal || name == names.journal {
            any = true;
        } else if p == &names.dir {
            // The directory itself (kqueue reports entries added or removed this way).
            any = true;
        }
    }
    if any {
        flags.hint.store(true, Ordering::Release);
    }
    any
}

pub(super) struct WakerStop(pub(super) Arc<Waker>);

impl Stopper for WakerStop {
    fn wake(&self) {
        // A failed wake only delays the stop to the next floor poll.
        self.0.wake().ok();
    }
}

/// The trigger: blocks on the `mio::Poll` until the handler or the stopper wakes it.
// kqueue only: on Linux the watcher reads inotify itself (inotify.rs).
#[cfg_attr(target_os = "linux", allow(dead_code))]
struct EventTrigger<W> {
    poll: Poll,
    events: Events,
    flags: Arc<Flags>,
    watcher: W,
    names: Names,
    /// Called on every hint (kqueue re-adds watches of `-wal`/`-journal` files created since).
    refresh: fn(&mut W, &Names),
}

impl<W: Send> Trigger for EventTrigger<W> {
    fn wait(&mut self, until: Instant, quit: &dyn Fn() -> bool) -> Signal {
        loop {
            if self.flags.overflow.swap(false, Ordering::AcqRel) {
                return Signal::Overflow;
            }
            if self.flags.moved.swap(false, Ordering::AcqRel) {
                return Signal::Moved;
            }
            if self.flags.released.swap(false, Ordering::AcqRel) {
                return Signal::Released;
            }
            if self.flags.hint.swap(false, Ordering::AcqRel) {
                (self.refresh)(&mut self.watcher, &self.names);
                return Signal::Hint;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || quit() {
                return Signal::Due;
            }
            match self.poll.poll(&mut self.events, Some(left)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The poll is broken: fall back to the floor, sleeping instead of spinning.
                Err(_) => {
                    std::thread::sleep(left.min(std::time::Duration::from_millis(10)));
                    return Signal::Due;
                }
            }
        }
    }
}

/// Build the trigger for `db_path`: `make` creates notify's watcher with the given handler, and
/// `watch` adds the watches.
// kqueue only: on Linux the watcher reads inotify itself (inotify.rs).
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub(super) fn arm<W, M, A>(
    db_path: &Path,
    opts: KernelOptions,
    make: M,
    watch: A,
    refresh: fn(&mut W, &Names),
) -> Result<Armed, WakeError>
where
    W: notify::Watcher + Send + 'static,
    M: FnOnce(Box<dyn FnMut(notify::Result<notify::Event>) + Send>) -> notify::Result<W>,
    A: FnOnce(&mut W, &Names) -> notify::Result<()>,
{
    let start_error = |what: &str, e: &dyn std::fmt::Display| WakeError::Start {
        path: db_path.to_owned(),
        reason: format!("{what}: {e}"),
    };
    let names = Names::of(db_path)?;
    let poll = Poll::new().map_err(|e| start_error("cannot create a mio::Poll", &e))?;
    let waker = Arc::new(
        Waker::new(poll.registry(), WAKE)
            .map_err(|e| start_error("cannot create a mio::Waker", &e))?,
    );
    let flags = Arc::new(Flags::default());
    let handler = {
        let (names, flags, waker) = (names.clone(), flags.clone(), waker.clone());
        Box::new(move |res: notify::Result<notify::Event>| {
            if classify(&names, &flags, res) {
                waker.wake().ok();
            }
        })
    };
    let mut watcher =
        make(handler).map_err(|e| start_error("cannot start file events", &with_limit_hint(&e)))?;
    watch(&mut watcher, &names).map_err(|e| {
        start_error(
            "cannot watch the database's directory",
            &with_limit_hint(&e),
        )
    })?;
    Ok(Armed {
        trigger: Box::new(EventTrigger {
            poll,
            events: Events::with_capacity(8),
            flags,
            watcher,
            names,
            refresh,
        }),
        stopper: Some(Arc::new(WakerStop(waker))),
        floor: opts.floor,
        trust_hints: opts.trust_raw_events,
    })
}

/// `e`'s text, with what to do when it is the kernel's limit on file watches (inotify's
/// `max_user_instances` / `max_user_watches`, or descriptors) rather than a fault of the file.
pub(super) fn with_limit_hint(e: &notify::Error) -> String {
    let limit = match &e.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(io) => matches!(
            io.raw_os_error(),
            Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOSPC)
        ),
        _ => false,
    };
    if limit {
        format!(
            "{e} (the system's limit on file watches is reached: raise \
             fs.inotify.max_user_instances and fs.inotify.max_user_watches, or use the \
             data_version backend, e.g. HONKER_WAKE_BACKEND=data_version)"
        )
    } else {
        e.to_string()
    }
}

/// The errno values [`with_limit_hint`] looks for (the same on Linux, BSD and macOS).
mod libc_errno {
    pub(super) const ENFILE: i32 = 23;
    pub(super) const EMFILE: i32 = 24;
    pub(super) const ENOSPC: i32 = 28;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_limit_error_says_what_to_do_and_others_do_not() {
        let limit = with_limit_hint(&notify::Error::new(notify::ErrorKind::MaxFilesWatch));
        assert!(limit.contains("max_user_watches"), "{limit}");
        assert!(
            limit.contains("HONKER_WAKE_BACKEND=data_version"),
            "{limit}"
        );
        assert!(!limit.contains('\\') && !limit.contains("  "), "{limit}");
        let emfile = with_limit_hint(&notify::Error::io(io::Error::from_raw_os_error(24)));
        assert!(emfile.contains("max_user_instances"), "{emfile}");
        let other = with_limit_hint(&notify::Error::path_not_found());
        assert!(!other.contains("max_user"), "{other}");
    }
}
