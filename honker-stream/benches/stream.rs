//! Criterion benchmarks of durable streams, each against the same SQL work through plain
//! rusqlite: publish with 1 and 100 events per transaction, and replay of 10 000 events through
//! the public read API against a raw indexed `SELECT`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use honker_stream::Offset;
use rusqlite::Connection;

const PAYLOAD: &str = r#"{"order":12345,"status":"paid"}"#;
const RAW_INSERT: &str =
    "INSERT INTO honker_streams (topic, key, payload, created_ms) VALUES (?1, NULL, ?2, ?3)";

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = honker_core::open(dir.path().join("bench.db")).expect("open");
    (dir, conn)
}

fn publish(c: &mut Criterion) {
    for per_txn in [1usize, 100] {
        let (_dir, conn) = db();
        let mut group = c.benchmark_group(format!("publish_{per_txn}_per_txn"));
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20);
        group.bench_function("raw_rusqlite", |b| {
            b.iter(|| {
                let tx = conn.unchecked_transaction().expect("begin");
                {
                    let mut stmt = tx.prepare_cached(RAW_INSERT).expect("prepare");
                    for _ in 0..per_txn {
                        stmt.execute(rusqlite::params!["bench", PAYLOAD, 1_700_000_000_000_i64])
                            .expect("insert");
                    }
                }
                tx.commit().expect("commit");
                black_box(conn.last_insert_rowid())
            });
        });
        group.bench_function("honker_publish", |b| {
            b.iter(|| {
                let tx = conn.unchecked_transaction().expect("begin");
                for _ in 0..per_txn {
                    black_box(honker_stream::publish(&tx, "bench", PAYLOAD).expect("publish"));
                }
                tx.commit().expect("commit");
            });
        });
        group.finish();
    }
}

fn replay(c: &mut Criterion) {
    const EVENTS: usize = 10_000;
    const BATCH: usize = 1000;
    let (_dir, conn) = db();
    let tx = conn.unchecked_transaction().expect("begin");
    for i in 0..EVENTS {
        honker_stream::publish(&tx, "replay", PAYLOAD).expect("publish");
        if i % 4 == 0 {
            honker_stream::publish(&tx, "noise", PAYLOAD).expect("publish");
        }
    }
    tx.commit().expect("commit");
    let mut group = c.benchmark_group("replay_10k");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    group.bench_function("raw_rusqlite", |b| {
        b.iter(|| {
            let mut stmt = conn
                .prepare_cached(
                    r#"SELECT "offset", topic, key, payload, created_ms FROM honker_streams
                       WHERE topic = ?1 AND "offset" > ?2 ORDER BY "offset" LIMIT ?3 + 0"#,
                )
                .expect("prepare");
            let (mut after, mut n) = (0i64, 0usize);
            loop {
                let rows: Vec<(i64, String, Option<String>, String, i64)> = stmt
                    .query_map(rusqlite::params!["replay", after, BATCH as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("rows");
                let Some(last) = rows.last() else { break };
                after = last.0;
                n += rows.len();
            }
            assert_eq!(n, EVENTS);
        });
    });
    group.bench_function("honker_read", |b| {
        b.iter(|| {
            let (mut after, mut n) = (Offset::ZERO, 0usize);
            loop {
                let events = honker_stream::read(&conn, "replay", after, BATCH).expect("read");
                let Some(last) = events.last() else { break };
                after = last.offset;
                n += events.len();
            }
            assert_eq!(n, EVENTS);
        });
    });
    group.finish();
}

criterion_group!(benches, publish, replay);
criterion_main!(benches);
