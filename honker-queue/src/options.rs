//! Per-queue options (stored in `honker_queues`) and per-job enqueue options, with their JSON
//! parsers: every key is known, every value in range, or the whole object is refused.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A queue's options, as stored in `honker_queues` (or the defaults when nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueOptions {
    /// Default lease (visibility timeout) of a claim, ms. Default 30 000.
    pub lease_ms: i64,
    /// Attempts before a job goes to the dead letters. Default 5.
    pub max_attempts: u32,
    /// First retry delay, ms; doubles per attempt, with jitter. Default 1 000.
    pub backoff_base_ms: i64,
    /// Largest retry delay, ms. Default 3 600 000 (one hour).
    pub backoff_cap_ms: i64,
    /// How long dead letters are kept, ms. Default 604 800 000 (seven days).
    pub dead_retention_ms: i64,
    /// Payload size limit of enqueue, bytes. Default 1 MiB.
    pub max_payload_bytes: usize,
    /// Claims return nothing while paused; enqueue still works. Default false.
    pub paused: bool,
    /// How long acked jobs stay readable (as [`JobState::Done`](crate::JobState::Done)) in the
    /// history, ms; 0 (the default) deletes them at ack.
    pub keep_history_ms: i64,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lease_ms: 30_000,
            max_attempts: 5,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 3_600_000,
            dead_retention_ms: 7 * 24 * 3_600_000,
            max_payload_bytes: honker_core::payload::DEFAULT_MAX_PAYLOAD_BYTES,
            paused: false,
            keep_history_ms: 0,
        }
    }
}

/// The largest payload limit a queue may set: 64 MiB.
pub const MAX_PAYLOAD_LIMIT: usize = 64 * 1024 * 1024;
/// The largest `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1_000_000;

const QUEUE_KEYS: &[&str] = &[
    "lease_ms",
    "max_attempts",
    "backoff_base_ms",
    "backoff_cap_ms",
    "dead_retention_ms",
    "max_payload_bytes",
    "paused",
    "keep_history_ms",
];
const QUEUE_KEYS_LIST: &str = "lease_ms, max_attempts, backoff_base_ms, backoff_cap_ms, dead_retention_ms, max_payload_bytes, paused, keep_history_ms";

/// A change to a queue's options: `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptionsPatch {
    /// See [`QueueOptions::lease_ms`].
    pub lease_ms: Option<i64>,
    /// See [`QueueOptions::max_attempts`].
    pub max_attempts: Option<u32>,
    /// See [`QueueOptions::backoff_base_ms`].
    pub backoff_base_ms: Option<i64>,
    /// See [`QueueOptions::backoff_cap_ms`].
    pub backoff_cap_ms: Option<i64>,
    /// See [`QueueOptions::dead_retention_ms`].
    pub dead_retention_ms: Option<i64>,
    /// See [`QueueOptions::max_payload_bytes`].
    pub max_payload_bytes: Option<usize>,
    /// See [`QueueOptions::paused`].
    pub paused: Option<bool>,
    /// See [`QueueOptions::keep_history_ms`].
    pub keep_history_ms: Option<i64>,
}

impl QueueOptionsPatch {
    /// Parse `{"lease_ms":..,"max_attempts":..,"backoff_base_ms":..,"backoff_cap_ms":..,
    /// "dead_retention_ms":..,"max_payload_bytes":..,"paused":true|false}`; every key optional.
    ///
    /// # Errors
    ///
    /// `queue.unknown_option` for an unknown key, `queue.bad_option` for a value of the wrong
    /// type or out of range, `arg.invalid` when the text is not a JSON object.
    pub fn from_json(text: &str) -> Result<QueueOptionsPatch> {
        let map = parse_object(Some(text), QUEUE_KEYS, QUEUE_KEYS_LIST)?;
        let patch = QueueOptionsPatch {
            lease_ms: opt_i64(&map, "lease_ms")?,
            max_attempts: opt_i64(&map, "max_attempts")?
                .map(|v| to_u32("max_attempts", v))
                .transpose()?,
            backoff_base_ms: opt_i64(&map, "backoff_base_ms")?,
            backoff_cap_ms: opt_i64(&map, "backoff_cap_ms")?,
            dead_retention_ms: opt_i64(&map, "dead_retention_ms")?,
            max_payload_bytes: opt_i64(&map, "max_payload_bytes")?
                .map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
            paused: match map.get("paused") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(v) => {
                    return Err(Error::bad_option(
                        "paused",
                        format!("must be true or false, got {v}"),
                    ));
                }
            },
            keep_history_ms: opt_i64(&map, "keep_history_ms")?,
        };
        Ok(patch)
    }

    /// `base` with this patch applied, validated.
    ///
    /// # Errors
    ///
    /// `queue.bad_option` when a value is out of range.
    pub fn apply(&self, base: &QueueOptions) -> Result<QueueOptions> {
        let o = QueueOptions {
            lease_ms: self.lease_ms.unwrap_or(base.lease_ms),
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            backoff_base_ms: self.backoff_base_ms.unwrap_or(base.backoff_base_ms),
            backoff_cap_ms: self.backoff_cap_ms.unwrap_or(base.backoff_cap_ms),
            dead_retention_ms: self.dead_retention_ms.unwrap_or(base.dead_retention_ms),
            max_payload_bytes: self.max_payload_bytes.unwrap_or(base.max_payload_bytes),
            paused: self.paused.unwrap_or(base.paused),
            keep_history_ms: self.keep_history_ms.unwrap_or(base.keep_history_ms),
        };
        o.validate()?;
        Ok(o)
    }
}

