//! The raw-event race: a file event (or a `stat` change) comes before the commit that caused it
//! is visible, since the WAL frames are written (and, with `synchronous=FULL`, fsynced) before the
//! wal-index says they are committed. A waiter that looks right after each wake must still see
//! every commit: the backends confirm with `data_version` before advancing the epoch.
//!
//! The control arm runs the Kernel backend with `trust_raw_events` (the epoch advances on the
//! raw event) and shows that the same waiter then loses a wake: proof that the test can see
//! the bug it guards against.

use std::sync::atomic::{AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use honker_wake::{Backend, Kernel, KernelOptions, StatPoll, StatPollOptions};

use crate::{Committer, Db, PATIENCE, Watched, counter, for_each_backend};

/// Commits per run of the conformance arm.
const COMMITS: i64 = 60;

/// Another process commits `commits` times, each only after the waiter saw the previous one; the
/// waiter samples the epoch, reads the counter at once, and waits past the sample with
/// `patience`. Returns `Err(n)` when a wait timed out with `n` commits seen: a lost wake.
fn race(wake: &dyn Watched, db: &Db, commits: i64, patience: Duration) -> Result<(), i64> {
    let seen = AtomicI64::new(0);
    let mut child = Committer::spawn();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let reader = db.connect();
            loop {
                let epoch = wake.epoch();
                let n = counter(&reader);
                seen.store(n, Ordering::Release);
                if n >= commits {
                    return Ok(());
                }
                let now = wake
                    .wait_past(epoch, Some(Instant::now() + patience))
                    .expect("wait failed");
                if now == epoch {
                    // Nothing woke us although the commit we wait for was made.
                    seen.store(-1, Ordering::Release);
                    return Err(n);
                }
            }
        });
        for k in 1..=commits {
            child.commit(&db.path);
            // The next commit only after the waiter saw this one, so a later commit's event
            // cannot hide a lost wake.
            let end = Instant::now() + PATIENCE + patience;
            loop {
                let n = seen.load(Ordering::Acquire);
                if n < 0 || n >= k || waiter.is_finished() {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "the waiter neither saw commit {k} nor timed out"
                );
                thread::sleep(Duration::from_micros(200));
            }
            if waiter.is_finished() {
                break;
            }
        }
        waiter.join().unwrap()
    })
}

#[test]
fn a_waiter_that_looks_right_after_each_event_still_sees_every_commit() {
    for_each_backend(|backend| {
        let db = Db::new("wal");
        let wake: Box<dyn Watched> = match backend {
            // Its 20 ms data_version floor would rescue a lost wake within the patience: turn it
            // off, so only the confirmation of each hint stands between the race and a hang.
            Backend::StatPoll => Box::new(
                StatPoll::start(
                    &db.path,
                    StatPollOptions {
                        confirm_every: Duration::from_secs(3600),
                        ..StatPollOptions::default()
                    },
                )
                .unwrap(),
            ),
            _ => crate::start(backend, &db.path),
        };
        if let Err(n) = race(wake.as_ref(), &db, COMMITS, PATIENCE) {
            panic!(
                "{backend}: lost wake after commit {n}: the epoch moved before the commit was visible"
            );
        }
        assert!(!wake.has_failed());
        if backend != Backend::DataVersion {
            assert!(wake.stats().hints > 0, "{backend}: no hint was ever raised");
        }
    });
}

/// The control arm: only where the backend has raw events to trust.
#[test]
fn control_trusting_raw_events_loses_a_wake() {
    // The portable fallback's hints come from `stat` once a millisecond, too late to provoke the
    // race reliably; the control needs real kernel events.
    if !Backend::Kernel.is_compiled() || Kernel::event_source() == "stat" {
        return;
    }
    let db = Db::new("wal");
    let wake = Kernel::start(
        &db.path,
        KernelOptions {
            floor: Duration::from_secs(3600),
            trust_raw_events: true,
        },
    )
    .unwrap();
    let lost = race(&wake, &db, 200, Duration::from_secs(2));
    assert!(
        lost.is_err(),
        "trusting raw events lost no wake in 200 commits: the race was not provoked, so the \
         conformance arm proves nothing on this machine"
    );
}
