//! Cancellable waits: a blocking wait started with a cancel key stops, from any thread of the
//! process, when [`cancel`] is called with that key.
//!
//! `sqlite3_interrupt` cannot reach a SQL function blocked on a condition variable, and
//! `sqlite3_is_interrupted` only exists from SQLite 3.41, so the blocking SQL functions take a
//! cancel key instead. [`cancellable`] wraps the wait's [`WakeSource`]: [`cancel`] marks every
//! wrapper of the key and kicks its source, so the blocked `wait_past` returns at once and the
//! wrapper turns the return into [`WakeError::Cancelled`].
//!
//! A cancel that finds no running wait with its key is kept for [`PENDING_FOR`], and the next wait
//! started with the key fails at once: a cancel that races ahead of the wait it was meant for is
//! not lost. Use a key per waiter (a worker, a listener), not one per process.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::wake::{Epoch, WakeError, WakeSource};

/// How long a cancel that found no running wait stays pending for the next wait with its key.
pub const PENDING_FOR: Duration = Duration::from_secs(60);

/// The longest cancel key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 256;

#[derive(Default)]
struct Registry {
    running: HashMap<String, Vec<Arc<Waiter>>>,
    pending: HashMap<String, Instant>,
}

struct Waiter {
    cancelled: AtomicBool,
    source: Arc<dyn WakeSource>,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A wake source whose waits fail with [`WakeError::Cancelled`] once its key is cancelled.
///
/// Dropping it unregisters the wait.
pub struct Cancellable {
    key: String,
    waiter: Arc<Waiter>,
}

impl fmt::Debug for Cancellable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancellable")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Wrap `source` so that [`cancel`]`(key)` stops its waits.
///
/// # Errors
///
/// [`WakeError::Cancelled`] at once when a cancel of `key` is pending (it is used up).
pub fn cancellable(key: &str, source: Arc<dyn WakeSource>) -> Result<Cancellable, WakeError> {
    let mut reg = registry();
    let now = Instant::now();
    reg.pending
        .retain(|_, at| now.duration_since(*at) < PENDING_FOR);
    if reg.pending.remove(key).is_some() {
        return Err(WakeError::Cancelled { key: key.into() });
    }
    let waiter = Arc::new(Waiter {
        cancelled: AtomicBool::new(false),
        source,
    });
    reg.running
        .entry(key.to_owned())
        .or_default()
        .push(waiter.clone());
    Ok(Cancellable {
        key: key.to_owned(),
        waiter,
    })
}

/// Stop every running wait started with `key`; returns how many it stopped.
///
/// When none is running, the cancel stays pending for [`PENDING_FOR`] and the next wait started
/// with `key` fails at once.
pub fn cancel(key: &str) -> usize {
    let waiters = {
        let mut reg = registry();
        match reg.running.remove(key) {
            Some(w) => w,
            None => {
                reg.pending.insert(key.to_owned(), Instant::now());
                return 0;
            }
        }
    };
    for w in &waiters {
        w.cancelled.store(true, Ordering::SeqCst);
        // Over-waking is fine: every waiter of the file looks once more; ours sees the flag.
        w.source.kick();
    }
    waiters.len()
}

impl Cancellable {
    fn check(&self) -> Result<(), WakeError> {
        if self.waiter.cancelled.load(Ordering::SeqCst) {
            Err(WakeError::Cancelled {
                key: self.key.clone(),
            })
        } else {
            Ok(())
        }
    }
}

impl WakeSource for Cancellable {
    fn epoch(&self) -> Epoch {
        self.waiter.source.epoch()
    }

    fn wait_past(&self, seen: Epoch, deadline: Option<Instant>) -> Result<Epoch, WakeError> {
        // A cancel before this check is seen here; one after it kicks the source, which moves the
        // epoch past `seen`, so the wait below returns at once and the second check sees it.
        self.check()?;
        let epoch = self.waiter.source.wait_past(seen, deadline);
        self.check()?;
        epoch
    }

    fn kick(&self) {
        self.waiter.source.kick();
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        let mut reg = registry();
        if let Some(list) = reg.running.get_mut(&self.key) {
            list.retain(|w| !Arc::ptr_eq(w, &self.waiter));
            if list.is_empty() {
                reg.running.remove(&self.key);
            }
        }
    }
}

/// How many waits are registered under a cancel key, and how many cancels are pending (for
/// tests and leak checks).
pub fn registered() -> (usize, usize) {
    let reg = registry();
    (reg.running.values().map(Vec::len).sum(), reg.pending.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualWake;

    #[test]
    fn cancel_stops_a_running_wait_and_only_its_key() {
        let wake: Arc<dyn WakeSource> = Arc::new(ManualWake::default());
        let a = Arc::new(cancellable("unit-a", wake.clone()).unwrap());
        let b = cancellable("unit-b", wake.clone()).unwrap();
        let seen = a.epoch();
        let t = {
            let a = a.clone();
            std::thread::spawn(move || a.wait_past(seen, None))
        };
        while registered().0 < 2 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(cancel("unit-a"), 1);
        let e = t.join().unwrap().unwrap_err();
        assert_eq!(e.code(), "wait.cancelled");
        // b was over-woken by the kick but is not cancelled.
        let far = Instant::now() + Duration::from_millis(10);
        b.wait_past(b.epoch(), Some(far)).unwrap();
    }

    #[test]
    fn a_cancel_ahead_of_its_wait_is_kept_for_the_next_one() {
        let wake: Arc<dyn WakeSource> = Arc::new(ManualWake::default());
        assert_eq!(cancel("unit-early"), 0);
        let e = cancellable("unit-early", wake.clone()).unwrap_err();
        assert_eq!(e.code(), "wait.cancelled");
        // Used up: the next wait with the key runs.
        let w = cancellable("unit-early", wake).unwrap();
        let far = Instant::now() + Duration::from_millis(5);
        w.wait_past(w.epoch(), Some(far)).unwrap();
    }
}
