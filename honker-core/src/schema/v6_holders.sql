-- Schema version 6: a running job names the process that holds it, so a claimer on the same host
-- can tell a dead holder (its liveness lock is free) from a slow one (honker_core::liveness).
--
-- honker_jobs.holder  TEXT  `<pid>-<64 random bits>` of the process whose claim holds the job
--                           (running only, set by the claim); the process holds an exclusive
--                           lock on `<db file>-honker-live-<holder>` beside the database for as
--                           long as it lives. NULL when the claimer could not create its lock
--                           file (a read-only directory) or is an older build: such jobs come
--                           back at lease expiry only.
ALTER TABLE honker_jobs ADD COLUMN holder TEXT;
-- A dead holder's jobs, in every queue, are found through this index.
CREATE INDEX honker_jobs_holders ON honker_jobs (holder) WHERE state = 2 AND holder IS NOT NULL;
