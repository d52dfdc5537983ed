//! Named locks with fencing tokens, rate limits, and the blocking wait for a result.

use std::thread;
use std::time::{Duration, Instant};

use honker_core::{ManualWake, Millis, SettableClock, WakeSource};
use honker_queue::{
    JobId, lock_acquire, lock_release, lock_renew, rate_limit, result_wait, save_result,
};

use crate::util::{T0, TempDb, rows};

#[test]
fn a_stale_lock_holder_cannot_renew_or_release_and_tokens_grow() {
    let db = TempDb::new();
    let conn = db.open();
    let clock = SettableClock::new(Millis(T0));
    let t1 = lock_acquire(&conn, &clock, "l", "a", 100).unwrap().unwrap();
    assert_eq!(lock_acquire(&conn, &clock, "l", "b", 100).unwrap(), None);
    assert_eq!(
        lock_acquire(&conn, &clock, "l", "a", 100).unwrap(),
        None,
        "renew, don't re-acquire"
    );
    assert!(lock_renew(&conn, &clock, "l", t1, 100).unwrap());
    clock.advance(100);
    assert!(
        !lock_renew(&conn, &clock, "l", t1, 100).unwrap(),
        "an expired lease cannot be renewed"
    );
    let t2 = lock_acquire(&conn, &clock, "l", "b", 100).unwrap().unwrap();
    assert!(t2 > t1);
    assert!(!lock_renew(&conn, &clock, "l", t1, 100).unwrap());
    assert!(!lock_release(&conn, &clock, "l", t1).unwrap());
    assert!(lock_release(&conn, &clock, "l", t2).unwrap());
    assert!(!lock_release(&conn, &clock, "l", t2).unwrap());
    let t3 = lock_acquire(&conn, &clock, "l", "c", 100).unwrap().unwrap();
    assert!(t3 > t2);
    assert_eq!(
        lock_acquire(&conn, &clock, "", "c", 100)
            .unwrap_err()
            .code(),
        "queue.bad_name"
    );
    assert_eq!(rows(&conn, "honker_locks"), 1);
}

#[test]
fn rate_limit_refuses_past_the_limit_without_counting_and_resets_per_window() {
    let db = TempDb::new();
    let conn = db.open();
    let clock = SettableClock::new(Millis(T0 - T0 % 1_000));
    let admitted: Vec<bool> = (0..5)
        .map(|_| rate_limit(&conn, &clock, "api", 2, 1_000).unwrap())
        .collect();
    assert_eq!(admitted, [true, true, false, false, false]);
    let count: i64 = conn
        .query_row(
            "SELECT count FROM honker_rate_limits WHERE name = 'api'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 2, "refused calls are not counted");
    clock.advance(999);
    assert!(!rate_limit(&conn, &clock, "api", 2, 1_000).unwrap());
    clock.advance(1);
    assert!(rate_limit(&conn, &clock, "api", 2, 1_000).unwrap());
    assert!(!rate_limit(&conn, &clock, "other", 0, 1_000).unwrap());
    assert_eq!(
        rows(&conn, "honker_rate_limits"),
        1,
        "a zero limit writes nothing"
    );
    // Another connection (as another process would) shares the window.
    let other = db.open();
    assert!(rate_limit(&other, &clock, "api", 2, 1_000).unwrap());
    assert!(!rate_limit(&other, &clock, "api", 2, 1_000).unwrap());
}

#[test]
fn result_wait_returns_when_another_connection_saves_the_result() {
    let db = TempDb::new();
    let wake = ManualWake::new();
    let path = db.path();
    let w = wake.clone();
    let waiter = thread::spawn(move || {
        let conn = honker_core::open(&path).unwrap();
        let deadline = Some(Instant::now() + Duration::from_secs(30));
        result_wait(&conn, &honker_core::SystemClock, &w, JobId(5), deadline).unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while wake.waiters() == 0 {
        assert!(Instant::now() < deadline, "the waiter never went to sleep");
        thread::sleep(Duration::from_millis(1));
    }
    let conn = db.open();
    save_result(&conn, &honker_core::SystemClock, JobId(5), "[42]", None).unwrap();
    wake.kick();
    assert_eq!(waiter.join().unwrap().as_deref(), Some("[42]"));
    let none = result_wait(
        &conn,
        &honker_core::SystemClock,
        &wake,
        JobId(6),
        Some(Instant::now()),
    )
    .unwrap();
    assert_eq!(none, None);
    let tx = conn.unchecked_transaction().unwrap();
    let e = result_wait(&tx, &honker_core::SystemClock, &wake, JobId(5), None).unwrap_err();
    assert_eq!(e.code(), "wait.in_transaction");
}

/// Found by the Litestream test: a restore takes a lock's counter back, and the next holder got a
/// token the lost history had already handed out. Tokens carry the acquire time as a floor.
#[test]
fn a_lock_counter_taken_back_by_a_restore_never_hands_out_an_old_token_again() {
    let db = crate::util::TempDb::new();
    let conn = db.open();
    let clock = SettableClock::new(Millis(1_800_000_000_000));
    let before_restore = lock_acquire(&conn, &clock, "l", "a", 100).unwrap().unwrap();
    // The restore point: the row as it was before that acquire.
    conn.execute(
        "UPDATE honker_locks SET token = 1, expires_ms = 0 WHERE name = 'l'",
        [],
    )
    .unwrap();
    clock.set(Millis(1_800_000_000_001));
    let after = lock_acquire(&conn, &clock, "l", "b", 100).unwrap().unwrap();
    assert!(after > before_restore, "{after} <= {before_restore}");
    assert!(after < 1 << 53);
}
