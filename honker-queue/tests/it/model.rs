//! Model-based property test: random sequences of enqueue (with options), claim, ack, retry,
//! release, fail, heartbeat, cancel, requeue and clock advances, applied to the real queue (on a
//! settable clock) and to an in-memory model, compared after every step.
//!
//! Invariants checked after every step: the live and dead rows equal the model's (so no job is
//! lost and every refusal matches), each running job is held under exactly one token and every
//! token was handed out once, attempts never exceed max_attempts, stale tokens are refused, and
//! dedup keys are unique among live jobs.

use std::collections::{BTreeMap, HashSet};

use honker_core::Clock;
use honker_queue::{
    EnqueueOptions, JobId, LeaseToken, QueueOptions, QueueOptionsPatch, RetryOutcome,
};
use proptest::prelude::*;
use rusqlite::Connection;

use crate::util::{TempDb, integrity_ok, queue_at_t0};

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        priority: i64,
        delay: Option<i64>,
        max_attempts: Option<u32>,
        expires_in: Option<i64>,
        dedup: Option<u8>,
    },
    Claim {
        n: usize,
        lease: i64,
    },
    /// `pick` chooses among every (job, token) pair ever handed out: current or stale.
    Ack {
        pick: usize,
    },
    Retry {
        pick: usize,
        delay: Option<i64>,
    },
    Release {
        pick: usize,
    },
    Fail {
        pick: usize,
    },
    Heartbeat {
        pick: usize,
        extend: i64,
    },
    /// `pick` chooses among every job id ever enqueued.
    Cancel {
        pick: usize,
    },
    Requeue {
        pick: usize,
    },
    Advance {
        ms: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            -2i64..3,
            prop::option::of(0i64..3_000),
            prop::option::of(1u32..4),
            prop::option::of(0i64..6_000),
            prop::option::of(0u8..3),
        )
            .prop_map(|(priority, delay, max_attempts, expires_in, dedup)| Op::Enqueue {
                priority,
                delay,
                max_attempts,
                expires_in,
                dedup
            }),
        3 => (1usize..4, 100i64..2_000).prop_map(|(n, lease)| Op::Claim { n, lease }),
        2 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        2 => (any::<usize>(), prop::option::of(0i64..2_000))
            .prop_map(|(pick, delay)| Op::Retry { pick, delay }),
        1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Fail { pick }),
        1 => (any::<usize>(), 1i64..3_000).prop_map(|(pick, extend)| Op::Heartbeat { pick, extend }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Requeue { pick }),
        3 => (0i64..2_500).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn cases() -> u32 {
    std::env::var("HONKER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// A live job of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MJob {
    priority: i64,
    run_at: i64,
    attempts: u32,
    max_attempts: u32,
    expires_at: Option<i64>,
    dedup_key: Option<String>,
    last_error: Option<String>,
    /// (token, lease_expires) while running.
    lease: Option<(i64, i64)>,
}

/// A dead job of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MDead {
    job: MJob,
    reason: String,
    last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Model {
    live: BTreeMap<i64, MJob>,
    dead: BTreeMap<i64, MDead>,
}

impl Model {
    fn bury(&mut self, id: i64, reason: &str, error: Option<String>) {
        let mut job = self.live.remove(&id).unwrap();
        let last_error = error.or(job.last_error.clone());
        job.lease = None;
        self.dead.insert(
            id,
            MDead {
                job,
                reason: reason.into(),
                last_error,
            },
        );
    }

    /// The sweeps of a claim, then the claim's choice of up to `n` ids, in claim order.
    fn claim_order(&mut self, now: i64, n: usize) -> Vec<i64> {
        let expired: Vec<i64> = self
            .live
            .iter()
            .filter(|(_, j)| j.expires_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.bury(id, "expired", None);
        }
        let lapsed: Vec<i64> = self
            .live
            .iter()
            .filter(|(_, j)| j.lease.is_some_and(|(_, until)| until <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in lapsed {
            let j = &self.live[&id];
            if j.attempts >= j.max_attempts {
                self.bury(id, "attempts exhausted", Some("lease expired".into()));
            } else {
                let j = self.live.get_mut(&id).unwrap();
                j.lease = None;
                j.last_error = Some("lease expired".into());
            }
        }
        let mut due: Vec<(&i64, &MJob)> = self
            .live
            .iter()
            .filter(|(_, j)| j.lease.is_none() && j.run_at <= now)
            .collect();
        due.sort_by_key(|(id, j)| (-j.priority, j.run_at, **id));
        due.into_iter().take(n).map(|(id, _)| *id).collect()
    }

    fn holds(&self, id: i64, token: i64) -> bool {
        self.live
            .get(&id)
            .is_some_and(|j| j.lease.is_some_and(|(t, _)| t == token))
    }
}

fn real_live(conn: &Connection) -> BTreeMap<i64, MJob> {
    let mut stmt = conn
        .prepare(
            "SELECT id, state, priority, run_at, attempts, max_attempts, expires_at, dedup_key,
                    last_error, lease_token, lease_expires FROM honker_jobs",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let state: i64 = r.get(1)?;
        let lease = if state == 2 {
            Some((r.get(9)?, r.get(10)?))
        } else {
            assert!(
                r.get::<_, Option<i64>>(9)?.is_none(),
                "a token outside running"
            );
            None
        };
        Ok((
            r.get(0)?,
            MJob {
                priority: r.get(2)?,
                run_at: r.get(3)?,
                attempts: r.get(4)?,
                max_attempts: r.get(5)?,
                expires_at: r.get(6)?,
                dedup_key: r.get(7)?,
                last_error: r.get(8)?,
                lease,
            },
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn real_dead(conn: &Connection) -> BTreeMap<i64, (String, u32, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT id, reason, attempts, last_error FROM honker_dead")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn code<T>(r: &honker_queue::Result<T>) -> Option<&'static str> {
    r.as_ref().err().map(|e| e.code())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_the_model(ops in prop::collection::vec(op(), 1..60), history in any::<bool>()) {
        let db = TempDb::new();
        let conn = db.open();
        let (q, clock) = queue_at_t0("q");
        let defaults = QueueOptions::default();
        // With a history, acks take the multi-statement path; nothing else may change.
        if history {
            q.configure(&conn, &QueueOptionsPatch { keep_history_ms: Some(2_000), ..Default::default() }).unwrap();
        }
        let mut model = Model::default();
        let mut enqueued: Vec<i64> = Vec::new();
        let mut handed: Vec<(i64, i64)> = Vec::new();
        let mut tokens: HashSet<i64> = HashSet::new();
        for op in ops {
            let now = clock.now().get();
            match op {
                Op::Enqueue { priority, delay, max_attempts, expires_in, dedup } => {
                    let dedup_key = dedup.map(|k| format!("k{k}"));
                    let opts = EnqueueOptions {
                        delay_ms: delay,
                        priority,
                        max_attempts,
                        expires_in_ms: expires_in,
                        dedup_key: dedup_key.clone(),
                        ..Default::default()
                    };
                    let id = q.enqueue(&conn, "{}", &opts).unwrap().0;
                    let existing = dedup_key.as_ref().and_then(|k| {
                        model.live.iter().find(|(_, j)| j.dedup_key.as_ref() == Some(k)).map(|(id, _)| *id)
                    });
                    match existing {
                        Some(e) => prop_assert_eq!(id, e, "dedup must return the live job"),
                        None => {
                            prop_assert!(!enqueued.contains(&id), "job id {} reused", id);
                            enqueued.push(id);
                            model.live.insert(id, MJob {
                                priority,
                                run_at: now + delay.unwrap_or(0),
                                attempts: 0,
                                max_attempts: max_attempts.unwrap_or(defaults.max_attempts),
                                expires_at: expires_in.map(|d| now + d),
                                dedup_key,
                                last_error: None,
                                lease: None,
                            });
                        }
                    }
                }
                Op::Claim { n, lease } => {
                    let want = model.claim_order(now, n);
                    let got = q.claim(&conn, "w", n, Some(lease)).unwrap();
                    let got_ids: Vec<i64> = got.iter().map(|j| j.id.0).collect();
                    prop_assert_eq!(&got_ids, &want);
                    for j in got {
                        prop_assert!(tokens.insert(j.lease_token.0), "token {} reused", j.lease_token.0);
                        handed.push((j.id.0, j.lease_token.0));
                        let m = model.live.get_mut(&j.id.0).unwrap();
                        m.attempts += 1;
                        m.lease = Some((j.lease_token.0, now + lease));
                        prop_assert_eq!(j.attempts, m.attempts);
                        prop_assert_eq!(j.lease_expires.get(), now + lease);
                    }
                }
                Op::Ack { pick } | Op::Release { pick } | Op::Fail { pick } | Op::Retry { pick, .. } | Op::Heartbeat { pick, .. }
                    if handed.is_empty() => { let _ = pick; }
                Op::Ack { pick } => {
                    let (id, token) = handed[pick % handed.len()];
                    let r = q.ack(&conn, JobId(id), LeaseToken(token));
                    if model.holds(id, token) {
                        prop_assert_eq!(code(&r), None);
                        model.live.remove(&id);
                        let info = honker_queue::job(&conn, JobId(id)).unwrap();
                        prop_assert_eq!(info.map(|i| i.state), history.then_some(honker_queue::JobState::Done));
                    } else {
                        prop_assert_eq!(code(&r), Some("queue.lease_lost"));
                    }
                }
                Op::Release { pick } => {
                    let (id, token) = handed[pick % handed.len()];
                    let r = q.release(&conn, JobId(id), LeaseToken(token));
                    if model.holds(id, token) {
                        prop_assert_eq!(code(&r), None);
                        let m = model.live.get_mut(&id).unwrap();
                        m.lease = None;
                        m.attempts = m.attempts.saturating_sub(1);
                    } else {
                        prop_assert_eq!(code(&r), Some("queue.lease_lost"));
                    }
                }
                Op::Fail { pick } => {
                    let (id, token) = handed[pick % handed.len()];
                    let r = q.fail(&conn, JobId(id), LeaseToken(token), "bad");
                    if model.holds(id, token) {
                        prop_assert_eq!(code(&r), None);
                        model.bury(id, "failed", Some("bad".into()));
                    } else {
                        prop_assert_eq!(code(&r), Some("queue.lease_lost"));
                    }
                }
                Op::Retry { pick, delay } => {
                    let (id, token) = handed[pick % handed.len()];
                    let r = q.retry(&conn, JobId(id), LeaseToken(token), delay, Some("again"));
                    if model.holds(id, token) {
                        let m = &model.live[&id];
                        if m.attempts >= m.max_attempts {
                            prop_assert_eq!(r.unwrap(), RetryOutcome::Dead);
                            model.bury(id, "attempts exhausted", Some("again".into()));
                        } else {
                            let d = delay.unwrap_or_else(|| defaults.backoff_ms(id, m.attempts));
                            prop_assert_eq!(r.unwrap(), RetryOutcome::Retrying { run_at: honker_core::Millis(now + d) });
                            let m = model.live.get_mut(&id).unwrap();
                            m.lease = None;
                            m.run_at = now + d;
                            m.last_error = Some("again".into());
                        }
                    } else {
                        prop_assert_eq!(code(&r), Some("queue.lease_lost"));
                    }
                }
                Op::Heartbeat { pick, extend } => {
                    let (id, token) = handed[pick % handed.len()];
                    let r = q.heartbeat(&conn, JobId(id), LeaseToken(token), extend);
                    if model.holds(id, token) {
                        prop_assert_eq!(r.unwrap().get(), now + extend);
                        model.live.get_mut(&id).unwrap().lease = Some((token, now + extend));
                    } else {
                        prop_assert_eq!(code(&r), Some("queue.lease_lost"));
                    }
                }
                Op::Cancel { pick } | Op::Requeue { pick } if enqueued.is_empty() => { let _ = pick; }
                Op::Cancel { pick } => {
                    let id = enqueued[pick % enqueued.len()];
                    let done = honker_queue::cancel(&conn, JobId(id)).unwrap();
                    prop_assert_eq!(done, model.live.remove(&id).is_some());
                }
                Op::Requeue { pick } => {
                    let id = enqueued[pick % enqueued.len()];
                    let r = q.requeue_dead(&conn, JobId(id));
                    match model.dead.get(&id).cloned() {
                        None => prop_assert_eq!(r.unwrap(), false),
                        Some(d) => {
                            let taken = d.job.dedup_key.as_ref().is_some_and(|k| {
                                model.live.values().any(|j| j.dedup_key.as_ref() == Some(k))
                            });
                            if taken {
                                prop_assert_eq!(code(&r), Some("queue.dedup_conflict"));
                            } else {
                                prop_assert_eq!(r.unwrap(), true);
                                model.dead.remove(&id);
                                model.live.insert(id, MJob {
                                    run_at: now,
                                    attempts: 0,
                                    expires_at: None,
                                    last_error: d.last_error,
                                    lease: None,
                                    ..d.job
                                });
                            }
                        }
                    }
                }
                Op::Advance { ms } => clock.advance(ms),
            }
            // Compare after every step.
            let live = real_live(&conn);
            prop_assert_eq!(&live, &model.live);
            let dead = real_dead(&conn);
            let want: BTreeMap<i64, (String, u32, Option<String>)> = model
                .dead
                .iter()
                .map(|(id, d)| (*id, (d.reason.clone(), d.job.attempts, d.last_error.clone())))
                .collect();
            prop_assert_eq!(&dead, &want);
            let mut keys = HashSet::new();
            for (id, j) in &live {
                prop_assert!(j.attempts <= j.max_attempts, "job {} over its attempts", id);
                if let Some(k) = &j.dedup_key {
                    prop_assert!(keys.insert(k.clone()), "dedup key {} twice among live jobs", k);
                }
            }
            for id in &enqueued {
                let acked_or_cancelled = !live.contains_key(id) && !dead.contains_key(id);
                prop_assert!(acked_or_cancelled || live.contains_key(id) != dead.contains_key(id));
            }
        }
        integrity_ok(&conn);
    }
}
