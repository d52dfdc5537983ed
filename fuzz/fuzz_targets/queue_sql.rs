//! Fuzz the queue SQL functions' argument handling and the options parsers.
//!
//! An input is a bounded sequence of calls to the queue, dead-letter, result, lock and
//! rate-limit SQL functions with arguments of every SQLite type (NULL, INTEGER, REAL, TEXT,
//! BLOB; valid and invalid JSON, options objects with unknown keys or bad values, ids and tokens
//! near the ones in the table, tokens of earlier claims), plus direct calls of the options
//! parsers on arbitrary text. The target checks:
//!
//! - every failure is `honker: <code>: ...` with a code from the documented set (or
//!   `SQLITE_BUSY`, which passes through untouched), never another error or a panic;
//! - a refused call writes nothing: every queue table's content (leases and claim counts
//!   included) is unchanged;
//! - a successful `honker_enqueue` adds exactly one live job holding the payload as given, or
//!   returns the live job that holds its dedup key (and then writes nothing);
//! - a successful `honker_claim` hands out tokens never seen before, and every claimed job is
//!   running under that token;
//! - the parsers agree with a model: an object with a key outside the known set is
//!   `queue.unknown_option`, a non-object is `arg.invalid`, and an accepted queue options patch
//!   survives a round trip through `to_json`.
#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::Arbitrary;
use honker_queue::{EnqueueOptions, QueueOptions, QueueOptionsPatch};
use libfuzzer_sys::fuzz_target;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode};
use serde_json::Value as Json;

const MAX_OPS: usize = 24;
const MAX_JOBS_KEPT: i64 = 2_000;

const CODES: &[&str] = &[
    "arg.invalid",
    "payload.not_json",
    "payload.too_large",
    "queue.unknown_option",
    "queue.bad_option",
    "queue.bad_name",
    "queue.lease_lost",
    "queue.not_found",
    "queue.dedup_conflict",
    "wait.in_transaction",
];

const ENQUEUE_KEYS: &[&str] = &[
    "delay_ms",
    "run_at_ms",
    "priority",
    "max_attempts",
    "expires_at_ms",
    "expires_in_ms",
    "dedup_key",
];
const QUEUE_KEYS: &[&str] = &[
    "lease_ms",
    "max_attempts",
    "backoff_base_ms",
    "backoff_cap_ms",
    "dead_retention_ms",
    "max_payload_bytes",
    "paused",
    "keep_history_ms",
];

struct Db {
    _dir: tempfile::TempDir,
    conn: Connection,
    tokens: HashSet<i64>,
}

fn db() -> &'static Mutex<Db> {
    static DB: OnceLock<Mutex<Db>> = OnceLock::new();
    DB.get_or_init(|| {
        let (dir, conn) = honker_fuzz::temp_db();
        honker_queue::sql::register(&conn, Arc::new(honker_fuzz::ManualWakes)).expect("register");
        Mutex::new(Db {
            _dir: dir,
            conn,
            tokens: HashSet::new(),
        })
    })
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Func {
    Configure,
    Enqueue,
    EnqueueBatch,
    Claim,
    ClaimWait,
    Ack,
    AckBatch,
    Retry,
    Release,
    Fail,
    Heartbeat,
    Cancel,
    Job,
    Stats,
    NextDue,
    DeadList,
    DeadRequeue,
    DeadPurge,
    ResultSave,
    ResultGet,
    LockAcquire,
    LockRenew,
    LockRelease,
    RateLimit,
}

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Configure => "honker_queue_configure",
            Func::Enqueue => "honker_enqueue",
            Func::EnqueueBatch => "honker_enqueue_batch",
            Func::Claim => "honker_claim",
            Func::ClaimWait => "honker_claim_wait",
            Func::Ack => "honker_ack",
            Func::AckBatch => "honker_ack_batch",
            Func::Retry => "honker_retry",
            Func::Release => "honker_release",
            Func::Fail => "honker_fail",
            Func::Heartbeat => "honker_heartbeat",
            Func::Cancel => "honker_cancel",
            Func::Job => "honker_job",
            Func::Stats => "honker_queue_stats",
            Func::NextDue => "honker_next_due",
            Func::DeadList => "honker_dead_list",
            Func::DeadRequeue => "honker_dead_requeue",
            Func::DeadPurge => "honker_dead_purge",
            Func::ResultSave => "honker_result_save",
            Func::ResultGet => "honker_result_get",
            Func::LockAcquire => "honker_lock_acquire",
            Func::LockRenew => "honker_lock_renew",
            Func::LockRelease => "honker_lock_release",
            Func::RateLimit => "honker_rate_limit",
        }
    }

    fn arities(self) -> &'static [usize] {
        match self {
            Func::Configure => &[2],
            Func::Enqueue | Func::EnqueueBatch => &[2, 3],
            Func::Claim => &[3, 4],
            Func::ClaimWait => &[5],
            Func::Ack | Func::Release => &[2],
            Func::AckBatch | Func::Cancel | Func::Job | Func::Stats | Func::NextDue => &[1],
            Func::Retry => &[2, 3, 4],
            Func::Fail | Func::Heartbeat => &[3],
            Func::DeadList | Func::DeadPurge => &[1, 2],
            Func::DeadRequeue | Func::ResultGet => &[1],
            Func::ResultSave => &[2, 3],
            Func::LockAcquire | Func::LockRenew | Func::RateLimit => &[3],
            Func::LockRelease => &[2],
        }
    }

    /// Whether a successful call may write (so its effects are not checked as "nothing").
    fn writes(self) -> bool {
        !matches!(
            self,
            Func::Job | Func::Stats | Func::NextDue | Func::DeadList | Func::ResultGet
        )
    }
}

