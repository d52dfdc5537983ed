-- Schema version 7: fewer pages written by every notify, publish, claim and ack.
--
-- honker_notifications_by_created is dropped: each notify wrote a leaf of it besides the table's
-- and (channel, id)'s, only for the prune by age. Ids grow with time, so that prune now walks the
-- table in id order from the oldest row up to the first row young enough to keep (it visits only
-- rows it deletes, and one more).
DROP INDEX IF EXISTS honker_notifications_by_created;

-- honker_jobs_holders is dropped: every claim and every ack wrote an entry of it, only for the
-- look for dead holders, which now passes over the running jobs (the leases index) at most once
-- per 20 ms per process (honker_core::liveness::due).
DROP INDEX IF EXISTS honker_jobs_holders;

-- honker_streams_by_topic_created is dropped for the same reason as the notifications' index:
-- each publish wrote a leaf of it, only for the trim by age, which now walks the topic's offsets
-- (honker_streams_by_topic) from the oldest up to the first event young enough to keep.
DROP INDEX IF EXISTS honker_streams_by_topic_created;
