//! honker-queue: an at-least-once job queue in the application's own SQLite file.
//!
//! [`Queue::enqueue`] writes a job inside the caller's transaction: a rollback drops it, a
//! commit wakes sleeping workers in every process. [`Queue::claim`] hands out due jobs in order
//! `priority DESC, run_at ASC, id ASC`, each under a fresh fencing [`LeaseToken`]; ack, retry,
//! release, fail and heartbeat all need the token, so a worker whose lease expired and was
//! reclaimed can never touch the job again. Expired leases are reclaimed, exhausted jobs and
//! expired ones go to the dead letters, and no claim's cost grows with queue depth or history.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use honker_queue::{EnqueueOptions, Queue};
//!
//! let dir = tempfile::tempdir()?;
//! let conn = honker_core::open(dir.path().join("app.db"))?;
//! let emails = Queue::new("emails")?;
//!
//! let tx = conn.unchecked_transaction()?;
//! let id = emails.enqueue(&tx, r#"{"to": "a@example.com"}"#, &EnqueueOptions::default())?;
//! tx.commit()?; // the job exists from here on, together with the rest of the transaction
//!
//! let jobs = emails.claim(&conn, "worker-1", 10, None)?;
//! assert_eq!(jobs.len(), 1);
//! assert_eq!(jobs[0].id, id);
//! emails.ack(&conn, jobs[0].id, jobs[0].lease_token)?;
//! // A second ack with the same token is refused: the lease is gone with the job.
//! let stale = emails.ack(&conn, jobs[0].id, jobs[0].lease_token).unwrap_err();
//! assert_eq!(stale.code(), "queue.lease_lost");
//! # Ok(()) }
//! ```
//!
//! Beside the queue: dead letters ([`Queue::dead_letters`], [`Queue::requeue_dead`],
//! [`Queue::purge_dead`]), results ([`Queue::ack_with_result`], [`get_result`],
//! [`result_wait`]), named locks with fencing tokens ([`lock_acquire`], [`lock_renew`],
//! [`lock_release`]) and rate limits ([`rate_limit`]), and every queue SQL function ([`sql`]).
//!
//! # Features
//!
//! None. This crate never depends on a wake backend: blocking calls take any
//! [`WakeSource`](honker_core::WakeSource) and [`sql::register`] any
//! [`WakeProvider`](honker_core::WakeProvider); honker-wake provides the real ones.
//!
//! # Known limitations
//!
//! - Delivery is at least once: a job whose worker dies is run again after its lease expires.
//!   Make handlers idempotent, or ack in the same transaction as the handler's own writes.
//! - Each claim promotes at most [`SWEEP_LIMIT`] due scheduled jobs, reclaims as many expired
//!   leases and buries as many expired jobs. When more than that became due at once, the claim
//!   order among them is exact only once later claims have caught up.
//! - Rate limits use fixed windows: up to twice `limit` calls can pass around a window boundary.
//! - Work is not shared out evenly between competing worker processes. Claims serialise on
//!   SQLite's write lock, whose busy handler backs off; under heavy contention one worker can win
//!   most claims for a while (seen on a loaded 2-core machine: one of four processes got none of
//!   20 000 jobs). Correctness does not depend on it: every job still runs under one live lease.
//! - Acked jobs are deleted, unless the queue sets `keep_history_ms`: then they stay readable
//!   as [`JobState::Done`] for that long (bounded in time, not in rows; each ack into the history
//!   trims up to two expired rows).
//! - As for all of honker: every process must be on the same host, and the file must not live on
//!   a network file system (NFS, SMB) or a Docker bind mount from another kernel.
#![warn(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod dead;
mod error;
mod job;
mod locks;
mod lookup;
mod options;
mod queue;
mod results;
pub mod sql;
mod worker;

pub use crate::dead::DeadJob;
pub use crate::error::{Error, Result};
pub use crate::job::{ClaimedJob, JobId, JobInfo, JobState, LeaseToken, QueueStats, RetryOutcome};
pub use crate::locks::{lock_acquire, lock_release, lock_renew, rate_limit};
pub use crate::lookup::{cancel, job};
pub use crate::options::{
    EnqueueOptions, MAX_ATTEMPTS_LIMIT, MAX_DEDUP_KEY_BYTES, MAX_PAYLOAD_LIMIT, QueueOptions,
    QueueOptionsPatch,
};
pub use crate::queue::{MAX_CLAIM, MAX_NAME_BYTES, Queue, SWEEP_LIMIT, check_name};
pub use crate::results::{get_result, result_wait, save_result};
pub use crate::worker::{
    HandlerError, HandlerResult, Worker, WorkerOptions, WorkerReport, fair_busy_handler,
};
