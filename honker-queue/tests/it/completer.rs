//! Model-based property test of the worker's batching completer: rounds of handler outcomes
//! (ack, ack with a result, retry after a delay, fail, panic), some of whose leases are lost
//! before the completer commits (expired and taken by a thief, or cancelled), all committed in
//! one flush; after each flush the database must match a model: a valid token's outcome written
//! once, a stale one refused (counted as `lease_lost`, nothing written), results only with their
//! ack, no job lost, none run twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use honker_queue::{EnqueueOptions, JobId, JobState, LeaseToken, Queue, Worker, WorkerOptions};
use proptest::prelude::*;

use crate::worker_support::{WorkDb, count, integrity_ok, long_backoff, wait_until};

/// Planned jobs per round; one more (the gate) holds the flush until the test lets go.
const ROUND: usize = 4;

#[derive(Debug, Clone, Copy)]
enum Plan {
    Ack,
    Result(u16),
    Retry(i64),
    Fail,
    Panic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    No,
    Stolen,
    Cancelled,
}

fn job() -> impl Strategy<Value = (Plan, Lost, u32)> {
    let plan = prop_oneof![
        Just(Plan::Ack),
        any::<u16>().prop_map(Plan::Result),
        (60_000i64..3_600_000).prop_map(Plan::Retry),
        Just(Plan::Fail),
        Just(Plan::Panic),
    ];
    let lost =
        prop_oneof![3 => Just(Lost::No), 1 => Just(Lost::Stolen), 1 => Just(Lost::Cancelled)];
    (plan, lost, prop_oneof![Just(1u32), Just(3u32)])
}

