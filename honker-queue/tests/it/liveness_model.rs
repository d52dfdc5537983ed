//! Model-based property test of same-host liveness (issue 16): random sequences of claim, ack,
//! stop (`SIGSTOP`), resume (`SIGCONT`), die (`kill -9`), respawn, enqueue, stale acks and clock
//! advances, driven over real holder processes (this test binary re-run as a child, one per
//! slot, each with its own liveness lock) and compared with a model after every step.
//!
//! Time is a logical clock the parent owns: every command a child gets carries "now", and the
//! child's queue runs on a settable clock set to it. Lease expiry is only ever a comparison of
//! stored milliseconds with the claimer's "now", so this is the same code path as wall time,
//! and the model knows exactly which leases have ended: it predicts each claim exactly instead of
//! tolerating races. Everything liveness depends on is real: separate processes, their `flock`s,
//! `SIGSTOP`, `kill -9` and the kernel releasing a dead process's lock.
//!
//! Invariants, checked against the database after every step:
//! - the running and pending rows (token, lease end, holder, attempts) equal the model's: a dead
//!   holder's jobs come back at the next claim, a stopped one's only when its lease has ended;
//! - no job is held by two processes that are alive or stopped and whose leases are both live,
//!   and the one live lease of a job is the database's;
//! - an ack under a token that is no longer the job's (reclaimed from a dead, stopped or expired
//!   holder, or already acked) is refused, and every token is handed out once;
//! - at the end, after resuming the stopped and letting the live holders drain the queue (with
//!   no clock advance, so the dead holders' jobs must come back through liveness alone), every
//!   enqueued job was acked exactly once and nothing is left or dead.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use honker_core::{Millis, SettableClock};
use honker_queue::{EnqueueOptions, JobId, LeaseToken, Queue};
use proptest::prelude::*;
use rusqlite::Connection;

use crate::util::T0;
use crate::worker_support::{
    Proc, WorkDb, child_db, integrity_ok, is_child, read_parent_line, tell,
};

const QUEUE: &str = "live-model";

/// Holder processes alive at once (at most).
const SLOTS: usize = 3;

/// Enough that no job runs out of attempts however often its holders die.
const MAX_ATTEMPTS: u32 = 1000;

