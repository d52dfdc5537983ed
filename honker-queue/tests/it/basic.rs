//! The queue's life cycle through the Rust API: order, leases, retries, dead letters, results.

use honker_core::Millis;
use honker_queue::{
    EnqueueOptions, JobState, QueueOptionsPatch, RetryOutcome, cancel, get_result, job,
};

use crate::util::{T0, TempDb, integrity_ok, queue_at_t0, rows};

#[test]
fn claim_order_is_priority_then_run_at_then_id() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, clock) = queue_at_t0("q");
    let low = q.enqueue(&conn, "1", &EnqueueOptions::default()).unwrap();
    let high = q
        .enqueue(
            &conn,
            "2",
            &EnqueueOptions {
                priority: 5,
                ..Default::default()
            },
        )
        .unwrap();
    let early = q
        .enqueue(
            &conn,
            "3",
            &EnqueueOptions {
                run_at_ms: Some(T0 - 10),
                ..Default::default()
            },
        )
        .unwrap();
    let later = q
        .enqueue(
            &conn,
            "4",
            &EnqueueOptions {
                priority: 9,
                delay_ms: Some(100),
                ..Default::default()
            },
        )
        .unwrap();
    let got: Vec<_> = q
        .claim(&conn, "w", 10, None)
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(got, vec![high, early, low]);
    clock.advance(100);
    let got = q.claim(&conn, "w", 10, None).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, later);
    assert_eq!(got[0].attempts, 1);
    integrity_ok(&conn);
}

#[test]
fn expired_lease_is_reclaimed_and_the_stale_token_refused() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, clock) = queue_at_t0("q");
    let id = q.enqueue(&conn, "{}", &EnqueueOptions::default()).unwrap();
    let first = q.claim(&conn, "a", 1, Some(1_000)).unwrap().remove(0);
    assert!(q.claim(&conn, "b", 1, None).unwrap().is_empty());
    clock.advance(1_000);
    let second = q.claim(&conn, "b", 1, Some(1_000)).unwrap().remove(0);
    assert_eq!((second.id, second.attempts), (id, 2));
    assert_ne!(first.lease_token, second.lease_token);
    for e in [
        q.ack(&conn, id, first.lease_token).unwrap_err(),
        q.heartbeat(&conn, id, first.lease_token, 10).unwrap_err(),
        q.release(&conn, id, first.lease_token).unwrap_err(),
        q.fail(&conn, id, first.lease_token, "x").unwrap_err(),
        q.retry(&conn, id, first.lease_token, None, None)
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), "queue.lease_lost");
    }
    assert_eq!(job(&conn, id).unwrap().unwrap().state, JobState::Running);
    q.ack(&conn, id, second.lease_token).unwrap();
    assert!(job(&conn, id).unwrap().is_none());
    assert_eq!(rows(&conn, "honker_jobs"), 0);
}

#[test]
fn exhausted_attempts_and_expiry_go_to_the_dead_letters() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, clock) = queue_at_t0("q");
    let a = q
        .enqueue(
            &conn,
            "1",
            &EnqueueOptions {
                max_attempts: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    let b = q
        .enqueue(
            &conn,
            "2",
            &EnqueueOptions {
                expires_in_ms: Some(50),
                priority: -1,
                ..Default::default()
            },
        )
        .unwrap();
    let got = q.claim(&conn, "w", 1, Some(10)).unwrap();
    assert_eq!(got[0].id, a);
    clock.advance(100);
    assert!(q.claim(&conn, "w", 5, None).unwrap().is_empty());
    let ja = job(&conn, a).unwrap().unwrap();
    assert_eq!(
        (ja.state, ja.dead_reason.as_deref()),
        (JobState::Dead, Some("attempts exhausted"))
    );
    let jb = job(&conn, b).unwrap().unwrap();
    assert_eq!(
        (jb.state, jb.dead_reason.as_deref()),
        (JobState::Dead, Some("expired"))
    );
    assert_eq!(q.stats(&conn).unwrap().dead, 2);
    assert!(q.requeue_dead(&conn, a).unwrap());
    let again = q.claim(&conn, "w", 5, None).unwrap();
    assert_eq!((again[0].id, again[0].attempts), (a, 1));
    assert_eq!(q.purge_dead(&conn, 0).unwrap(), 1);
    assert_eq!(rows(&conn, "honker_dead"), 0);
}

#[test]
fn retry_backs_off_then_dies_and_release_keeps_the_attempt() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, clock) = queue_at_t0("q");
    q.configure(
        &conn,
        &QueueOptionsPatch {
            max_attempts: Some(2),
            backoff_base_ms: Some(100),
            ..Default::default()
        },
    )
    .unwrap();
    let id = q.enqueue(&conn, "1", &EnqueueOptions::default()).unwrap();
    let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    q.release(&conn, id, j.lease_token).unwrap();
    let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    assert_eq!(j.attempts, 1);
    let RetryOutcome::Retrying { run_at } = q
        .retry(&conn, id, j.lease_token, None, Some("boom"))
        .unwrap()
    else {
        panic!("expected a retry")
    };
    assert!((T0 + 50..=T0 + 100).contains(&run_at.get()), "{run_at}");
    assert_eq!(q.stats(&conn).unwrap().scheduled, 1);
    assert!(q.claim(&conn, "w", 1, None).unwrap().is_empty());
    assert_eq!(q.next_due(&conn).unwrap(), Some(run_at));
    clock.set(run_at);
    let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    assert_eq!(j.attempts, 2);
    assert_eq!(
        q.retry(&conn, id, j.lease_token, None, Some("again"))
            .unwrap(),
        RetryOutcome::Dead
    );
    let info = job(&conn, id).unwrap().unwrap();
    assert_eq!(info.last_error.as_deref(), Some("again"));
    assert_eq!(clock_now(&clock), info.run_at);
}