impl QueueOptions {
    /// Check every value is in range.
    ///
    /// # Errors
    ///
    /// `queue.bad_option` naming the first value out of range.
    pub fn validate(&self) -> Result<()> {
        if self.lease_ms < 1 {
            return Err(Error::bad_option(
                "lease_ms",
                format!("must be >= 1, got {}", self.lease_ms),
            ));
        }
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return Err(Error::bad_option(
                "max_attempts",
                format!(
                    "must be in 1..={MAX_ATTEMPTS_LIMIT}, got {}",
                    self.max_attempts
                ),
            ));
        }
        if self.backoff_base_ms < 0 {
            return Err(Error::bad_option(
                "backoff_base_ms",
                format!("must be >= 0, got {}", self.backoff_base_ms),
            ));
        }
        if self.backoff_cap_ms < self.backoff_base_ms {
            return Err(Error::bad_option(
                "backoff_cap_ms",
                format!(
                    "must be >= backoff_base_ms ({}), got {}",
                    self.backoff_base_ms, self.backoff_cap_ms
                ),
            ));
        }
        if self.dead_retention_ms < 0 {
            return Err(Error::bad_option(
                "dead_retention_ms",
                format!("must be >= 0, got {}", self.dead_retention_ms),
            ));
        }
        if !(1..=MAX_PAYLOAD_LIMIT).contains(&self.max_payload_bytes) {
            return Err(Error::bad_option(
                "max_payload_bytes",
                format!(
                    "must be in 1..={MAX_PAYLOAD_LIMIT}, got {}",
                    self.max_payload_bytes
                ),
            ));
        }
        if self.keep_history_ms < 0 {
            return Err(Error::bad_option(
                "keep_history_ms",
                format!("must be >= 0, got {}", self.keep_history_ms),
            ));
        }
        Ok(())
    }

    /// The options as a JSON object text, with every key.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "lease_ms": self.lease_ms,
            "max_attempts": self.max_attempts,
            "backoff_base_ms": self.backoff_base_ms,
            "backoff_cap_ms": self.backoff_cap_ms,
            "dead_retention_ms": self.dead_retention_ms,
            "max_payload_bytes": self.max_payload_bytes,
            "paused": self.paused,
            "keep_history_ms": self.keep_history_ms,
        })
        .to_string()
    }

    /// The retry delay before attempt `attempts + 1` of job `id`: `base * 2^(attempts-1)`, capped,
    /// then jittered into `[d/2, d]` by a hash of `(id, attempts)` so jobs that failed together
    /// do not all come back together. Deterministic, so it can be checked.
    pub fn backoff_ms(&self, id: i64, attempts: u32) -> i64 {
        let shift = attempts.saturating_sub(1).min(62);
        let full = self
            .backoff_base_ms
            .checked_mul(1_i64 << shift)
            .unwrap_or(i64::MAX)
            .min(self.backoff_cap_ms);
        let half = full / 2;
        let span = u64::try_from(full - half).unwrap_or(0) + 1;
        let jitter = splitmix64((id as u64) ^ (u64::from(attempts) << 48)) % span;
        half + i64::try_from(jitter).unwrap_or(0)
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Per-job options of an enqueue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// Run no earlier than this many ms from now (>= 0). Exclusive with `run_at_ms`.
    pub delay_ms: Option<i64>,
    /// Run no earlier than this time. Exclusive with `delay_ms`.
    pub run_at_ms: Option<i64>,
    /// Higher is claimed first. Default 0.
    pub priority: i64,
    /// Attempts allowed; default: the queue's `max_attempts`.
    pub max_attempts: Option<u32>,
    /// Dead as `expired` from this time on. Exclusive with `expires_in_ms`.
    pub expires_at_ms: Option<i64>,
    /// Dead as `expired` this many ms from now (>= 0). Exclusive with `expires_at_ms`.
    pub expires_in_ms: Option<i64>,
    /// Unique among the queue's live jobs: a second enqueue returns the first job's id and
    /// writes nothing.
    pub dedup_key: Option<String>,
}

