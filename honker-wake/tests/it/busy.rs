//! Locks held by other connections make polls busy; the watcher skips those ticks, keeps its
//! connection and baseline, and still wakes on the commit that follows.

use std::thread;

use crate::{Db, commit, counter, deadline, wait_until};

#[test]
fn exclusive_lock_in_rollback_mode_does_not_kill_the_watcher() {
    crate::for_each_backend(exclusive_lock_in_rollback_mode_does_not_kill_the_watcher_with);
}

fn exclusive_lock_in_rollback_mode_does_not_kill_the_watcher_with(backend: honker_wake::Backend) {
    let db = Db::new("delete");
    let wake = crate::start(backend, &db.path);
    let holder = db.connect();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let seen = wake.epoch();
    thread::scope(|s| {
        let waiter = s.spawn(|| wake.wait_past(seen, Some(deadline())));
        let busy_before = wake.stats().busy_skips;
        if backend == honker_wake::Backend::Kernel {
            // It polls only on events (the strict floor is an hour), and taking a lock raises
            // none: its polls hit the lock when the commit's events come.
            wait_until("the waiter parked", || wake.waiters() >= 1);
        } else {
            wait_until("the watcher has hit the lock a few times", || {
                wake.stats().busy_skips >= busy_before + 3
            });
        }
        holder
            .execute_batch("UPDATE counter SET n = n + 1; COMMIT;")
            .unwrap();
        let now = waiter.join().unwrap().unwrap();
        assert!(now > seen, "the commit that released the lock did not wake");
    });
    assert_eq!(
        wake.stats().reconnects,
        0,
        "a busy poll must keep the connection"
    );
    assert!(!wake.has_failed());
    let seen = wake.epoch();
    commit(&db.connect());
    assert!(wake.wait_past(seen, Some(deadline())).unwrap() > seen);
    assert_eq!(counter(&holder), 2);
}

#[test]
fn held_write_lock_in_wal_mode_does_not_kill_the_watcher() {
    crate::for_each_backend(held_write_lock_in_wal_mode_does_not_kill_the_watcher_with);
}

fn held_write_lock_in_wal_mode_does_not_kill_the_watcher_with(backend: honker_wake::Backend) {
    let db = Db::new("wal");
    let wake = crate::start(backend, &db.path);
    let holder = db.connect();
    holder
        .execute_batch("BEGIN IMMEDIATE; UPDATE counter SET n = 5;")
        .unwrap();
    let seen = wake.epoch();
    thread::scope(|s| {
        let waiter = s.spawn(|| wake.wait_past(seen, Some(deadline())));
        let polls_before = wake.stats().polls;
        wait_until("the watcher polled while the write lock was held", || {
            wake.stats().polls >= polls_before + 3
        });
        holder.execute_batch("COMMIT").unwrap();
        assert!(waiter.join().unwrap().unwrap() > seen);
    });
    assert_eq!(wake.stats().reconnects, 0);
    assert!(!wake.has_failed());
    assert_eq!(counter(&holder), 5);
}
