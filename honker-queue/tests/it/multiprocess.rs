//! Real OS processes: worker processes draining jobs that producer processes enqueue, each job
//! acked exactly once and never held by two processes at once; and timers (a delayed job, an
//! expired lease) waking a worker that sleeps in another process.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use honker_queue::{EnqueueOptions, Queue, Worker, WorkerOptions};

use crate::worker_support::{
    Proc, WorkDb, child_db, child_var, column, count, integrity_ok, is_child, now_ms,
    read_parent_line, record_handled, tell, wait_until,
};

const QUEUE: &str = "mp";

/// Jobs of the drain test: 20k by default (about 20 s on 2 cores), 100k with
/// `HONKER_DEEP_TESTS=1`.
fn total_jobs() -> usize {
    if std::env::var("HONKER_DEEP_TESTS").as_deref() == Ok("1") {
        100_000
    } else {
        20_000
    }
}

/// Child role: enqueue `HONKER_QUEUE_TEST_N` jobs tagged with `HONKER_QUEUE_TEST_TAG`, 100 per
/// transaction.
#[test]
fn child_producer() {
    if !is_child("producer") {
        return;
    }
    let n: usize = child_var("HONKER_QUEUE_TEST_N").parse().unwrap();
    let tag = child_var("HONKER_QUEUE_TEST_TAG");
    let conn = honker_core::open(child_db()).unwrap();
    let q = Queue::new(QUEUE).unwrap();
    tell("ready");
    let payloads: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"producer":"{tag}","seq":{i}}}"#))
        .collect();
    for chunk in payloads.chunks(100) {
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)
                .unwrap();
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        q.enqueue_batch(&tx, &refs, &EnqueueOptions::default())
            .unwrap();
        tx.commit().unwrap();
        honker_core::kick_after_commit(&conn);
    }
    tell("done");
}

/// Child role: a transactional worker recording each job it handles in `handled`, in the same
/// transaction as the ack, until the parent closes stdin.
#[test]
fn child_worker() {
    if !is_child("worker") {
        return;
    }
    let db = child_db();
    let wake = honker_wake::wake_for(&db).unwrap();
    let threads: usize = child_var("HONKER_QUEUE_TEST_THREADS").parse().unwrap();
    let lease_ms: i64 = child_var("HONKER_QUEUE_TEST_LEASE_MS").parse().unwrap();
    let hold_ms: u64 = child_var("HONKER_QUEUE_TEST_HOLD_MS").parse().unwrap();
    let w = Worker::start_transactional(
        &db,
        Queue::new(QUEUE).unwrap(),
        wake,
        WorkerOptions {
            threads,
            lease_ms: Some(lease_ms),
            ..WorkerOptions::default()
        },
        move |conn, job| {
            record_handled(conn, job);
            if hold_ms > 0 {
                std::thread::sleep(Duration::from_millis(hold_ms));
            }
            Ok(None)
        },
    )
    .unwrap();
    tell(&format!("ready {}", w.worker_id()));
    read_parent_line();
    let r = w.shutdown().unwrap();
    tell(&format!(
        "report acked={} lost={} errors={} {:?}",
        r.acked, r.lease_lost, r.error_count, r.errors
    ));
}

/// A worker process, once ready, and its worker id.
pub(crate) fn spawn_worker(
    db: &WorkDb,
    threads: usize,
    lease_ms: i64,
    hold_ms: u64,
) -> (Proc, String) {
    let mut p = Proc::spawn(
        "worker",
        "multiprocess::child_worker",
        &db.path(),
        &[
            ("HONKER_QUEUE_TEST_THREADS", threads.to_string()),
            ("HONKER_QUEUE_TEST_LEASE_MS", lease_ms.to_string()),
            ("HONKER_QUEUE_TEST_HOLD_MS", hold_ms.to_string()),
        ],
    );
    let ready = p.expect_line("ready");
    let id = ready
        .split_whitespace()
        .nth(1)
        .expect("worker id")
        .to_owned();
    (p, id)
}

/// Every enqueued job appears once in `handled`, and nothing is left in the queue.
fn assert_each_handled_once(conn: &rusqlite::Connection, expected: usize) {
    let mut per_job: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT job_id, token, pid FROM handled")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    let mut tokens = HashSet::new();
    for row in rows {
        let (job, token, pid) = row.unwrap();
        assert!(tokens.insert(token), "lease token {token} handed out twice");
        per_job.entry(job).or_default().push((token, pid));
    }
    let twice: Vec<_> = per_job.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "jobs handled more than once: {twice:?}");
    assert_eq!(per_job.len(), expected, "jobs handled");
    assert_eq!(
        count(conn, "SELECT count(*) FROM honker_jobs"),
        0,
        "jobs left in the queue"
    );
    assert_eq!(count(conn, "SELECT count(*) FROM honker_dead"), 0);
}

