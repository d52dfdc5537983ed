//! Real OS processes: a listener in a child process, and a writer killed inside its transaction.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout};
use std::thread;
use std::time::Duration;

use honker_stream::{Listener, notify};

use crate::util::{TempDb, child_db, count, integrity_ok, is_child, now, soon, spawn_child};

const BURST: usize = 3000;

/// Print one protocol line for the parent (libtest prints its own lines on stdout too).
fn tell(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "HONKER {line}").unwrap();
    out.flush().unwrap();
}

/// Read the child's protocol lines until one starts with `until` (or the child exits).
fn read_until(lines: &mut impl Iterator<Item = String>, until: &str) -> Vec<String> {
    let mut got = Vec::new();
    for line in lines {
        // libtest may have printed "test name ... " on the same line first.
        if let Some(rest) = line.find("HONKER ").map(|at| &line[at + "HONKER ".len()..]) {
            let stop = rest.starts_with(until);
            got.push(rest.to_string());
            if stop {
                return got;
            }
        }
    }
    panic!("child ended before sending {until:?}; it sent {got:?}");
}

fn lines(child: &mut Child) -> impl Iterator<Item = String> + use<> {
    let out: ChildStdout = child.stdout.take().unwrap();
    BufReader::new(out).lines().map(|l| l.unwrap())
}

/// Child role: listen on "burst" and "quiet" and report what arrives.
#[test]
fn child_burst_listener() {
    if !is_child("burst_listener") {
        return;
    }
    let db = child_db();
    let wake = honker_wake::wake_for(&db).unwrap();
    let mut burst = Listener::open(&db, "burst", wake.clone()).unwrap();
    let mut quiet = Listener::open(&db, "quiet", wake).unwrap();
    tell("ready");
    for _ in 0..BURST {
        let n = burst
            .recv(soon())
            .unwrap()
            .expect("a burst notification before the deadline");
        tell(&format!("burst {} {}", n.id, n.payload));
    }
    // Every quiet notification was committed before the last burst one: one look finds them.
    for n in quiet.iter(now()) {
        let n = n.unwrap();
        tell(&format!("quiet {} {}", n.id, n.payload));
    }
    // Nothing more on the burst channel either.
    assert_eq!(burst.recv(now()).unwrap(), None);
    tell("done");
}

#[test]
fn a_listener_in_another_process_gets_every_notification_in_order() {
    let db = TempDb::new();
    let mut child = spawn_child(
        "burst_listener",
        "multiprocess::child_burst_listener",
        &db.path(),
        &[],
    );
    let mut lines = lines(&mut child);
    read_until(&mut lines, "ready");
    let conn = db.open();
    let mut expected = Vec::new();
    let mut quiet = None;
    let mut i = 0;
    while i < BURST {
        // Mix single autocommit notifies with transactions of a few, plus other channels.
        let batch = [1, 7, 1, 30, 2][i % 5].min(BURST - i);
        let tx = conn.unchecked_transaction().unwrap();
        for _ in 0..batch {
            let p = format!("{{\"n\":{i}}}");
            expected.push(format!("burst {} {p}", notify(&tx, "burst", &p).unwrap()));
            notify(&tx, "noise", "0").unwrap();
            i += 1;
        }
        if quiet.is_none() && i >= BURST / 2 {
            quiet = Some(format!(
                "quiet {} \"hush\"",
                notify(&tx, "quiet", "\"hush\"").unwrap()
            ));
        }
        tx.commit().unwrap();
    }
    let mut got = read_until(&mut lines, "done");
    assert_eq!(got.pop().as_deref(), Some("done"));
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
    let (got_quiet, got_burst): (Vec<String>, Vec<String>) =
        got.into_iter().partition(|l| l.starts_with("quiet"));
    assert_eq!(got_burst.len(), BURST);
    assert_eq!(got_burst, expected);
    assert_eq!(got_quiet, [quiet.unwrap()]);
}

/// Child role: BEGIN, notify, report, and wait to be killed inside the open transaction.
#[test]
fn child_crash_writer() {
    if !is_child("crash_writer") {
        return;
    }
    let conn = honker_core::open(child_db()).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    notify(&conn, "crash", "\"phantom\"").unwrap();
    tell("ready");
    // The parent kills this process; if it never does, end without committing.
    thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_writer_killed_inside_its_transaction_leaves_no_trace() {
    let db = TempDb::new();
    let wake = honker_wake::wake_for(&db.path()).unwrap();
    let mut listener = Listener::open(&db.path(), "crash", wake).unwrap();
    let mut child = spawn_child(
        "crash_writer",
        "multiprocess::child_crash_writer",
        &db.path(),
        &[],
    );
    let mut lines = lines(&mut child);
    read_until(&mut lines, "ready");

    // The child holds the write lock right now.
    let probe = db.open();
    probe.busy_timeout(Duration::ZERO).unwrap();
    let e = probe.execute_batch("BEGIN IMMEDIATE").unwrap_err();
    assert_eq!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy),
        "{e}"
    );

    // A listener blocked across the crash.
    let blocked = thread::spawn(move || {
        let first = listener.recv(soon());
        (first, listener)
    });
    child.kill().unwrap(); // SIGKILL on unix
    let status = child.wait().unwrap();
    assert!(!status.success());

    let conn = db.open();
    integrity_ok(&conn);
    assert_eq!(count(&conn), 0);
    // The write lock is free: no busy wait at all.
    probe.execute_batch("BEGIN IMMEDIATE; ROLLBACK").unwrap();

    let id = notify(&conn, "crash", "\"real\"").unwrap();
    let (first, mut listener) = blocked.join().unwrap();
    let first = first
        .unwrap()
        .expect("the real notification before the deadline");
    assert_eq!((first.id, first.payload.as_str()), (id, "\"real\""));
    assert_eq!(listener.recv(now()).unwrap(), None);
    integrity_ok(&conn);
}
