//! Model-based property test of the wake path, run for every compiled backend: random sequences
//! of commits (from the waiter's own process through a plain connection that never kicks, another
//! connection of the process, and another OS process), rollbacks, PASSIVE and TRUNCATE checkpoints
//! with refills of the WAL to exactly its old size, and journal-mode switches (rollback modes per
//! connection, then WAL for the file); no commit after a sampled epoch is ever missed.

use std::cell::RefCell;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use honker_core::Epoch;
use honker_wake::Backend;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use rusqlite::Connection;

use crate::{Committer, Db, commit, counter, deadline, rollback, wait_until};

#[derive(Debug, Clone, Copy)]
enum Writer {
    /// The connection of the thread that sampled the epoch.
    Same,
    /// Another connection, owned by another thread of this process.
    OtherThread,
    /// Another OS process.
    OtherProcess,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Commit(Writer),
    Rollback(Writer),
    CheckpointPassive,
    /// `wal_checkpoint(TRUNCATE)`, then commits until the WAL has exactly its old size again
    /// (what hides a commit from size-only stat polling).
    TruncateAndRefill,
    /// A writer switches its connection's rollback journal mode (a no-op once the file is WAL).
    Mode(Writer, &'static str),
    /// The file switches to WAL (a no-op if it is already).
    ToWal,
}

#[derive(Debug, Clone, Copy)]
struct Step {
    op: Op,
    /// Whether a waiter is already parked in `wait_past` when the op runs (otherwise the wait
    /// starts after it).
    parked: bool,
}

fn writer() -> impl Strategy<Value = Writer> {
    prop_oneof![
        Just(Writer::Same),
        Just(Writer::OtherThread),
        Just(Writer::OtherProcess)
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let op = prop_oneof![
        4 => writer().prop_map(Op::Commit),
        2 => writer().prop_map(Op::Rollback),
        1 => Just(Op::CheckpointPassive),
        1 => Just(Op::TruncateAndRefill),
        1 => (writer(), prop_oneof![Just("delete"), Just("truncate"), Just("persist")])
            .prop_map(|(w, m)| Op::Mode(w, m)),
        1 => Just(Op::ToWal),
    ];
    (op, any::<bool>()).prop_map(|(op, parked)| Step { op, parked })
}

/// (poll interval in ms, the file's journal mode at the start, steps)
fn case() -> impl Strategy<Value = (u64, &'static str, Vec<Step>)> {
    (
        prop_oneof![Just(1u64), Just(4)],
        prop_oneof![Just("wal"), Just("delete")],
        prop::collection::vec(step(), 1..=12),
    )
}

#[derive(Debug)]
enum Cmd {
    Commit,
    Rollback,
    Mode(&'static str),
}

/// A connection owned by another thread; `run` blocks until that thread has done the work.
struct OtherThread {
    tx: mpsc::Sender<(Cmd, mpsc::Sender<()>)>,
    handle: Option<thread::JoinHandle<()>>,
}

impl OtherThread {
    fn new(path: &std::path::Path) -> OtherThread {
        let conn = crate::connect(path);
        let (tx, rx) = mpsc::channel::<(Cmd, mpsc::Sender<()>)>();
        let handle = thread::spawn(move || {
            for (cmd, done) in rx {
                match cmd {
                    Cmd::Commit => commit(&conn),
                    Cmd::Rollback => rollback(&conn),
                    Cmd::Mode(m) => set_mode(&conn, m),
                }
                done.send(()).unwrap();
            }
        });
        OtherThread {
            tx,
            handle: Some(handle),
        }
    }

    fn run(&self, cmd: Cmd) {
        let (done_tx, done_rx) = mpsc::channel();
        self.tx.send((cmd, done_tx)).unwrap();
        done_rx.recv().unwrap();
    }
}

impl Drop for OtherThread {
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        self.tx = tx;
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

fn set_mode(conn: &Connection, mode: &str) {
    let now: String = conn
        .query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))
        .unwrap();
    assert_eq!(now, mode, "journal mode switch refused");
}

fn is_wal(conn: &Connection) -> bool {
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    mode == "wal"
}

fn wal_len(db: &Db) -> u64 {
    let mut wal = db.path.clone().into_os_string();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

fn checkpoint(conn: &Connection, mode: &str) -> (i64, i64, i64) {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
}

/// Run one op; returns how many commits it made.
fn apply(
    op: Op,
    db: &Db,
    same: &Connection,
    other: &OtherThread,
    child: &RefCell<Committer>,
) -> i64 {
    let write = |w: Writer, is_commit: bool| match (w, is_commit) {
        (Writer::Same, true) => commit(same),
        (Writer::Same, false) => rollback(same),
        (Writer::OtherThread, true) => other.run(Cmd::Commit),
        (Writer::OtherThread, false) => other.run(Cmd::Rollback),
        (Writer::OtherProcess, true) => child.borrow_mut().commit(&db.path),
        (Writer::OtherProcess, false) => child.borrow_mut().rollback(&db.path),
    };
    match op {
        Op::Commit(w) => {
            write(w, true);
            1
        }
        Op::Rollback(w) => {
            write(w, false);
            0
        }
        Op::Mode(w, mode) => {
            if !is_wal(same) {
                match w {
                    Writer::Same => set_mode(same, mode),
                    Writer::OtherThread => other.run(Cmd::Mode(mode)),
                    Writer::OtherProcess => child.borrow_mut().journal_mode(&db.path, mode),
                }
            }
            0
        }
        Op::ToWal => {
            if !is_wal(same) {
                set_mode(same, "wal");
            }
            0
        }
        Op::CheckpointPassive if !is_wal(same) => 0,
        Op::TruncateAndRefill if !is_wal(same) => 0,
        Op::CheckpointPassive => {
            let (busy, _, _) = checkpoint(same, "PASSIVE");
            assert_eq!(busy, 0);
            0
        }
        Op::TruncateAndRefill => {
            let before = wal_len(db);
            let (busy, _, _) = checkpoint(same, "TRUNCATE");
            assert_eq!(busy, 0, "TRUNCATE checkpoint was blocked");
            assert_eq!(wal_len(db), 0);
            let mut commits = 0;
            loop {
                commit(same);
                commits += 1;
                if wal_len(db) >= before {
                    break;
                }
            }
            if before > 0 {
                assert_eq!(wal_len(db), before, "refill overshot the old WAL size");
            }
            commits
        }
    }
}

fn run_case(
    backend: Backend,
    poll_ms: u64,
    mode: &str,
    steps: &[Step],
    child: &RefCell<Committer>,
) -> Result<(), TestCaseError> {
    let db = Db::new(mode);
    let same = crate::connect(&db.path);
    same.pragma_update(None, "wal_autocheckpoint", 10_000)
        .unwrap();
    let other = OtherThread::new(&db.path);
    let wake = crate::start_with(backend, &db.path, Duration::from_millis(poll_ms));
    let mut commits = 0i64;
    let mut last = wake.epoch();
    for step in steps {
        let seen = wake.epoch();
        prop_assert!(seen >= last, "epoch went backwards");
        let made = thread::scope(|s| {
            let waiter = step.parked.then(|| {
                let w = s.spawn(|| wake.wait_past(seen, Some(deadline())));
                wait_until("the waiter parked", || {
                    wake.waiters() >= 1 || w.is_finished()
                });
                w
            });
            let made = apply(step.op, &db, &same, &other, child);
            let woke = match waiter {
                Some(w) => {
                    if made == 0 {
                        // A step without a commit may leave the waiter asleep: release it.
                        wake.kick();
                    }
                    w.join().unwrap()
                }
                None if made > 0 => wake.wait_past(seen, Some(deadline())),
                None => Ok(wake.epoch()),
            };
            let now = woke.expect("wait failed");
            if made > 0 {
                assert!(
                    now > seen,
                    "lost wake: {:?} committed after epoch {seen} was sampled, but the wait returned {now}",
                    step.op
                );
            }
            made
        });
        commits += made;
        prop_assert_eq!(
            counter(&same),
            commits,
            "rows left behind differ from the model"
        );
        last = wake.epoch();
        prop_assert!(!wake.has_failed());
    }
    let integrity: String = same
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    prop_assert_eq!(integrity, "ok");
    prop_assert!(wake.epoch() >= Epoch(0));
    Ok(())
}

#[test]
fn no_commit_after_a_sampled_epoch_is_missed() {
    let cases = std::env::var("HONKER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let config = Config {
        cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    };
    let child = RefCell::new(Committer::spawn());
    for backend in Backend::compiled() {
        let mut runner = TestRunner::new(config.clone());
        let result = runner.run(&case(), |(poll_ms, mode, steps)| {
            run_case(backend, poll_ms, mode, &steps, &child)
        });
        if let Err(e) = result {
            panic!("backend {backend}: {e}");
        }
    }
}