/// The longest dedup key, in bytes.
pub const MAX_DEDUP_KEY_BYTES: usize = 1024;

const ENQUEUE_KEYS: &[&str] = &[
    "delay_ms",
    "run_at_ms",
    "priority",
    "max_attempts",
    "expires_at_ms",
    "expires_in_ms",
    "dedup_key",
];
const ENQUEUE_KEYS_LIST: &str =
    "delay_ms, run_at_ms, priority, max_attempts, expires_at_ms, expires_in_ms, dedup_key";

impl EnqueueOptions {
    /// Parse `{"delay_ms"|"run_at_ms":..,"priority":..,"max_attempts":..,
    /// "expires_at_ms"|"expires_in_ms":..,"dedup_key":".."}`; every key optional. `None`, `""`
    /// and `{}` mean no options.
    ///
    /// # Errors
    ///
    /// `queue.unknown_option` for an unknown key, `queue.bad_option` for a value of the wrong
    /// type, out of range, or two exclusive keys given together; `arg.invalid` when the text is
    /// not a JSON object.
    pub fn from_json(text: &str) -> Result<EnqueueOptions> {
        let map = parse_object(Some(text), ENQUEUE_KEYS, ENQUEUE_KEYS_LIST)?;
        let o = EnqueueOptions {
            delay_ms: opt_i64(&map, "delay_ms")?,
            run_at_ms: opt_i64(&map, "run_at_ms")?,
            priority: opt_i64(&map, "priority")?.unwrap_or(0),
            max_attempts: opt_i64(&map, "max_attempts")?
                .map(|v| to_u32("max_attempts", v))
                .transpose()?,
            expires_at_ms: opt_i64(&map, "expires_at_ms")?,
            expires_in_ms: opt_i64(&map, "expires_in_ms")?,
            dedup_key: match map.get("dedup_key") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => {
                    return Err(Error::bad_option(
                        "dedup_key",
                        format!("must be a string, got {v}"),
                    ));
                }
            },
        };
        o.validate()?;
        Ok(o)
    }

    /// Check ranges and exclusive pairs.
    ///
    /// # Errors
    ///
    /// `queue.bad_option`.
    pub fn validate(&self) -> Result<()> {
        if self.delay_ms.is_some() && self.run_at_ms.is_some() {
            return Err(Error::bad_option(
                "delay_ms",
                "give delay_ms or run_at_ms, not both",
            ));
        }
        if let Some(d) = self.delay_ms.filter(|d| *d < 0) {
            return Err(Error::bad_option(
                "delay_ms",
                format!("must be >= 0, got {d}"),
            ));
        }
        if self.run_at_ms.is_some_and(|t| t < 0) {
            return Err(Error::bad_option("run_at_ms", "must be >= 0"));
        }
        if self.expires_at_ms.is_some() && self.expires_in_ms.is_some() {
            return Err(Error::bad_option(
                "expires_in_ms",
                "give expires_at_ms or expires_in_ms, not both",
            ));
        }
        if let Some(d) = self.expires_in_ms.filter(|d| *d < 0) {
            return Err(Error::bad_option(
                "expires_in_ms",
                format!("must be >= 0, got {d}"),
            ));
        }
        if let Some(m) = self
            .max_attempts
            .filter(|m| !(1..=MAX_ATTEMPTS_LIMIT).contains(m))
        {
            return Err(Error::bad_option(
                "max_attempts",
                format!("must be in 1..={MAX_ATTEMPTS_LIMIT}, got {m}"),
            ));
        }
        if let Some(k) = &self.dedup_key
            && (k.is_empty() || k.len() > MAX_DEDUP_KEY_BYTES)
        {
            return Err(Error::bad_option(
                "dedup_key",
                format!("must have 1..={MAX_DEDUP_KEY_BYTES} bytes, got {}", k.len()),
            ));
        }
        Ok(())
    }

    /// When the job is due, given the time now.
    pub(crate) fn run_at(&self, now: i64) -> i64 {
        match (self.run_at_ms, self.delay_ms) {
            (Some(t), _) => t,
            (None, Some(d)) => now.saturating_add(d),
            (None, None) => now,
        }
    }

    /// When the job expires, if ever, given the time now.
    pub(crate) fn expires_at(&self, now: i64) -> Option<i64> {
        self.expires_at_ms
            .or_else(|| self.expires_in_ms.map(|d| now.saturating_add(d)))
    }
}

