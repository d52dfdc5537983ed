//! Counters of the automatic upkeep that `notify` and `publish` run every so often (the
//! notification prune, the stream trim), so a skipped turn is visible instead of silent.
//!
//! The counts are per process: `honker_upkeep_stats()` in SQL and [`upkeep_stats`] in Rust.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many automatic turns of one kind ran and how many failed.
#[derive(Debug)]
pub(crate) struct Turns {
    ran: AtomicU64,
    skipped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

pub(crate) static PRUNES: Turns = Turns::new();
pub(crate) static TRIMS: Turns = Turns::new();

impl Turns {
    const fn new() -> Turns {
        Turns {
            ran: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Count one turn, skipped when it failed with `error` (`code: message`).
    pub(crate) fn count(&self, error: Option<String>) {
        match error {
            None => {
                self.ran.fetch_add(1, Ordering::Relaxed);
            }
            Some(e) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
    }

    fn snapshot(&self) -> UpkeepTurns {
        UpkeepTurns {
            ran: self.ran.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// One kind of automatic upkeep, as counted in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpkeepTurns {
    /// Turns that ran to the end.
    pub ran: u64,
    /// Turns that failed and were skipped (retried at the next turn).
    pub skipped: u64,
    /// The error of the last skipped turn, `code: message`.
    pub last_error: Option<String>,
}

/// The automatic upkeep counted in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpkeepStats {
    /// The notification prune that `notify` runs every [`PRUNE_EVERY`](crate::PRUNE_EVERY) ids.
    pub prunes: UpkeepTurns,
    /// The stream trim that `publish` runs for topics with a retention policy.
    pub trims: UpkeepTurns,
}

/// The automatic upkeep counted in this process since it started.
pub fn upkeep_stats() -> UpkeepStats {
    UpkeepStats {
        prunes: PRUNES.snapshot(),
        trims: TRIMS.snapshot(),
    }
}

impl UpkeepStats {
    /// The counts as the JSON object `honker_upkeep_stats()` returns.
    pub fn to_json(&self) -> String {
        let turns = |t: &UpkeepTurns| serde_json::json!({"ran": t.ran, "skipped": t.skipped, "last_error": t.last_error});
        serde_json::json!({"prunes": turns(&self.prunes), "trims": turns(&self.trims)}).to_string()
    }
}