#[test]
fn four_worker_processes_drain_two_producers_jobs_each_exactly_once() {
    let db = WorkDb::new();
    let conn = db.open();
    let total = total_jobs();
    let workers: Vec<Proc> = (0..4).map(|_| spawn_worker(&db, 2, 30_000, 0).0).collect();
    let mut producers: Vec<Proc> = ["a", "b"]
        .iter()
        .map(|tag| {
            let mut p = Proc::spawn(
                "producer",
                "multiprocess::child_producer",
                &db.path(),
                &[
                    ("HONKER_QUEUE_TEST_N", (total / 2).to_string()),
                    ("HONKER_QUEUE_TEST_TAG", (*tag).to_string()),
                ],
            );
            p.expect_line("ready");
            p
        })
        .collect();
    for p in &mut producers {
        p.expect_line("done");
    }
    for p in producers {
        p.finish();
    }
    let mut last = -1;
    let mut stalled_since = std::time::Instant::now();
    while count(&conn, "SELECT count(*) FROM handled") < total as i64 {
        // A long run is fine as long as it moves; fail if nothing moves for the deadline.
        let now = count(&conn, "SELECT count(*) FROM handled");
        if now != last {
            last = now;
            stalled_since = std::time::Instant::now();
        }
        assert!(
            stalled_since.elapsed() < crate::worker_support::DEADLINE,
            "no progress for {:?} at {now} of {total} handled",
            crate::worker_support::DEADLINE
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut pids = HashSet::new();
    for mut w in workers {
        pids.insert(w.child.id());
        w.say("stop");
        let report = w.expect_line("report");
        assert!(report.contains("lost=0 errors=0"), "{report}");
        w.finish();
    }
    assert_each_handled_once(&conn, total);
    // Every worker process took part.
    let per_pid: Vec<i64> = column(&conn, "SELECT count(*) FROM handled GROUP BY pid");
    eprintln!("jobs handled per worker process: {per_pid:?}");
    // The exactly-once checks above only mean something if processes really competed. Equal
    // shares are not promised: under write-lock contention SQLite's busy handler backs off, and
    // on a loaded 2-core machine one worker can lose every race (seen in CI: [3999, 13593, 2408]
    // with the fourth at 0). See "Known limitations" in the crate docs.
    let took_part = count(&conn, "SELECT count(DISTINCT pid) FROM handled");
    assert!(
        took_part >= 2,
        "only {took_part} worker process handled jobs: {per_pid:?}"
    );
    integrity_ok(&conn);
}

/// Child role: a plain worker that reports each job it starts (`start <id> <attempts> <ms>`).
#[test]
fn child_timer_worker() {
    if !is_child("timer_worker") {
        return;
    }
    let db = child_db();
    let wake = honker_wake::wake_for(&db).unwrap();
    let w = Worker::start(
        &db,
        Queue::new("timers").unwrap(),
        wake,
        WorkerOptions {
            threads: 1,
            ..WorkerOptions::default()
        },
        |job| {
            tell(&format!("start {} {} {}", job.id, job.attempts, now_ms()));
            Ok(None)
        },
    )
    .unwrap();
    tell("ready");
    read_parent_line();
    w.shutdown().unwrap();
}

/// `(id, attempts, started_ms)` of a `start` line.
fn parse_start(line: &str) -> (i64, u32, i64) {
    let f: Vec<&str> = line.split_whitespace().collect();
    (
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

/// The worker process has no interval poll: without its timer it would sleep through both
/// deadlines (nothing commits then) and the waits below would time out.
#[test]
fn a_delayed_job_and_an_expired_lease_wake_a_worker_in_another_process_on_time() {
    let db = WorkDb::new();
    let conn = db.open();
    let q = Queue::new("timers").unwrap();
    let mut child = Proc::spawn(
        "timer_worker",
        "multiprocess::child_timer_worker",
        &db.path(),
        &[],
    );
    child.expect_line("ready");

    // A delayed job: the enqueue's commit wakes the worker, which finds nothing due yet and
    // sleeps until run_at.
    let before = now_ms();
    let delayed = q
        .enqueue(
            &conn,
            r#"{"delayed":true}"#,
            &EnqueueOptions {
                delay_ms: Some(700),
                ..EnqueueOptions::default()
            },
        )
        .unwrap();
    let (id, attempts, started) = parse_start(&child.expect_line("start"));
    assert_eq!((id, attempts), (delayed.0, 1));
    assert!(
        started >= before + 700,
        "started {} ms before run_at",
        before + 700 - started
    );
    // Generous: a worker that missed its timer would never start it at all.
    assert!(started - (before + 700) < 10_000, "started late");

    // An expired lease: this process claims a job and abandons it; the worker (asleep, nothing
    // due) wakes at the lease expiry and reclaims it.
    wait_until("the worker to settle the delayed job", || {
        honker_queue::job(&conn, delayed).unwrap().is_none()
    });
    let tx = rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let abandoned = q
        .enqueue(&tx, r#"{"abandoned":true}"#, &EnqueueOptions::default())
        .unwrap();
    let claimed = q.claim(&tx, "parent", 1, Some(800)).unwrap();
    tx.commit().unwrap();
    assert_eq!(claimed.len(), 1);
    let expires = claimed[0].lease_expires.0;
    let (id, attempts, started) = parse_start(&child.expect_line("start"));
    assert_eq!((id, attempts), (abandoned.0, 2));
    assert!(
        started >= expires,
        "reclaimed {} ms early",
        expires - started
    );
    assert!(started - expires < 10_000, "reclaimed late");
    child.say("stop");
    child.finish();
}
