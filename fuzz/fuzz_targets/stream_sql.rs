//! Fuzz the durable-stream SQL functions' argument handling and semantics.
//!
//! An input is a bounded sequence of calls to `honker_publish`, `honker_read`,
//! `honker_commit_offset`, `honker_offset` and `honker_stream_trim` with arguments of every
//! SQLite type (valid and invalid JSON, odd names, negative offsets, options with unknown keys),
//! some inside a transaction that is then committed or rolled back. After every call it checks:
//!
//! - a call fails only with `honker: <code>: ...` for a known code, and fails whenever the model
//!   says an argument is unacceptable (wrong type, negative offset, empty topic, non-JSON payload,
//!   unknown option);
//! - a refused call writes nothing (events, the offset sequence, consumers and watermarks are
//!   unchanged);
//! - a publish returns an offset above every earlier one and stores exactly what was given;
//! - `honker_read` returns exactly the rows plain SQL finds after the offset, or `stream.trimmed`
//!   exactly when the offset is below the topic's watermark;
//! - `honker_commit_offset` is monotonic: 1 exactly when the offset rose, and `honker_offset` then
//!   reports the maximum ever committed;
//! - an unforced trim never removes an event above a registered consumer's offset.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::Value as Json;

const MAX_OPS: usize = 24;
const TOPICS: [&str; 3] = ["a", "b", "t.x"];
const CODES: &[&str] = &[
    "arg.invalid",
    "options.unknown",
    "payload.not_json",
    "payload.too_large",
    "stream.bad_topic",
    "stream.bad_consumer",
    "stream.bad_key",
    "stream.trimmed",
    "stream.offset_ahead",
];

struct Db {
    _dir: tempfile::TempDir,
    conn: Connection,
}

fn db() -> &'static Mutex<Db> {
    static DB: OnceLock<Mutex<Db>> = OnceLock::new();
    DB.get_or_init(|| {
        let (dir, conn) = honker_fuzz::temp_db();
        honker_core::sql::register(&conn).expect("register core functions");
        honker_stream::sql::register(&conn, Arc::new(honker_fuzz::ManualWakes)).expect("register");
        Mutex::new(Db { _dir: dir, conn })
    })
}

#[derive(Arbitrary, Debug)]
enum Arg {
    Null,
    Int(i64),
    Small(u8),
    Real(f64),
    Text(String),
    Topic(u8),
    Json(Option<i32>),
    TrimOptions {
        max_events: Option<u8>,
        force: bool,
        unknown_key: bool,
        negative: bool,
    },
    Blob(Vec<u8>),
}

