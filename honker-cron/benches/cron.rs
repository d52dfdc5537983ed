//! Criterion benchmarks: `Schedule::next_after` against croner called directly, and a tick with
//! 10 due schedules among 10 or among 10,000 registered ones, against the same SQL by hand.

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use honker_core::Millis;
use honker_cron::{Schedule, ScheduleSpec};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
/// Both `next` loops walk forward from `T0` and start over here (2100-01-01), so they measure
/// the same range of dates.
const T_END: i64 = 4_102_444_800_000;

fn next(c: &mut Criterion) {
    let mut group = c.benchmark_group("cron_next");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let expr = "0 9 * * MON-FRI";
    let tz = chrono_tz::Tz::from_str("Europe/Berlin").expect("zone");
    // The baseline: croner itself, with the instant already in the zone.
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .expect("parse");
    group.bench_function("croner_direct", |b| {
        let mut at = T0;
        b.iter(|| {
            let start = DateTime::<Utc>::from_timestamp_millis(at)
                .expect("instant")
                .with_timezone(&tz);
            let next = cron.find_next_occurrence(&start, false).expect("next");
            at = next.timestamp_millis();
            if at > T_END {
                at = T0;
            }
            black_box(at)
        });
    });
    let schedule = Schedule::parse_in(expr, "Europe/Berlin").expect("parse");
    group.bench_function("honker_next_after", |b| {
        let mut at = Millis(T0);
        b.iter(|| {
            at = schedule.next_after(at).expect("next");
            if at.0 > T_END {
                at = Millis(T0);
            }
            black_box(at)
        });
    });
    group.finish();
}

/// A database with `total` schedules: 10 `@every 1s` ones, due at every whole second, and the
/// rest daily, not due during the benchmark.
fn setup(total: usize) -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = honker_core::open(dir.path().join("bench.db")).expect("open");
    conn.execute_batch("BEGIN").expect("begin");
    for i in 0..total {
        let expr = if i < 10 { "@every 1s" } else { "0 0 * * *" };
        let spec = ScheduleSpec::new(
            &format!("s{i:05}"),
            Schedule::parse(expr).expect("parse"),
            "bench",
            "{}",
        );
        honker_cron::register(&conn, &spec, Millis(T0 + 1)).expect("register");
    }
    conn.execute_batch("COMMIT").expect("commit");
    (dir, conn)
}

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("cron_tick_10_due");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for total in [10usize, 10_000] {
        let (_dir, conn) = setup(total);
        let mut now = T0;
        group.bench_function(format!("honker_tick_of_{total}"), |b| {
            b.iter(|| {
                now += 1000;
                let report = honker_cron::tick(&conn, Millis(now)).expect("tick");
                assert_eq!(report.jobs(), 10);
            });
        });
    }
    // The same SQL work by hand: read the due rows by index, insert fire row + job, move on.
    let (_dir, conn) = setup(10_000);
    let mut now = T0;
    group.bench_function("raw_rusqlite_of_10000", |b| {
        b.iter(|| {
            now += 1000;
            conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
            let due: Vec<(String, i64)> = conn
                .prepare_cached(
                    "SELECT name, next_fire_ms FROM honker_schedules
                     WHERE paused = 0 AND next_fire_ms <= ?1 ORDER BY next_fire_ms LIMIT 1000",
                )
                .expect("prepare")
                .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .collect::<rusqlite::Result<_>>()
                .expect("rows");
            for (name, fire) in &due {
                conn.prepare_cached(
                    "INSERT INTO honker_fires (schedule, fire_ms, fired_at_ms) VALUES (?1, ?2, ?3)",
                )
                .expect("prepare")
                .execute(rusqlite::params![name, fire, now])
                .expect("fire");
                conn.prepare_cached(
                    "INSERT INTO honker_jobs (queue, state, payload, priority, run_at, attempts,
                         max_attempts, created_ms) VALUES ('bench', 0, '{}', 0, ?1, 0, 3, ?1)",
                )
                .expect("prepare")
                .execute([now])
                .expect("job");
                conn.prepare_cached(
                    "UPDATE honker_schedules SET next_fire_ms = ?2, runs = runs + 1 WHERE name = ?1",
                )
                .expect("prepare")
                .execute(rusqlite::params![name, now + 1000])
                .expect("move");
            }
            conn.execute_batch("COMMIT").expect("commit");
            assert_eq!(due.len(), 10);
        });
    });
    group.finish();
}

criterion_group!(benches, next, tick);
criterion_main!(benches);
