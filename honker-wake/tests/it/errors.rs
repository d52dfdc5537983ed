//! Errors other than busy: a poll that fails replaces the connection and fires one conservative
//! wake; polls that keep failing end in `WakeError::WatcherDied`, never a hang.
//!
//! The tests damage the database file in place (same inode) with `std::fs::write`, which a
//! watcher must never do; here it plays a disk that returns garbage.

use std::thread;

use honker_core::{WakeError, WakeSource};
use honker_wake::{DataVersion, DataVersionOptions};

use crate::{Db, deadline, wait_until};

/// The same bytes with the SQLite header's magic string destroyed, and the file change counter
/// moved so readers drop their page cache and read the header again.
fn garbled(original: &[u8]) -> Vec<u8> {
    let mut bad = original.to_vec();
    bad[..16].copy_from_slice(b"not a database!!");
    bad[27] = bad[27].wrapping_add(1);
    bad
}

#[test]
fn a_failing_poll_reconnects_and_fires_one_conservative_wake() {
    let db = Db::new("delete");
    let original = std::fs::read(&db.path).unwrap();
    let wake = DataVersion::start(&db.path, DataVersionOptions::default()).unwrap();
    let seen = wake.epoch();
    // Damage the file while nobody waits (the watcher is parked, so it cannot see the file
    // half-written), then let a waiter make it poll.
    std::fs::write(&db.path, garbled(&original)).unwrap();
    thread::scope(|s| {
        let waiter = s.spawn(|| wake.wait_past(seen, Some(deadline())));
        wait_until("a poll failed", || wake.stats().errors >= 1);
        assert_eq!(wake.epoch(), seen, "a failing poll must not wake by itself");
        std::fs::write(&db.path, &original).unwrap();
        let now = waiter.join().unwrap().unwrap();
        assert!(now > seen, "the reconnect did not wake the waiter");
    });
    assert!(wake.stats().reconnects >= 1);
    assert!(!wake.has_failed());
    // The new connection keeps watching.
    let seen = wake.epoch();
    crate::commit(&db.connect());
    assert!(wake.wait_past(seen, Some(deadline())).unwrap() > seen);
}

#[test]
fn polls_that_keep_failing_end_in_watcher_died() {
    let db = Db::new("delete");
    let original = std::fs::read(&db.path).unwrap();
    let wake = DataVersion::start(&db.path, DataVersionOptions::default()).unwrap();
    let seen = wake.epoch();
    std::fs::write(&db.path, garbled(&original)).unwrap();
    match wake.wait_past(seen, Some(deadline())) {
        Err(WakeError::WatcherDied { reason, .. }) => {
            assert!(reason.contains("data_version"), "{reason}");
        }
        other => panic!("expected WatcherDied, got {other:?}"),
    }
    assert!(wake.has_failed());
    assert_eq!(
        wake.wait_past(seen, None).unwrap_err().code(),
        "wake.watcher_died"
    );
}
