//! Model-based property test of durable streams: random publish / read / commit / trim /
//! subscribe / restart sequences against an in-memory log, compared after every step.
//!
//! Invariants: offsets strictly increase in commit order; a read returns exactly the model's
//! stored events after the offset; commits are monotonic; an unforced trim never passes a
//! registered consumer; a manual-commit subscriber that commits what it handled gets every
//! event once across restarts (never twice, none skipped) unless a forced trim passed it, which
//! it is told about.

use std::collections::BTreeMap;
use std::sync::Arc;

use honker_core::ManualWake;
use honker_stream::{
    Commit, CommitMode, Offset, StartFrom, SubscribeOptions, Subscriber, Trim, commit_offset,
    publish, read, trim,
};
use proptest::prelude::*;

use crate::util::{TempDb, now};

const TOPICS: [&str; 2] = ["a", "b"];
const CONSUMERS: [&str; 2] = ["x", "y"];

#[derive(Debug, Clone)]
enum Op {
    Publish {
        topic: usize,
        n: usize,
        commit: bool,
    },
    Read {
        topic: usize,
        back: usize,
    },
    Commit {
        consumer: usize,
        topic: usize,
        back: usize,
    },
    Trim {
        topic: usize,
        keep: i64,
        force: bool,
    },
    Recv {
        max: usize,
    },
    SubCommit,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 1..5usize, any::<bool>()).prop_map(|(topic, n, commit)| Op::Publish { topic, n, commit }),
        1 => (0..2usize, 0..8usize).prop_map(|(topic, back)| Op::Read { topic, back }),
        1 => (0..2usize, 0..2usize, 0..6usize).prop_map(|(consumer, topic, back)| Op::Commit { consumer, topic, back }),
        1 => (0..2usize, 0..6i64, prop::bool::weighted(0.2)).prop_map(|(topic, keep, force)| Op::Trim { topic, keep, force }),
        3 => (0..6usize).prop_map(|max| Op::Recv { max }),
        1 => Just(Op::SubCommit),
        1 => Just(Op::Restart),
    ]
}

