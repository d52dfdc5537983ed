-- Schema version 8: a claim writes one small integer into each job's row where it wrote two
-- strings.
--
-- Up to v7 every claim wrote the claimer's name (honker_jobs.worker, such as `pid4242-w0`) and
-- its liveness holder (honker_jobs.holder, `<pid>-<8 base-32 digits>`) into the row of each job
-- it took: about 25 bytes more per row, in leaf pages the enqueues had left full, so claims kept
-- splitting pages. Now each (worker, holder) pair is stored once, here, and a claim writes its id.
--
-- honker_claimers.worker  TEXT     the name a claim was made under
-- honker_claimers.holder  TEXT     the liveness holder of the claiming process, '' when it had no
--                                  lock file (its jobs come back at lease expiry only)
-- honker_jobs.claimer     INTEGER  the claimer of a running job (NULL otherwise); its worker and
--                                  holder are honker_claimers' (honker_jobs.worker and .holder stay
--                                  for jobs claimed by older builds, and are NULL otherwise)
--
-- A row is added by the first claim of a (worker, holder) pair and removed once its holder's
-- process is gone and no running job names it; ids are never reused.
CREATE TABLE honker_claimers (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    holder TEXT NOT NULL,
    UNIQUE (worker, holder)
);
ALTER TABLE honker_jobs ADD COLUMN claimer INTEGER;
