//! The honker schema: every `honker_*` table and index, versioned in `honker_meta` and created or
//! upgraded by ordered migrations.
//!
//! honker-core owns all DDL; leaf crates own the operations on it. honker never touches
//! `PRAGMA user_version`, which belongs to the application.

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};

/// The newest schema version this build knows: the version of the last migration.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// One step of the schema's history.
#[derive(Debug)]
struct Migration {
    version: i64,
    what: &'static str,
    sql: &'static str,
}

/// Ordered; each is applied once, inside the same transaction that records its version.
/// Migrations never drop user rows. Each one's DDL lives in `schema/v<N>_<what>.sql`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "metadata and pub/sub notifications",
        sql: include_str!("schema/v1_pubsub.sql"),
    },
    Migration {
        version: 2,
        what: "job queue: options, jobs, dead letters, results, locks, rate limits",
        sql: include_str!("schema/v2_queue.sql"),
    },
    Migration {
        version: 3,
        what: "durable streams, consumer offsets, topic policies",
        sql: include_str!("schema/v3_streams.sql"),
    },
    Migration {
        version: 4,
        what: "cron schedules and fires",
        sql: include_str!("schema/v4_cron.sql"),
    },
    Migration {
        version: 5,
        what: "why a cron schedule was paused by a tick",
        sql: include_str!("schema/v5_cron_errors.sql"),
    },
    Migration {
        version: 6,
        what: "the liveness holder of a running job",
        sql: include_str!("schema/v6_holders.sql"),
    },
    Migration {
        version: 7,
        what: "no created_ms index on notifications or events, no holder index on jobs (fewer pages per write)",
        sql: include_str!("schema/v7_fewer_pages.sql"),
    },
    Migration {
        version: 8,
        what: "claimers stored once, a running job names its claimer by id",
        sql: include_str!("schema/v8_claimers.sql"),
    },
];

/// The schema version recorded in the database, or `None` if honker was never set up in it.
///
/// # Errors
///
/// [`Error::NotHonker`] when `honker_*` objects exist that honker did not create.
pub fn schema_version(conn: &Connection) -> Result<Option<i64>> {
    // One statement, so one snapshot: another process may be migrating right now, and two
    // separate looks could see "no honker_meta" and then "honker_* tables".
    let names: Vec<String> = conn
        .prepare_cached(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'honker\\_%' ESCAPE '\\'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !names.iter().any(|n| n == "honker_meta") {
        return match names.first() {
            Some(name) => Err(Error::NotHonker {
                detail: format!("{name:?} exists but honker_meta does not"),
            }),
            None => Ok(None),
        };
    }
    let value: Option<rusqlite::types::Value> = conn
        .prepare_cached("SELECT value FROM honker_meta WHERE key = 'schema_version'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(|e| Error::NotHonker {
            detail: format!("honker_meta has an unexpected shape: {e}"),
        })?;
    match value {
        Some(rusqlite::types::Value::Integer(v)) if v >= 1 => Ok(Some(v)),
        Some(other) => Err(Error::NotHonker {
            detail: format!("honker_meta.schema_version is {other:?}, not a version number"),
        }),
        None => Err(Error::NotHonker {
            detail: "honker_meta has no schema_version".into(),
        }),
    }
}

/// Create or upgrade the honker schema; returns the version now in the database.
///
/// Safe to call from many processes at once: each migration runs in one `BEGIN IMMEDIATE` that
/// re-reads the version, so it is applied exactly once and every caller succeeds. Inside an open
/// transaction it runs under a savepoint of that transaction instead.
///
/// # Errors
///
/// [`Error::SchemaTooNew`] for a file migrated by a newer build, [`Error::ReadOnly`] when the
/// schema needs work but the file cannot be written, [`Error::NotHonker`] for foreign `honker_*`
/// objects, [`Error::Busy`] when the write lock stays taken past the busy timeout.
pub fn migrate(conn: &Connection) -> Result<i64> {
    match schema_version(conn)? {
        Some(v) if v == SCHEMA_VERSION => return Ok(v),
        Some(v) if v > SCHEMA_VERSION => return Err(too_new(v)),
        _ => {}
    }
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(Error::ReadOnly {
            path: conn.path().unwrap_or_default().into(),
            reason: format!(
                "the honker schema must be created or upgraded to version {SCHEMA_VERSION}"
            ),
        });
    }
    crate::conn::write_atomically(conn, |conn| {
        // Re-check under the write lock: another process may have migrated meanwhile.
        let current = schema_version(conn)?.unwrap_or(0);
        if current > SCHEMA_VERSION {
            return Err(too_new(current));
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            conn.execute_batch(m.sql).map_err(|e| Error::NotHonker {
                detail: format!("migration {} ({}) failed: {e}", m.version, m.what),
            })?;
        }
        conn.execute(
            "INSERT INTO honker_meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [SCHEMA_VERSION],
        )?;
        Ok(SCHEMA_VERSION)
    })
}

fn too_new(found: i64) -> Error {
    Error::SchemaTooNew {
        found,
        supported: SCHEMA_VERSION,
    }
}

/// Read a setting from `honker_meta`, or `None` if unset.
///
/// # Errors
///
/// SQLite errors.
pub fn meta_get(conn: &Connection, key: &str) -> Result<Option<rusqlite::types::Value>> {
    Ok(conn
        .prepare_cached("SELECT value FROM honker_meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// Write a setting to `honker_meta` (in the caller's transaction, if any).
///
/// # Errors
///
/// SQLite errors.
pub fn meta_set(conn: &Connection, key: &str, value: impl rusqlite::ToSql) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO honker_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(rusqlite::params![key, value])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_end_at_schema_version() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<i64> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
    }

    /// Every object's DDL, as SQLite stores it, sorted.
    fn ddl(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn a_file_at_every_older_version_upgrades_to_the_fresh_schema() {
        let fresh = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&fresh).unwrap(), SCHEMA_VERSION);
        for old in 1..SCHEMA_VERSION {
            // A file as a build of version `old` left it.
            let conn = Connection::open_in_memory().unwrap();
            for m in MIGRATIONS.iter().filter(|m| m.version <= old) {
                conn.execute_batch(m.sql).unwrap();
            }
            meta_set(&conn, "schema_version", old).unwrap();
            meta_set(&conn, "an_app_setting", "kept").unwrap();
            assert_eq!(migrate(&conn).unwrap(), SCHEMA_VERSION, "from {old}");
            assert_eq!(ddl(&conn), ddl(&fresh), "upgraded from version {old}");
            assert_eq!(
                meta_get(&conn, "an_app_setting").unwrap(),
                Some(rusqlite::types::Value::Text("kept".into()))
            );
        }
    }

    #[test]
    fn every_object_is_prefixed_honker() {
        let conn = Connection::open_in_memory().unwrap();
        for m in MIGRATIONS {
            conn.execute_batch(m.sql).unwrap();
        }
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
            .unwrap();
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(!names.is_empty());
        for n in names {
            assert!(n.starts_with("honker_"), "{n} is not prefixed honker_");
        }
    }
}
