//! Criterion benchmarks of the queue, each group with a `raw_rusqlite` function doing the same
//! SQL work through plain rusqlite on the same tables: enqueue (1 and 100 per transaction),
//! claim + ack of one job, claim 128 + ack 128, and the cost of one claim at 1k and 100k pending
//! jobs and beside 100k dead letters.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use honker_queue::{EnqueueOptions, JobId, LeaseToken, Queue};
use rusqlite::{Connection, params};

const PAYLOAD: &str = r#"{"order":12345,"status":"paid"}"#;
const NOW: i64 = 1_700_000_000_000;

const RAW_INSERT: &str =
    "INSERT INTO honker_jobs (queue, state, payload, priority, run_at, attempts,
     max_attempts, created_ms) VALUES (?1, 0, ?2, 0, ?3, 0, 5, ?3)";
const RAW_CLAIM: &str = "UPDATE honker_jobs SET state = 2, attempts = attempts + 1,
     lease_token = ?3, lease_expires = ?4, worker = 'w'
     WHERE id IN (SELECT id FROM honker_jobs WHERE queue = ?1 AND state = 0
                  ORDER BY priority DESC, run_at, id LIMIT ?2 + 0)
     RETURNING id, lease_token";
const RAW_ACK: &str = "DELETE FROM honker_jobs WHERE id = ?1 AND lease_token = ?2";
const RAW_RELEASE: &str = "UPDATE honker_jobs SET state = 0, attempts = attempts - 1,
     lease_token = NULL, lease_expires = NULL WHERE id = ?1";

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = honker_core::open(dir.path().join("bench.db")).expect("open");
    (dir, conn)
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    g
}

