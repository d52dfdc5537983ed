//! Crashes with `kill -9`: worker processes killed mid-job (their jobs come back with one more
//! attempt, none is lost or handled twice), and a producer killed inside its transaction (no
//! partial rows).

use std::collections::HashMap;

use honker_queue::{EnqueueOptions, Queue, Worker, WorkerOptions};

use crate::multiprocess::spawn_worker;
use crate::worker_support::{
    Proc, WorkDb, child_db, count, integrity_ok, is_child, read_parent_line, record_handled, tell,
    wait_until,
};

/// The running jobs that the worker named `worker_id` holds, with their attempts.
fn held_by(conn: &rusqlite::Connection, worker_id: &str) -> HashMap<i64, u32> {
    let mut stmt = conn
        .prepare("SELECT id, attempts FROM honker_jobs WHERE state = 2 AND worker = ?1")
        .unwrap();
    stmt.query_map([worker_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn jobs_of_killed_workers_come_back_with_one_more_attempt_and_none_is_lost() {
    const JOBS: usize = 400;
    let db = WorkDb::new();
    let conn = db.open();
    let q = Queue::new("mp").unwrap();
    let payloads: Vec<String> = (0..JOBS).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let ids = q
        .enqueue_batch(&conn, &refs, &EnqueueOptions::default())
        .unwrap();

    // Kill three workers, one after another, each once it has handled some jobs; every
    // handler holds its job (and the write lock) a few milliseconds, so a kill lands mid-job.
    let mut in_flight: HashMap<i64, u32> = HashMap::new();
    for round in 1..=3 {
        let (w, worker_id) = spawn_worker(&db, 2, 500, 3);
        let target = (round * 40) as i64;
        wait_until("the worker to handle some jobs", || {
            count(&conn, "SELECT count(*) FROM handled") >= target
        });
        w.kill9();
        let held = held_by(&conn, &worker_id);
        in_flight.extend(held);
    }
    assert!(
        !in_flight.is_empty(),
        "no kill landed while a worker held a job"
    );

    // A worker in this process finishes the rest: the dead workers' leases expire and their
    // jobs are claimed again (the wait is on the lease expiry, not a poll).
    let w = Worker::start_transactional(
        &db.path(),
        q,
        honker_wake::wake_for(&db.path()).unwrap(),
        WorkerOptions {
            threads: 2,
            ..WorkerOptions::default()
        },
        |conn, job| {
            record_handled(conn, job);
            Ok(None)
        },
    )
    .unwrap();
    wait_until("every job handled", || {
        count(&conn, "SELECT count(*) FROM honker_jobs") == 0
    });
    let report = w.shutdown().unwrap();
    assert_eq!(report.error_count, 0, "{:?}", report.errors);

    // Exactly one committed handling per job: the killed handlers' writes rolled back with their
    // transactions. Nothing is dead (attempts were far from exhausted) and nothing is lost.
    let handled: HashMap<i64, u32> = conn
        .prepare("SELECT job_id, attempts FROM handled")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        count(&conn, "SELECT count(*) FROM handled"),
        JOBS as i64,
        "a job was handled twice"
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_dead"), 0);
    for id in &ids {
        assert!(handled.contains_key(&id.0), "job {id} was lost");
    }
    // Each job a killed worker held was redelivered with one more attempt.
    for (id, attempts) in &in_flight {
        assert_eq!(
            handled[id],
            attempts + 1,
            "job {id} held at attempt {attempts} by a killed worker"
        );
    }
    integrity_ok(&conn);
}

/// Child role: enqueue jobs and business rows in one transaction, then wait (killed there).
#[test]
fn child_stuck_producer() {
    if !is_child("stuck_producer") {
        return;
    }
    let conn = honker_core::open(child_db()).unwrap();
    let q = Queue::new("crash").unwrap();
    let tx = rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    for i in 0..500 {
        tx.execute(
            "INSERT INTO handled (job_id, token, pid, attempts, payload) VALUES (?1, 0, 0, 0, 'order')",
            [i],
        )
        .unwrap();
        q.enqueue(
            &tx,
            &format!(r#"{{"order":{i}}}"#),
            &EnqueueOptions::default(),
        )
        .unwrap();
    }
    tell("inside");
    // The parent kills this process here, inside the transaction.
    read_parent_line();
    tx.commit().unwrap();
}

#[test]
fn a_producer_killed_inside_its_transaction_leaves_no_partial_rows() {
    let db = WorkDb::new();
    let conn = db.open();
    let q = Queue::new("crash").unwrap();
    q.enqueue(&conn, r#"{"before":true}"#, &EnqueueOptions::default())
        .unwrap();
    let mut p = Proc::spawn(
        "stuck_producer",
        "crash::child_stuck_producer",
        &db.path(),
        &[],
    );
    p.expect_line("inside");
    p.kill9();
    // The killed writer's WAL frames were never committed: a fresh connection sees none of
    // them, and the next writer takes the lock at once.
    let conn2 = db.open();
    assert_eq!(count(&conn2, "SELECT count(*) FROM honker_jobs"), 1);
    assert_eq!(count(&conn2, "SELECT count(*) FROM handled"), 0);
    let after = q
        .enqueue(&conn2, r#"{"after":true}"#, &EnqueueOptions::default())
        .unwrap();
    assert!(after.0 > 0);
    assert_eq!(count(&conn2, "SELECT count(*) FROM honker_jobs"), 2);
    integrity_ok(&conn2);
    drop(conn);
}
