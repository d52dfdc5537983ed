//! The watcher never holds a read snapshot between polls: `wal_checkpoint(TRUNCATE)` succeeds
//! while waiters keep it polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Db, commit, deadline, wait_until};

#[test]
fn truncate_checkpoint_succeeds_while_a_waiter_is_parked() {
    crate::for_each_backend(truncate_checkpoint_succeeds_while_a_waiter_is_parked_with);
}

fn truncate_checkpoint_succeeds_while_a_waiter_is_parked_with(backend: honker_wake::Backend) {
    let db = Db::new("wal");
    let writer = db.connect();
    let wake = crate::start(backend, &db.path);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        // Someone is always waiting, so the watcher polls throughout.
        s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                let seen = wake.epoch();
                wake.wait_past(seen, Some(Instant::now() + Duration::from_millis(50)))
                    .unwrap();
            }
        });
        wait_until("the waiter parked", || wake.waiters() >= 1);
        for _ in 0..20 {
            commit(&writer);
            let polls = wake.stats().polls;
            wait_until("the watcher polled", || wake.stats().polls > polls);
            let (busy, log, done): (i64, i64, i64) = writer
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            assert_eq!(busy, 0, "TRUNCATE checkpoint blocked by the watcher");
            assert_eq!((log, done), (0, 0));
            let mut wal = db.path.clone().into_os_string();
            wal.push("-wal");
            assert_eq!(std::fs::metadata(wal).unwrap().len(), 0);
        }
        stop.store(true, Ordering::Release);
    });
    let seen = wake.epoch();
    commit(&writer);
    assert!(wake.wait_past(seen, Some(deadline())).unwrap() > seen);
}
