//! `honker_info()`: what a user should know about a database file and this process's wake set-up,
//! in one JSON object (the `honker info` command shows the same).

use rusqlite::Connection;
use serde_json::json;

use crate::Hub;

/// What `honker_info()` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// This build's version.
    pub version: &'static str,
    /// The file's schema version, `None` before the first migration.
    pub schema_version: Option<i64>,
    /// The newest schema version this build knows.
    pub schema_supported: i64,
    /// `PRAGMA journal_mode`, lower case.
    pub journal_mode: String,
    /// What a journal mode other than WAL costs, `None` for WAL.
    pub journal_note: Option<&'static str>,
    /// The backend this process's Hub starts watchers with.
    pub wake_backend: &'static str,
    /// Why that backend: the platform's default, `HONKER_WAKE_BACKEND`, the program, or the
    /// reason the platform's default could not start.
    pub wake_backend_reason: String,
    /// Whether Litestream's tables (`_litestream_seq`) are in the file: it is, or was, replicated
    /// by Litestream.
    pub litestream: bool,
    /// `None` when claims on this file carry a liveness holder (a dead worker's jobs come back at
    /// once); otherwise why not (they come back at lease expiry).
    pub liveness_unavailable: Option<String>,
}

/// Advice for a file that Litestream replicates.
pub const LITESTREAM_NOTE: &str = "Litestream's tables are in this file (it is or was replicated): never run PRAGMA wal_checkpoint(TRUNCATE), RESTART or FULL from the application under Litestream (each waits out the busy timeout for Litestream's read transaction, blocks writers and checkpoints nothing; PASSIVE is fine); a restore loses at most the sync interval, and jobs acked after it run again";

/// Gather [`Info`] for `conn`'s database.
///
/// # Errors
///
/// SQLite's error reading the schema or the journal mode.
pub fn info(conn: &Connection) -> honker_core::Result<Info> {
    let journal_mode: String = conn
        .prepare_cached("PRAGMA journal_mode")?
        .query_row([], |r| r.get::<_, String>(0))?
        .to_ascii_lowercase();
    let litestream: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_litestream_seq')",
        )?
        .query_row([], |r| r.get(0))?;
    let choice = Hub::global().backend_choice();
    Ok(Info {
        version: honker_core::VERSION,
        schema_version: honker_core::schema::schema_version(conn)?,
        schema_supported: honker_core::schema::SCHEMA_VERSION,
        journal_note: honker_core::journal_mode_note(&journal_mode),
        journal_mode,
        wake_backend: choice.as_ref().map_or("unknown", |(b, _)| b.name()),
        wake_backend_reason: match choice {
            Ok((_, why)) => why,
            Err(e) => e.to_string(),
        },
        litestream,
        liveness_unavailable: honker_core::db_file(conn)
            .ok()
            .and_then(|p| honker_core::liveness::can_lock(&p).err()),
    })
}

impl Info {
    /// The JSON object `honker_info()` returns.
    pub fn to_json(&self) -> String {
        json!({
            "version": self.version,
            "schema_version": self.schema_version,
            "schema_supported": self.schema_supported,
            "journal_mode": self.journal_mode,
            "journal_note": self.journal_note,
            "wake_backend": self.wake_backend,
            "wake_backend_reason": self.wake_backend_reason,
            "litestream": self.litestream,
            "litestream_note": self.litestream.then_some(LITESTREAM_NOTE),
            "liveness": match &self.liveness_unavailable {
                None => "a dead worker's jobs come back at once (liveness lock files beside the database)".to_owned(),
                Some(why) => format!("unavailable, a dead worker's jobs come back at lease expiry: {why}"),
            },
        })
        .to_string()
    }
}
