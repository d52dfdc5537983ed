//! Watchers give back what they take: creating, using and dropping handles leaves the thread and
//! file-descriptor counts where they were. Runs in a child process, alone.

use honker_wake::Hub;

use crate::{Db, commit, deadline, fd_count, run_child, thread_count, wait_until};

#[test]
fn hub_handles_leave_no_threads_or_fds_behind() {
    run_child("resources");
}

pub(crate) fn child_main() {
    let db = Db::new("wal");
    let writer = db.connect();
    let hub = Hub::global();
    // Warm up with one full cycle: the Hub, SQLite's process-wide state and the writer's own
    // -wal and -shm descriptors are allocated on first use.
    cycle(hub, &db, &writer);
    let (threads, fds) = (thread_count(), fd_count());
    for i in 0..300 {
        cycle(hub, &db, &writer);
        settle_thread_count(threads, i);
    }
    assert_eq!(thread_count(), threads, "threads leaked");
    assert_eq!(
        fd_count(),
        fds,
        "file descriptors leaked: {:?}",
        open_files()
    );
}

fn cycle(hub: &Hub, db: &Db, writer: &rusqlite::Connection) {
    let wake = hub.wake_for(&db.path).unwrap();
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
    wait_until(&format!("cycle {cycle}: thread count back to {expected}"), || {
        thread_count() == expected
    });
}

fn open_files() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .collect()
}
