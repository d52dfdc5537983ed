//! Pub/sub end to end: a listener thread wakes on each commit of another connection; a
//! rolled-back notification is never delivered.
//!
//! Run with `cargo run -p honker-stream --example pubsub`.

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.db");
    let conn = honker_core::open(&path)?;

    // One watcher per file per process, shared by every listener.
    let wake = honker_wake::wake_for(&path)?;
    let mut listener = honker_stream::Listener::open(&path, "orders", wake)?;

    let consumer = std::thread::spawn(move || -> Result<Vec<String>, honker_stream::Error> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < 4 {
            match listener.recv(Some(deadline))? {
                Some(n) => {
                    println!("listener: #{} on {:?}: {}", n.id, n.channel, n.payload);
                    got.push(n.payload);
                }
                None => break,
            }
        }
        Ok(got)
    });

    for order in 1..=3 {
        // Written in the caller's transaction: delivered when (and only if) it commits.
        let tx = conn.unchecked_transaction()?;
        honker_stream::notify(&tx, "orders", &format!(r#"{{"order":{order}}}"#))?;
        tx.commit()?;
    }
    let rolled_back = conn.unchecked_transaction()?;
    honker_stream::notify(&rolled_back, "orders", r#"{"order":"never"}"#)?;
    rolled_back.rollback()?;
    honker_stream::notify(&conn, "orders", r#"{"order":4}"#)?;

    let got = consumer.join().expect("listener thread")?;
    println!("delivered {} notifications: {got:?}", got.len());
    Ok(())
}
