//! Model-based property test: random publish/commit/rollback/receive sequences against a
//! per-channel queue model. Invariant: every listener gets exactly the committed notifications
//! of its channel, once each, in commit order.

use std::collections::VecDeque;
use std::sync::Arc;

use honker_core::{ManualWake, WakeSource};
use honker_stream::{Listener, notify};
use proptest::prelude::*;

use crate::util::{TempDb, now};

const CHANNELS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    /// Publish `payloads` on channels, in one transaction that commits or rolls back.
    Publish { on: Vec<usize>, commit: bool },
    /// Receive up to `max` from the listener of `channel`.
    Recv { channel: usize, max: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            prop::collection::vec(0..CHANNELS.len(), 1..6),
            any::<bool>()
        )
            .prop_map(|(on, commit)| Op::Publish { on, commit }),
        (0..CHANNELS.len(), 0usize..8).prop_map(|(channel, max)| Op::Recv { channel, max }),
    ]
}

fn cases() -> u32 {
    std::env::var("HONKER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn listeners_match_the_queue_model(ops in prop::collection::vec(op(), 1..40)) {
        let db = TempDb::new();
        let conn = db.open();
        let wake = ManualWake::new();
        let mut listeners: Vec<Listener> = CHANNELS
            .iter()
            .map(|c| Listener::open(&db.path(), c, Arc::new(wake.clone())).unwrap())
            .collect();
        let mut model: Vec<VecDeque<(i64, String)>> = vec![VecDeque::new(); CHANNELS.len()];
        let mut seq = 0;
        for op in ops {
            match op {
                Op::Publish { on, commit } => {
                    let tx = conn.unchecked_transaction().unwrap();
                    let mut sent = Vec::new();
                    for ch in on {
                        seq += 1;
                        let p = seq.to_string();
                        let id = notify(&tx, CHANNELS[ch], &p).unwrap();
                        sent.push((ch, id, p));
                    }
                    if commit {
                        tx.commit().unwrap();
                        for (ch, id, p) in sent {
                            model[ch].push_back((id, p));
                        }
                    } else {
                        tx.rollback().unwrap();
                    }
                    wake.kick();
                }
                Op::Recv { channel, max } => {
                    for _ in 0..max {
                        let got = listeners[channel].recv(now()).unwrap().map(|n| (n.id, n.payload));
                        prop_assert_eq!(got, model[channel].pop_front());
                    }
                }
            }
        }
        for (ch, l) in listeners.iter_mut().enumerate() {
            let rest: Vec<(i64, String)> = l.iter(now()).map(|n| n.map(|n| (n.id, n.payload)).unwrap()).collect();
            prop_assert_eq!(rest, Vec::from(std::mem::take(&mut model[ch])));
        }
    }
}
