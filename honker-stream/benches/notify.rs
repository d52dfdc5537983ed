//! Criterion benchmark: one notification per autocommit transaction, honker against the same
//! INSERT through plain rusqlite.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

const PAYLOAD: &str = r#"{"order":12345,"status":"paid"}"#;

fn notify_1_per_txn(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let conn = honker_core::open(&path).expect("open");
    let mut group = c.benchmark_group("notify_1_per_txn");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    group.bench_function("raw_rusqlite", |b| {
        let mut stmt = conn
            .prepare(
                "INSERT INTO honker_notifications (channel, payload, created_ms) VALUES (?1, ?2, ?3)",
            )
            .expect("prepare");
        b.iter(|| {
            stmt.execute(rusqlite::params!["bench", PAYLOAD, 1_700_000_000_000_i64])
                .expect("insert");
            black_box(conn.last_insert_rowid())
        });
    });

    group.bench_function("honker_notify", |b| {
        b.iter(|| black_box(honker_stream::notify(&conn, "bench", PAYLOAD).expect("notify")));
    });
    group.finish();
}

criterion_group!(benches, notify_1_per_txn);
criterion_main!(benches);