impl Arg {
    fn to_sql(&self) -> SqlValue {
        match self {
            Arg::Null => SqlValue::Null,
            Arg::Int(i) => SqlValue::Integer(*i),
            Arg::Small(n) => SqlValue::Integer(i64::from(*n)),
            Arg::Real(f) if f.is_nan() => SqlValue::Null,
            Arg::Real(f) => SqlValue::Real(*f),
            Arg::Text(s) => SqlValue::Text(s.clone()),
            Arg::Topic(n) => SqlValue::Text(TOPICS[usize::from(*n) % 3].to_owned()),
            Arg::Json(v) => SqlValue::Text(match v {
                Some(i) => format!(r#"{{"n":{i}}}"#),
                None => "null".into(),
            }),
            Arg::TrimOptions {
                max_events,
                force,
                unknown_key,
                negative,
            } => {
                let mut m = serde_json::Map::new();
                if let Some(n) = max_events {
                    let n = i64::from(*n);
                    m.insert(
                        "max_events".into(),
                        Json::from(if *negative { -n - 1 } else { n }),
                    );
                }
                if *force {
                    m.insert("force".into(), Json::Bool(true));
                }
                if *unknown_key {
                    m.insert("max_bytes".into(), Json::from(1));
                }
                SqlValue::Text(Json::Object(m).to_string())
            }
            Arg::Blob(b) => SqlValue::Blob(b.clone()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Publish(Arg, Arg, Option<Arg>),
    Read(Arg, Arg, Arg),
    Commit(Arg, Arg, Arg),
    Offset(Arg, Arg),
    Trim(Arg, Option<Arg>),
    Begin,
    /// COMMIT (true) or ROLLBACK (false).
    End(bool),
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

/// Everything a refused call must leave untouched.
fn snapshot(conn: &Connection) -> (i64, i64, i64, String, String) {
    conn.query_row(
        r#"SELECT (SELECT count(*) FROM honker_streams),
                  coalesce((SELECT max("offset") FROM honker_streams), 0),
                  coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'honker_streams'), 0),
                  coalesce((SELECT group_concat(topic || '/' || consumer || '=' || committed)
                              FROM honker_consumers), ''),
                  coalesce((SELECT group_concat(topic || '=' || trimmed_through)
                              FROM honker_stream_topics), '')"#,
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .expect("snapshot")
}

fn text(v: &SqlValue) -> Option<&str> {
    match v {
        SqlValue::Text(t) => Some(t),
        _ => None,
    }
}

fn valid_name(v: &SqlValue) -> bool {
    text(v).is_some_and(|t| !t.is_empty() && t.len() <= 256 && !t.contains('\0'))
}

fn non_negative(v: &SqlValue) -> Option<i64> {
    match v {
        SqlValue::Integer(i) if *i >= 0 => Some(*i),
        _ => None,
    }
}

fn call(conn: &Connection, name: &str, args: &[SqlValue]) -> Result<SqlValue, String> {
    let marks = vec!["?"; args.len()].join(", ");
    let sql = format!("SELECT {name}({marks})");
    conn.query_row(&sql, rusqlite::params_from_iter(args.iter()), |r| r.get(0))
        .map_err(|e| e.to_string())
}

fn code_of(message: &str) -> &str {
    message
        .strip_prefix("honker: ")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("not a honker error: {message}"))
}

fn watermark(conn: &Connection, topic: &str) -> i64 {
    conn.query_row(
        "SELECT coalesce((SELECT trimmed_through FROM honker_stream_topics WHERE topic = ?1), 0)",
        [topic],
        |r| r.get(0),
    )
    .expect("watermark")
}

fn check(conn: &Connection, op: &Op) {
    let before = snapshot(conn);
    match op {
        Op::Begin => {
            let _ = conn.execute_batch("BEGIN");
        }
        Op::End(commit) => {
            let _ = conn.execute_batch(if *commit { "COMMIT" } else { "ROLLBACK" });
        }
        Op::Publish(topic, payload, key) => {
            let mut args = vec![topic.to_sql(), payload.to_sql()];
            if let Some(k) = key {
                args.push(k.to_sql());
            }
            let payload_ok = text(&args[1]).is_some_and(honker_fuzz::payload_ok);
            let key_ok = args.get(2).is_none_or(|k| {
                matches!(k, SqlValue::Null)
                    || text(k).is_some_and(|t| t.len() <= 256 && !t.contains('\0'))
            });
            let ok = valid_name(&args[0]) && payload_ok && key_ok;
            match call(conn, "honker_publish", &args) {
                Ok(SqlValue::Integer(offset)) => {
                    assert!(ok, "publish accepted bad arguments {args:?}");
                    assert!(offset > before.2, "offset {offset} not above {}", before.2);
                    let (topic, payload): (String, String) = conn
                        .query_row(
                            r#"SELECT topic, payload FROM honker_streams WHERE "offset" = ?1"#,
                            [offset],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .expect("the published row");
                    assert_eq!(Some(topic.as_str()), text(&args[0]));
                    assert_eq!(Some(payload.as_str()), text(&args[1]));
                }
                Ok(other) => panic!("publish returned {other:?}"),
                Err(e) => {
                    assert!(
                        !ok || e.contains("busy") || e.contains("locked"),
                        "{args:?}: {e}"
                    );
                    assert!(CODES.contains(&code_of(&e)), "{e}");
                    assert_eq!(snapshot(conn), before, "a refused publish wrote");
                }
            }
        }
        Op::Read(topic, after, limit) => {
            let args = [topic.to_sql(), after.to_sql(), limit.to_sql()];
            let ok = valid_name(&args[0])
                && non_negative(&args[1]).is_some()
                && non_negative(&args[2]).is_some();
            match call(conn, "honker_read", &args) {
                Ok(SqlValue::Text(json)) => {
                    assert!(ok, "read accepted bad arguments {args:?}");
                    let topic = text(&args[0]).unwrap();
                    let after = non_negative(&args[1]).unwrap();
                    assert!(after >= watermark(conn, topic), "read past a trim");
                    let limit = non_negative(&args[2]).unwrap();
                    let got: Vec<i64> = serde_json::from_str::<Vec<Json>>(&json)
                        .expect("a JSON array")
                        .iter()
                        .map(|e| e["offset"].as_i64().unwrap())
                        .collect();
                    let want: Vec<i64> = conn
                        .prepare(
                            r#"SELECT "offset" FROM honker_streams WHERE topic = ?1
                               AND "offset" > ?2 ORDER BY "offset" LIMIT ?3"#,
                        )
                        .unwrap()
                        .query_map(rusqlite::params![topic, after, limit], |r| r.get(0))
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap();
                    assert_eq!(got, want);
                }
                Ok(other) => panic!("read returned {other:?}"),
                Err(e) => {
                    let code = code_of(&e);
                    assert!(CODES.contains(&code), "{e}");
                    if code == "stream.trimmed" {
                        let topic = text(&args[0]).unwrap();
                        assert!(non_negative(&args[1]).unwrap() < watermark(conn, topic));
                    } else {
                        assert!(!ok, "{args:?}: {e}");
                    }
                    assert_eq!(snapshot(conn), before);
                }
            }
        }
        Op::Commit(consumer, topic, offset) => {
            let args = [consumer.to_sql(), topic.to_sql(), offset.to_sql()];
            let ok =
                valid_name(&args[0]) && valid_name(&args[1]) && non_negative(&args[2]).is_some();
            let previous = if ok {
                call(conn, "honker_offset", &args[..2]).ok()
            } else {
                None
            };
            match call(conn, "honker_commit_offset", &args) {
                Ok(SqlValue::Integer(advanced)) => {
                    assert!(ok, "commit accepted bad arguments {args:?}");
                    let offset = non_negative(&args[2]).unwrap();
                    let prev = match previous {
                        Some(SqlValue::Integer(p)) => Some(p),
                        _ => None,
                    };
                    assert_eq!(advanced == 1, prev.is_none_or(|p| offset > p));
                    let now = call(conn, "honker_offset", &args[..2]).unwrap();
                    assert_eq!(
                        now,
                        SqlValue::Integer(prev.map_or(offset, |p| p.max(offset)))
                    );
                }
                Ok(other) => panic!("commit returned {other:?}"),
                Err(e) => {
                    let code = code_of(&e);
                    assert!(CODES.contains(&code), "{e}");
                    assert!(!ok || code == "stream.offset_ahead", "{args:?}: {e}");
                    assert_eq!(snapshot(conn), before);
                }
            }
        }
        Op::Offset(consumer, topic) => {
            let args = [consumer.to_sql(), topic.to_sql()];
            if let Err(e) = call(conn, "honker_offset", &args) {
                assert!(CODES.contains(&code_of(&e)), "{e}");
                assert!(!(valid_name(&args[0]) && valid_name(&args[1])), "{e}");
            }
        }
        Op::Trim(topic, options) => {
            let mut args = vec![topic.to_sql()];
            if let Some(o) = options {
                args.push(o.to_sql());
            }
            let forced = matches!(options, Some(Arg::TrimOptions { force: true, .. }));
            let slowest: Option<i64> = text(&args[0]).and_then(|t| {
                conn.query_row(
                    "SELECT min(committed) FROM honker_consumers WHERE topic = ?1",
                    [t],
                    |r| r.get(0),
                )
                .ok()
                .flatten()
            });
            let kept_before: Vec<i64> = match (text(&args[0]), slowest) {
                (Some(t), Some(s)) => conn
                    .prepare(
                        r#"SELECT "offset" FROM honker_streams WHERE topic = ?1 AND "offset" > ?2"#,
                    )
                    .unwrap()
                    .query_map(rusqlite::params![t, s], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap(),
                _ => Vec::new(),
            };
            match call(conn, "honker_stream_trim", &args) {
                Ok(SqlValue::Integer(deleted)) => {
                    assert!(deleted >= 0);
                    assert_eq!(before.0 - snapshot(conn).0, deleted);
                    if !forced {
                        for o in kept_before {
                            let n: i64 = conn
                                .query_row(
                                    r#"SELECT count(*) FROM honker_streams WHERE "offset" = ?1"#,
                                    [o],
                                    |r| r.get(0),
                                )
                                .unwrap();
                            assert_eq!(
                                n, 1,
                                "an unforced trim removed offset {o}, above a consumer"
                            );
                        }
                    }
                }
                Ok(other) => panic!("trim returned {other:?}"),
                Err(e) => {
                    assert!(CODES.contains(&code_of(&e)), "{e}");
                    assert_eq!(snapshot(conn), before);
                }
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let db = db().lock().unwrap_or_else(|p| p.into_inner());
    let conn = &db.conn;
    for op in input.ops.iter().take(MAX_OPS) {
        check(conn, op);
    }
    let _ = conn.execute_batch("ROLLBACK");
    // Keep the shared file small.
    let n: i64 = conn
        .query_row("SELECT count(*) FROM honker_streams", [], |r| r.get(0))
        .unwrap();
    if n > 5_000 {
        conn.execute_batch("DELETE FROM honker_streams; DELETE FROM honker_consumers; DELETE FROM honker_stream_topics")
            .unwrap();
    }
});
