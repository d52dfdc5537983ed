-- Schema version 7: one page fewer written by every notify.
--
-- honker_notifications_by_created is dropped: each notify wrote a leaf of it besides the table's
-- and (channel, id)'s, only for the prune by age. Ids grow with time, so that prune now walks the
-- table in id order from the oldest row up to the first row young enough to keep (it visits only
-- rows it deletes, and one more).
DROP INDEX IF EXISTS honker_notifications_by_created;
