//! The `Subscriber`: replays a topic from a saved or given offset, then follows live events with
//! no gap and no duplicate at the switch-over, committing its consumer's offset automatically or
//! by hand.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use honker_core::WakeSource;
use rusqlite::Connection;

use crate::consumer::{Commit, commit_offset, committed_offset, register_consumer};
use crate::error::Result;
use crate::iter::{Iter, Receive};
use crate::stream::{
    Event, Offset, check_consumer, check_topic, latest_offset, read, trimmed_through,
};

/// How many events one look reads; the rest wait for the next look.
const BATCH: usize = 512;

/// Where a [`Subscriber`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// After the consumer's committed offset; a new (or anonymous) consumer starts at the
    /// beginning of what the topic still stores.
    #[default]
    Committed,
    /// At the beginning of what the topic still stores.
    Beginning,
    /// After the newest offset now: only events committed from here on.
    Latest,
    /// After this offset.
    After(Offset),
}

/// When a [`Subscriber`] commits its consumer's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// Only when asked ([`Subscriber::commit`], or [`commit_offset`](crate::commit_offset) in
    /// the application's own transaction, for exactly-once effects).
    #[default]
    Manual,
    /// Before handing out an event, once `every_events` events (if set) have been handed out
    /// since the last commit, or `every` (if set) has passed with at least one; and before
    /// blocking for live events. A crash replays at most `every_events` events.
    Auto {
        /// Commit after this many events.
        every_events: Option<u64>,
        /// Commit after this much time.
        every: Option<Duration>,
    },
}

/// How to subscribe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeOptions {
    /// The consumer whose offset is read and committed; `None` for an anonymous reader that
    /// registers nothing (and cannot commit).
    pub consumer: Option<String>,
    /// Where to start.
    pub start: StartFrom,
    /// When to commit.
    pub commit: CommitMode,
}

/// A blocking, replaying subscriber to one topic.
///
/// It owns its connection and a [`WakeSource`] of the same file. Every look follows the wake
/// loop of DESIGN.md §2 (sample the epoch, read after the last offset, sleep past the sample only
/// when nothing was there), so replay and live delivery are the same code path: the switch-over
/// can neither skip nor repeat an event.
///
/// A named consumer is registered on the topic when the subscriber starts (at its start
/// position), so trims that are not forced wait for it.
#[derive(Debug)]
pub struct Subscriber {
    conn: Connection,
    topic: String,
    consumer: Option<String>,
    wake: Arc<dyn WakeSource>,
    commit: CommitMode,
    /// The offset of the last event handed out (or the start position).
    position: Offset,
    /// The offset of the last event read into the buffer.
    read_to: Offset,
    /// The offset committed by this subscriber (or found at start).
    committed: Offset,
    since_commit: u64,
    last_commit: Instant,
    buffer: VecDeque<Event>,
}

impl Subscriber {
    /// Subscribe to `topic` over `conn`.
    ///
    /// # Errors
    ///
    /// [`Error::BadName`](crate::Error::BadName); core `arg.invalid` for automatic commits
    /// without a consumer; core `wait.in_transaction` when `conn` has an open transaction;
    /// SQLite errors.
    pub fn new(
        conn: Connection,
        topic: &str,
        wake: Arc<dyn WakeSource>,
        opts: SubscribeOptions,
    ) -> Result<Subscriber> {
        check_topic(topic)?;
        honker_core::ensure_no_transaction(&conn)?;
        if let Some(c) = &opts.consumer {
            check_consumer(c)?;
        } else if opts.commit != CommitMode::Manual {
            return Err(honker_core::Error::InvalidArgument {
                name: "commit",
                reason: "automatic commits need a consumer name".into(),
            }
            .into());
        }
        let saved = match &opts.consumer {
            Some(c) => committed_offset(&conn, c, topic)?,
            None => None,
        };
        let start = match (opts.start, saved) {
            (StartFrom::Committed, Some(saved)) => saved,
            (StartFrom::Committed | StartFrom::Beginning, _) => trimmed_through(&conn, topic)?,
            (StartFrom::Latest, _) => latest_offset(&conn)?,
            (StartFrom::After(o), _) => o,
        };
        let committed = match &opts.consumer {
            Some(c) => register_consumer(&conn, c, topic, start)?,
            None => start,
        };
        Ok(Subscriber {
            conn,
            topic: topic.to_owned(),
            consumer: opts.consumer,
            wake,
            commit: opts.commit,
            position: start,
            read_to: start,
            committed,
            since_commit: 0,
            last_commit: Instant::now(),
            buffer: VecDeque::new(),
        })
    }

