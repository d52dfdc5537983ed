//! honker-stream: Postgres-style `NOTIFY`/`LISTEN` for an SQLite file.
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
//! - As for all of honker: every process must be on the same host, and the file must not live on
//!   a network file system (NFS, SMB) or a Docker bind mount from another kernel.
#![warn(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod consumer;
mod error;
mod listener;
mod notify;
mod retention;
pub mod sql;
mod stream;
mod stream_sql;
mod subscribe;
mod trim;

pub use crate::error::{Error, Result};
pub use crate::listener::{Iter, Listener};
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
