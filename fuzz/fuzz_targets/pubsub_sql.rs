//! Fuzz the pub/sub SQL functions' argument handling against a model of what each call must do.
//!
//! An input is a bounded sequence of calls to `honker_notify`, `notify`, `honker_listen` and
//! `honker_notify_prune` with arguments of every SQLite type (NULL, INTEGER, REAL, TEXT, BLOB;
//! valid and invalid JSON, odd channel names, payloads around the 1 MiB limit), some inside an
//! explicit transaction that is then committed or rolled back. After every call the target checks:
//!
//! - the call succeeds exactly when the model says every argument is acceptable, and otherwise
//!   fails with `honker: <code>: ...` where `<code>` is one the bad arguments explain (or with
//!   `SQLITE_BUSY`, which passes through untouched);
//! - a refused call writes nothing (row count, newest id and the AUTOINCREMENT sequence unchanged);
//! - a successful notify adds exactly one row above the previous newest id, holding the channel and
//!   the payload as given (the automatic prune every `PRUNE_EVERY` ids may remove older rows);
//! - `honker_listen` returns a JSON array equal to the matching rows read with plain SQL;
//! - `honker_notify_prune` returns exactly how many rows disappeared;
//! - a rolled-back transaction leaves the table as it was before `BEGIN`.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::Arbitrary;
use honker_core::payload::DEFAULT_MAX_PAYLOAD_BYTES;
use libfuzzer_sys::fuzz_target;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode};
use serde_json::Value as Json;

/// Most calls per input: enough to build up state, small enough to stay fast.
const MAX_OPS: usize = 24;
/// Wipe the table when it grows past this, so the process-wide file stays small.
const MAX_ROWS_KEPT: i64 = 2_000;
const MAX_BYTES_KEPT: f64 = 32.0 * 1024.0 * 1024.0;

struct Db {
    _dir: tempfile::TempDir,
    conn: Connection,
}

/// One database file per fuzzing process: honker needs a file, and opening one per input would
/// measure file creation rather than the functions.
fn db() -> &'static Mutex<Db> {
    static DB: OnceLock<Mutex<Db>> = OnceLock::new();
    DB.get_or_init(|| {
        let (dir, conn) = honker_fuzz::temp_db();
        honker_core::sql::register(&conn).expect("register core functions");
        honker_stream::sql::register(&conn, Arc::new(honker_fuzz::ManualWakes))
            .expect("register pub/sub functions");
        Mutex::new(Db { _dir: dir, conn })
    })
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    HonkerNotify,
    Notify,
    HonkerListen,
    HonkerNotifyPrune,
}

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::HonkerNotify => "honker_notify",
            Func::Notify => "notify",
            Func::HonkerListen => "honker_listen",
            Func::HonkerNotifyPrune => "honker_notify_prune",
        }
    }

    fn arities(self) -> &'static [usize] {
        match self {
            Func::HonkerNotify | Func::Notify => &[2],
            Func::HonkerListen => &[3],
            Func::HonkerNotifyPrune => &[0, 1],
        }
    }
}

/// A small JSON value; nesting is bounded by the input's length.
#[derive(Arbitrary, Debug)]
enum JsonGen {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<JsonGen>),
    Obj(Vec<(String, JsonGen)>),
}

