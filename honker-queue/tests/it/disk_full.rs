//! A full database (`SQLITE_FULL`, made with `PRAGMA max_page_count` on the writing connection):
//! every refused write is a typed `db.full` error that writes nothing, the caller's business
//! write rolls back with its job, jobs already queued are not lost, and work resumes as soon as
//! there is room again.

use honker_core::WakeSource;
use honker_queue::{EnqueueOptions, Queue};
use rusqlite::Connection;

use crate::bad_input::sql_conn;
use crate::util::{TempDb, integrity_ok, rows};

/// Cap the file at the pages it has now: writes that need a new page fail with SQLITE_FULL.
fn fill_up(conn: &Connection) {
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let max: i64 = conn
        .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(max, pages);
}

fn make_room(conn: &Connection) {
    conn.query_row("PRAGMA max_page_count = 1073741823", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap();
}

/// A payload big enough to need pages of its own.
fn big() -> String {
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(6000))
}

/// Enqueue big payloads until the file is full; returns how many fitted.
fn enqueue_until_full(conn: &Connection, q: &Queue) -> usize {
    let payload = big();
    for fitted in 0..10_000 {
        match q.enqueue(conn, &payload, &EnqueueOptions::default()) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), "db.full", "{e}");
                assert!(e.to_string().contains("full"), "{e}");
                return fitted;
            }
        }
    }
    panic!("the capped file never filled up");
}

