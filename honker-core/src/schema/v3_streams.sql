-- Schema version 3: durable streams, consumer offsets and per-topic retention policies.
--
-- honker_streams: one row per published event.
--   offset      INTEGER PRIMARY KEY AUTOINCREMENT: the event's offset. Offsets are global (one
--               sequence shared by every topic), assigned in commit order (SQLite has one writer,
--               and the write lock is held from the insert to the commit), never reused even after
--               a trim. Within one topic they are strictly increasing but have gaps.
--   topic       TEXT NOT NULL: the topic published to.
--   key         TEXT: an optional key chosen by the publisher (NULL when none).
--   payload     TEXT NOT NULL: the event, as JSON text.
--   created_ms  INTEGER NOT NULL: publish time, milliseconds since the Unix epoch.
CREATE TABLE honker_streams (
    "offset"   INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT    NOT NULL,
    key        TEXT,
    payload    TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);
-- Reads after an offset, trims by count, lag counts: (topic, offset) ranges.
CREATE INDEX honker_streams_by_topic ON honker_streams (topic, "offset");
-- Trims by age: the newest event of a topic older than a cut-off.
CREATE INDEX honker_streams_by_topic_created ON honker_streams (topic, created_ms);

-- honker_consumers: one row per (topic, named consumer): a registered consumer.
--   topic       TEXT NOT NULL: the topic consumed.
--   consumer    TEXT NOT NULL: the consumer's name, unique per topic.
--   committed   INTEGER NOT NULL: the offset committed: every event at or below it is done.
--               Only ever increases. A trim that is not forced never removes an event above it.
--   updated_ms  INTEGER NOT NULL: when the offset last advanced (or the consumer registered).
CREATE TABLE honker_consumers (
    topic      TEXT    NOT NULL,
    consumer   TEXT    NOT NULL,
    committed  INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, consumer)
) WITHOUT ROWID;

-- honker_stream_topics: per-topic retention policy and trim watermark; a row exists once a
-- topic has a policy or has been trimmed.
--   topic            TEXT PRIMARY KEY: the topic.
--   max_age_ms       INTEGER: automatic trim keeps events younger than this (NULL: no age limit).
--   max_events       INTEGER: automatic trim keeps at most this many events (NULL: no count limit).
--   trimmed_through  INTEGER NOT NULL: every event of the topic at or below this offset has been
--                    trimmed; a read after an offset below it is refused with stream.trimmed.
CREATE TABLE honker_stream_topics (
    topic           TEXT    PRIMARY KEY NOT NULL,
    max_age_ms      INTEGER,
    max_events      INTEGER,
    trimmed_through INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
