//! honker-stream: Postgres-style `NOTIFY`/`LISTEN` and durable streams with per-consumer
//! offsets for an SQLite file.
//!
//! # Pub/sub
//!
//! [`notify`] writes a notification in the caller's own transaction: it is seen by listeners when
//! (and only if) that transaction commits. A [`Listener`] owns a connection and a
//! [`WakeSource`](honker_core::WakeSource) for the same file, and hands out every notification
//! of its channel committed after it was created, once each, in commit order. Listeners in other
//! processes wake when the wake source sees the commit; no daemon, no broker.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use honker_core::{ManualWake, WakeSource};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("app.db");
//! // In an application, the wake source is `honker_wake::wake_for(&path)?`, which notices
//! // commits from every process. `ManualWake` only moves when kicked.
//! let wake = ManualWake::new();
//! let mut listener = honker_stream::Listener::open(&path, "orders", Arc::new(wake.clone()))?;
//!
//! let conn = honker_core::open(&path)?;
//! let tx = conn.unchecked_transaction()?;
//! honker_stream::notify(&tx, "orders", r#"{"order": 1}"#)?;
//! tx.rollback()?; // never delivered
//! let id = honker_stream::notify(&conn, "orders", r#"{"order": 2}"#)?;
//! wake.kick();
//!
//! let got = listener.recv(Some(Instant::now() + Duration::from_secs(5)))?.unwrap();
//! assert_eq!((got.id, got.payload.as_str()), (id, r#"{"order": 2}"#));
//! assert!(listener.recv(Some(Instant::now()))?.is_none());
//! # Ok(()) }
//! ```
//!
//! # Durable streams
//!
//! [`publish`] appends an event to a topic in the caller's transaction and returns its
//! [`Offset`]. Offsets are **global** (one sequence for every topic), assigned in commit order and
//! never reused, so within one topic they increase but have **gaps**. [`read`] and [`read_wait`]
//! return events after an offset. A named consumer's offset is saved with [`commit_offset`], in
//! the caller's transaction: apply an event's effects and commit its offset in one transaction,
//! and a crash can neither lose nor repeat an effect. Commits are monotonic (a lower offset
//! reports [`Commit::NotAdvanced`] and changes nothing).
//!
//! A [`Subscriber`] replays from the consumer's committed offset (or a given one) and then follows
//! live events through the same read loop, so the switch-over has no gap and no duplicate. It
//! commits by hand or automatically every N events and/or T ms, always before handing out the next
//! event (a crash replays at most N).
//!
//! [`trim`] removes a prefix of a topic by age, count or offset, and publishes apply stored
//! per-topic policies ([`set_topic_policy`]) every [`AUTO_TRIM_EVERY`] offsets. A trim never
//! removes an event a registered consumer has not committed past unless it is forced; a reader
//! that a forced trim passed gets [`Error::Trimmed`] (`stream.trimmed`) naming the first available
//! offset, never a silent skip. [`consumers`] lists a topic's consumers with their lag in events
//! and milliseconds; [`topics`] lists topics with their sizes.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let conn = honker_core::open(dir.path().join("app.db"))?;
//! conn.execute_batch("CREATE TABLE totals (n INTEGER)")?;
//! let o = honker_stream::publish(&conn, "ledger", r#"{"amount": 5}"#)?;
//! for e in honker_stream::read(&conn, "ledger", honker_stream::Offset::ZERO, 100)? {
//!     let tx = conn.unchecked_transaction()?;
//!     tx.execute("INSERT INTO totals VALUES (5)", [])?; // the event's effect ...
//!     honker_stream::commit_offset(&tx, "totals", "ledger", e.offset)?; // ... and its offset
//!     tx.commit()?;
//! }
//! assert_eq!(honker_stream::committed_offset(&conn, "totals", "ledger")?, Some(o));
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! None. This crate never depends on a wake backend: [`Listener`] takes any
//! [`WakeSource`](honker_core::WakeSource) and [`sql::register`] any
//! [`WakeProvider`](honker_core::WakeProvider); honker-wake provides the real ones.
//!
//! # Known limitations
//!
//! - Notifications are ephemeral. Every [`PRUNE_EVERY`]th notify deletes those older than the
//!   [retention](Retention) window (default: one hour, at most 100 000 rows; stored overrides via
//!   [`set_retention`]). A listener that falls further behind misses what was pruned, with no
//!   error; use durable streams when every message must be seen.
//! - Between automatic prunes the table can hold up to `max_rows + PRUNE_EVERY` rows.
//! - A read-only statement such as `SELECT honker_notify(c, p) FROM t` in autocommit commits
//!   each call's row on its own: if a later row fails, the earlier ones stay. Statements that
//!   write (`INSERT INTO log SELECT honker_notify(..) FROM t`), triggers, and anything inside
//!   `BEGIN ... COMMIT` are all-or-nothing.
//! - `honker_listen_wait` holds no read transaction while it blocks only when the calling
//!   statement reads no table (`SELECT honker_listen_wait(...)`, no `FROM`).
//! - Stream lag in events is an index range count (its cost grows with the lag), and
//!   [`topics`] reads every event once: both are for introspection, not hot paths.
//! - A topic's automatic trim runs on publishes (every [`AUTO_TRIM_EVERY`] offsets, all policies
//!   at once); a quiet database is not trimmed until something is published.
//! - As for all of honker: every process must be on the same host, and the file must not live on
//!   a network file system (NFS, SMB) or a Docker bind mount from another kernel.
#![warn(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod consumer;
mod error;
mod iter;
mod listener;
mod notify;
mod retention;
pub mod sql;
mod stream;
mod stream_sql;
mod subscribe;
mod trim;
mod upkeep;

pub use crate::error::{Error, Result};
pub use crate::iter::{Iter, Receive};
pub use crate::listener::Listener;
pub use crate::notify::{
    MAX_CHANNEL_BYTES, Notification, NotificationId, PRUNE_EVERY, check_channel, latest_id, listen,
    notify, notify_with_clock,
};
pub use crate::retention::{
    MAX_AGE_KEY, MAX_ROWS_KEY, Retention, prune, prune_with_clock, retention, set_retention,
};

pub use crate::consumer::{
    Commit, ConsumerInfo, TopicInfo, commit_offset, commit_offset_with, committed_offset,
    consumers, consumers_with, register_consumer, remove_consumer, topics,
};
pub use crate::stream::{
    Event, MAX_NAME_BYTES, Offset, check_consumer, check_topic, first_available, latest_offset,
    publish, publish_keyed, publish_with, read, read_wait, topic_latest, trimmed_through,
};
pub use crate::subscribe::{CommitMode, StartFrom, SubscribeOptions, Subscriber};
pub use crate::trim::{
    AUTO_TRIM_EVERY, TopicPolicy, Trim, TrimReport, set_topic_policy, topic_policy, trim, trim_with,
};
pub use crate::upkeep::{UpkeepStats, UpkeepTurns, upkeep_stats};