fn clock_now(c: &honker_core::SettableClock) -> Millis {
    honker_core::Clock::now(c)
}

#[test]
fn dedup_key_returns_the_live_job_and_writes_nothing() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, _clock) = queue_at_t0("q");
    let o = EnqueueOptions {
        dedup_key: Some("k".into()),
        ..Default::default()
    };
    let a = q.enqueue(&conn, "1", &o).unwrap();
    let b = q.enqueue(&conn, "2", &o).unwrap();
    assert_eq!(a, b);
    assert_eq!(rows(&conn, "honker_jobs"), 1);
    let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    assert_eq!(
        q.enqueue(&conn, "3", &o).unwrap(),
        a,
        "a running job still holds its key"
    );
    q.ack(&conn, a, j.lease_token).unwrap();
    assert_ne!(q.enqueue(&conn, "4", &o).unwrap(), a);
}

#[test]
fn enqueue_rolls_back_with_the_callers_transaction() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, _clock) = queue_at_t0("q");
    let tx = conn.unchecked_transaction().unwrap();
    q.enqueue_batch(&tx, &["1", "2"], &EnqueueOptions::default())
        .unwrap();
    tx.rollback().unwrap();
    assert_eq!(rows(&conn, "honker_jobs"), 0);
}

#[test]
fn ack_with_result_saves_it_atomically_and_cancel_refuses_the_holder() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, clock) = queue_at_t0("q");
    let id = q.enqueue(&conn, "1", &EnqueueOptions::default()).unwrap();
    let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    assert_eq!(
        q.ack_with_result(&conn, id, j.lease_token, "not json", None)
            .unwrap_err()
            .code(),
        "payload.not_json"
    );
    assert_eq!(rows(&conn, "honker_jobs"), 1);
    q.ack_with_result(&conn, id, j.lease_token, r#"{"ok":true}"#, Some(100))
        .unwrap();
    assert_eq!(
        get_result(&conn, &clock, id).unwrap().as_deref(),
        Some(r#"{"ok":true}"#)
    );
    clock.advance(100);
    assert_eq!(get_result(&conn, &clock, id).unwrap(), None);

    let id = q.enqueue(&conn, "2", &EnqueueOptions::default()).unwrap();
    let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    assert!(cancel(&conn, id).unwrap());
    assert!(!cancel(&conn, id).unwrap());
    assert_eq!(
        q.heartbeat(&conn, id, j.lease_token, 10)
            .unwrap_err()
            .code(),
        "queue.lease_lost"
    );
    assert_eq!(
        q.ack(&conn, id, j.lease_token).unwrap_err().code(),
        "queue.lease_lost"
    );
}

#[test]
fn paused_queue_hands_out_nothing() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, _clock) = queue_at_t0("q");
    q.enqueue(&conn, "1", &EnqueueOptions::default()).unwrap();
    q.configure(
        &conn,
        &QueueOptionsPatch {
            paused: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(q.claim(&conn, "w", 1, None).unwrap().is_empty());
    assert_eq!(q.next_due(&conn).unwrap(), None);
    q.configure(
        &conn,
        &QueueOptionsPatch {
            paused: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(q.claim(&conn, "w", 1, None).unwrap().len(), 1);
}

#[test]
fn many_future_high_priority_jobs_do_not_hide_a_due_one() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, clock) = queue_at_t0("q");
    let later = EnqueueOptions {
        priority: 100,
        delay_ms: Some(60_000),
        ..Default::default()
    };
    let payloads = vec!["0"; 5_000];
    q.enqueue_batch(&conn, &payloads, &later).unwrap();
    let due = q
        .enqueue(
            &conn,
            "1",
            &EnqueueOptions {
                priority: -5,
                ..Default::default()
            },
        )
        .unwrap();
    let got = q.claim(&conn, "w", 1, None).unwrap();
    assert_eq!(got[0].id, due);
    let s = q.stats(&conn).unwrap();
    assert_eq!((s.pending, s.scheduled, s.running), (0, 5_000, 1));
    assert_eq!(
        s.next_due,
        Some(Millis(T0 + 60_000).min(got[0].lease_expires))
    );
    clock.advance(60_000);
    // Once due they are promoted (a bounded number per claim) and claimed by priority.
    let got = q.claim(&conn, "w", 3, None).unwrap();
    assert!(got.iter().all(|j| j.priority == 100));
}

#[test]
fn dead_letters_are_listed_newest_first_requeued_in_bulk_and_kept_for_their_retention() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, clock) = queue_at_t0("q");
    q.configure(
        &conn,
        &QueueOptionsPatch {
            dead_retention_ms: Some(1_000),
            ..Default::default()
        },
    )
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = q
            .enqueue(&conn, &i.to_string(), &EnqueueOptions::default())
            .unwrap();
        let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
        q.fail(&conn, id, j.lease_token, &format!("e{i}")).unwrap();
        ids.push(id);
        clock.advance(10);
    }
    let listed: Vec<_> = q
        .dead_letters(&conn, 10)
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, ids.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(q.requeue_all_dead(&conn).unwrap(), 4);
    assert_eq!(rows(&conn, "honker_dead"), 0);
    assert_eq!(q.stats(&conn).unwrap().pending, 4);
    // Kill them all again, then let the retention pass: the next burial removes old letters.
    for j in q.claim(&conn, "w", 10, None).unwrap() {
        q.fail(&conn, j.id, j.lease_token, "again").unwrap();
    }
    assert_eq!(rows(&conn, "honker_dead"), 4);
    clock.advance(2_000);
    let id = q.enqueue(&conn, "9", &EnqueueOptions::default()).unwrap();
    let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    q.fail(&conn, id, j.lease_token, "last").unwrap();
    assert_eq!(
        rows(&conn, "honker_dead"),
        3,
        "each burial removes up to two expired letters"
    );
    assert_eq!(q.purge_dead(&conn, 1_000).unwrap(), 2);
    assert_eq!(
        job(&conn, id).unwrap().unwrap().dead_reason.as_deref(),
        Some("failed")
    );
}