/// Child role: report this process's liveness holder, then serve `claim <now> <n> <lease_ms>`
/// (answer `claimed id:token:lease_expires:attempts ...`) and `ack <now> <id> <token>` (answer
/// `acked ok` or `acked <error code>`) until stdin closes.
#[test]
fn child_model_holder() {
    if !is_child("model-holder") {
        return;
    }
    let db = child_db();
    let conn = honker_core::open(&db).unwrap();
    let clock = SettableClock::new(Millis(T0));
    let q = Queue::with_clock(QUEUE, Arc::new(clock.clone())).unwrap();
    let me = honker_core::liveness::holder(&db).expect("a liveness holder");
    tell(&format!("holder {me}"));
    while let Some(line) = read_parent_line() {
        let w: Vec<i64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        clock.set(Millis(w[0]));
        match line.split_whitespace().next() {
            Some("claim") => {
                let jobs = q.claim(&conn, "model", w[1] as usize, Some(w[2])).unwrap();
                let held: Vec<String> = jobs
                    .iter()
                    .map(|j| {
                        format!(
                            "{}:{}:{}:{}",
                            j.id.0,
                            j.lease_token.0,
                            j.lease_expires.get(),
                            j.attempts
                        )
                    })
                    .collect();
                tell(&format!("claimed {}", held.join(" ")));
            }
            Some("ack") => match q.ack(&conn, JobId(w[1]), LeaseToken(w[2])) {
                Ok(()) => tell("acked ok"),
                Err(e) => tell(&format!("acked {}", e.code())),
            },
            _ => panic!("unknown command {line:?}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Claim {
        who: usize,
        n: usize,
        lease: i64,
    },
    /// `pick` chooses among the jobs the child believes it holds.
    Ack {
        who: usize,
        pick: usize,
    },
    Stop {
        who: usize,
    },
    Resume {
        who: usize,
    },
    Die {
        who: usize,
    },
    /// A new process in a dead slot.
    Respawn {
        who: usize,
    },
    Enqueue {
        n: usize,
    },
    /// The parent acks under a token the model says is stale; `pick` chooses among them.
    StaleAck {
        pick: usize,
    },
    Advance {
        ms: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..SLOTS;
    prop_oneof![
        5 => (who.clone(), 1usize..4, 300i64..1_500).prop_map(|(who, n, lease)| Op::Claim { who, n, lease }),
        3 => (who.clone(), any::<usize>()).prop_map(|(who, pick)| Op::Ack { who, pick }),
        2 => who.clone().prop_map(|who| Op::Stop { who }),
        1 => who.clone().prop_map(|who| Op::Resume { who }),
        2 => who.clone().prop_map(|who| Op::Die { who }),
        3 => who.prop_map(|who| Op::Respawn { who }),
        1 => (1usize..4).prop_map(|n| Op::Enqueue { n }),
        1 => any::<usize>().prop_map(|pick| Op::StaleAck { pick }),
        2 => (0i64..700).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// Each case starts real processes, so fewer than the in-process model's; `HONKER_PROPTEST_CASES`
/// (or proptest's own `PROPTEST_CASES`) overrides.
fn cases() -> u32 {
    ["HONKER_PROPTEST_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|k| std::env::var(k).ok().and_then(|v| v.parse().ok()))
        .unwrap_or(24)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Running,
    Stopped,
    Dead,
}

/// A claim a child was handed and has not acked: what the child believes it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    id: i64,
    token: i64,
    until: i64,
}

/// One holder process and what it believes it holds.
struct Slot {
    proc: Option<Proc>,
    holder: String,
    life: Life,
    held: Vec<Held>,
}

impl Slot {
    fn spawn(db: &WorkDb) -> Slot {
        let mut p = Proc::spawn(
            "model-holder",
            "liveness_model::child_model_holder",
            &db.path(),
            &[],
        );
        let holder = p.expect_line("holder")["holder ".len()..].to_owned();
        Slot {
            proc: Some(p),
            holder,
            life: Life::Running,
            held: Vec::new(),
        }
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("a live slot has a process")
    }

    fn claim(&mut self, now: i64, n: usize, lease: i64) -> Vec<(Held, u32)> {
        self.proc().say(&format!("claim {now} {n} {lease}"));
        let line = self.proc().expect_line("claimed");
        line.split_whitespace()
            .skip(1)
            .map(|j| {
                let f: Vec<i64> = j.split(':').map(|v| v.parse().unwrap()).collect();
                (
                    Held {
                        id: f[0],
                        token: f[1],
                        until: f[2],
                    },
                    f[3] as u32,
                )
            })
            .collect()
    }

    /// Whether the ack was taken; any refusal must be `queue.lease_lost`.
    fn ack(&mut self, now: i64, h: Held) -> bool {
        self.proc().say(&format!("ack {now} {} {}", h.id, h.token));
        let line = self.proc().expect_line("acked");
        match &line["acked ".len()..] {
            "ok" => true,
            "queue.lease_lost" => false,
            other => panic!("ack of job {} refused with {other}", h.id),
        }
    }

    fn signal(&mut self, name: &str) {
        self.proc().signal(name);
    }
}

/// A job of the model: its attempts and, while running, (token, lease end, holder).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MJob {
    attempts: u32,
    lease: Option<(i64, i64, String)>,
}

#[derive(Debug, Default)]
struct Model {
    jobs: BTreeMap<i64, MJob>,
    /// Holders whose process was killed.
    dead: HashSet<String>,
}

impl Model {
    /// The ids a claim of `n` at `now` takes, after the claim's liveness check (a dead holder's
    /// leases end now) and lease sweep. Every job has priority 0 and a `run_at` of its enqueue
    /// time, which never decreases while ids grow, so the claim order is the id order.
    fn claim_order(&mut self, now: i64, n: usize) -> Vec<i64> {
        for j in self.jobs.values_mut() {
            let lapsed = j
                .lease
                .as_ref()
                .is_some_and(|(_, until, holder)| *until <= now || self.dead.contains(holder));
            if lapsed {
                j.lease = None;
            }
        }
        self.jobs
            .iter()
            .filter(|(_, j)| j.lease.is_none())
            .map(|(id, _)| *id)
            .take(n)
            .collect()
    }

    fn holds(&self, id: i64, token: i64) -> bool {
        self.jobs
            .get(&id)
            .and_then(|j| j.lease.as_ref())
            .is_some_and(|(t, _, _)| *t == token)
    }
}

/// The live rows: id -> (state, attempts, token, lease end, holder while running; a pending row
/// may keep the holder of its last claim, which means nothing once the job is not running).
type RealRow = (i64, u32, Option<i64>, Option<i64>, Option<String>);

fn real_jobs(conn: &Connection) -> BTreeMap<i64, RealRow> {
    let mut stmt = conn
        .prepare(
            "SELECT id, state, attempts, lease_token, lease_expires,
                    CASE WHEN state = 2 THEN
                        (SELECT c.holder FROM honker_claimers c WHERE c.id = j.claimer) END
             FROM honker_jobs j WHERE queue = ?1",
        )
        .unwrap();
    stmt.query_map([QUEUE], |r| {
        Ok((
            r.get(0)?,
            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Everything checked after each step; see the module docs.
fn check(conn: &Connection, model: &Model, slots: &[Slot], now: i64) -> Result<(), TestCaseError> {
    let real = real_jobs(conn);
    let want: BTreeMap<i64, RealRow> = model
        .jobs
        .iter()
        .map(|(id, j)| {
            let row = match &j.lease {
                Some((t, until, holder)) => {
                    (2, j.attempts, Some(*t), Some(*until), Some(holder.clone()))
                }
                None => (0, j.attempts, None, None, None),
            };
            (*id, row)
        })
        .collect();
    prop_assert_eq!(&real, &want);
    let dead: i64 = conn
        .query_row("SELECT count(*) FROM honker_dead", [], |r| r.get(0))
        .unwrap();
    prop_assert_eq!(dead, 0);
    // No job under two live leases of processes that are alive or stopped; the one there is must
    // be the database's.
    let mut live: BTreeMap<i64, Vec<(&str, Held)>> = BTreeMap::new();
    for s in slots.iter().filter(|s| s.life != Life::Dead) {
        for h in s.held.iter().filter(|h| h.until > now) {
            live.entry(h.id).or_default().push((&s.holder, *h));
        }
    }
    for (id, leases) in &live {
        prop_assert!(
            leases.len() == 1,
            "job {} under two live leases: {:?}",
            id,
            leases
        );
        let (holder, h) = leases[0];
        let row = real.get(id);
        prop_assert!(
            row.is_some_and(|r| r.0 == 2 && r.2 == Some(h.token) && r.4.as_deref() == Some(holder)),
            "job {} under a live lease of {} that the database does not have: {:?}",
            id,
            holder,
            row
        );
    }
    Ok(())
}

/// Enqueue `n` jobs at `now`; their ids.
fn enqueue(conn: &Connection, q: &Queue, n: usize) -> Vec<i64> {
    let opts = EnqueueOptions {
        max_attempts: Some(MAX_ATTEMPTS),
        ..EnqueueOptions::default()
    };
    (0..n)
        .map(|_| q.enqueue(conn, "{}", &opts).unwrap().0)
        .collect()
}

/// After a kill, let every process's "seen alive" answer for the dead holder run out, so the
/// next claim looks at its lock (the model says a dead holder's jobs come back at once).
fn let_alive_answers_expire() {
    std::thread::sleep(honker_core::liveness::ALIVE_FOR + Duration::from_millis(5));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn liveness_keeps_one_live_lease_per_job_and_loses_none(
        initial in 3usize..10,
        ops in prop::collection::vec(op(), 1..50),
    ) {
        let db = WorkDb::new();
        let conn = db.open();
        let clock = SettableClock::new(Millis(T0));
        let q = Queue::with_clock(QUEUE, Arc::new(clock.clone())).unwrap();
        let mut now = T0;
        let mut model = Model::default();
        let mut enqueued: BTreeSet<i64> = BTreeSet::new();
        let mut acked: BTreeMap<i64, u32> = BTreeMap::new();
        // Every (job, token) ever handed out, to pick stale ones from.
        let mut handed: Vec<(i64, i64)> = Vec::new();
        let mut tokens: HashSet<i64> = HashSet::new();
        let mut slots: Vec<Slot> = Vec::new();
        for id in enqueue(&conn, &q, initial) {
            enqueued.insert(id);
            model.jobs.insert(id, MJob { attempts: 0, lease: None });
        }
        for _ in 0..2 {
            slots.push(Slot::spawn(&db));
        }
        let mut respawns = 0;

        // One claim by slot `who` at `now`, compared with the model.
        macro_rules! claim {
            ($who:expr, $n:expr, $lease:expr) => {{
                let want = model.claim_order(now, $n);
                let got = slots[$who].claim(now, $n, $lease);
                let ids: Vec<i64> = got.iter().map(|(h, _)| h.id).collect();
                prop_assert_eq!(&ids, &want, "claim by {} at +{} ms", &slots[$who].holder, now - T0);
                for (h, attempts) in &got {
                    prop_assert!(tokens.insert(h.token), "token {} handed out twice", h.token);
                    prop_assert_eq!(h.until, now + $lease);
                    handed.push((h.id, h.token));
                    let m = model.jobs.get_mut(&h.id).unwrap();
                    m.attempts += 1;
                    prop_assert_eq!(*attempts, m.attempts);
                    m.lease = Some((h.token, h.until, slots[$who].holder.clone()));
                    slots[$who].held.push(*h);
                }
                got.len()
            }};
        }
        // One ack by slot `who` of what it holds at `pick`, compared with the model.
        macro_rules! ack {
            ($who:expr, $pick:expr) => {{
                let h = slots[$who].held.remove($pick);
                let ok = slots[$who].ack(now, h);
                let holds = model.holds(h.id, h.token);
                prop_assert_eq!(ok, holds, "ack of job {} under token {}", h.id, h.token);
                if ok {
                    model.jobs.remove(&h.id);
                    *acked.entry(h.id).or_default() += 1;
                }
            }};
        }

        for op in ops {
            match op {
                Op::Claim { who, n, lease } => {
                    if slots.get(who).is_some_and(|s| s.life == Life::Running) {
                        claim!(who, n, lease);
                    }
                }
                Op::Ack { who, pick } => {
                    if slots.get(who).is_some_and(|s| s.life == Life::Running && !s.held.is_empty()) {
                        let pick = pick % slots[who].held.len();
                        ack!(who, pick);
                    }
                }
                Op::Stop { who } => {
                    if slots.get(who).is_some_and(|s| s.life == Life::Running) {
                        slots[who].signal("STOP");
                        slots[who].life = Life::Stopped;
                    }
                }
                Op::Resume { who } => {
                    if slots.get(who).is_some_and(|s| s.life == Life::Stopped) {
                        slots[who].signal("CONT");
                        slots[who].life = Life::Running;
                    }
                }
                Op::Die { who } => {
                    if slots.get(who).is_some_and(|s| s.life != Life::Dead) {
                        slots[who].proc.take().unwrap().kill9();
                        slots[who].life = Life::Dead;
                        model.dead.insert(slots[who].holder.clone());
                        let_alive_answers_expire();
                    }
                }
                Op::Respawn { who } => {
                    if respawns < 6 {
                        if who >= slots.len() {
                            slots.push(Slot::spawn(&db));
                            respawns += 1;
                        } else if slots[who].life == Life::Dead {
                            slots[who] = Slot::spawn(&db);
                            respawns += 1;
                        }
                    }
                }
                Op::Enqueue { n } => {
                    for id in enqueue(&conn, &q, n) {
                        prop_assert!(enqueued.insert(id), "job id {} reused", id);
                        model.jobs.insert(id, MJob { attempts: 0, lease: None });
                    }
                }
                Op::StaleAck { pick } => {
                    let stale: Vec<(i64, i64)> = handed
                        .iter()
                        .copied()
                        .filter(|(id, token)| !model.holds(*id, *token))
                        .collect();
                    if !stale.is_empty() {
                        let (id, token) = stale[pick % stale.len()];
                        let r = q.ack(&conn, JobId(id), LeaseToken(token));
                        prop_assert_eq!(
                            r.err().map(|e| e.code()),
                            Some("queue.lease_lost"),
                            "a stale token of job {} was taken", id
                        );
                    }
                }
                Op::Advance { ms } => {
                    now += ms;
                    clock.set(Millis(now));
                }
            }
            check(&conn, &model, &slots, now)?;
        }

        // Drain: resume the stopped, let every live holder ack what it believes it holds (stale
        // tokens refused), then claim and ack until nothing is left, with no clock advance.
        for s in slots.iter_mut().filter(|s| s.life == Life::Stopped) {
            s.signal("CONT");
            s.life = Life::Running;
        }
        if !slots.iter().any(|s| s.life == Life::Running) {
            slots.push(Slot::spawn(&db));
        }
        while let Some(who) = slots
            .iter()
            .position(|s| s.life == Life::Running && !s.held.is_empty())
        {
            ack!(who, 0);
        }
        check(&conn, &model, &slots, now)?;
        let drainer = slots.iter().position(|s| s.life == Life::Running).unwrap();
        for _ in 0..=enqueued.len() {
            if claim!(drainer, 4, 1_000) == 0 {
                break;
            }
            while !slots[drainer].held.is_empty() {
                ack!(drainer, 0);
            }
            check(&conn, &model, &slots, now)?;
        }
        prop_assert!(model.jobs.is_empty(), "the model still has {:?}", model.jobs);
        prop_assert_eq!(real_jobs(&conn).len(), 0, "jobs left after the drain");
        let once: BTreeMap<i64, u32> = enqueued.iter().map(|id| (*id, 1)).collect();
        prop_assert_eq!(&acked, &once, "every job acked exactly once");
        integrity_ok(&conn);
        for s in slots {
            if let (Life::Running, Some(p)) = (s.life, s.proc) {
                p.finish();
            }
        }
    }
}