#[test]
fn a_full_database_refuses_each_write_with_db_full_and_loses_nothing() {
    let db = TempDb::new();
    let conn = db.open();
    conn.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        .unwrap();
    let q = Queue::new("q").unwrap();
    for i in 0..10 {
        q.enqueue(&conn, &format!("[{i}]"), &EnqueueOptions::default())
            .unwrap();
    }
    fill_up(&conn);
    let fitted = enqueue_until_full(&conn, &q);
    let queued = 10 + fitted as i64;
    assert_eq!(rows(&conn, "honker_jobs"), queued);

    // A batch is all or nothing.
    let payload = big();
    let batch: Vec<&str> = vec![payload.as_str(); 20];
    let e = q
        .enqueue_batch(&conn, &batch, &EnqueueOptions::default())
        .unwrap_err();
    assert_eq!(e.code(), "db.full");
    assert_eq!(rows(&conn, "honker_jobs"), queued);

    // The business write and its job roll back together: no order without its job.
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let order = conn.execute("INSERT INTO orders (note) VALUES ('small')", []);
    let job = q.enqueue(&conn, &payload, &EnqueueOptions::default());
    assert!(
        order.is_err() || job.is_err(),
        "both writes fitted in a full file"
    );
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(rows(&conn, "orders"), 0);
    assert_eq!(rows(&conn, "honker_jobs"), queued);

    // The SQL function says the same, with its code first.
    let sql = sql_conn(&db);
    fill_up(&sql);
    let e = sql
        .query_row("SELECT honker_enqueue('q', ?1)", [&payload], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_err();
    assert!(
        e.to_string().starts_with("honker: db.full: "),
        "expected db.full, got {e}"
    );
    assert_eq!(rows(&conn, "honker_jobs"), queued);

    // Workers can still drain a full file: a claim that needs no new page succeeds, and one
    // that does fails whole. Acks only delete.
    let claimed = match q.claim(&conn, "w", 5, None) {
        Ok(jobs) => jobs,
        Err(e) => {
            assert_eq!(e.code(), "db.full", "{e}");
            assert_eq!(rows(&conn, "honker_jobs"), queued);
            Vec::new()
        }
    };
    for job in &claimed {
        q.ack(&conn, job.id, job.lease_token).unwrap();
    }
    let left = queued - claimed.len() as i64;
    assert_eq!(rows(&conn, "honker_jobs"), left);
    integrity_ok(&conn);

    // Room again: writes go through, and every job that was queued is still there.
    make_room(&conn);
    q.enqueue(&conn, &payload, &EnqueueOptions::default())
        .unwrap();
    assert_eq!(rows(&conn, "honker_jobs"), left + 1);
    let mut drained = 0;
    loop {
        let jobs = q.claim(&conn, "w", 64, None).unwrap();
        if jobs.is_empty() {
            break;
        }
        for job in &jobs {
            q.ack(&conn, job.id, job.lease_token).unwrap();
        }
        drained += jobs.len() as i64;
    }
    assert_eq!(drained, left + 1, "a job was lost");
    integrity_ok(&conn);
}

/// A small tmpfs mounted on a temporary directory, unmounted on drop. Mounting needs root (or
/// CAP_SYS_ADMIN); without it the real-disk test says so and stops, and the `max_page_count`
/// test above stays the proof that runs everywhere.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(bytes: u64) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
            return None;
        }
        Some(SmallFs { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Write a file until the file system has no room left; returns its path.
fn fill_disk(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    path
}

#[test]
fn a_real_full_disk_under_a_worker_loses_no_job_and_work_resumes_when_room_returns() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use honker_queue::{Worker, WorkerOptions};

    let Some(fs) = SmallFs::mount(8 << 20) else {
        return;
    };
    let path = fs.path().join("app.db");
    let conn = honker_core::open(&path).unwrap();
    let q = Queue::new("q").unwrap();
    let payloads: Vec<String> = (0..300).map(|i| format!("[{i}]")).collect();
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let mut ids = q
        .enqueue_batch(&conn, &refs, &EnqueueOptions::default())
        .unwrap();
    let filler = fill_disk(fs.path());

    // The producer meets ENOSPC as db.full, and each refused enqueue leaves nothing behind.
    let payload = big();
    let e = (0..1000)
        .find_map(
            |_| match q.enqueue(&conn, &payload, &EnqueueOptions::default()) {
                Ok(id) => {
                    ids.push(id);
                    None
                }
                Err(e) => Some(e),
            },
        )
        .expect("the full disk never refused a write");
    assert_eq!(e.code(), "db.full", "{e}");
    assert_eq!(rows(&conn, "honker_jobs"), ids.len() as i64);

    // A worker on the full disk: claims and acks fail, the worker keeps going.
    let runs: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let wake = honker_core::ManualWake::new();
    let w = Worker::start(
        &path,
        q.clone(),
        Arc::new(wake.clone()),
        WorkerOptions {
            lease_ms: Some(1000),
            ..WorkerOptions::default()
        },
        {
            let runs = Arc::clone(&runs);
            move |job| {
                *runs.lock().unwrap().entry(job.id.0).or_default() += 1;
                Ok(None)
            }
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.report().error_count == 0 {
        assert!(
            Instant::now() < deadline,
            "the worker met no error on a full disk: {:?}",
            w.report()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        w.report().errors.iter().all(|e| e.code() == "db.full"),
        "{:?}",
        w.report()
    );
    assert!(!w.has_failed(), "a full disk stopped the worker");

    // Room again: every job is run and acked, none lost.
    std::fs::remove_file(filler).unwrap();
    wake.kick();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows(&conn, "honker_jobs") > 0 {
        assert!(
            Instant::now() < deadline,
            "jobs left after the disk had room again: {} ({:?})",
            rows(&conn, "honker_jobs"),
            w.report()
        );
        // honker's auto-checkpoint runs every 10,000 pages (40 MiB), more than this 8 MiB disk
        // holds, so here the WAL would fill the disk again: an application on a disk this small
        // checkpoints more often, as this one does. (A PASSIVE checkpoint never waits for or
        // blocks the worker.)
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        std::thread::sleep(Duration::from_millis(10));
    }
    w.shutdown().unwrap();
    let runs = runs.lock().unwrap();
    for id in &ids {
        assert!(runs.contains_key(&id.0), "job {} never ran", id.0);
    }
    assert_eq!(rows(&conn, "honker_dead"), 0);
    integrity_ok(&conn);
}