fn cases() -> u32 {
    std::env::var("HONKER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// Lets every gate handler return when dropped (a failed case must not hang the worker's drop).
struct OpenOnDrop(Arc<AtomicI64>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.store(i64::MAX, Ordering::SeqCst);
    }
}

fn settled(w: &Worker) -> u64 {
    let r = w.report();
    r.acked + r.retried + r.failed + r.lease_lost
}

fn check(rounds: &[Vec<(Plan, Lost, u32)>]) {
    let db = WorkDb::new();
    let conn = db.open();
    let thief = db.open();
    let q = Queue::new("completer").unwrap();
    // The backoff of a panic's retry: long, so retried jobs stay scheduled.
    long_backoff(&conn, &q);
    let gate = Arc::new(AtomicI64::new(-1));
    let returned = Arc::new(AtomicUsize::new(0));
    let runs: Arc<Mutex<HashMap<i64, Vec<i64>>>> = Arc::default();
    let (g2, r2, runs2) = (gate.clone(), returned.clone(), runs.clone());
    let w = Worker::start(
        &db.path(),
        q.clone(),
        honker_wake::wake_for(&db.path()).unwrap(),
        WorkerOptions {
            // Every slot is full during a round, so the worker claims nothing the thief wants.
            threads: ROUND + 1,
            batch: 64,
            prefetch: Some(0),
            // Only "no handler still runs" makes the completer commit: once per round.
            complete_every: Duration::from_secs(3600),
            lease_ms: Some(600_000),
            // No heartbeat: a lost lease is found by the completer's token check alone.
            heartbeat_every: Some(Duration::from_secs(3600)),
            shutdown_grace: Duration::from_secs(2),
            ..WorkerOptions::default()
        },
        move |job| {
            runs2
                .lock()
                .unwrap()
                .entry(job.id.0)
                .or_default()
                .push(job.lease_token.0);
            let v: serde_json::Value = serde_json::from_str(&job.payload).unwrap();
            if let Some(round) = v["gate"].as_i64() {
                while g2.load(Ordering::SeqCst) < round {
                    std::thread::sleep(Duration::from_millis(1));
                }
                return Ok(None);
            }
            r2.fetch_add(1, Ordering::SeqCst);
            match v["plan"].as_str().unwrap() {
                "ack" => Ok(None),
                "result" => Ok(Some(format!(r#"{{"v":{}}}"#, v["v"]))),
                "retry" => Err(honker_queue::HandlerError::retry_after(
                    "planned retry",
                    v["v"].as_i64().unwrap(),
                )),
                "fail" => Err(honker_queue::HandlerError::fail("planned fail")),
                _ => panic!("planned panic"),
            }
        },
    )
    .unwrap();
    let _open = OpenOnDrop(gate.clone());
    let mut expect_settled = 0u64;
    let mut expect_lost = 0u64;
    let mut all: Vec<JobId> = Vec::new();
    for (r, round) in rounds.iter().enumerate() {
        let r = r as i64;
        let before_returned = returned.load(Ordering::SeqCst);
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut ids = Vec::new();
        for (plan, _, max) in round {
            let (name, v) = match plan {
                Plan::Ack => ("ack", 0),
                Plan::Result(v) => ("result", i64::from(*v)),
                Plan::Retry(d) => ("retry", *d),
                Plan::Fail => ("fail", 0),
                Plan::Panic => ("panic", 0),
            };
            let opts = EnqueueOptions {
                max_attempts: Some(*max),
                ..EnqueueOptions::default()
            };
            let payload = format!(r#"{{"plan":"{name}","v":{v}}}"#);
            ids.push(q.enqueue(&conn, &payload, &opts).unwrap());
        }
        let gate_id = q
            .enqueue(
                &conn,
                &format!(r#"{{"gate":{r}}}"#),
                &EnqueueOptions::default(),
            )
            .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        honker_core::kick_after_commit(&conn);
        wait_until("the round's handlers to return", || {
            returned.load(Ordering::SeqCst) == before_returned + ROUND
        });
        // Before the flush nothing is written: every job runs under the token its handler saw.
        let tokens: HashMap<i64, i64> = runs
            .lock()
            .unwrap()
            .iter()
            .map(|(id, t)| (*id, *t.last().unwrap()))
            .collect();
        for id in ids.iter().chain([&gate_id]) {
            let j = honker_queue::job(&conn, *id).unwrap().unwrap();
            assert_eq!(j.state, JobState::Running, "job {id} before the flush");
        }
        // Lose some leases: an expiry (its lease end moved to the past) and a thief's claim, or
        // a cancel.
        let stolen: Vec<JobId> = ids
            .iter()
            .zip(round)
            .filter(|(_, (_, l, _))| *l == Lost::Stolen)
            .map(|(id, _)| *id)
            .collect();
        for id in &stolen {
            conn.execute(
                "UPDATE honker_jobs SET lease_expires = 1 WHERE id = ?1",
                [id.0],
            )
            .unwrap();
        }
        let taken = q
            .claim(&thief, "thief", stolen.len().max(1), Some(3_600_000))
            .unwrap();
        let mut taken_ids: Vec<JobId> = taken.iter().map(|j| j.id).collect();
        taken_ids.sort();
        let mut claimable: Vec<JobId> = stolen
            .iter()
            .zip(round.iter().filter(|(_, l, _)| *l == Lost::Stolen))
            .filter(|(_, (_, _, max))| *max > 1)
            .map(|(id, _)| *id)
            .collect();
        claimable.sort();
        assert_eq!(
            taken_ids, claimable,
            "the thief took exactly the expired jobs"
        );
        for (id, (_, l, _)) in ids.iter().zip(round) {
            if *l == Lost::Cancelled {
                assert!(honker_queue::cancel(&conn, *id).unwrap());
            }
        }
        let opened_at = crate::worker_support::now_ms();
        gate.store(r, Ordering::SeqCst);
        let lost_here = round.iter().filter(|(_, l, _)| *l != Lost::No).count() as u64;
        expect_settled += ROUND as u64 + 1;
        expect_lost += lost_here;
        wait_until("the round's flush", || {
            settled(&w) == expect_settled && w.held() == 0
        });
        let report = w.report();
        assert_eq!(report.lease_lost, expect_lost, "{report:?}");
        // The model, job by job.
        let result = |id: JobId| honker_queue::get_result(&conn, &honker_core::SystemClock, id);
        for (id, (plan, lost, max)) in ids.iter().zip(round) {
            let j = honker_queue::job(&conn, *id).unwrap();
            let res = result(*id).unwrap();
            match lost {
                Lost::Cancelled => assert!(j.is_none() && res.is_none(), "{id}: {j:?}"),
                Lost::Stolen if *max == 1 => {
                    let j = j.expect("a buried job");
                    assert_eq!(j.state, JobState::Dead, "{id}");
                    assert_eq!(j.dead_reason.as_deref(), Some("attempts exhausted"));
                    assert_eq!(j.last_error.as_deref(), Some("lease expired"));
                    assert!(res.is_none());
                }
                Lost::Stolen => {
                    let j = j.expect("the thief's job");
                    assert_eq!(
                        (j.state, j.attempts, j.worker.as_deref()),
                        (JobState::Running, 2, Some("thief")),
                        "{id}"
                    );
                    assert_eq!(j.last_error.as_deref(), Some("lease expired"));
                    assert!(res.is_none(), "{id}: a stale outcome stored a result");
                }
                Lost::No => match plan {
                    Plan::Ack => assert!(j.is_none() && res.is_none(), "{id}: {j:?}"),
                    Plan::Result(v) => {
                        assert!(j.is_none(), "{id}: {j:?}");
                        assert_eq!(res, Some(format!(r#"{{"v":{v}}}"#)), "{id}");
                    }
                    Plan::Fail => {
                        let j = j.expect("a failed job");
                        assert_eq!(j.state, JobState::Dead);
                        assert_eq!(j.dead_reason.as_deref(), Some("failed"));
                        assert_eq!(j.last_error.as_deref(), Some("planned fail"));
                    }
                    Plan::Retry(_) | Plan::Panic if *max == 1 => {
                        let j = j.expect("a dead job");
                        assert_eq!(j.state, JobState::Dead, "{id}");
                        assert_eq!(j.dead_reason.as_deref(), Some("attempts exhausted"));
                    }
                    Plan::Retry(d) => {
                        let j = j.expect("a retried job");
                        assert_eq!((j.state, j.attempts), (JobState::Scheduled, 1), "{id}");
                        assert_eq!(j.last_error.as_deref(), Some("planned retry"));
                        let now = crate::worker_support::now_ms();
                        assert!(
                            (opened_at + d..=now + d).contains(&j.run_at.0),
                            "{id}: run_at {} for a delay of {d}",
                            j.run_at.0
                        );
                    }
                    Plan::Panic => {
                        let j = j.expect("a retried job");
                        assert_eq!((j.state, j.attempts), (JobState::Scheduled, 1), "{id}");
                        assert!(j.last_error.unwrap().contains("planned panic"));
                    }
                },
            }
            // The worker's token never settles anything again.
            let stale = q.ack(&thief, *id, LeaseToken(tokens[&id.0]));
            assert_eq!(stale.map_err(|e| e.code()), Err("queue.lease_lost"), "{id}");
        }
        assert!(honker_queue::job(&conn, gate_id).unwrap().is_none());
        // The thief still holds what it took, and acks it: nothing was lost.
        for j in taken {
            q.ack(&thief, j.id, j.lease_token).unwrap();
        }
        all.extend(ids);
        all.push(gate_id);
    }
    let report = w.shutdown().unwrap();
    assert_eq!(report.error_count, 0, "{:?}", report.errors);
    // No job ran twice in the worker (retries wait far in the future).
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), all.len());
    assert!(runs.values().all(|t| t.len() == 1), "{runs:?}");
    let results = rounds
        .iter()
        .flatten()
        .filter(|(p, l, _)| matches!(p, Plan::Result(_)) && *l == Lost::No)
        .count();
    assert_eq!(
        count(&conn, "SELECT count(*) FROM honker_results"),
        results as i64
    );
    integrity_ok(&conn);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn completer_commits_valid_outcomes_once_and_refuses_stale_ones(
        rounds in prop::collection::vec(prop::collection::vec(job(), ROUND), 1..4),
    ) {
        check(&rounds);
    }
}
