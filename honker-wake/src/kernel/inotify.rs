//! The Kernel backend on Linux: one inotify watch on the database's directory (never on the db or
//! `-shm` file; inotify watches by path and holds no descriptor of the watched files).
//!
//! The watcher thread reads the inotify descriptor itself, registered in its `mio::Poll` beside the
//! stop `Waker`: an event wakes the thread that settles on `data_version` directly, with no event
//! thread in between (notify's thread cost one more thread wake-up, ~40 µs, per commit).

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use honker_core::WakeError;
use inotify::{EventMask, Inotify, WatchMask};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::events::{Names, WakerStop};
use crate::KernelOptions;
use crate::watch::{Armed, Signal, Trigger};

pub(super) const SOURCE: &str = "inotify";

const WAKE: Token = Token(0);
const INOTIFY: Token = Token(1);

/// The events of the database's directory watched while somebody waits.
const WATCHING: WatchMask = WatchMask::MODIFY
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// The events watched while the watcher is parked: all but `MODIFY`, the one raised by every
/// write of every process to the WAL. Each costs the writing process an event in this watch's
/// queue inside its `write` (measured with 4 busy worker processes, each with a parked
/// watcher: a sixth of their commits' time). The rare ones stay, so a closed liveness lock, a
/// replaced or removed file, is still reported once the watcher wakes.
const PARKED: WatchMask = WATCHING.difference(WatchMask::MODIFY);

/// What was seen since the thread last reported (the order of reporting is fixed in `wait`).
#[derive(Debug, Default)]
struct Seen {
    hint: bool,
    overflow: bool,
    moved: bool,
    released: bool,
}

struct InotifyTrigger {
    poll: Poll,
    events: Events,
    inotify: Inotify,
    buf: Vec<u8>,
    names: Names,
    seen: Seen,
}

impl InotifyTrigger {
    /// Read every queued event into `seen`.
    fn drain(&mut self) {
        loop {
            let events = match self.inotify.read_events(&mut self.buf) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A broken read may mean lost events: treat it as an overflow.
                Err(_) => {
                    self.seen.overflow = true;
                    return;
                }
            };
            for e in events {
                classify(&self.names, &mut self.seen, e.mask, e.name);
            }
        }
    }
}

/// One inotify event into `seen`, as `events::classify` does for notify's events.
fn classify(names: &Names, seen: &mut Seen, mask: EventMask, name: Option<&std::ffi::OsStr>) {
    if mask.contains(EventMask::Q_OVERFLOW) {
        seen.overflow = true;
        return;
    }
    let Some(name) = name else {
        // The directory itself was removed, moved or unwatched: `stat` the file now.
        if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED) {
            seen.moved = true;
            seen.hint = true;
        }
        return;
    };
    // A claiming process's liveness lock closes after writing only when the process ends.
    if mask.contains(EventMask::CLOSE_WRITE) && honker_core::liveness::is_lock_file(&names.db, name)
    {
        seen.released = true;
        return;
    }
    if name == names.db {
        seen.hint = true;
        if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM | EventMask::MOVED_TO) {
            seen.moved = true;
        }
    } else if name == names.wal || name == names.journal {
        seen.hint = true;
    }
}

impl Trigger for InotifyTrigger {
    fn quiet(&mut self, quiet: bool) {
        // Adding a watch on a path already watched replaces its mask, in one system call.
        let mask = if quiet { PARKED } else { WATCHING };
        if self.inotify.watches().add(&self.names.dir, mask).is_err() && !quiet {
            // No events from here on (the directory went away, a limit): look at the file
            // now, as after a removal; `stat` and the `data_version` floor carry on.
            self.seen.moved = true;
            self.seen.hint = true;
        }
    }

    fn wait(&mut self, until: Instant, quit: &dyn Fn() -> bool) -> Signal {
        loop {
            self.drain();
            if std::mem::take(&mut self.seen.overflow) {
                return Signal::Overflow;
            }
            if std::mem::take(&mut self.seen.moved) {
                return Signal::Moved;
            }
            if std::mem::take(&mut self.seen.released) {
                return Signal::Released;
            }
            if std::mem::take(&mut self.seen.hint) {
                return Signal::Hint;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || quit() {
                return Signal::Due;
            }
            match self.poll.poll(&mut self.events, Some(left)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    std::thread::sleep(left.min(std::time::Duration::from_millis(10)));
                    return Signal::Due;
                }
            }
        }
    }
}

pub(super) fn arm(path: &Path, opts: KernelOptions) -> Result<Armed, WakeError> {
    let start_error = |what: &str, e: &dyn std::fmt::Display| WakeError::Start {
        path: path.to_owned(),
        reason: format!("{what}: {e}"),
    };
    let names = Names::of(path)?;
    let poll = Poll::new().map_err(|e| start_error("cannot create a mio::Poll", &e))?;
    let waker = Arc::new(
        Waker::new(poll.registry(), WAKE)
            .map_err(|e| start_error("cannot create a mio::Waker", &e))?,
    );
    let inotify = Inotify::init().map_err(|e| {
        start_error(
            "cannot start file events",
            &super::events::with_limit_hint(&notify::Error::io(e)),
        )
    })?;
    inotify.watches().add(&names.dir, WATCHING).map_err(|e| {
        start_error(
            "cannot watch the database's directory",
            &super::events::with_limit_hint(&notify::Error::io(e)),
        )
    })?;
    poll.registry()
        .register(
            &mut SourceFd(&inotify.as_raw_fd()),
            INOTIFY,
            Interest::READABLE,
        )
        .map_err(|e| start_error("cannot poll the inotify descriptor", &e))?;
    Ok(Armed {
        trigger: Box::new(InotifyTrigger {
            poll,
            events: Events::with_capacity(8),
            inotify,
            buf: vec![0; 4096],
            names,
            seen: Seen::default(),
        }),
        stopper: Some(Arc::new(WakerStop(waker))),
        floor: opts.floor,
        trust_hints: opts.trust_raw_events,
    })
}
