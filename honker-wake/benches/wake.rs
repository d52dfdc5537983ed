//! Criterion benchmark of the wake backends against each other and against a hand-written
//! `PRAGMA data_version` loop (`raw_rusqlite`): the cost of one change check, the detection
//! latency after a commit by another connection, and the CPU a parked waiter costs per idle
//! second. Run with `cargo bench -p honker-wake --features stat,kernel`.
//!
//! `idle_cpu_per_second` reports CPU time, not wall time: each iteration sleeps through an idle
//! window and returns the process's on-CPU time (all threads, `/proc/self/task/*/schedstat`)
//! scaled to one second.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use honker_core::WakeSource;
use honker_wake::{Backend, Hub};
use rusqlite::Connection;

fn fresh_db(dir: &Path) -> PathBuf {
    let path = dir.join("bench.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = wal; CREATE TABLE counter(n); INSERT INTO counter VALUES (0);",
    )
    .unwrap();
    path
}

fn commit(conn: &Connection) {
    conn.execute("UPDATE counter SET n = n + 1", []).unwrap();
}

fn writer(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn
}

/// One look for a change, as each backend's watcher does it on every tick.
fn change_check(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = fresh_db(dir.path());
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let mut g = c.benchmark_group("change_check");
    g.measurement_time(Duration::from_secs(2)).sample_size(20);
    let conn = Connection::open(&path).unwrap();
    g.bench_function("raw_rusqlite", |b| {
        let mut stmt = conn.prepare("PRAGMA data_version").unwrap();
        b.iter(|| stmt.query_row([], |r| r.get::<_, i64>(0)).unwrap());
    });
    // DataVersion: the same pragma through rusqlite's statement cache, as the watcher runs it.
    g.bench_function("data_version", |b| {
        b.iter(|| {
            conn.prepare_cached("PRAGMA data_version")
                .unwrap()
                .query_row([], |r| r.get::<_, i64>(0))
                .unwrap()
        });
    });
    // StatPoll: `stat` of the db and the -wal file.
    g.bench_function("stat", |b| {
        b.iter(|| {
            (
                std::fs::metadata(&path).map(|m| m.len()).ok(),
                std::fs::metadata(&wal).map(|m| m.len()).ok(),
            )
        });
    });
    // Kernel: nothing per tick; an idle watcher sleeps in epoll until an event or its floor.
    // What a woken watcher adds is the `data_version` check above.
    g.finish();
}

/// Commit on another connection while a waiter is parked; time until the waiter returns.
fn detection_latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("detection_latency");
    g.measurement_time(Duration::from_secs(3)).sample_size(10);
    for backend in Backend::compiled() {
        let dir = tempfile::tempdir().unwrap();
        let path = fresh_db(dir.path());
        let hub = Hub::with_options(Default::default());
        let wake = hub.wake_for_with(&path, backend).unwrap();
        let w = writer(&path);
        g.bench_function(backend.name(), |b| {
            b.iter_custom(|iters| latency(iters, &*wake, &w));
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let path = fresh_db(dir.path());
    let w = writer(&path);
    g.bench_function("raw_rusqlite", |b| {
        b.iter_custom(|iters| raw_latency(iters, &path, &w));
    });
    g.finish();
}

fn latency(iters: u64, wake: &dyn WakeSource, w: &Connection) -> Duration {
    let mut total = Duration::ZERO;
    thread::scope(|s| {
        for i in 0..iters {
            let seen = wake.epoch();
            let (tx, rx) = mpsc::channel();
            let started = Arc::new(AtomicBool::new(false));
            let flag = started.clone();
            s.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut seen = seen;
                // A spurious wake (allowed by the contract) before the commit started: wait again.
                let r = loop {
                    let r = wake.wait_past(seen, Some(deadline));
                    match r {
                        Ok(e) if !flag.load(Ordering::Acquire) && Instant::now() < deadline => {
                            seen = e;
                        }
                        r => break r,
                    }
                };
                tx.send((Instant::now(), r)).unwrap();
            });
            // Let the waiter park (the watcher polls only while somebody waits), and vary the
            // phase against the pollers' 1 ms ticks.
            thread::sleep(gap(i));
            started.store(true, Ordering::Release);
            let t0 = Instant::now();
            commit(w);
            let (woke, r) = rx.recv().unwrap();
            assert!(r.unwrap() > seen, "timed out");
            total += woke - t0;
        }
    });
    total
}

/// 2 ms plus a phase that walks through one poll interval, so commits do not phase-lock with a
/// 1 ms poller.
fn gap(i: u64) -> Duration {
    Duration::from_micros(2000 + (i * 137) % 1000)
}

/// The baseline: a thread polling a prepared `PRAGMA data_version` every 1 ms by hand.
fn raw_latency(iters: u64, path: &Path, w: &Connection) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let p = path.to_owned();
        let h = thread::spawn(move || {
            let conn = Connection::open(p).unwrap();
            let mut stmt = conn.prepare("PRAGMA data_version").unwrap();
            let base: i64 = stmt.query_row([], |r| r.get(0)).unwrap();
            ready_tx.send(()).unwrap();
            while stmt.query_row([], |r| r.get::<_, i64>(0)).unwrap() == base {
                thread::sleep(Duration::from_millis(1));
            }
            tx.send(Instant::now()).unwrap();
        });
        ready_rx.recv().unwrap();
        thread::sleep(gap(i));
        let t0 = Instant::now();
        commit(w);
        total += rx.recv().unwrap() - t0;
        h.join().unwrap();
    }
    total
}

/// On-CPU nanoseconds of this process so far, all threads.
fn process_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

const IDLE_WINDOW: Duration = Duration::from_millis(250);

/// CPU of the process during `IDLE_WINDOW` of idleness, scaled to one second.
fn idle_cpu(iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let before = process_cpu_ns();
        thread::sleep(IDLE_WINDOW);
        let used = process_cpu_ns().saturating_sub(before);
        total += Duration::from_nanos(used * 4);
    }
    total
}

fn idle_cpu_per_second(c: &mut Criterion) {
    let mut g = c.benchmark_group("idle_cpu_per_second");
    g.measurement_time(Duration::from_secs(3)).sample_size(10);
    for backend in Backend::compiled() {
        let dir = tempfile::tempdir().unwrap();
        let path = fresh_db(dir.path());
        let hub = Hub::with_options(Default::default());
        let wake = hub.wake_for_with(&path, backend).unwrap();
        let waiter = {
            let wake = wake.clone();
            let seen = wake.epoch();
            thread::spawn(move || wake.wait_past(seen, None))
        };
        g.bench_function(backend.name(), |b| b.iter_custom(idle_cpu));
        wake.kick();
        waiter.join().unwrap().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = fresh_db(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        thread::spawn(move || {
            let conn = Connection::open(path).unwrap();
            let mut stmt = conn.prepare("PRAGMA data_version").unwrap();
            while !stop.load(Ordering::Relaxed) {
                stmt.query_row([], |r| r.get::<_, i64>(0)).unwrap();
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    g.bench_function("raw_rusqlite", |b| b.iter_custom(idle_cpu));
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    g.finish();
}

criterion_group!(
    benches,
    change_check,
    detection_latency,
    idle_cpu_per_second
);
criterion_main!(benches);
