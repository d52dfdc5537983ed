//! Resource bounds: creating, using and dropping listeners leaks no thread and no descriptor.
//!
//! Counted in a child process, where no other test's threads or files come and go.

use std::time::{Duration, Instant};

use honker_stream::{Listener, notify};

use crate::util::{TempDb, is_child, soon, spawn_child};

const CYCLES: usize = 300;

fn entries(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn threads_and_fds() -> (usize, usize) {
    (entries("/proc/self/task"), entries("/proc/self/fd"))
}

fn cycle(db: &TempDb, writer: &rusqlite::Connection, i: usize) {
    let wake = honker_wake::wake_for(&db.path()).unwrap();
    let mut l = Listener::open(&db.path(), "c", wake).unwrap();
    let id = notify(writer, "c", &i.to_string()).unwrap();
    let n = l
        .recv(soon())
        .unwrap()
        .expect("delivered before the deadline");
    assert_eq!(n.id, id);
}

/// Child role: run the cycles and compare the counts with the baseline.
#[test]
fn child_listener_cycles() {
    if !is_child("resources") {
        return;
    }
    let db = TempDb::new();
    let writer = db.open();
    cycle(&db, &writer, 0); // lazy process-wide state (the Hub) exists from here on
    let deadline = Instant::now() + Duration::from_secs(30);
    let settle = |want: (usize, usize)| loop {
        let now = threads_and_fds();
        if now == want || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The first cycle's watcher may still be stopping (the kernel backend's event thread ends
    // after its last handle drops): take the baseline once it is gone and the counts are steady.
    let baseline = loop {
        let a = threads_and_fds();
        std::thread::sleep(Duration::from_millis(50));
        if honker_wake::Hub::global().watcher_count() == 0 && threads_and_fds() == a {
            break a;
        }
        assert!(Instant::now() < deadline, "the first watcher never stopped");
    };
    for i in 1..=CYCLES {
        cycle(&db, &writer, i);
    }
    // Watcher threads finish after their last handle drops; wait for them to go.
    assert_eq!(
        settle(baseline),
        baseline,
        "(threads, fds) after {CYCLES} cycles"
    );
}

#[test]
fn listener_cycles_leak_no_threads_or_descriptors() {
    let db = TempDb::new(); // only for the child's environment; the child makes its own
    let child = spawn_child(
        "resources",
        "resources::child_listener_cycles",
        &db.path(),
        &[],
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}",
        out.status
    );
    assert!(
        stdout.contains("test resources::child_listener_cycles ... ok"),
        "child did not run the test:\n{stdout}"
    );
}
