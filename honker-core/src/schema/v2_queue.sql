-- Schema version 2: the job queue (honker-queue): per-queue options, live jobs, dead letters,
-- results, named locks, rate limits and the optional history of acked jobs. All times are integer milliseconds since the Unix epoch.

-- honker_queues: per-queue options, shared by every process and language. A queue with no row
-- uses the documented defaults (honker_queue::QueueOptions::default()).
--   name              the queue's name
--   lease_ms          default lease (visibility timeout) of a claim
--   max_attempts      attempts before a job goes to the dead letters (a job may override it)
--   backoff_base_ms   first retry delay; doubles per attempt, with jitter
--   backoff_cap_ms    the largest retry delay
--   dead_retention_ms how long dead letters are kept before the automatic purge
--   max_payload_bytes payload size limit of enqueue
--   paused            1: claims return nothing (enqueue still works)
--   keep_history_ms   how long acked jobs stay in honker_history; 0 = acked jobs are deleted
--   updated_ms        when the options were last changed
CREATE TABLE honker_queues (
    name              TEXT    PRIMARY KEY NOT NULL,
    lease_ms          INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    backoff_base_ms   INTEGER NOT NULL,
    backoff_cap_ms    INTEGER NOT NULL,
    dead_retention_ms INTEGER NOT NULL,
    max_payload_bytes INTEGER NOT NULL,
    paused            INTEGER NOT NULL,
    keep_history_ms   INTEGER NOT NULL DEFAULT 0,
    updated_ms        INTEGER NOT NULL
);

-- honker_jobs: live jobs only (acked jobs are deleted, dead ones move to honker_dead), so the
-- table stays as small as the work in flight.
--   id            job id; AUTOINCREMENT so an id is never reused, even after deletes
--   queue         the queue's name
--   state         0 ready (due, claimable), 1 scheduled (run_at in the future, or waiting
--                 for a retry), 2 running (claimed under a lease)
--   payload       JSON text
--   priority      higher is claimed first
--   run_at        when the job is (or became) due
--   attempts      claims so far (counted at claim)
--   max_attempts  attempts allowed before the job is dead
--   expires_at    past it, a ready, scheduled or running job is dead ('expired'); NULL = never
--   dedup_key     unique among the queue's live jobs; NULL = none
--   claims        claims so far; unlike attempts, never decremented (a release gives the attempt
--                 back, not the claim), and carried through the dead letters
--   lease_token   fencing token of the current claim (running only): the claim count times 2^40
--                 plus 40 random bits (since 0.1 stage 2; the first builds used (id << 24) +
--                 claims, which a rolled-back claim handed out again), so unique per claim and
--                 never reused, computed in the claim's own UPDATE without writing any other row
--   lease_expires end of the current lease (running only)
--   worker        who holds the lease (running only)
--   last_error    the error of the last retry, if any
--   created_ms    when the job was enqueued
--
-- Why a separate 'scheduled' state instead of one index on (queue, priority, run_at) with a
-- `run_at <= now` filter: such an index is ordered by priority first, so the due filter cannot
-- bound the walk; with many high-priority jobs scheduled in the future, every claim would step
-- over all of them before reaching a due lower-priority job (cost grows with the schedule).
-- Instead, only due jobs are in the ready index, whose order is exactly the claim order, so a
-- claim of n reads n index entries. Future jobs sit in the scheduled index ordered by run_at; a
-- claim first promotes the due ones (a range at the start of that index, bounded per claim), and
-- the promotion cost is paid once per job, not once per claim.
CREATE TABLE honker_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    state         INTEGER NOT NULL,
    payload       TEXT    NOT NULL,
    priority      INTEGER NOT NULL,
    run_at        INTEGER NOT NULL,
    attempts      INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    expires_at    INTEGER,
    dedup_key     TEXT,
    lease_token   INTEGER,
    lease_expires INTEGER,
    worker        TEXT,
    last_error    TEXT,
    created_ms    INTEGER NOT NULL,
    claims        INTEGER NOT NULL DEFAULT 0
);
-- The claim: the first n entries of the queue's range, already in claim order
-- (priority DESC, run_at ASC, then the implicit rowid = id ASC).
CREATE INDEX honker_jobs_ready ON honker_jobs (queue, priority DESC, run_at) WHERE state = 0;
-- Promotion of due scheduled jobs, and the next run_at for a sleeping worker.
CREATE INDEX honker_jobs_scheduled ON honker_jobs (queue, run_at) WHERE state = 1;
-- Reclaiming expired leases, and the next lease expiry for a sleeping worker.
CREATE INDEX honker_jobs_leases ON honker_jobs (queue, lease_expires) WHERE state = 2;
-- Expiring jobs past expires_at; only jobs that have one are indexed.
CREATE INDEX honker_jobs_expiry ON honker_jobs (queue, expires_at) WHERE expires_at IS NOT NULL;
-- Dedup keys are unique among live jobs (acked and dead jobs have left this table).
CREATE UNIQUE INDEX honker_jobs_dedup ON honker_jobs (queue, dedup_key) WHERE dedup_key IS NOT NULL;

