//! Fork-awareness. A real `fork` needs `unsafe`, which this crate forbids (the extension's tests
//! fork for real), so these tests give the watcher a fake process id and change it: to the
//! watcher, the handle has then crossed a `fork` into a child where its thread does not exist.

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use honker_core::WakeSource;
use honker_wake::{DataVersion, DataVersionOptions, Hub};

use crate::{Db, commit, deadline, wait_until};

static DATA_VERSION_PID: AtomicU32 = AtomicU32::new(1000);

fn data_version_pid() -> u32 {
    DATA_VERSION_PID.load(Ordering::SeqCst)
}

#[test]
fn a_handle_used_after_fork_starts_its_own_watcher_and_never_hangs() {
    let db = Db::new("wal");
    let writer = db.connect();
    let wake =
        DataVersion::start_with_pid_fn(&db.path, DataVersionOptions::default(), data_version_pid)
            .unwrap();
    // The parent waits once, and has a waiter parked when it forks.
    let seen = wake.epoch();
    commit(&writer);
    let before_fork = wake.wait_past(seen, Some(deadline())).unwrap();
    assert!(before_fork > seen);
    thread::scope(|s| {
        let parent_waiter = s.spawn(|| wake.wait_past(before_fork, Some(deadline())));
        wait_until("the parent's waiter parked", || wake.waiters() >= 1);

        DATA_VERSION_PID.store(1001, Ordering::SeqCst); // fork: we are the child now
        assert_eq!(
            wake.waiters(),
            0,
            "the parent's waiters are not in the child"
        );
        // An epoch sampled before the fork: nothing commits, yet the wait must return at once
        // instead of waiting on a thread that does not exist.
        let now = wake.wait_past(before_fork, Some(deadline())).unwrap();
        assert!(
            now > before_fork,
            "a wait in the forked child hung until its deadline"
        );
        // The child's own watcher sees commits.
        let seen = wake.epoch();
        commit(&writer);
        assert!(wake.wait_past(seen, Some(deadline())).unwrap() > seen);
        let seen = wake.epoch();
        wake.kick();
        assert!(wake.epoch() > seen);

        DATA_VERSION_PID.store(1000, Ordering::SeqCst); // back in the parent
        commit(&writer);
        let woke = parent_waiter.join().unwrap().unwrap();
        assert!(
            woke > before_fork,
            "the parent's watcher stopped after the fork"
        );
    });
    // Dropping in the parent joins the parent's watcher; the child's is left alone.
    drop(wake);
}

static HUB_PID: AtomicU32 = AtomicU32::new(2000);

fn hub_pid() -> u32 {
    HUB_PID.load(Ordering::SeqCst)
}

#[test]
fn hub_handles_pinned_before_fork_work_in_the_child() {
    let db = Db::new("wal");
    let writer = db.connect();
    let hub = Hub::with_pid_fn(DataVersionOptions::default(), hub_pid);
    let pinned = hub.pinned(&db.path).unwrap();
    let seen = pinned.epoch();
    commit(&writer);
    let before_fork = pinned.wait_past(seen, Some(deadline())).unwrap();

    HUB_PID.store(2001, Ordering::SeqCst);
    let in_child = hub.pinned(&db.path).unwrap();
    assert_eq!(hub.watcher_count(), 1);
    let now = in_child.wait_past(before_fork, Some(deadline())).unwrap();
    assert!(
        now > before_fork,
        "a wait in the forked child hung until its deadline"
    );
    let seen = in_child.epoch();
    commit(&writer);
    assert!(in_child.wait_past(seen, Some(deadline())).unwrap() > seen);
    // The kick reaches the child's watcher.
    let seen = in_child.epoch();
    hub.kick(&db.path);
    assert!(in_child.epoch() > seen);
    HUB_PID.store(2000, Ordering::SeqCst);
}
