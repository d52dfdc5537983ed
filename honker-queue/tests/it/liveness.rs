//! Same-host liveness (issue 16): a worker process that dies holding jobs gives them back at once,
//! through its liveness lock, instead of at lease expiry; a stopped (but live) one keeps them
//! until its lease ends; and no job ever runs under two live leases.

use honker_queue::{EnqueueOptions, Queue, Worker, WorkerOptions};

use crate::worker_support::{
    Proc, WorkDb, child_db, child_var, count, integrity_ok, is_child, read_parent_line,
    record_handled, tell, wait_until,
};

const QUEUE: &str = "live";

/// Child role: claim `HONKER_QUEUE_TEST_N` jobs with a `HONKER_QUEUE_TEST_LEASE_MS` lease, say
/// `held <id:token,...>`, then, on a line from the parent, try to ack them all and say how many
/// acks were refused.
#[test]
fn child_holder() {
    if !is_child("holder") {
        return;
    }
    let db = child_db();
    let conn = honker_core::open(&db).unwrap();
    let n: usize = child_var("HONKER_QUEUE_TEST_N").parse().unwrap();
    let lease: i64 = child_var("HONKER_QUEUE_TEST_LEASE_MS").parse().unwrap();
    let q = Queue::new(QUEUE).unwrap();
    let jobs = q.claim(&conn, "holder", n, Some(lease)).unwrap();
    assert_eq!(jobs.len(), n);
    tell(&format!("held {}", jobs.len()));
    read_parent_line();
    let refused = jobs
        .iter()
        .filter(|j| q.ack(&conn, j.id, j.lease_token).is_err())
        .count();
    tell(&format!("refused {refused}"));
    read_parent_line();
}

fn holder(db: &WorkDb, n: usize, lease_ms: i64) -> Proc {
    let mut p = Proc::spawn(
        "holder",
        "liveness::child_holder",
        &db.path(),
        &[
            ("HONKER_QUEUE_TEST_N", n.to_string()),
            ("HONKER_QUEUE_TEST_LEASE_MS", lease_ms.to_string()),
        ],
    );
    p.expect_line("held");
    p
}

fn enqueue(db: &WorkDb, n: usize) {
    let conn = db.open();
    let q = Queue::new(QUEUE).unwrap();
    for i in 0..n {
        q.enqueue(
            &conn,
            &format!(r#"{{"n":{i}}}"#),
            &EnqueueOptions::default(),
        )
        .unwrap();
    }
}

fn worker(db: &WorkDb) -> Worker {
    Worker::start_transactional(
        &db.path(),
        Queue::new(QUEUE).unwrap(),
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
    .unwrap()
}

#[test]
fn a_killed_workers_jobs_come_back_at_once_not_at_lease_expiry() {
    let db = WorkDb::new();
    enqueue(&db, 10);
    let conn = db.open();
    // Ten minutes: only liveness can bring these back within the test's deadline.
    let h = holder(&db, 10, 600_000);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM honker_jobs WHERE state = 2 AND holder IS NOT NULL"
        ),
        10
    );
    let w = worker(&db);
    h.kill9();
    wait_until("the dead holder's jobs handled by the live worker", || {
        count(&conn, "SELECT count(*) FROM handled") == 10
    });
    let report = w.shutdown().unwrap();
    assert_eq!(report.error_count, 0, "{:?}", report.errors);
    // Each once, on its second attempt (the dead claim counted), nothing left or dead.
    assert_eq!(
        count(&conn, "SELECT count(DISTINCT job_id) FROM handled"),
        10
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM handled WHERE attempts = 2"),
        10
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_jobs"), 0);
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_dead"), 0);
    integrity_ok(&conn);
    // The dead holder's lock file was cleaned up by the claimer that found it dead.
    let leftovers = std::fs::read_dir(db.path().parent().unwrap())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().contains("-honker-live-")
        })
        .count();
    assert!(
        leftovers <= 1,
        "{leftovers} lock files left (only this process's may stay)"
    );
}

#[test]
fn a_stopped_worker_keeps_its_jobs_until_its_lease_ends_and_none_runs_twice() {
    let db = WorkDb::new();
    enqueue(&db, 4);
    let conn = db.open();
    let lease_ms = 1500;
    let mut h = holder(&db, 4, lease_ms);
    let lease_end: i64 = conn
        .query_row(
            "SELECT max(lease_expires) FROM honker_jobs WHERE state = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    h.signal("STOP");
    let w = worker(&db);
    wait_until("the stopped holder's jobs handled after its lease", || {
        count(&conn, "SELECT count(*) FROM handled") == 4
    });
    // Handled again only once the lease had ended (the handling time is the database's clock,
    // the lease end too): a live, stopped holder is never robbed early.
    assert_eq!(
        count(
            &conn,
            &format!("SELECT count(*) FROM handled WHERE attempts = 2 AND at_ms >= {lease_end}")
        ),
        4
    );
    h.signal("CONT");
    h.say("ack");
    let refused = h.expect_line("refused");
    assert_eq!(
        refused, "refused 4",
        "the stale holder's acks must all be refused"
    );
    h.say("done");
    h.finish();
    w.shutdown().unwrap();
    assert_eq!(
        count(&conn, "SELECT count(DISTINCT job_id) FROM handled"),
        4
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM handled"), 4);
}
