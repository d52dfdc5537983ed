//! A replaced or deleted database file fails parked waits with `WakeError::Replaced` (never a
//! hang), and the Hub starts a fresh watcher for the new file.

use std::thread;

use honker_core::WakeError;
use honker_wake::Hub;

use crate::{Db, commit, deadline, wait_until};

fn assert_replaced(r: Result<honker_core::Epoch, WakeError>) {
    match r {
        Err(WakeError::Replaced { .. }) => {}
        other => panic!("expected WakeError::Replaced, got {other:?}"),
    }
}

#[test]
fn rename_over_the_file_fails_a_parked_waiter_and_hub_watches_the_new_file() {
    crate::for_each_backend(
        rename_over_the_file_fails_a_parked_waiter_and_hub_watches_the_new_file_with,
    );
}

fn rename_over_the_file_fails_a_parked_waiter_and_hub_watches_the_new_file_with(
    backend: honker_wake::Backend,
) {
    let db = Db::new("wal");
    let hub = Hub::global();
    let wake = crate::start(backend, &db.path);
    let shared = hub.wake_for_with(&db.path, backend).unwrap();
    let seen = wake.epoch();
    let replacement = db.path.with_file_name("replacement.db");
    {
        let c = crate::connect(&replacement);
        c.execute_batch("CREATE TABLE counter(n); INSERT INTO counter VALUES (100);")
            .unwrap();
    }
    thread::scope(|s| {
        let waiter = s.spawn(|| wake.wait_past(seen, Some(deadline())));
        wait_until("the waiter parked", || wake.waiters() >= 1);
        std::fs::rename(&replacement, &db.path).unwrap();
        assert_replaced(waiter.join().unwrap());
    });
    assert_eq!(
        wake.wait_past(seen, None).unwrap_err().code(),
        "wake.replaced"
    );
    assert_replaced(shared.wait_past(shared.epoch(), Some(deadline())));

    // A later wake_for watches the new file.
    let fresh = hub.wake_for_with(&db.path, backend).unwrap();
    let seen = fresh.epoch();
    commit(&crate::connect(&db.path));
    assert!(fresh.wait_past(seen, Some(deadline())).unwrap() > seen);
}

#[test]
fn deleting_the_file_fails_a_parked_waiter() {
    crate::for_each_backend(deleting_the_file_fails_a_parked_waiter_with);
}

fn deleting_the_file_fails_a_parked_waiter_with(backend: honker_wake::Backend) {
    let db = Db::new("wal");
    let wake = Hub::global().wake_for_with(&db.path, backend).unwrap();
    let seen = wake.epoch();
    thread::scope(|s| {
        let waiter = s.spawn(|| wake.wait_past(seen, Some(deadline())));
        wait_until("the waiter parked", || Hub::global().waiters(&db.path) >= 1);
        std::fs::remove_file(&db.path).unwrap();
        assert_replaced(waiter.join().unwrap());
    });
    assert!(matches!(
        Hub::global().wake_for_with(&db.path, backend),
        Err(WakeError::Start { .. })
    ));
}

#[test]
fn a_file_recreated_at_the_same_path_gets_a_fresh_watcher_even_if_the_inode_is_reused() {
    crate::for_each_backend(
        a_file_recreated_at_the_same_path_gets_a_fresh_watcher_even_if_the_inode_is_reused_with,
    );
}

fn a_file_recreated_at_the_same_path_gets_a_fresh_watcher_even_if_the_inode_is_reused_with(
    backend: honker_wake::Backend,
) {
    let db = Db::new("wal");
    let hub = Hub::global();
    let old = hub.wake_for_with(&db.path, backend).unwrap();
    // Delete the database and its WAL files, and create a new one at the same path: the file
    // system may hand out the same inode number again.
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    {
        let c = crate::connect(&db.path);
        c.execute_batch("CREATE TABLE counter(n); INSERT INTO counter VALUES (0);")
            .unwrap();
    }
    let fresh = hub.wake_for_with(&db.path, backend).unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&old, &fresh),
        "the old file's watcher was reused"
    );
    assert_replaced(old.wait_past(old.epoch(), Some(deadline())));
    let seen = fresh.epoch();
    commit(&crate::connect(&db.path));
    assert!(fresh.wait_past(seen, Some(deadline())).unwrap() > seen);
}