fn cases() -> u32 {
    std::env::var("HONKER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

#[derive(Debug, Default)]
struct Model {
    /// Stored events per topic: (offset, payload).
    log: BTreeMap<&'static str, Vec<(i64, String)>>,
    trimmed: BTreeMap<&'static str, i64>,
    committed: BTreeMap<(&'static str, &'static str), i64>,
    latest: i64,
}

impl Model {
    fn after(&self, topic: &'static str, after: i64) -> Vec<(i64, String)> {
        self.log
            .get(topic)
            .map(|l| l.iter().filter(|(o, _)| *o > after).cloned().collect())
            .unwrap_or_default()
    }
    fn watermark(&self, topic: &'static str) -> i64 {
        self.trimmed.get(topic).copied().unwrap_or(0)
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let db = TempDb::new();
    let conn = db.open();
    let wake = ManualWake::new();
    let mut m = Model::default();
    // The subscriber: consumer "s" on topic "a", manual commits.
    let open_sub = || {
        Subscriber::open(
            &db.path(),
            "a",
            Arc::new(wake.clone()),
            SubscribeOptions {
                consumer: Some("s".into()),
                start: StartFrom::Committed,
                commit: CommitMode::Manual,
            },
        )
        .unwrap()
    };
    let mut sub = open_sub();
    m.committed.insert(("s", "a"), 0);
    // Where the subscriber is in the model: the last offset it handed out.
    let mut sub_pos = 0i64;
    // What the subscriber has read but not handed out yet, and how far it has read.
    let mut sub_buf: Vec<(i64, String)> = Vec::new();
    let mut sub_read_to = 0i64;
    let mut seen_by_sub: Vec<i64> = Vec::new();
    let mut counter = 0;
    for op in ops {
        match op {
            Op::Publish { topic, n, commit } => {
                let topic = TOPICS[topic];
                let tx = conn.unchecked_transaction().unwrap();
                let mut new = Vec::new();
                for _ in 0..n {
                    counter += 1;
                    let payload = counter.to_string();
                    let o = publish(&tx, topic, &payload).unwrap().get();
                    new.push((o, payload));
                }
                if commit {
                    tx.commit().unwrap();
                    for (o, p) in new {
                        prop_assert!(o > m.latest, "offset {o} not above {}", m.latest);
                        m.latest = o;
                        m.log.entry(topic).or_default().push((o, p));
                    }
                } else {
                    tx.rollback().unwrap();
                }
            }
            Op::Read { topic, back } => {
                let topic = TOPICS[topic];
                let after = m.latest.saturating_sub(back as i64).max(0);
                let got = read(&conn, topic, Offset(after), 100);
                if after < m.watermark(topic) {
                    prop_assert_eq!(got.unwrap_err().code(), "stream.trimmed");
                } else {
                    let got: Vec<(i64, String)> = got
                        .unwrap()
                        .into_iter()
                        .map(|e| (e.offset.get(), e.payload))
                        .collect();
                    prop_assert_eq!(got, m.after(topic, after));
                }
            }
            Op::Commit {
                consumer,
                topic,
                back,
            } => {
                let (consumer, topic) = (CONSUMERS[consumer], TOPICS[topic]);
                let offset = m.latest.saturating_sub(back as i64).max(0);
                let got = commit_offset(&conn, consumer, topic, Offset(offset)).unwrap();
                let slot = m.committed.entry((consumer, topic));
                match slot {
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        if offset > *e.get() {
                            prop_assert_eq!(got, Commit::Advanced);
                            e.insert(offset);
                        } else {
                            prop_assert_eq!(
                                got,
                                Commit::NotAdvanced {
                                    committed: Offset(*e.get())
                                }
                            );
                        }
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        prop_assert_eq!(got, Commit::Advanced);
                        e.insert(offset);
                    }
                }
            }
            Op::Trim { topic, keep, force } => {
                let topic = TOPICS[topic];
                let r = trim(
                    &conn,
                    topic,
                    &Trim {
                        max_events: Some(keep),
                        force,
                        ..Trim::default()
                    },
                )
                .unwrap();
                let stored = m.log.entry(topic).or_default();
                let previous = m.trimmed.get(topic).copied().unwrap_or(0);
                let mut cut = if stored.len() as i64 > keep {
                    stored[stored.len() - keep as usize - 1].0
                } else {
                    0
                };
                if !force
                    && let Some(slowest) = m
                        .committed
                        .iter()
                        .filter(|((_, t), _)| *t == topic)
                        .map(|(_, o)| *o)
                        .min()
                {
                    cut = cut.min(slowest);
                }
                let cut = cut.max(previous);
                let before = stored.len();
                stored.retain(|(o, _)| *o > cut);
                prop_assert_eq!(r.deleted, before - stored.len());
                prop_assert_eq!(r.trimmed_through.get(), cut);
                m.trimmed.insert(topic, cut);
            }
            Op::Recv { max } => {
                for _ in 0..max {
                    let got = sub.recv(now());
                    if sub_buf.is_empty() {
                        if sub_read_to < m.watermark("a") {
                            // A forced trim passed the subscriber: it is told, then moves on.
                            prop_assert_eq!(got.unwrap_err().code(), "stream.trimmed");
                            sub_read_to = m.watermark("a");
                            sub_pos = sub_read_to;
                            sub.seek(Offset(sub_pos));
                            continue;
                        }
                        sub_buf = m.after("a", sub_read_to);
                        if let Some((o, _)) = sub_buf.last() {
                            sub_read_to = *o;
                        }
                    }
                    let want = if sub_buf.is_empty() {
                        None
                    } else {
                        Some(sub_buf.remove(0))
                    };
                    let got = got.unwrap().map(|e| (e.offset.get(), e.payload));
                    prop_assert_eq!(&got, &want);
                    match got {
                        Some((o, _)) => {
                            prop_assert!(!seen_by_sub.contains(&o), "offset {o} delivered twice");
                            seen_by_sub.push(o);
                            sub_pos = o;
                        }
                        None => break,
                    }
                }
            }
            Op::SubCommit => {
                sub.commit().unwrap();
                let c = m.committed.entry(("s", "a")).or_insert(0);
                *c = (*c).max(sub_pos);
            }
            Op::Restart => {
                drop(sub);
                sub = open_sub();
                // Everything handed out after the last commit is delivered again: forget it.
                let committed = m.committed[&("s", "a")];
                seen_by_sub.retain(|o| *o <= committed);
                sub_pos = committed;
                sub_read_to = committed;
                sub_buf.clear();
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn streams_agree_with_an_in_memory_log(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
