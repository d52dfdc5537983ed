//! The values the queue hands out: ids, lease tokens, claimed jobs, job states and statistics.

use std::fmt;

use honker_core::Millis;
use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// A job's id: unique in the database and never reused, even after the job is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub i64);

/// A fencing token: unique per claim and never reused. Every ack, retry, release, fail and
/// heartbeat must present the token of the claim that holds the job.
///
/// Its value is the job's claim count times 2^40 plus 40 random bits (the count wraps after
/// 8 191 claims of one job), below 2^53 so every JSON reader keeps it exact. The random bits are
/// one draw per claim statement plus the job's id (modulo 2^40), so the jobs of one claim get
/// distinct tokens. They make it unique whatever the caller's transaction does: a claim that
/// rolls back takes its claim count back with it, and the next claim gets the same count but
/// another draw (a repeat has a chance of 2^-40). It grows with every committed claim of a job (until the count wraps); treat it
/// as opaque otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseToken(pub i64);

macro_rules! sql_newtype {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }
        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(value).map($t)
            }
        }
    };
}
sql_newtype!(JobId);
sql_newtype!(LeaseToken);

/// A job handed out by a claim, with the lease that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its payload (JSON text).
    pub payload: String,
    /// Attempts so far, this claim included (the first claim gives 1).
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The fencing token of this claim.
    pub lease_token: LeaseToken,
    /// When the lease runs out unless extended by a heartbeat.
    pub lease_expires: Millis,
    /// The job's priority.
    pub priority: i64,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Due and waiting to be claimed.
    Pending,
    /// Waiting for its `run_at` (a delay, or the backoff of a retry).
    Scheduled,
    /// Claimed under a lease.
    Running,
    /// In the dead letters.
    Dead,
    /// Acked, and kept in the history of a queue with `keep_history_ms > 0`.
    Done,
}

impl JobState {
    /// The state's name, as the SQL functions report it: `pending`, `scheduled`, `running`, `dead`,
    /// `done`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Dead => "dead",
            JobState::Done => "done",
        }
    }

    pub(crate) fn from_code(code: i64) -> JobState {
        match code {
            0 => JobState::Pending,
            1 => JobState::Scheduled,
            _ => JobState::Running,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything known about one job, live, dead or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its state.
    pub state: JobState,
    /// Its payload (JSON text).
    pub payload: String,
    /// Its priority.
    pub priority: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When it is (or became) due; for a dead job, when it died; for a done job, when it was acked.
    pub run_at: Millis,
    /// When it expires, if ever.
    pub expires_at: Option<Millis>,
    /// Its dedup key, if any.
    pub dedup_key: Option<String>,
    /// The last error recorded by a retry or fail.
    pub last_error: Option<String>,
    /// Why it is dead (`attempts exhausted`, `expired`, `failed`); `None` unless dead.
    pub dead_reason: Option<String>,
    /// Who holds the lease; `None` unless running.
    pub worker: Option<String>,
    /// When the lease runs out; `None` unless running.
    pub lease_expires: Option<Millis>,
    /// When it was enqueued.
    pub created: Millis,
}

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The job runs again at `run_at`.
    Retrying {
        /// When it is due again.
        run_at: Millis,
    },
    /// The job had used all its attempts and is now in the dead letters.
    Dead,
}

/// Counts and times of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Due jobs waiting to be claimed.
    pub pending: u64,
    /// Jobs waiting for their `run_at` (delayed, or backing off before a retry).
    pub scheduled: u64,
    /// Jobs claimed under a lease.
    pub running: u64,
    /// Pending or scheduled jobs that have been tried before (a subset of both).
    pub retrying: u64,
    /// Dead letters.
    pub dead: u64,
    /// How long the oldest due job has been due, in ms (0 when none is).
    pub oldest_pending_age_ms: i64,
    /// The next time something becomes due (a run_at, a lease expiry, an expiry).
    pub next_due: Option<Millis>,
}
