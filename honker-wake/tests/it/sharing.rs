//! Many waiters share one watcher: 50 threads waiting on one file cost one watcher thread (two for
//! the Kernel backend on kqueue: its own and notify's event thread; on Linux the watcher reads
//! inotify itself), for every compiled backend.
//! Runs in a child process, alone, so thread counts are exact.

use std::sync::{Arc, Barrier};
use std::thread;

use honker_wake::{Backend, Hub, Kernel};

use crate::{Db, commit, deadline, run_child, thread_count, wait_until};

const WAITERS: usize = 50;

#[test]
fn fifty_waiters_share_one_watcher() {
    run_child("sharing");
}

pub(crate) fn child_main() {
    for backend in Backend::compiled() {
        share(backend);
    }
}

fn share(backend: Backend) {
    // The Kernel backend on kqueue runs notify's thread too (inotify and `stat` do not).
    let events = backend == Backend::Kernel && Kernel::event_source() == "kqueue";
    let watcher_threads = if events { 2 } else { 1 };
    let db = Db::new("wal");
    let writer = db.connect();
    let hub = Hub::global();
    assert_eq!(hub.watcher_count(), 0);
    let before = thread_count();
    let sampled = Arc::new(Barrier::new(WAITERS + 1));
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let path = db.path.clone();
            let sampled = sampled.clone();
            thread::spawn(move || {
                let wake = hub.wake_for_with(&path, backend).unwrap();
                let seen = wake.epoch();
                sampled.wait();
                let now = wake.wait_past(seen, Some(deadline())).unwrap();
                (seen, now)
            })
        })
        .collect();
    sampled.wait();
    wait_until("all waiters parked", || hub.waiters(&db.path) == WAITERS);
    assert_eq!(hub.watcher_count(), 1, "one watcher per file");
    assert_eq!(
        thread_count(),
        before + WAITERS + watcher_threads,
        "{backend}: 50 waiters must cost exactly one watcher"
    );
    commit(&writer);
    for w in waiters {
        let (seen, now) = w.join().unwrap();
        assert!(now > seen, "a waiter missed the commit");
    }
    assert_eq!(
        hub.watcher_count(),
        0,
        "the watcher outlived its last handle"
    );
    // notify's event thread ends a moment after its watcher drops.
    wait_until(&format!("{backend}: threads back to {before}"), || {
        thread_count() == before
    });
}

/// Issue 11.5: the Hub forgot a watcher whose last handle was dropped without raising its floor,
/// so the next watcher of the file started at epoch 0 and an epoch sampled on the old handle
/// looked newer than every epoch of the new one: a wait past it slept through a commit.
#[test]
fn epochs_never_go_back_when_a_watcher_restarts_after_its_last_handle_dropped() {
    let db = Db::new("wal");
    let writer = db.connect();
    let hub = Hub::with_options(honker_wake::BackendOptions::default());
    let old = hub.wake_for(&db.path).unwrap();
    for _ in 0..5 {
        let seen = old.epoch();
        commit(&writer);
        old.wait_past(seen, Some(deadline())).unwrap();
    }
    let seen = old.epoch();
    assert!(seen.0 >= 5, "{seen:?}");
    drop(old);
    assert_eq!(hub.watcher_count(), 0);
    let new = hub.wake_for(&db.path).unwrap();
    assert!(new.epoch() > seen, "{:?} <= {seen:?}", new.epoch());
    commit(&writer);
    let now = new.wait_past(seen, Some(deadline())).unwrap();
    assert!(
        now > seen,
        "the wait slept through the commit: {now:?} <= {seen:?}"
    );
}