#[derive(Arbitrary, Debug)]
enum Arg {
    Null,
    Int(i64),
    Small(u8),
    Real(f64),
    Text(String),
    Queue(u8),
    /// A recent lease token (or one off from it).
    Token(i8),
    Json(JsonGen),
    EnqueueOpts(Vec<(u8, JsonGen)>, bool),
    QueueOpts(Vec<(u8, JsonGen)>, bool),
    Blob(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum JsonGen {
    Null,
    Bool(bool),
    Int(i64),
    Small(i16),
    Str(String),
    Arr(Vec<JsonGen>),
}

impl JsonGen {
    fn to_json(&self) -> Json {
        match self {
            JsonGen::Null => Json::Null,
            JsonGen::Bool(b) => Json::Bool(*b),
            JsonGen::Int(i) => Json::from(*i),
            JsonGen::Small(i) => Json::from(*i),
            JsonGen::Str(s) => Json::String(s.clone()),
            JsonGen::Arr(v) => Json::Array(v.iter().map(JsonGen::to_json).collect()),
        }
    }
}

fn options_object(pairs: &[(u8, JsonGen)], keys: &[&str], unknown: bool) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in pairs.iter().take(6) {
        map.insert(keys[*k as usize % keys.len()].to_owned(), v.to_json());
    }
    if unknown {
        map.insert("bogus".into(), Json::from(1));
    }
    Json::Object(map).to_string()
}

impl Arg {
    fn value(&self, last_token: i64) -> SqlValue {
        match self {
            Arg::Null => SqlValue::Null,
            Arg::Int(i) => SqlValue::Integer(*i),
            Arg::Small(i) => SqlValue::Integer(i64::from(*i)),
            Arg::Real(f) => SqlValue::Real(*f),
            Arg::Text(s) => SqlValue::Text(s.chars().take(300).collect()),
            Arg::Queue(i) => SqlValue::Text(["q", "r", "", "q\n"][*i as usize % 4].into()),
            Arg::Token(d) => SqlValue::Integer(last_token.saturating_add(i64::from(*d))),
            Arg::Json(j) => SqlValue::Text(j.to_json().to_string()),
            Arg::EnqueueOpts(p, u) => SqlValue::Text(options_object(p, ENQUEUE_KEYS, *u)),
            Arg::QueueOpts(p, u) => SqlValue::Text(options_object(p, QUEUE_KEYS, *u)),
            Arg::Blob(b) => SqlValue::Blob(b.iter().copied().take(64).collect()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    Call {
        func: Func,
        arity: u8,
        args: Vec<Arg>,
    },
    ParseEnqueue(String),
    ParseQueue(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    steps: Vec<Step>,
}

/// The state a refused call must leave untouched.
fn snapshot(conn: &Connection) -> String {
    conn.query_row(
        "SELECT (SELECT json_group_array(json_array(id, state, payload, priority, run_at, attempts,
                     max_attempts, expires_at, dedup_key, lease_token, lease_expires, last_error))
                 FROM honker_jobs)
             || (SELECT json_group_array(json_array(id, reason, attempts)) FROM honker_dead)
             || (SELECT json_group_array(json_array(job_id, value, expires_ms)) FROM honker_results)
             || (SELECT json_group_array(json_array(name, token, expires_ms)) FROM honker_locks)
             || (SELECT json_group_array(json_array(name, window_start, count)) FROM honker_rate_limits)
             || (SELECT json_group_array(json_array(name, lease_ms, paused)) FROM honker_queues)
             || (SELECT json_group_array(json_array(id, done_ms)) FROM honker_history)
             || (SELECT coalesce(sum(claims), 0) FROM honker_jobs)",
        [],
        |r| r.get(0),
    )
    .expect("snapshot")
}

fn check_error(e: &rusqlite::Error, what: &str) {
    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) {
        return;
    }
    let text = e.to_string();
    let code = text
        .strip_prefix("honker: ")
        .and_then(|rest| rest.split(": ").next())
        .unwrap_or_else(|| panic!("{what}: error without a honker code: {text}"));
    assert!(
        CODES.contains(&code),
        "{what}: unexpected code {code}: {text}"
    );
}

fn parse_model(text: &str, known: &[&str]) -> Option<&'static str> {
    if text.trim().is_empty() {
        return None;
    }
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(m)) if m.keys().any(|k| !known.contains(&k.as_str())) => {
            Some("queue.unknown_option")
        }
        Ok(Json::Object(_)) => None,
        _ => Some("arg.invalid"),
    }
}

