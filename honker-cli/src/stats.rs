//! Latency samples: wall-clock nanoseconds comparable across processes, and percentile summaries.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
///
/// Latency across processes needs one clock that every process reads: `Instant` is not
/// comparable between processes, `SystemTime` is (on one host). A clock step during a run would
/// skew one sample, which the summary's max would show.
pub(crate) fn now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Percentiles of a set of latency samples, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) p50: i64,
    pub(crate) p90: i64,
    pub(crate) p99: i64,
    pub(crate) max: i64,
}

impl Summary {
    /// Summarise `samples` (sorted in place); `None` when there are none.
    pub(crate) fn of(samples: &mut [i64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Summary {
            n: samples.len(),
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p99: percentile(samples, 99.0),
            max: samples[samples.len() - 1],
        })
    }

    /// The `key=value` form the bench helpers print and `cargo xtask bench` parses, each key
    /// prefixed with `prefix`.
    pub(crate) fn kv(&self, prefix: &str) -> String {
        format!(
            "{prefix}n={} {prefix}p50_ns={} {prefix}p90_ns={} {prefix}p99_ns={} {prefix}max_ns={}",
            self.n, self.p50, self.p90, self.p99, self.max
        )
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {}  p90 {}  p99 {}  max {}  ({} samples)",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.n
        )
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Nanoseconds as milliseconds with two decimals, e.g. `0.62 ms`.
pub(crate) fn ms(ns: i64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        let s = Summary::of(&mut v).unwrap();
        assert_eq!((s.n, s.p50, s.p90, s.p99, s.max), (100, 50, 90, 99, 100));
        let mut one = vec![7];
        let s = Summary::of(&mut one).unwrap();
        assert_eq!((s.p50, s.p99, s.max), (7, 7, 7));
        assert_eq!(Summary::of(&mut []), None);
    }
}
