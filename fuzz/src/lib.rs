//! What the SQL fuzz targets share: a wake provider that never blocks, and the database file one
//! fuzzing process works on.
#![warn(missing_docs)]

use std::path::Path;
use std::sync::Arc;

use honker_core::{ManualWake, WakeError, WakeProvider, WakeSource};
use rusqlite::Connection;

/// Hands out a fresh [`ManualWake`] for every file: the blocking SQL functions then wait only
/// for their timeout, never for a watcher thread.
#[derive(Debug)]
pub struct ManualWakes;

impl WakeProvider for ManualWakes {
    fn wake_for(&self, _db_path: &Path) -> Result<Arc<dyn WakeSource>, WakeError> {
        Ok(Arc::new(ManualWake::new()))
    }
}

/// A honker database in a new temporary directory, opened and migrated by `honker_core::open`.
///
/// One per fuzzing process: honker needs a file, and opening one per input would measure file
/// creation rather than the functions. Keep the directory alive as long as the connection.
///
/// # Panics
///
/// When the directory or the database cannot be created.
pub fn temp_db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = honker_core::open(dir.path().join("fuzz.db")).expect("open");
    (dir, conn)
}

/// Whether honker takes `payload`: an oracle written apart from `check_json`. It is what
/// serde_json parses into a `Value` (numbers in a double's range, no lone surrogates), nested
/// at most `MAX_PAYLOAD_DEPTH` levels, and no larger than the default limit.
pub fn payload_ok(payload: &str) -> bool {
    use honker_core::payload::{DEFAULT_MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH};
    use serde_json::Value;
    fn depth(v: &Value) -> u32 {
        match v {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    payload.len() <= DEFAULT_MAX_PAYLOAD_BYTES
        && serde_json::from_str::<Value>(payload).is_ok_and(|v| depth(&v) <= MAX_PAYLOAD_DEPTH)
}