fuzz_target!(|input: Input| {
    let mut guard = db().lock().unwrap_or_else(|p| p.into_inner());
    let db = &mut *guard;
    let conn = &db.conn;
    let jobs: i64 = conn
        .query_row("SELECT count(*) FROM honker_jobs", [], |r| r.get(0))
        .expect("count");
    if jobs > MAX_JOBS_KEPT {
        conn.execute_batch("DELETE FROM honker_jobs; DELETE FROM honker_dead;")
            .expect("wipe");
    }
    for step in input.steps.iter().take(MAX_OPS) {
        match step {
            Step::ParseEnqueue(text) => {
                let got = EnqueueOptions::from_json(text);
                match parse_model(text, ENQUEUE_KEYS) {
                    Some(code) => assert_eq!(got.unwrap_err().code(), code, "{text:?}"),
                    None => {
                        if let Ok(o) = got {
                            o.validate().expect("an accepted options object validates");
                        } else {
                            assert_eq!(got.unwrap_err().code(), "queue.bad_option", "{text:?}");
                        }
                    }
                }
            }
            Step::ParseQueue(text) => {
                let got = QueueOptionsPatch::from_json(text);
                match parse_model(text, QUEUE_KEYS) {
                    Some(code) => assert_eq!(got.unwrap_err().code(), code, "{text:?}"),
                    None => match got.map(|p| p.apply(&QueueOptions::default())) {
                        Ok(Ok(o)) => {
                            let back = QueueOptionsPatch::from_json(&o.to_json())
                                .expect("to_json parses")
                                .apply(&QueueOptions::default())
                                .expect("to_json validates");
                            assert_eq!(back, o);
                        }
                        Ok(Err(e)) | Err(e) => assert_eq!(e.code(), "queue.bad_option", "{text:?}"),
                    },
                }
            }
            Step::Call { func, arity, args } => {
                let arities = func.arities();
                let n = arities[*arity as usize % arities.len()];
                let last_token: i64 = conn
                    .query_row(
                        "SELECT coalesce(max(lease_token), 0) FROM honker_jobs",
                        [],
                        |r| r.get(0),
                    )
                    .expect("lease seq");
                let values: Vec<SqlValue> = (0..n)
                    .map(|i| args.get(i).map_or(SqlValue::Null, |a| a.value(last_token)))
                    .collect();
                // claim_wait must never block the fuzzer: cap its timeout.
                let mut values = values;
                if matches!(func, Func::ClaimWait) {
                    values[4] = SqlValue::Integer(0);
                }
                let placeholders = vec!["?"; n].join(", ");
                let sql = format!("SELECT {}({placeholders})", func.name());
                let before = snapshot(conn);
                let live_before: i64 = conn
                    .query_row("SELECT count(*) FROM honker_jobs", [], |r| r.get(0))
                    .expect("count");
                let got: rusqlite::Result<SqlValue> =
                    conn.query_row(&sql, rusqlite::params_from_iter(values.iter()), |r| {
                        r.get(0)
                    });
                match got {
                    Err(e) => {
                        check_error(&e, &format!("{sql} {values:?}"));
                        assert_eq!(snapshot(conn), before, "{sql} {values:?} failed but wrote");
                    }
                    Ok(v) => {
                        if !func.writes() {
                            assert_eq!(snapshot(conn), before, "{sql} read-only but wrote");
                        }
                        match (func, &v) {
                            (Func::Enqueue, SqlValue::Integer(id)) => {
                                let payload: String = conn
                                    .query_row(
                                        "SELECT payload FROM honker_jobs WHERE id = ?1",
                                        [id],
                                        |r| r.get(0),
                                    )
                                    .expect("the enqueued job is live");
                                let live: i64 = conn
                                    .query_row("SELECT count(*) FROM honker_jobs", [], |r| r.get(0))
                                    .expect("count");
                                if live == live_before {
                                    assert_eq!(snapshot(conn), before, "dedup hit wrote");
                                } else {
                                    assert_eq!(live, live_before + 1);
                                    assert_eq!(SqlValue::Text(payload), values[1]);
                                }
                            }
                            (Func::Claim | Func::ClaimWait, SqlValue::Text(t)) => {
                                let arr: Json = serde_json::from_str(t).expect("claim JSON");
                                for j in arr.as_array().expect("array") {
                                    let token = j["lease_token"].as_i64().expect("token");
                                    assert!(db.tokens.insert(token), "token {token} reused");
                                    let held: i64 = conn
                                        .query_row(
                                            "SELECT count(*) FROM honker_jobs
                                             WHERE id = ?1 AND lease_token = ?2 AND state = 2",
                                            [j["id"].as_i64().expect("id"), token],
                                            |r| r.get(0),
                                        )
                                        .expect("held");
                                    assert_eq!(held, 1);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
});
