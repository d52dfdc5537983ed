-- Schema version 4: cron schedules and their fires (honker-cron).
--
-- honker_schedules: one row per named schedule.
--   name          TEXT PK   the schedule's name (register upserts by it)
--   expr          TEXT      cron expression or `@every <n><unit>`, as given
--   tz            TEXT      IANA zone the cron fields are matched in ('UTC' by default)
--   queue         TEXT      queue a fire enqueues into
--   payload       TEXT      JSON payload of every fired job
--   priority      INTEGER   priority of every fired job
--   max_attempts  INTEGER   max attempts of every fired job (NULL: the queue's default)
--   misfire       TEXT      'skip' | 'once' | 'all': what to do with boundaries missed while
--                           nothing ticked
--   misfire_cap   INTEGER   under 'all', at most this many missed boundaries fire (the latest)
--   grace_ms      INTEGER   a boundary ticked later than this (or after its successor) is missed
--   overlap       TEXT      'allow' | 'skip': skip a boundary while the previous fire's job is
--                           still pending or running
--   max_runs      INTEGER   stop after this many fired jobs (NULL: no limit)
--   end_at_ms     INTEGER   no boundary after this instant fires (NULL: no end)
--   paused        INTEGER   1 while paused: boundaries passing meanwhile are misfires on resume
--   next_fire_ms  INTEGER   the next boundary to consider (NULL: finished)
--   runs          INTEGER   jobs fired so far
--   last_fire_ms  INTEGER   boundary of the last fire (NULL: none yet)
--   last_job_id   INTEGER   job of the last fire (overlap = 'skip' looks at it)
--   created_ms, updated_ms  INTEGER
CREATE TABLE honker_schedules (
    name         TEXT    PRIMARY KEY NOT NULL,
    expr         TEXT    NOT NULL,
    tz           TEXT    NOT NULL DEFAULT 'UTC',
    queue        TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER,
    misfire      TEXT    NOT NULL DEFAULT 'skip' CHECK (misfire IN ('skip', 'once', 'all')),
    misfire_cap  INTEGER NOT NULL DEFAULT 100,
    grace_ms     INTEGER NOT NULL DEFAULT 60000,
    overlap      TEXT    NOT NULL DEFAULT 'allow' CHECK (overlap IN ('allow', 'skip')),
    max_runs     INTEGER,
    end_at_ms    INTEGER,
    paused       INTEGER NOT NULL DEFAULT 0,
    next_fire_ms INTEGER,
    runs         INTEGER NOT NULL DEFAULT 0,
    last_fire_ms INTEGER,
    last_job_id  INTEGER,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
);
-- A tick reads only the due, unpaused schedules, earliest first; a scheduler's deadline is the
-- first entry. Cost does not grow with the number of schedules that are not due.
CREATE INDEX honker_schedules_by_next ON honker_schedules (paused, next_fire_ms);

-- honker_fires: one row per fired boundary, the cron dedup key. A fire inserts this row in the
-- same transaction as the job it enqueues, so the primary key makes a second fire of one
-- boundary impossible, whatever number of processes tick.
--   schedule     TEXT      schedule name
--   fire_ms      INTEGER   the boundary (not the time it was fired at)
--   fired_at_ms  INTEGER   when the tick that fired it ran
--   job_id       INTEGER   the job enqueued (NULL when overlap = 'skip' suppressed it)
CREATE TABLE honker_fires (
    schedule    TEXT    NOT NULL,
    fire_ms     INTEGER NOT NULL,
    fired_at_ms INTEGER NOT NULL,
    job_id      INTEGER,
    PRIMARY KEY (schedule, fire_ms)
) WITHOUT ROWID;
-- Retention deletes by age.
CREATE INDEX honker_fires_by_fired ON honker_fires (fired_at_ms);