#[test]
fn a_queue_that_keeps_history_shows_acked_jobs_as_done_for_a_while() {
    let db = TempDb::new();
    let conn = db.open();
    let (q, clock) = queue_at_t0("q");
    q.configure(
        &conn,
        &QueueOptionsPatch {
            keep_history_ms: Some(1_000),
            ..Default::default()
        },
    )
    .unwrap();
    let a = q.enqueue(&conn, "1", &EnqueueOptions::default()).unwrap();
    let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    q.ack(&conn, a, j.lease_token).unwrap();
    let info = job(&conn, a).unwrap().unwrap();
    assert_eq!(
        (info.state, info.attempts, info.worker.as_deref()),
        (JobState::Done, 1, Some("w"))
    );
    assert_eq!(
        q.ack(&conn, a, j.lease_token).unwrap_err().code(),
        "queue.lease_lost"
    );
    clock.advance(1_001);
    let b = q.enqueue(&conn, "2", &EnqueueOptions::default()).unwrap();
    let j = q.claim(&conn, "w", 1, None).unwrap().remove(0);
    assert_eq!(q.ack_batch(&conn, &[(b, j.lease_token)]).unwrap(), 1);
    assert!(
        job(&conn, a).unwrap().is_none(),
        "trimmed past keep_history_ms"
    );
    assert_eq!(job(&conn, b).unwrap().unwrap().state, JobState::Done);
    assert_eq!(rows(&conn, "honker_history"), 1);
    // A queue without history deletes at ack.
    let (other, _) = queue_at_t0("other");
    let c = other
        .enqueue(&conn, "3", &EnqueueOptions::default())
        .unwrap();
    let j = other.claim(&conn, "w", 1, None).unwrap().remove(0);
    other.ack(&conn, c, j.lease_token).unwrap();
    assert!(job(&conn, c).unwrap().is_none());
}
