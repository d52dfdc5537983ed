-- Schema version 1: metadata and pub/sub notifications.
CREATE TABLE honker_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value ANY
);
-- AUTOINCREMENT: ids are never reused, even after the newest row is pruned, so a listener's
-- `after_id` can never skip a notification that reuses an old id.
CREATE TABLE honker_notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel    TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX honker_notifications_by_channel ON honker_notifications (channel, id);
CREATE INDEX honker_notifications_by_created ON honker_notifications (created_ms);