/// Fill queue `queue` with `n` pending jobs in one transaction (not timed).
fn fill(conn: &Connection, queue: &str, n: u64) {
    let tx = conn.unchecked_transaction().expect("tx");
    {
        let mut stmt = tx.prepare_cached(RAW_INSERT).expect("prepare");
        for _ in 0..n {
            stmt.execute(params![queue, PAYLOAD, NOW]).expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn raw_claim(conn: &Connection, queue: &str, n: i64, token: i64) -> Vec<(i64, i64)> {
    let tx = conn.unchecked_transaction().expect("tx");
    let got = tx
        .prepare_cached(RAW_CLAIM)
        .expect("prepare")
        .query_map(params![queue, n, token, NOW + 30_000], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("claim")
        .collect::<rusqlite::Result<Vec<_>>>()
        .expect("rows");
    tx.commit().expect("commit");
    got
}

fn enqueue(c: &mut Criterion) {
    let (_dir, conn) = db();
    let q = Queue::new("bench").expect("queue");
    let opts = EnqueueOptions::default();
    let mut g = group(c, "enqueue_1_per_txn");
    g.bench_function("raw_rusqlite", |b| {
        let mut stmt = conn.prepare_cached(RAW_INSERT).expect("prepare");
        b.iter(|| black_box(stmt.execute(params!["raw", PAYLOAD, NOW]).expect("insert")));
    });
    g.bench_function("honker_enqueue", |b| {
        b.iter(|| black_box(q.enqueue(&conn, PAYLOAD, &opts).expect("enqueue")));
    });
    g.finish();

    let mut g = group(c, "enqueue_100_per_txn");
    g.bench_function("raw_rusqlite", |b| {
        b.iter(|| {
            let tx = conn.unchecked_transaction().expect("tx");
            {
                let mut stmt = tx.prepare_cached(RAW_INSERT).expect("prepare");
                for _ in 0..100 {
                    stmt.execute(params!["raw", PAYLOAD, NOW]).expect("insert");
                }
            }
            tx.commit().expect("commit");
        });
    });
    g.bench_function("honker_enqueue", |b| {
        b.iter(|| {
            let tx = conn.unchecked_transaction().expect("tx");
            for _ in 0..100 {
                black_box(q.enqueue(&tx, PAYLOAD, &opts).expect("enqueue"));
            }
            tx.commit().expect("commit");
        });
    });
    g.finish();
}

/// Claim `batch` jobs then ack them, in two transactions; jobs are refilled outside the timing.
fn claim_ack(c: &mut Criterion, name: &str, batch: usize) {
    let (_dir, conn) = db();
    let q = Queue::new("bench").expect("queue");
    let mut g = group(c, name);
    let mut token = 0;
    g.bench_function("raw_rusqlite", |b| {
        b.iter_custom(|iters| {
            fill(&conn, "raw", iters * batch as u64);
            let start = Instant::now();
            for _ in 0..iters {
                token += 1;
                let got = raw_claim(&conn, "raw", batch as i64, token);
                let tx = conn.unchecked_transaction().expect("tx");
                {
                    let mut ack = tx.prepare_cached(RAW_ACK).expect("prepare");
                    for (id, t) in got {
                        ack.execute(params![id, t]).expect("ack");
                    }
                }
                tx.commit().expect("commit");
            }
            start.elapsed()
        });
    });
    g.bench_function("honker", |b| {
        b.iter_custom(|iters| {
            fill(&conn, "bench", iters * batch as u64);
            let start = Instant::now();
            for _ in 0..iters {
                let jobs = q.claim(&conn, "w", batch, None).expect("claim");
                if batch == 1 {
                    q.ack(&conn, jobs[0].id, jobs[0].lease_token).expect("ack");
                } else {
                    let pairs: Vec<(JobId, LeaseToken)> =
                        jobs.iter().map(|j| (j.id, j.lease_token)).collect();
                    q.ack_batch(&conn, &pairs).expect("ack");
                }
            }
            start.elapsed()
        });
    });
    g.finish();
}

fn claim_ack_one(c: &mut Criterion) {
    claim_ack(c, "claim_ack_1", 1);
}

fn claim_ack_128(c: &mut Criterion) {
    claim_ack(c, "claim_128_ack_128", 128);
}

/// The cost of one claim of one job with `depth` pending (and `dead` dead letters); the job is
/// released outside the timing so the depth stays put.
fn claim_at(c: &mut Criterion, name: &str, depth: u64, dead: u64) {
    let (_dir, conn) = db();
    let q = Queue::new("bench").expect("queue");
    fill(&conn, "bench", depth);
    fill(&conn, "raw", depth);
    if dead > 0 {
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
             INSERT INTO honker_dead (id, queue, payload, priority, attempts, max_attempts,
                 reason, created_ms, died_ms)
             SELECT i + 10000000, 'bench', '{}', 0, 5, 5, 'failed', ?1, ?1 FROM n",
            params![NOW, dead as i64],
        )
        .expect("dead letters");
    }
    // Start every depth from an empty WAL, so the comparison is of the claim and not of how many
    // frames the set-up left for readers to look through.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let mut g = group(c, name);
    let mut token = 0;
    g.bench_function("raw_rusqlite", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                token += 1;
                let start = Instant::now();
                let got = raw_claim(&conn, "raw", 1, token);
                total += start.elapsed();
                conn.prepare_cached(RAW_RELEASE)
                    .expect("prepare")
                    .execute([got[0].0])
                    .expect("release");
            }
            total
        });
    });
    g.bench_function("honker", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let jobs = q.claim(&conn, "w", 1, None).expect("claim");
                total += start.elapsed();
                q.release(&conn, jobs[0].id, jobs[0].lease_token)
                    .expect("release");
            }
            total
        });
    });
    g.finish();
}

fn claim_depth(c: &mut Criterion) {
    claim_at(c, "claim_1_at_1k_pending", 1_000, 0);
    claim_at(c, "claim_1_at_100k_pending", 100_000, 0);
    claim_at(c, "claim_1_at_1k_pending_100k_dead", 1_000, 100_000);
}

criterion_group!(benches, enqueue, claim_ack_one, claim_ack_128, claim_depth);
criterion_main!(benches);
