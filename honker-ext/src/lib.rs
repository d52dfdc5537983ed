//! libhonker_ext.so: every honker SQL function as one SQLite loadable extension.
//!
//! Load it into any SQLite host (3.38.0 or newer) and the connection gets honker's SQL surface:
//! Postgres-style `NOTIFY`/`LISTEN`, at-least-once job queues, durable streams with consumer
//! offsets and cron schedules, with cross-process wake-ups, on the connection's own database file,
//! with no daemon.
//!
//! # Loading
//!
//! In the `sqlite3` shell (the suffix is optional; SQLite adds `.so`/`.dylib`/`.dll`):
//!
//! ```text
//! sqlite> .load ./libhonker_ext
//! sqlite> SELECT honker_version();
//! ```
//!
//! From SQL, on a connection where the application enabled extension loading
//! (`sqlite3_enable_load_extension` or `SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION`):
//!
//! ```text
//! SELECT load_extension('/path/to/libhonker_ext');
//! ```
//!
//! Both entry points are exported: the default `sqlite3_extension_init` and the name SQLite
//! derives from the file name, `sqlite3_honkerext_init`.
//!
//! At load the extension:
//!
//! 1. refuses hosts older than SQLite **3.38.0** with `honker: ext.sqlite_too_old: ...` (see
//!    [Version floor](#version-floor));
//! 2. registers the functions below on the loading connection only (load it on every connection
//!    that needs them);
//! 3. creates or migrates the honker schema when the main database is a writable file (skipped for
//!    `:memory:`, temporary and read-only databases; a read-only file still loads, and writes then
//!    fail with `db.read_only`). A migration that finds the write lock taken retries for up to
//!    5 seconds; any other migration error (`schema.too_new`, `db.not_honker`) fails the load;
//! 4. stays loaded for the life of the process (`SQLITE_OK_LOAD_PERMANENTLY`): the process-wide
//!    wake watcher is a thread running code from this library, so SQLite must never `dlclose` it
//!    when the loading connection closes.
//!
//! The extension never installs hooks (`update_hook`, `commit_hook`, ...) on the host's connection
//! and never changes its pragmas: those belong to the application. Use WAL
//! (`PRAGMA journal_mode=WAL`) so listeners and writers in other processes do not block each other:
//! in a rollback-journal mode (DELETE, TRUNCATE, PERSIST) the wake watcher's `data_version` poll
//! takes a brief SHARED lock every millisecond while someone waits, and a writer with no busy
//! timeout (the `sqlite3` shell's default) can then fail with "database is locked". Give writers a
//! busy timeout (`PRAGMA busy_timeout = 5000`, `.timeout 5000`) in those modes.
//!
//! # SQL functions
//!
//! Ids and times are INTEGER, payloads and options are JSON text. Functions that return rows
//! return a JSON array of objects with the payload embedded as JSON.
//!
//! | function | returns |
//! |---|---|
//! | `honker_version()` | the extension's version, TEXT |
//! | `honker_migrate()` | create or upgrade the schema; the schema version now, INTEGER |
//! | `honker_epoch()` | the wake epoch of this database file, INTEGER; starts the process's watcher for the file if needed |
//! | `honker_wait(epoch, timeout_ms)` | blocks until the epoch is past `epoch` or `timeout_ms` passes; the epoch then |
//! | `honker_notify(channel, payload)` | publishes `payload` (JSON) on `channel` in the caller's transaction; the notification id |
//! | `notify(channel, payload)` | alias of `honker_notify` |
//! | `honker_listen(channel, after_id, limit)` | up to `limit` notifications of `channel` with `id > after_id`: `[{"id":..,"channel":..,"payload":<JSON>,"created_ms":..}]` |
//! | `honker_listen_wait(channel, after_id, limit, timeout_ms)` | as `honker_listen`, blocking until one arrives; `[]` at the timeout |
//! | `honker_notify_prune([options])` | deletes old notifications; options `{"max_age_ms":..,"max_rows":..}`, missing keys use the retention stored in `honker_meta`; rows deleted |
//! | `honker_wake_backend([name])` | the wake backend of this process (`data_version`, `stat`, `kernel`); with a name, selects it (before the first `honker_epoch`) |
//! | `honker_queue_configure(queue, options)` | stores per-queue options (lease, attempts, backoff, retention, payload limit, paused, history); the options as JSON |
//! | `honker_enqueue(queue, payload[, options])`, `honker_enqueue_batch(queue, payloads[, options])` | enqueues in the caller's transaction (`delay_ms` or `run_at_ms`, `priority`, `max_attempts`, `expires_*`, `dedup_key`); the job id(s) |
//! | `honker_claim(queue, worker, n[, lease_ms])`, `honker_claim_wait(queue, worker, n, lease_ms, timeout_ms)` | claims up to `n` due jobs, each with a fencing `lease_token`: `[{"id","payload":<JSON>,"attempts","lease_token","lease_expires_ms",..}]` |
//! | `honker_ack`, `honker_ack_batch`, `honker_retry`, `honker_release`, `honker_fail`, `honker_heartbeat`, `honker_cancel` | settle a claimed job by `(job_id, lease_token)`; a stale token gets `queue.lease_lost` |
//! | `honker_job`, `honker_queue_stats`, `honker_next_due`, `honker_dead_list`, `honker_dead_requeue`, `honker_dead_requeue_all`, `honker_dead_purge` | job lookup, per-queue stats and next due time, dead letters |
//! | `honker_result_save`, `honker_result_get` | a job's result (saved in the ack's transaction, optional TTL) |
//! | `honker_lock_acquire`, `honker_lock_renew`, `honker_lock_release`, `honker_rate_limit` | named locks with fencing tokens; fixed-window rate limits |
//! | `honker_publish(topic, payload[, key])`, `honker_read`, `honker_read_wait` | durable streams: the offset; events after an offset (blocking variant) |
//! | `honker_commit_offset`, `honker_offset`, `honker_consumers`, `honker_consumer_remove`, `honker_stream_trim`, `honker_stream_configure`, `honker_streams` | consumer offsets (monotonic, in the caller's transaction), lag, retention |
//! | `honker_schedule`, `honker_unschedule`, `honker_schedule_pause`, `honker_schedule_resume`, `honker_schedules`, `honker_cron_next`, `honker_cron_tick` | cron schedules in IANA time zones, fired into a queue without a leader |
//!
//! Each crate's `sql` module documents its functions' arguments and results in full
//! (`honker_queue::sql`, `honker_stream::sql`, `honker_cron::sql`, `honker_wake::sql`).
//!
//! The blocking functions (`honker_wait`, `honker_listen_wait`) hold no read transaction while
//! they sleep, so checkpoints and writers in every process proceed, and refuse to run inside an
//! open transaction (`wait.in_transaction`): a transaction's snapshot would hide the commit being
//! waited for. Call them in a statement that reads no table, with the ids bound as parameters
//! (`SELECT honker_listen_wait(?1, ?2, 100, 30000)`): a statement that reads a table
//! (`... FROM t` or a scalar subquery) holds its own read transaction until it finishes, and the
//! function cannot release that for it.
//!
//! # Errors
//!
//! Every error a honker function raises has the message `honker: <code>: <message>`, where `<code>`
//! is stable and machine-readable (`arg.invalid`, `payload.not_json`, `payload.too_large`,
//! `options.unknown`, `wait.in_transaction`, `db.read_only`, `db.full`, `schema.too_new`,
//! `db.not_file`, `wake.*`, ...), so bindings map errors without parsing prose. `SQLITE_BUSY` and
//! `SQLITE_LOCKED` pass through untouched (SQLite's own code and message, `database is locked`),
//! so hosts retry them as they would any busy statement. A panic never crosses into the host: the
//! entry point and every function callback catch it and return an SQLite error.
//!
//! # Version floor
//!
//! The host's SQLite must be **3.38.0** or newer:
//!
//! - 3.38.0 made the JSON functions (`json_extract`, `json_each`, `->>`) built in; before it they
//!   were the optional JSON1 extension, which hosts could omit;
//! - honker's writes use `RETURNING` (3.35.0) and `ON CONFLICT ... DO UPDATE` upserts (3.24.0).
//!
//! The check reads `sqlite3_libversion_number()` straight from the host's API table before
//! anything else is touched, so an older host, including one older than the 3.34.1 that the
//! Rust bindings were generated for, gets a clean `honker: ext.sqlite_too_old: ...` load error
//! and never an abort. (rusqlite's own check for hosts older than its bindings allocates its error
//! message through a routine it has not yet bound, which would panic; honker's check runs first.)
//!
//! For tests only, the environment variable `HONKER_EXT_MIN_SQLITE_FOR_TESTS` (a version number
//! such as `3099000`) *raises* the floor, so the refusal path can be exercised on a current host.
//! It can never lower the floor.
//!
//! # Known limitations
//!
//! - Every process must be on the same host, and the file must not live on a network file system
//!   or a Docker bind mount from another kernel: cross-process wakes and WAL need shared memory.
//! - Load the extension into one SQLite library per process. It calls only the host's SQLite,
//!   never a second copy, because two SQLite copies in one process do not share POSIX lock
//!   bookkeeping for a file.
#![warn(missing_docs)]

mod init;

use std::ffi::{c_char, c_int};

use rusqlite::ffi;

/// The entry point SQLite looks for when `load_extension` names no entry point and the file name
/// gives none (`sqlite3_extension_init`).
///
/// # Safety
///
/// Called only by SQLite's extension loader, with the connection being loaded into, the error
/// message out-pointer and the host's API routines.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: the caller is SQLite's loader, which passes exactly these three pointers.
    unsafe { init::entry(db, pz_err_msg, p_api) }
}

/// The entry point SQLite derives from the file name `libhonker_ext.so` (`sqlite3_honkerext_init`).
///
/// # Safety
///
/// As [`sqlite3_extension_init`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_honkerext_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: the caller is SQLite's loader, which passes exactly these three pointers.
    unsafe { init::entry(db, pz_err_msg, p_api) }
}