impl JsonGen {
    fn to_json(&self) -> Json {
        match self {
            JsonGen::Null => Json::Null,
            JsonGen::Bool(b) => Json::Bool(*b),
            JsonGen::Int(i) => Json::from(*i),
            JsonGen::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            JsonGen::Str(s) => Json::String(s.clone()),
            JsonGen::Arr(v) => Json::Array(v.iter().map(JsonGen::to_json).collect()),
            JsonGen::Obj(v) => {
                Json::Object(v.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// One argument. Some variants aim at the accepted inputs so calls get past validation often.
#[derive(Arbitrary, Debug)]
enum Arg {
    Null,
    Int(i64),
    /// Ids and limits near the ones in the table.
    Small(u8),
    Real(f64),
    /// Arbitrary text: odd channel names and (mostly) invalid JSON.
    Text(String),
    /// One of a few channel names.
    Channel(u8),
    /// Valid JSON text.
    Json(JsonGen),
    /// A prune options object, sometimes with an unknown key or a bad value.
    Options {
        max_age_ms: Option<u32>,
        max_rows: Option<u16>,
        unknown_key: bool,
        negative: bool,
    },
    /// A payload near or below the 1 MiB limit: a JSON string, or the same bytes unquoted.
    Huge {
        near_limit: bool,
        delta: i16,
        len: u16,
        json: bool,
    },
    Blob(Vec<u8>),
}

impl Arg {
    fn to_sql(&self) -> SqlValue {
        match self {
            Arg::Null => SqlValue::Null,
            Arg::Int(i) => SqlValue::Integer(*i),
            Arg::Small(n) => SqlValue::Integer(i64::from(*n)),
            // SQLite stores a NaN as NULL; the model must see what the function sees.
            Arg::Real(f) if f.is_nan() => SqlValue::Null,
            Arg::Real(f) => SqlValue::Real(*f),
            Arg::Text(s) => SqlValue::Text(s.clone()),
            Arg::Channel(n) => {
                SqlValue::Text(["a", "b", "chan.nel"][usize::from(*n) % 3].to_owned())
            }
            Arg::Json(j) => SqlValue::Text(j.to_json().to_string()),
            Arg::Options {
                max_age_ms,
                max_rows,
                unknown_key,
                negative,
            } => {
                let mut m = serde_json::Map::new();
                if let Some(v) = max_age_ms {
                    m.insert("max_age_ms".into(), Json::from(*v));
                }
                if let Some(v) = max_rows {
                    let v = i64::from(*v);
                    m.insert(
                        "max_rows".into(),
                        Json::from(if *negative { -v - 1 } else { v }),
                    );
                }
                if *unknown_key {
                    m.insert("max_bytes".into(), Json::from(1));
                }
                SqlValue::Text(Json::Object(m).to_string())
            }
            Arg::Huge {
                near_limit,
                delta,
                len,
                json,
            } => {
                let n = if *near_limit {
                    usize::try_from(DEFAULT_MAX_PAYLOAD_BYTES as i64 + i64::from(*delta))
                        .unwrap_or(0)
                } else {
                    usize::from(*len)
                };
                let n = n.max(2);
                SqlValue::Text(if *json {
                    format!("\"{}\"", "x".repeat(n - 2))
                } else {
                    "x".repeat(n)
                })
            }
            Arg::Blob(b) => SqlValue::Blob(b.clone()),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Call {
    func: Func,
    args: Vec<Arg>,
    /// When false the arity is the function's own (so most calls reach the function).
    any_arity: bool,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Call(Call),
    /// BEGIN, the calls, then COMMIT (true) or ROLLBACK (false).
    Transaction(Vec<Call>, bool),
}

fuzz_target!(|ops: Vec<Op>| {
    let db = db().lock().unwrap_or_else(|p| p.into_inner());
    let conn = &db.conn;
    keep_small(conn);
    for op in ops.iter().take(MAX_OPS) {
        match op {
            Op::Call(call) => check_call(conn, call),
            Op::Transaction(calls, commit) => {
                let before = snapshot(conn);
                conn.execute_batch("BEGIN IMMEDIATE").expect("BEGIN");
                for call in calls.iter().take(MAX_OPS) {
                    check_call(conn, call);
                }
                if *commit {
                    conn.execute_batch("COMMIT").expect("COMMIT");
                } else {
                    conn.execute_batch("ROLLBACK").expect("ROLLBACK");
                    assert_eq!(
                        snapshot(conn),
                        before,
                        "ROLLBACK must undo every notify and prune"
                    );
                }
            }
        }
    }
    let ok: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .expect("quick_check");
    assert_eq!(ok, "ok");
});

fn keep_small(conn: &Connection) {
    let (rows, bytes): (i64, f64) = conn
        .query_row(
            "SELECT count(*), total(length(payload)) FROM honker_notifications",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("size");
    if rows > MAX_ROWS_KEPT || bytes > MAX_BYTES_KEPT {
        conn.execute("DELETE FROM honker_notifications", [])
            .expect("wipe");
    }
}

/// What a call may change: row count, newest id, the AUTOINCREMENT sequence.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Snapshot {
    rows: i64,
    max_id: i64,
    seq: i64,
}

fn snapshot(conn: &Connection) -> Snapshot {
    let (rows, max_id) = conn
        .query_row(
            "SELECT count(*), coalesce(max(id), 0) FROM honker_notifications",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    let seq = conn
        .query_row(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'honker_notifications'), 0)",
            [],
            |r| r.get(0),
        )
        .expect("sqlite_sequence");
    Snapshot { rows, max_id, seq }
}

/// How a call ended.
#[derive(Debug)]
enum Outcome {
    Ok(SqlValue),
    Busy,
    /// `honker: <code>: ...`
    Honker(String),
    /// The statement did not prepare: no function of that name takes that many arguments.
    WrongArity,
}

fn call(conn: &Connection, name: &str, args: &[SqlValue]) -> Outcome {
    let marks: Vec<String> = (1..=args.len()).map(|i| format!("?{i}")).collect();
    let sql = format!("SELECT {name}({})", marks.join(", "));
    let mut stmt = match conn.prepare(&sql) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("wrong number of arguments"),
                "{sql}: prepare failed: {msg}"
            );
            return Outcome::WrongArity;
        }
    };
    match stmt.query_row(rusqlite::params_from_iter(args.iter()), |r| {
        r.get::<_, SqlValue>(0)
    }) {
        Ok(v) => Outcome::Ok(v),
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => Outcome::Busy,
        Err(e) => {
            let msg = match &e {
                rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
                other => other.to_string(),
            };
            let Some(rest) = msg.strip_prefix("honker: ") else {
                panic!("{sql} with {args:?}: error without the `honker: <code>: ` form: {msg}");
            };
            let code = rest.split(": ").next().unwrap_or_default();
            Outcome::Honker(code.to_owned())
        }
    }
}

/// The error codes the model allows for a call, empty when the call must succeed.
fn expected_errors(func: Func, args: &[SqlValue]) -> Vec<&'static str> {
    let mut codes = Vec::new();
    let mut flag = |bad: bool, code: &'static str| {
        if bad && !codes.contains(&code) {
            codes.push(code);
        }
    };
    match func {
        Func::HonkerNotify | Func::Notify => {
            check_channel(&args[0], &mut flag);
            match &args[1] {
                SqlValue::Text(p) => {
                    flag(p.len() > DEFAULT_MAX_PAYLOAD_BYTES, "payload.too_large");
                    flag(
                        p.len() <= DEFAULT_MAX_PAYLOAD_BYTES && !honker_fuzz::payload_ok(p),
                        "payload.not_json",
                    );
                }
                _ => flag(true, "arg.invalid"),
            }
        }
        Func::HonkerListen => {
            check_channel(&args[0], &mut flag);
            flag(!matches!(args[1], SqlValue::Integer(_)), "arg.invalid");
            flag(
                !matches!(args[2], SqlValue::Integer(n) if n >= 0),
                "arg.invalid",
            );
        }
        Func::HonkerNotifyPrune => match args.first() {
            None | Some(SqlValue::Null) => {}
            Some(SqlValue::Text(t)) if t.trim().is_empty() => {}
            Some(SqlValue::Text(t)) => match serde_json::from_str::<Json>(t) {
                Ok(Json::Object(m)) => {
                    let known = ["max_age_ms", "max_rows"];
                    flag(
                        m.keys().any(|k| !known.contains(&k.as_str())),
                        "options.unknown",
                    );
                    let bad_value = known
                        .iter()
                        .filter_map(|k| m.get(*k))
                        .any(|v| !v.is_null() && v.as_u64().is_none());
                    flag(bad_value, "arg.invalid");
                }
                _ => flag(true, "arg.invalid"),
            },
            Some(_) => flag(true, "arg.invalid"),
        },
    }
    codes
}

fn check_channel(arg: &SqlValue, flag: &mut impl FnMut(bool, &'static str)) {
    match arg {
        SqlValue::Text(c) => flag(
            c.is_empty() || c.len() > honker_stream::MAX_CHANNEL_BYTES || c.contains('\0'),
            "notify.bad_channel",
        ),
        _ => flag(true, "arg.invalid"),
    }
}

fn check_call(conn: &Connection, c: &Call) {
    let mut args: Vec<SqlValue> = c.args.iter().take(4).map(Arg::to_sql).collect();
    let arities = c.func.arities();
    if !c.any_arity && !arities.contains(&args.len()) {
        let want = arities
            .iter()
            .copied()
            .filter(|n| *n <= args.len())
            .max()
            .unwrap_or(arities[0]);
        args.resize(want, SqlValue::Null);
    }
    let name = c.func.name();
    let before = snapshot(conn);
    let outcome = call(conn, name, &args);
    let after = snapshot(conn);
    let shown = || {
        let mut s = format!("{name}(");
        for a in &args {
            let text: String = format!("{a:?}").chars().take(200).collect();
            s.push_str(&text);
            s.push_str(", ");
        }
        s.push(')');
        s
    };

    if !arities.contains(&args.len()) {
        assert!(
            matches!(outcome, Outcome::WrongArity),
            "{}: expected an arity error, got {outcome:?}",
            shown()
        );
        assert_eq!(before, after);
        return;
    }
    let expected = expected_errors(c.func, &args);
    let value = match outcome {
        Outcome::WrongArity => panic!("{}: registered arity refused", shown()),
        Outcome::Busy => {
            assert_eq!(before, after, "{}: a busy call wrote", shown());
            return;
        }
        Outcome::Honker(code) => {
            assert!(
                expected.contains(&code.as_str()),
                "{}: failed with `{code}`, but the model expects {}",
                shown(),
                if expected.is_empty() {
                    "success".to_owned()
                } else {
                    format!("one of {expected:?}")
                }
            );
            assert_eq!(
                before,
                after,
                "{}: a refused call must write nothing",
                shown()
            );
            return;
        }
        Outcome::Ok(v) => v,
    };
    assert!(
        expected.is_empty(),
        "{}: succeeded with {value:?}, but the model expects one of {expected:?}",
        shown()
    );

    match c.func {
        Func::HonkerNotify | Func::Notify => {
            let SqlValue::Integer(id) = value else {
                panic!("{}: returned {value:?}, not an integer id", shown());
            };
            assert!(
                id > before.max_id && id > before.seq,
                "{}: id {id} reuses an old id ({before:?})",
                shown()
            );
            assert_eq!(
                after.max_id,
                id,
                "{}: the new row is not the newest",
                shown()
            );
            let above: i64 = conn
                .query_row(
                    "SELECT count(*) FROM honker_notifications WHERE id > ?1",
                    [before.max_id],
                    |r| r.get(0),
                )
                .expect("count new rows");
            assert_eq!(above, 1, "{}: exactly one row must be added", shown());
            if id % honker_stream::PRUNE_EVERY != 0 {
                assert_eq!(
                    after.rows,
                    before.rows + 1,
                    "{}: only the automatic prune may delete",
                    shown()
                );
            }
            let (channel, payload): (String, String) = conn
                .query_row(
                    "SELECT channel, payload FROM honker_notifications WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("the new row");
            assert_eq!(
                SqlValue::Text(channel),
                args[0],
                "{}: stored channel differs",
                shown()
            );
            let SqlValue::Text(given) = &args[1] else {
                unreachable!("the model accepts only TEXT payloads")
            };
            let stored: Json = serde_json::from_str(&payload).expect("stored payload is JSON");
            if let Ok(given) = serde_json::from_str::<Json>(given) {
                assert_eq!(
                    stored,
                    given,
                    "{}: stored payload differs from the input",
                    shown()
                );
            }
        }
        Func::HonkerListen => {
            assert_eq!(before, after, "{}: listen must not write", shown());
            let SqlValue::Text(text) = value else {
                panic!("{}: returned {value:?}, not JSON text", shown());
            };
            let got: Json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", shown()));
            let Json::Array(got) = got else {
                panic!("{}: not a JSON array: {text}", shown());
            };
            let model = listen_model(conn, &args);
            assert_eq!(
                got.len(),
                model.len(),
                "{}: {text}\nmodel: {model:?}",
                shown()
            );
            for (row, (id, channel, payload)) in got.iter().zip(&model) {
                assert_eq!(row["id"], Json::from(*id), "{}: {text}", shown());
                assert_eq!(
                    row["channel"],
                    Json::from(channel.as_str()),
                    "{}: {text}",
                    shown()
                );
                assert_eq!(
                    &row["payload"],
                    payload,
                    "{}: payload must be embedded JSON: {text}",
                    shown()
                );
                assert!(
                    row["created_ms"].is_i64(),
                    "{}: created_ms: {text}",
                    shown()
                );
            }
        }
        Func::HonkerNotifyPrune => {
            let SqlValue::Integer(n) = value else {
                panic!("{}: returned {value:?}, not a row count", shown());
            };
            assert!(n >= 0);
            assert_eq!(
                before.rows - after.rows,
                n,
                "{}: returned count differs from rows deleted",
                shown()
            );
            assert_eq!(
                before.seq,
                after.seq,
                "{}: prune must not touch the id sequence",
                shown()
            );
        }
    }
}

/// `honker_listen(channel, after_id, limit)` in plain SQL.
fn listen_model(conn: &Connection, args: &[SqlValue]) -> Vec<(i64, String, Json)> {
    let limit = match args[2] {
        SqlValue::Integer(n) => n,
        _ => unreachable!("the model accepts only INTEGER limits"),
    };
    let mut stmt = conn
        .prepare("SELECT id, channel, payload FROM honker_notifications WHERE channel = ?1 AND id > ?2 ORDER BY id LIMIT ?3")
        .expect("model query");
    stmt.query_map(rusqlite::params![args[0], args[1], limit], |r| {
        let payload: String = r.get(2)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            serde_json::from_str(&payload).expect("stored payload is JSON"),
        ))
    })
    .expect("model query")
    .collect::<Result<_, _>>()
    .expect("model rows")
}