    /// Open `db_path` ([`honker_core::open`]) and subscribe there.
    ///
    /// # Errors
    ///
    /// As [`honker_core::open`] and [`Subscriber::new`].
    pub fn open(
        db_path: &Path,
        topic: &str,
        wake: Arc<dyn WakeSource>,
        opts: SubscribeOptions,
    ) -> Result<Subscriber> {
        check_topic(topic)?;
        Subscriber::new(honker_core::open(db_path)?, topic, wake, opts)
    }

    /// The next event, blocking until one is committed or `deadline` passes (`None` at the
    /// deadline; `deadline: None` waits for ever). With a deadline already past it looks once.
    ///
    /// # Errors
    ///
    /// [`Error::Trimmed`](crate::Error::Trimmed) when a forced trim removed events this
    /// subscriber had not reached (it keeps failing until moved with [`Subscriber::seek`]);
    /// core `wait.in_transaction` if a transaction was left open on the connection; `wake.*`;
    /// SQLite errors (the subscriber stays usable).
    pub fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<Event>> {
        loop {
            if !self.buffer.is_empty() {
                self.auto_commit(false)?;
                let event = self.buffer.pop_front().expect("checked non-empty");
                self.position = event.offset;
                self.since_commit += 1;
                return Ok(Some(event));
            }
            honker_core::ensure_no_transaction(&self.conn)?;
            let seen = self.wake.epoch();
            let batch = read(&self.conn, &self.topic, self.read_to, BATCH)?;
            if let Some(last) = batch.last() {
                self.read_to = last.offset;
                self.buffer.extend(batch);
                continue;
            }
            // Caught up: save progress before sleeping, so an idle consumer is never behind.
            self.auto_commit(true)?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            self.wake.wait_past(seen, deadline)?;
        }
    }

    fn auto_commit(&mut self, idle: bool) -> Result<()> {
        let CommitMode::Auto {
            every_events,
            every,
        } = self.commit
        else {
            return Ok(());
        };
        if self.since_commit == 0 {
            return Ok(());
        }
        let due = idle
            || every_events.is_some_and(|n| self.since_commit >= n)
            || every.is_some_and(|t| self.last_commit.elapsed() >= t);
        if due {
            self.commit()?;
        }
        Ok(())
    }

    /// Commit the offset of the last event handed out, on the subscriber's own connection.
    ///
    /// # Errors
    ///
    /// Core `arg.invalid` for an anonymous subscriber; as [`commit_offset`].
    pub fn commit(&mut self) -> Result<Commit> {
        let Some(consumer) = &self.consumer else {
            return Err(honker_core::Error::InvalidArgument {
                name: "consumer",
                reason: "an anonymous subscriber has no offset to commit".into(),
            }
            .into());
        };
        let outcome = commit_offset(&self.conn, consumer, &self.topic, self.position)?;
        honker_core::kick_after_commit(&self.conn);
        self.committed = self.committed.max(self.position);
        self.since_commit = 0;
        self.last_commit = Instant::now();
        Ok(outcome)
    }

    /// Continue after `offset` (dropping what is buffered): to accept the loss after a forced
    /// trim, seek to its `trimmed_through`. It does not commit.
    pub fn seek(&mut self, offset: Offset) {
        self.buffer.clear();
        self.position = offset;
        self.read_to = offset;
    }

    /// The events as an iterator that blocks for each one and ends at `deadline` (or after
    /// yielding an error).
    pub fn iter(&mut self, deadline: Option<Instant>) -> Iter<'_, Subscriber> {
        Iter::new(self, deadline)
    }

    /// The offset of the last event handed out (or where it started).
    pub fn position(&self) -> Offset {
        self.position
    }

    /// The offset committed by this subscriber, or found committed when it started.
    pub fn committed(&self) -> Offset {
        self.committed
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The consumer name, if any.
    pub fn consumer(&self) -> Option<&str> {
        self.consumer.as_deref()
    }

    /// The subscriber's connection: apply an event's effects and
    /// [`commit_offset`](crate::commit_offset) in one transaction on it (finish the transaction
    /// before the next [`recv`](Subscriber::recv)).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Give back the connection.
    pub fn into_connection(self) -> Connection {
        self.conn
    }
}

/// A subscriber is an endless iterator: each `next` blocks until an event arrives; errors are
/// yielded as items and the iteration goes on (a `stream.trimmed` error repeats until
/// [`Subscriber::seek`] moves past the trim, so stop or seek on it).
impl Iterator for Subscriber {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.recv(None).transpose()
    }
}

impl Receive for Subscriber {
    type Item = Event;

    fn receive(&mut self, deadline: Option<Instant>) -> Result<Option<Event>> {
        self.recv(deadline)
    }
}
