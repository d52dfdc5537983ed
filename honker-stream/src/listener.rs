//! The blocking `Listener`: delivers each notification of one channel once, in commit order,
//! following the wake loop of DESIGN.md §2.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use honker_core::WakeSource;
use rusqlite::Connection;

use crate::error::Result;
use crate::iter::{Iter, Receive};
use crate::notify::{Notification, NotificationId, check_channel, latest_id, listen};

/// How many notifications one look reads; the rest wait for the next look.
const BATCH: usize = 256;

/// A blocking subscriber to one channel.
///
/// It owns its connection and a [`WakeSource`] for the same file (usually
/// `honker_wake::wake_for(path)`, shared by every listener of the process). It starts after the
/// newest notification that exists when it is created and delivers every later notification on
/// its channel exactly once, in commit (id) order, unless retention pruned it first.
///
/// Each look follows the wake loop: sample the epoch, read with a fresh autocommit statement,
/// and only when that finds nothing, sleep until the epoch moves past the sample. A commit that
/// lands between the look and the sleep has already moved the epoch, so no wake is lost.
#[derive(Debug)]
pub struct Listener {
    conn: Connection,
    channel: String,
    wake: Arc<dyn WakeSource>,
    last_id: NotificationId,
    buffer: VecDeque<Notification>,
}

impl Listener {
    /// A listener on `channel` over `conn`, starting after the newest notification now.
    ///
    /// # Errors
    ///
    /// [`Error::BadChannel`](crate::Error::BadChannel); core `wait.in_transaction` when `conn`
    /// has an open transaction; SQLite errors.
    pub fn new(conn: Connection, channel: &str, wake: Arc<dyn WakeSource>) -> Result<Listener> {
        check_channel(channel)?;
        honker_core::ensure_no_transaction(&conn)?;
        let last_id = latest_id(&conn)?;
        Ok(Listener {
            conn,
            channel: channel.to_owned(),
            wake,
            last_id,
            buffer: VecDeque::new(),
        })
    }

    /// Open `db_path` ([`honker_core::open`]) and listen on `channel` there.
    ///
    /// # Errors
    ///
    /// As [`honker_core::open`] and [`Listener::new`].
    pub fn open(db_path: &Path, channel: &str, wake: Arc<dyn WakeSource>) -> Result<Listener> {
        check_channel(channel)?;
        Listener::new(honker_core::open(db_path)?, channel, wake)
    }

    /// The next notification, blocking until one is committed or `deadline` passes (`None` at
    /// the deadline; `deadline: None` waits for ever).
    ///
    /// With a deadline already past it still looks once, so it doubles as a non-blocking poll.
    ///
    /// # Errors
    ///
    /// Core `wait.in_transaction` if a transaction was left open on the listener's connection;
    /// `wake.*` when the wake source fails (the file was replaced, the watcher died); SQLite
    /// errors. The listener stays usable after an error.
    pub fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<Notification>> {
        loop {
            if let Some(n) = self.buffer.pop_front() {
                return Ok(Some(n));
            }
            // A look inside an open transaction would read a snapshot older than the epoch
            // sample and sleep through the commit that moved it.
            honker_core::ensure_no_transaction(&self.conn)?;
            let seen = self.wake.epoch();
            let batch = listen(&self.conn, &self.channel, self.last_id, BATCH)?;
            if let Some(last) = batch.last() {
                self.last_id = last.id;
                self.buffer.extend(batch);
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            self.wake.wait_past(seen, deadline)?;
        }
    }

    /// The notifications as an iterator that blocks for each one and ends at `deadline` (or
    /// after yielding an error).
    pub fn iter(&mut self, deadline: Option<Instant>) -> Iter<'_, Listener> {
        Iter::new(self, deadline)
    }

    /// The id of the newest notification handed out or buffered (where the next look starts).
    pub fn last_id(&self) -> NotificationId {
        self.last_id
    }

    /// The channel listened to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The listener's connection, for reads (a transaction left open on it makes
    /// [`recv`](Listener::recv) fail with `wait.in_transaction`).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Give back the connection.
    pub fn into_connection(self) -> Connection {
        self.conn
    }
}

impl Receive for Listener {
    type Item = Notification;

    fn receive(&mut self, deadline: Option<Instant>) -> Result<Option<Notification>> {
        self.recv(deadline)
    }
}
