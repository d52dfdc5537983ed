//! Same-host liveness (issue 16): a worker process that dies holding jobs gives them back at once,
//! through its liveness lock, instead of at lease expiry; a stopped (but live) one keeps them
//! until its lease ends; and no job ever runs under two live leases.

use honker_queue::{EnqueueOptions, Queue, Worker, WorkerOptions};

use crate::worker_support::{
    Proc, WorkDb, child_db, child_var, column, count, integrity_ok, is_child, read_parent_line,
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
            "SELECT count(*) FROM honker_jobs j JOIN honker_claimers c ON c.id = j.claimer
             WHERE j.state = 2 AND c.holder != ''"
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

/// The claimer id of running job `id` and that claimer's (worker, holder).
fn claimer_of(conn: &rusqlite::Connection, id: i64) -> (i64, String, String) {
    conn.query_row(
        "SELECT c.id, c.worker, c.holder FROM honker_jobs j JOIN honker_claimers c
         ON c.id = j.claimer WHERE j.id = ?1 AND j.state = 2",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

#[test]
fn each_claimer_is_stored_once_and_forgotten_once_its_process_is_gone() {
    let db = WorkDb::new();
    enqueue(&db, 8);
    let conn = db.open();
    let q = Queue::new(QUEUE).unwrap();
    let own = honker_core::liveness::holder(&db.path()).expect("a liveness lock file");
    let a = q.claim(&conn, "a", 2, None).unwrap();
    let a_again = q.claim(&conn, "a", 1, None).unwrap();
    let (id_a, worker, holder) = claimer_of(&conn, a[0].id.0);
    assert_eq!((worker.as_str(), holder.as_str()), ("a", own.as_ref()));
    assert_eq!(claimer_of(&conn, a[1].id.0).0, id_a);
    assert_eq!(
        claimer_of(&conn, a_again[0].id.0).0,
        id_a,
        "one row per claimer"
    );
    assert_eq!(
        honker_queue::job(&conn, a[0].id)
            .unwrap()
            .unwrap()
            .worker
            .as_deref(),
        Some("a")
    );
    // Rows of processes that are gone (no lock file), one still named by a running job, and of
    // a claimer that had no lock file ('').
    conn.execute_batch(
        "INSERT INTO honker_claimers (worker, holder) VALUES
             ('gone-unused', '4242-gone0001'), ('gone-running', '4242-gone0002'),
             ('no-lock-file', '')",
    )
    .unwrap();
    conn.execute(
        "UPDATE honker_jobs SET claimer = (SELECT id FROM honker_claimers
             WHERE worker = 'gone-running') WHERE id = ?1",
        [a_again[0].id.0],
    )
    .unwrap();
    let names = |conn: &rusqlite::Connection| -> Vec<String> {
        column(conn, "SELECT worker FROM honker_claimers ORDER BY id")
    };
    // b's first claim forgets the gone claimer no running job names, and only that one.
    q.claim(&conn, "b", 1, None).unwrap();
    assert_eq!(
        names(&conn),
        ["a", "gone-running", "no-lock-file", "b"].map(String::from)
    );
    assert_eq!(
        q.claim(&conn, "a", 1, None).unwrap().len(),
        1,
        "a's later claims add nothing"
    );
    assert_eq!(names(&conn).len(), 4);
    // Once no running job names it, the next new claimer forgets it too.
    q.release(&conn, a_again[0].id, a_again[0].lease_token)
        .unwrap();
    q.claim(&conn, "c", 1, None).unwrap();
    assert_eq!(
        names(&conn),
        ["a", "no-lock-file", "b", "c"].map(String::from)
    );
    // Ids are never reused: each new claimer's is larger than any before.
    let ids: Vec<i64> = column(&conn, "SELECT id FROM honker_claimers ORDER BY id");
    assert!(ids[3] > 5, "{ids:?}");
}

#[test]
fn a_job_an_older_build_claimed_keeps_its_worker_and_its_dead_holder_is_found() {
    let db = WorkDb::new();
    enqueue(&db, 2);
    let conn = db.open();
    let q = Queue::new(QUEUE).unwrap();
    let held = q.claim(&conn, "new", 1, Some(600_000)).unwrap();
    // As a v7 build wrote it: the names in the row, no claimer; its holder's lock file is free.
    let dead = "4343-old00001";
    let lock = honker_core::liveness::lock_path(&db.path(), dead).unwrap();
    std::fs::write(&lock, b"").unwrap();
    conn.execute(
        "UPDATE honker_jobs SET claimer = NULL, worker = 'old-w', holder = ?2 WHERE id = ?1",
        rusqlite::params![held[0].id.0, dead],
    )
    .unwrap();
    assert_eq!(
        honker_queue::job(&conn, held[0].id)
            .unwrap()
            .unwrap()
            .worker
            .as_deref(),
        Some("old-w")
    );
    honker_core::liveness::forget_alive();
    // The next claim finds the old holder dead and takes its job back at once, with the other.
    let again = q.claim(&conn, "new", 2, Some(600_000)).unwrap();
    let got: Vec<i64> = again.iter().map(|j| j.id.0).collect();
    assert!(got.contains(&held[0].id.0), "{got:?}");
    assert!(!lock.exists(), "the dead holder's lock file is removed");
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM honker_jobs WHERE holder IS NOT NULL OR worker IS NOT NULL"
        ),
        0,
        "a new claim leaves no name in the row"
    );
}
