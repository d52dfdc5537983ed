//! Crashes with `kill -9`: worker processes killed mid-job (their jobs come back with one more
//! attempt, none is lost or handled twice), a worker killed after its handlers returned but
//! before its completer committed their outcomes (each job redelivered once, through liveness
//! or at lease expiry, never acked by the dead worker's token), and a producer killed inside its
//! transaction (no partial rows).

use std::collections::HashMap;
use std::time::Duration;

use honker_queue::{EnqueueOptions, LeaseToken, Queue, Worker, WorkerOptions};

use crate::multiprocess::spawn_worker;
use crate::worker_support::{
    Proc, WorkDb, child_db, child_var, count, integrity_ok, is_child, read_parent_line,
    record_handled, tell, wait_until,
};

/// The running jobs that the worker named `worker_id` holds, with their attempts.
fn held_by(conn: &rusqlite::Connection, worker_id: &str) -> HashMap<i64, u32> {
    let mut stmt = conn
        .prepare(
            "SELECT id, attempts FROM honker_jobs WHERE state = 2
             AND claimer IN (SELECT id FROM honker_claimers WHERE worker = ?1)",
        )
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

/// Fast jobs of the uncommitted-outcome tests (the completer commits once a batch, 64, of
/// outcomes wait, so these never fill one).
const UNCOMMITTED: usize = 8;

/// Child role: a plain (batching) `Worker` on queue `uncommitted` with one handler thread,
/// every job prefetched, and a completer that commits only when no handler runs (it never has a
/// full batch, and waits an hour otherwise). The handler records each job in `handled` (autocommit,
/// outside any queue transaction), says `returned <id> <token>` as its last act and returns a
/// result; the last job (`{"witness":true}`, lowest priority) says `witness <id> <token>` and
/// never returns. Its thread ran the other jobs one after another, handing each outcome to the
/// completer before taking the next job, so once the witness speaks every other handler has
/// returned and its outcome waits for a commit that cannot come while the witness runs: the
/// parent kills this process in that window.
#[test]
fn child_uncommitted_outcomes() {
    if !is_child("uncommitted") {
        return;
    }
    let db = child_db();
    let lease_ms: i64 = child_var("HONKER_QUEUE_TEST_LEASE_MS").parse().unwrap();
    let side = std::sync::Mutex::new(honker_core::open(&db).unwrap());
    let w = Worker::start(
        &db,
        Queue::new("uncommitted").unwrap(),
        honker_wake::wake_for(&db).unwrap(),
        WorkerOptions {
            threads: 1,
            batch: 64,
            prefetch: Some(UNCOMMITTED),
            complete_every: Duration::from_secs(3600),
            lease_ms: Some(lease_ms),
            ..WorkerOptions::default()
        },
        move |job| {
            record_handled(&side.lock().unwrap(), job);
            if job.payload.contains("witness") {
                tell(&format!("witness {} {}", job.id.0, job.lease_token.0));
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            tell(&format!("returned {} {}", job.id.0, job.lease_token.0));
            Ok(Some(r#"{"by":"killed"}"#.to_owned()))
        },
    )
    .unwrap();
    // No "ready" line: the handler may speak first, and the parent must not skip its lines.
    let _w = w;
    // Killed before this returns; should the parent go away instead, do not linger.
    read_parent_line();
    std::process::exit(0);
}

/// How the dead worker's jobs come back in [`killed_between_return_and_commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comeback {
    /// Through its liveness lock, found free at once.
    Liveness,
    /// At lease expiry: its lock file is removed first, as for a claimer on another host.
    LeaseExpiry,
}

/// kill -9 of a worker whose handlers returned but whose completer had not committed: each job is
/// redelivered (one more attempt), run once more by another worker, acked once with that
/// worker's result, none lost, and the dead worker's tokens never ack anything.
fn killed_between_return_and_commit(comeback: Comeback) {
    let db = WorkDb::new();
    let conn = db.open();
    let q = Queue::new("uncommitted").unwrap();
    let mut ids = Vec::new();
    for i in 0..UNCOMMITTED {
        ids.push(
            q.enqueue(
                &conn,
                &format!(r#"{{"n":{i}}}"#),
                &EnqueueOptions::default(),
            )
            .unwrap(),
        );
    }
    let witness = q
        .enqueue(
            &conn,
            r#"{"witness":true}"#,
            &EnqueueOptions {
                priority: -1,
                ..EnqueueOptions::default()
            },
        )
        .unwrap();
    ids.push(witness);
    let lease_ms: i64 = match comeback {
        // Ten minutes: only the free liveness lock can bring the jobs back within the test.
        Comeback::Liveness => 600_000,
        Comeback::LeaseExpiry => 1_500,
    };
    let mut p = Proc::spawn(
        "uncommitted",
        "crash::child_uncommitted_outcomes",
        &db.path(),
        &[("HONKER_QUEUE_TEST_LEASE_MS", lease_ms.to_string())],
    );
    let parse = |line: &str| -> (i64, i64) {
        let mut w = line.split_whitespace().skip(1).map(|x| x.parse().unwrap());
        (w.next().unwrap(), w.next().unwrap())
    };
    let mut old_tokens: HashMap<i64, i64> = HashMap::new();
    for _ in 0..UNCOMMITTED {
        let (id, token) = parse(&p.expect_line("returned"));
        old_tokens.insert(id, token);
    }
    let (wid, wtoken) = parse(&p.expect_line("witness"));
    assert_eq!(wid, witness.0, "the witness ran last");
    old_tokens.insert(wid, wtoken);

    // The window: every handler but the witness returned, and nothing was committed. Each job is
    // still running under the token its handler saw, and no result was stored.
    let running: HashMap<i64, i64> = conn
        .prepare("SELECT id, lease_token FROM honker_jobs WHERE state = 2")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        running, old_tokens,
        "an outcome was committed before the kill"
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_results"), 0);
    if comeback == Comeback::LeaseExpiry {
        let holder: String = conn
            .query_row(
                "SELECT DISTINCT c.holder FROM honker_jobs j
                 JOIN honker_claimers c ON c.id = j.claimer",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let lock = honker_core::liveness::lock_path(&db.path(), &holder).unwrap();
        std::fs::remove_file(&lock).expect("the child's liveness lock file");
    }
    let dead_pid = i64::from(p.pid());
    p.kill9();
    // No heartbeat extends these leases any more.
    let lease_end: HashMap<i64, i64> = conn
        .prepare("SELECT id, lease_expires FROM honker_jobs")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        lease_end.len(),
        UNCOMMITTED + 1,
        "a job was lost at the kill"
    );

    // Another worker (in this process, batching too) takes them back. Its handler first tries
    // the dead worker's token on the job it now holds, through a connection of its own: every
    // such ack must be refused and write nothing.
    let side = std::sync::Mutex::new(db.open());
    let refusals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (q2, r2, tokens) = (q.clone(), refusals.clone(), old_tokens.clone());
    let w = Worker::start(
        &db.path(),
        q.clone(),
        honker_wake::wake_for(&db.path()).unwrap(),
        WorkerOptions {
            threads: 2,
            ..WorkerOptions::default()
        },
        move |job| {
            let side = side.lock().unwrap();
            record_handled(&side, job);
            let old = LeaseToken(tokens[&job.id.0]);
            let ack = q2.ack(&side, job.id, old).map_err(|e| e.code());
            let with_result = q2
                .ack_with_result(&side, job.id, old, r#"{"by":"stale"}"#, None)
                .map_err(|e| e.code());
            r2.lock().unwrap().push((job.id.0, ack, with_result));
            Ok(Some(format!(
                r#"{{"by":"second","attempts":{}}}"#,
                job.attempts
            )))
        },
    )
    .unwrap();
    wait_until("the dead worker's jobs acked by the other worker", || {
        count(&conn, "SELECT count(*) FROM honker_jobs") == 0
    });
    let report = w.shutdown().unwrap();
    assert_eq!(report.error_count, 0, "{:?}", report.errors);
    assert_eq!(
        (report.acked, report.lease_lost, report.retried),
        (UNCOMMITTED as u64 + 1, 0, 0),
        "{report:?}"
    );

    // Every stale try was refused while the job was held by the other worker.
    let mut refusals = refusals.lock().unwrap().clone();
    refusals.sort();
    let expected: Vec<_> = ids
        .iter()
        .map(|id| (id.0, Err("queue.lease_lost"), Err("queue.lease_lost")))
        .collect();
    assert_eq!(refusals, expected, "a stale token acked a redelivered job");

    // Each job ran exactly twice: once in the killed worker (attempt 1, its token), once more in
    // the other worker (attempt 2, a new token), whose result is the one stored.
    let me = i64::from(std::process::id());
    for id in &ids {
        let runs: Vec<(i64, i64, u32, i64)> = conn
            .prepare(
                "SELECT pid, token, attempts, at_ms FROM handled WHERE job_id = ?1 ORDER BY at_ms",
            )
            .unwrap()
            .query_map([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(runs.len(), 2, "job {id} ran {runs:?}");
        assert_eq!(
            (runs[0].0, runs[0].1, runs[0].2),
            (dead_pid, old_tokens[&id.0], 1),
            "job {id}: {runs:?}"
        );
        assert_eq!((runs[1].0, runs[1].2), (me, 2), "job {id}: {runs:?}");
        assert_ne!(runs[1].1, old_tokens[&id.0], "job {id} kept its token");
        match comeback {
            // A ten-minute lease: only the free lock brought it back this soon.
            Comeback::Liveness => assert!(runs[1].3 < lease_end[&id.0], "job {id}: {runs:?}"),
            // The lock file was gone: it waited for its lease to end (`at_ms` may read a
            // millisecond early: it goes through a julian day in floating point).
            Comeback::LeaseExpiry => {
                assert!(runs[1].3 >= lease_end[&id.0] - 1, "job {id}: {runs:?}");
            }
        }
        let result = honker_queue::get_result(&conn, &honker_core::SystemClock, *id).unwrap();
        assert_eq!(
            result.as_deref(),
            Some(r#"{"by":"second","attempts":2}"#),
            "job {id}"
        );
        // Afterwards too, the dead worker's token acks nothing.
        let stale = q.ack(&conn, *id, LeaseToken(old_tokens[&id.0]));
        assert_eq!(stale.map_err(|e| e.code()), Err("queue.lease_lost"));
    }
    assert_eq!(
        count(&conn, "SELECT count(*) FROM honker_results"),
        ids.len() as i64
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_dead"), 0);
    integrity_ok(&conn);
}

#[test]
fn outcomes_killed_before_the_completers_commit_come_back_at_once_through_liveness() {
    killed_between_return_and_commit(Comeback::Liveness);
}

#[test]
fn outcomes_killed_before_the_completers_commit_come_back_at_lease_expiry() {
    killed_between_return_and_commit(Comeback::LeaseExpiry);
}
