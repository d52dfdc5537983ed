//! Jobs enqueued in the same transaction as the rows they are about, and a `Worker` whose handler
//! writes and acks in one transaction. Run with `cargo run -p honker-queue --example
//! orders_worker [DB_PATH]`; without a path it uses a temporary file. Start a second copy on the
//! same file to see two processes share the work.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use honker_queue::{EnqueueOptions, HandlerError, Queue, Worker, WorkerOptions};
use rusqlite::{Transaction, TransactionBehavior};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| dir.path().join("orders.db"), PathBuf::from);
    let conn = honker_core::open(&path)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, total INTEGER NOT NULL,
                                            receipt_sent INTEGER NOT NULL DEFAULT 0)",
    )?;
    let receipts = Queue::new("receipts")?;

    // The order and its job commit together: a rollback would drop both.
    for total in [120, 80, 45] {
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        tx.execute("INSERT INTO orders (total) VALUES (?1)", [total])?;
        let order = tx.last_insert_rowid();
        let payload = format!(r#"{{"order":{order}}}"#);
        receipts.enqueue(&tx, &payload, &EnqueueOptions::default())?;
        tx.commit()?;
    }

    // The handler's write and the ack commit together: a crash in between redelivers the job
    // with nothing half-done, so no receipt is marked sent twice or lost.
    let wake = honker_wake::wake_for(&path)?;
    let worker = Worker::start_transactional(
        &path,
        receipts,
        wake,
        WorkerOptions {
            threads: 2,
            ..WorkerOptions::default()
        },
        |conn, job| {
            let v: serde_json::Value = serde_json::from_str(&job.payload)?;
            let order = v["order"]
                .as_i64()
                .ok_or_else(|| HandlerError::fail("payload without an order id"))?;
            conn.execute(
                "UPDATE orders SET receipt_sent = receipt_sent + 1 WHERE id = ?1",
                [order],
            )?;
            Ok(Some(format!(r#"{{"receipt_for":{order}}}"#)))
        },
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.report().acked < 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let report = worker.shutdown()?;
    let sent: i64 = conn.query_row("SELECT sum(receipt_sent) FROM orders", [], |r| r.get(0))?;
    println!(
        "acked {} jobs, {} receipts sent, {} retried",
        report.acked, sent, report.retried
    );
    Ok(())
}