/// Parse an options object, mapping the core's unknown-key error to the queue's code.
pub(crate) fn parse_object(
    text: Option<&str>,
    known: &[&str],
    known_list: &'static str,
) -> Result<Map<String, Value>> {
    honker_core::sql::parse_options(text, known, known_list).map_err(|e| match e {
        honker_core::Error::UnknownOption { option, known } => {
            Error::UnknownOption { option, known }
        }
        other => Error::Core(other),
    })
}

pub(crate) fn opt_i64(map: &Map<String, Value>, key: &'static str) -> Result<Option<i64>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| Error::bad_option(key, format!("must be an integer, got {v}"))),
    }
}

fn to_u32(key: &'static str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::bad_option(key, format!("must be in 1..={MAX_ATTEMPTS_LIMIT}, got {v}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_options_refuse_unknown_conflicting_and_negative() {
        let o =
            EnqueueOptions::from_json(r#"{"delay_ms":5,"priority":-2,"dedup_key":"k"}"#).unwrap();
        assert_eq!(
            (o.delay_ms, o.priority, o.dedup_key.as_deref()),
            (Some(5), -2, Some("k"))
        );
        assert_eq!(
            EnqueueOptions::from_json("").unwrap(),
            EnqueueOptions::default()
        );
        for (text, code) in [
            (r#"{"delay":5}"#, "queue.unknown_option"),
            (r#"{"delay_ms":5,"run_at_ms":9}"#, "queue.bad_option"),
            (r#"{"delay_ms":-1}"#, "queue.bad_option"),
            (r#"{"delay_ms":1.5}"#, "queue.bad_option"),
            (r#"{"max_attempts":0}"#, "queue.bad_option"),
            (r#"{"dedup_key":3}"#, "queue.bad_option"),
            (
                r#"{"expires_at_ms":1,"expires_in_ms":2}"#,
                "queue.bad_option",
            ),
            ("[1]", "arg.invalid"),
            ("{", "arg.invalid"),
        ] {
            assert_eq!(
                EnqueueOptions::from_json(text).unwrap_err().code(),
                code,
                "{text}"
            );
        }
    }

    #[test]
    fn queue_options_patch_validates_ranges() {
        let p = QueueOptionsPatch::from_json(r#"{"lease_ms":10,"paused":true}"#).unwrap();
        let o = p.apply(&QueueOptions::default()).unwrap();
        assert_eq!((o.lease_ms, o.paused), (10, true));
        let p =
            QueueOptionsPatch::from_json(r#"{"backoff_cap_ms":1,"backoff_base_ms":2}"#).unwrap();
        assert_eq!(
            p.apply(&QueueOptions::default()).unwrap_err().code(),
            "queue.bad_option"
        );
        assert_eq!(
            QueueOptionsPatch::from_json(r#"{"lease":1}"#)
                .unwrap_err()
                .code(),
            "queue.unknown_option"
        );
        assert_eq!(
            QueueOptionsPatch::from_json(r#"{"paused":1}"#)
                .unwrap_err()
                .code(),
            "queue.bad_option"
        );
    }

    #[test]
    fn backoff_doubles_is_capped_and_jitters_within_half() {
        let o = QueueOptions {
            backoff_base_ms: 100,
            backoff_cap_ms: 1_000,
            ..QueueOptions::default()
        };
        for id in 0..50 {
            for (attempts, full) in [
                (1, 100),
                (2, 200),
                (3, 400),
                (4, 800),
                (5, 1000),
                (40, 1000),
            ] {
                let d = o.backoff_ms(id, attempts);
                assert!((full / 2..=full).contains(&d), "{id} {attempts} {d}");
            }
        }
    }
}
