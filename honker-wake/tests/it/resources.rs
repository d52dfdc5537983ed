//! Watchers give back what they take: 300 cycles of creating, using and dropping handles of every
//! compiled backend leave the thread and file-descriptor counts where they were. Runs in a child
//! process, alone.
//!
//! notify's event thread (Kernel backend) ends on its own shortly after its watcher drops, and a
//! joined thread leaves `/proc/self/task` a moment after the join, so the counts are awaited with
//! a deadline rather than compared at once. A real leak never settles.

use honker_wake::{Backend, Hub};

use crate::{Db, commit, deadline, fd_count, run_child, thread_count, wait_until};

#[test]
fn three_hundred_start_stop_cycles_of_every_backend_leave_no_threads_or_fds_behind() {
    run_child("resources");
}

pub(crate) fn child_main() {
    for backend in Backend::compiled() {
        cycles(backend);
    }
}

fn cycles(backend: Backend) {
    let db = Db::new("wal");
    let writer = db.connect();
    let hub = Hub::global();
    // Warm up with one full cycle: the Hub, SQLite's process-wide state and the writer's own
    // -wal and -shm descriptors are allocated on first use.
    let before = thread_count();
    cycle(hub, &db, &writer, backend);
    settle_thread_count(before, 0);
    let (threads, fds) = (thread_count(), fd_count());
    for i in 1..=300 {
        cycle(hub, &db, &writer, backend);
        settle_thread_count(threads, i);
    }
    wait_until(&format!("{backend}: fd count back to {fds}"), || {
        fd_count() == fds
    });
    assert_eq!(thread_count(), threads, "{backend}: threads leaked");
    assert_eq!(
        fd_count(),
        fds,
        "{backend}: file descriptors leaked: {:?}",
        open_files()
    );
}

fn cycle(hub: &Hub, db: &Db, writer: &rusqlite::Connection, backend: Backend) {
    let wake = hub.wake_for_with(&db.path, backend).unwrap();
    assert_eq!(hub.watcher_count(), 1);
    let seen = wake.epoch();
    commit(writer);
    let now = wake.wait_past(seen, Some(deadline())).unwrap();
    assert!(now > seen, "lost wake");
    drop(wake);
    assert_eq!(hub.watcher_count(), 0, "watcher outlived its handles");
}

/// `pthread_join` returns once the kernel has cleared the thread's tid, which is a moment before
/// the task is reaped and leaves `/proc/self/task`; so wait for the count instead of reading it
/// once. A real leak never settles and fails at the deadline.
fn settle_thread_count(expected: usize, cycle: usize) {
    wait_until(
        &format!("cycle {cycle}: thread count back to {expected}"),
        || thread_count() == expected,
    );
}

fn open_files() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .collect()
}