-- honker_dead: dead letters, keyed by the job's id (a requeue puts the job back under its id).
--   id, queue, payload, priority, max_attempts, dedup_key, created_ms: as in honker_jobs
--   attempts   attempts used when it died
--   reason     'attempts exhausted', 'expired' or 'failed'
--   last_error the last error recorded
--   died_ms    when it died; retention and purges go by it
--   claims     claims so far, restored on requeue so lease tokens are never reused
CREATE TABLE honker_dead (
    id           INTEGER PRIMARY KEY,
    queue        TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    dedup_key    TEXT,
    reason       TEXT    NOT NULL,
    last_error   TEXT,
    created_ms   INTEGER NOT NULL,
    died_ms      INTEGER NOT NULL,
    claims       INTEGER NOT NULL DEFAULT 0
);
-- Listing, purge by age and the automatic retention, per queue; claims never read this table.
CREATE INDEX honker_dead_by_queue ON honker_dead (queue, died_ms);

-- honker_history: acked jobs of queues that keep a history (keep_history_ms > 0), keyed by the
-- job's id. Bounded in time: every ack into it deletes up to two rows of its queue older than the
-- queue's keep_history_ms, so no sweep runs on a hot path.
--   id, queue, payload, priority, attempts, max_attempts, created_ms: as in honker_jobs
--   worker  who acked it
--   done_ms when it was acked
CREATE TABLE honker_history (
    id           INTEGER PRIMARY KEY,
    queue        TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    priority     INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    worker       TEXT,
    created_ms   INTEGER NOT NULL,
    done_ms      INTEGER NOT NULL
);
CREATE INDEX honker_history_by_queue ON honker_history (queue, done_ms);

-- honker_results: a job's result, saved in the same transaction as its ack.
--   job_id     the job
--   value      JSON text
--   created_ms when it was saved
--   expires_ms when it stops being readable (and may be deleted); NULL = kept
CREATE TABLE honker_results (
    job_id     INTEGER PRIMARY KEY,
    value      TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER
);
CREATE INDEX honker_results_by_expiry ON honker_results (expires_ms) WHERE expires_ms IS NOT NULL;

-- honker_locks: named locks with fencing tokens. A row is kept after release so the token keeps
-- growing: every acquire of a name gets a larger token than any before it.
--   name       the lock's name
--   owner      who holds it (NULL when released)
--   token      fencing token of the latest acquire
--   expires_ms the lock is free from then on (0 when released)
CREATE TABLE honker_locks (
    name       TEXT    PRIMARY KEY NOT NULL,
    owner      TEXT,
    token      INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);

-- honker_rate_limits: fixed-window counters shared across processes.
--   name         the limit's name
--   per_ms       window length
--   window_start start of the current window (a multiple of per_ms)
--   count        calls admitted in the current window (refused calls are not counted)
CREATE TABLE honker_rate_limits (
    name         TEXT    PRIMARY KEY NOT NULL,
    per_ms       INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL
);
