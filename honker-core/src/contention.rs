//! Sharing the write lock between processes: a busy handler under which no writer starves, and
//! checkpoints that stay rare while the WAL cannot start over (ARCHITECTURE.md, "Fair sharing of
//! the write lock").

use std::cell::Cell;
use std::os::raw::c_int;
use std::time::Duration;

use rusqlite::Connection;

use crate::conn::{BUSY_TIMEOUT, WAL_AUTOCHECKPOINT_PAGES};
use crate::error::Result;

/// The longest sleep of [`fair_busy_handler`], in microseconds; each sleep is uniform in
/// `[MIN, MAX]`.
const FAIR_BUSY_MAX_US: u64 = 1_000;
/// The shortest sleep of [`fair_busy_handler`], in microseconds.
const FAIR_BUSY_MIN_US: u64 = 50;

/// After a threshold checkpoint that did not let the WAL start over, how many more frames the
/// WAL gets before the next checkpoint.
const CHECKPOINT_STEP_FRAMES: c_int = 1_000;

/// Put [`fair_busy_handler`] on `conn` in place of its busy timeout, and [`stepped_checkpoint`]
/// in place of SQLite's automatic checkpoint (at the same threshold). [`crate::open`] does this
/// to every connection it opens. `PRAGMA busy_timeout` and `PRAGMA wal_autocheckpoint` read 0
/// afterwards; setting either puts SQLite's own back.
///
/// # Errors
///
/// SQLite's error when the busy handler cannot be set.
pub fn share_write_lock(conn: &Connection) -> Result<()> {
    conn.wal_hook(Some(stepped_checkpoint));
    conn.busy_handler(Some(fair_busy_handler))?;
    Ok(())
}

/// A busy handler for connections that compete for the write lock with other processes: each
/// retry sleeps a short random time (50 µs to 1 ms) instead of SQLite's growing backoff (which
/// reaches 100 ms per sleep), and gives up with `SQLITE_BUSY` after about
/// [`BUSY_TIMEOUT`] in all. `tries` is how many times it was already called for this lock.
///
/// Why this is fair (ARCHITECTURE.md, "Fair sharing of the write lock"): SQLite's lock is not a
/// queue. With its backoff, a waiter that lost a few times sleeps tens of milliseconds while the
/// winner commits, releases and takes the lock again within microseconds, so the process that
/// holds the lock keeps it. With short, jittered sleeps every waiter looks again within a
/// millisecond, and which waiter's look lands first in a gap between transactions is random, so
/// over many transactions each connection wins its share. Producers need it as much as
/// workers: a producer on SQLite's backoff loses nearly every race against busy workers.
pub fn fair_busy_handler(tries: i32) -> bool {
    let mean_us = (FAIR_BUSY_MIN_US + FAIR_BUSY_MAX_US) / 2;
    let max_tries = BUSY_TIMEOUT.as_micros() as u64 / mean_us;
    if u64::try_from(tries).unwrap_or(0) >= max_tries {
        return false;
    }
    let span = FAIR_BUSY_MAX_US - FAIR_BUSY_MIN_US;
    std::thread::sleep(Duration::from_micros(
        FAIR_BUSY_MIN_US + jitter() % (span + 1),
    ));
    true
}

/// A cheap per-thread pseudo-random number (xorshift, seeded from the clock and the thread).
fn jitter() -> u64 {
    thread_local! {
        static SEED: Cell<u64> = const { Cell::new(0) };
    }
    SEED.with(|s| {
        let mut x = s.get();
        if x == 0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            let here = &x as *const u64 as u64;
            x = (t ^ here.rotate_left(17) ^ u64::from(std::process::id())) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

thread_local! {
    /// The WAL's frames at this thread's last checkpoint (0: none since the WAL went below the
    /// threshold). Per thread, not per connection (the hook is told only the frames); a thread
    /// writing to two files at once may checkpoint one of them a step late, never not at all.
    static CHECKPOINTED_AT: Cell<c_int> = const { Cell::new(0) };
}

/// The WAL hook of honker's connections, in place of SQLite's automatic checkpoint at
/// [`WAL_AUTOCHECKPOINT_PAGES`] frames.
///
/// SQLite's own hook checkpoints after every commit while the WAL holds more frames than the
/// threshold. The WAL starts over only when a writer finds it fully checkpointed and no reader
/// in it; with several processes writing, one of them is nearly always between tries at the
/// write lock (each try reads), so the WAL often grows past the threshold and then every commit
/// checkpoints: two fsyncs and writes to the database file each, measured at a fifth of a
/// worker's transaction time (330 fsyncs where one process alone made 50). This hook
/// checkpoints at the threshold too, then again only once the WAL grew another
/// [`CHECKPOINT_STEP_FRAMES`] (or went below the threshold): the same frames are copied, in
/// fewer and larger checkpoints.
fn stepped_checkpoint(wal: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    let threshold = c_int::try_from(WAL_AUTOCHECKPOINT_PAGES).unwrap_or(c_int::MAX);
    if frames < threshold {
        CHECKPOINTED_AT.set(0);
        return Ok(());
    }
    if !due(CHECKPOINTED_AT.get(), frames) {
        return Ok(());
    }
    CHECKPOINTED_AT.set(frames);
    // As with SQLite's own hook, a checkpoint that cannot run now (another one runs) is no
    // error of the commit, which already happened.
    match wal.checkpoint() {
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => Ok(()),
        r => r,
    }
}

/// Whether a WAL of `frames` (at or past the threshold) is due a checkpoint when the last one
/// was at `last` frames (0: none yet).
fn due(last: c_int, frames: c_int) -> bool {
    last == 0 || frames < last || frames >= last.saturating_add(CHECKPOINT_STEP_FRAMES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_at_the_threshold_then_once_per_step_or_after_a_restart() {
        assert!(due(0, 10_000));
        assert!(!due(10_000, 10_020));
        assert!(!due(10_000, 10_999));
        assert!(due(10_000, 11_000));
        // The WAL started over and filled again meanwhile.
        assert!(due(12_000, 10_010));
    }

    #[test]
    fn the_fair_busy_handler_gives_up_after_about_the_busy_timeout() {
        let mean_us = (FAIR_BUSY_MIN_US + FAIR_BUSY_MAX_US) / 2;
        let last = (BUSY_TIMEOUT.as_micros() as u64 / mean_us) as i32;
        assert!(!fair_busy_handler(last));
        assert!(!fair_busy_handler(last + 1));
        assert!(fair_busy_handler(0));
    }
}
