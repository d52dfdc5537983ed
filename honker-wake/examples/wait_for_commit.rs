//! Wait for commits the way every honker consumer does: sample the epoch, look, then sleep past
//! the sample. Run with `cargo run -p honker-wake --example wait_for_commit [DB_PATH]`; without a
//! path it uses a temporary file. Point a second copy (or `sqlite3 DB_PATH "INSERT INTO
//! events(note) VALUES ('hi')"`) at the same file to see cross-process wakes. Choose the backend
//! with the environment: `HONKER_WAKE_BACKEND=kernel cargo run -p honker-wake --features kernel
//! --example wait_for_commit` (or `stat`; a backend not compiled in fails with
//! `wake.not_compiled`).

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| dir.path().join("example.db"), PathBuf::from);
    let conn = honker_core::open(&path)?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, note TEXT)")?;
    let wake = honker_wake::wake_for(&path)?;

    // A writer on another connection (it could as well be another process).
    let writer_path = path.clone();
    let writer = thread::spawn(move || -> rusqlite::Result<()> {
        let w = honker_core::open(&writer_path).expect("open the writer connection");
        for i in 0..3 {
            thread::sleep(Duration::from_millis(200));
            w.execute(
                "INSERT INTO events(note) VALUES (?1)",
                [format!("event {i}")],
            )?;
        }
        Ok(())
    });

    let mut last_id = 0i64;
    let stop_at = Instant::now() + Duration::from_secs(10);
    while last_id < 3 && Instant::now() < stop_at {
        let seen = wake.epoch(); // 1. sample BEFORE looking
        let mut stmt =
            conn.prepare_cached("SELECT id, note FROM events WHERE id > ?1 ORDER BY id")?;
        let rows = stmt.query_map([last_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (id, note) = row?; // 2. look, and drain
            println!("{id}: {note}");
            last_id = id;
        }
        let now = wake.wait_past(seen, Some(stop_at))?; // 3. sleep past the sample
        println!("woke at epoch {now}");
    }
    writer.join().expect("writer thread")?;
    Ok(())
}
