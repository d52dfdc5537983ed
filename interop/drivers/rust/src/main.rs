//! The `rust` interop participant: every operation through the honker crates' Rust API (not the
//! extension), on one connection opened with `honker_core::open`.
//!
//! Results have the shapes of the SQL functions of the same name, with payloads spliced in as the
//! stored JSON text, so the matrix pins that the crates and the `.so` agree.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use honker_core::{Clock, Millis, SystemClock};
use honker_cron::{Schedule, ScheduleOptions, ScheduleSpec, Zone};
use honker_interop::{Args, Driver, Failure, Reply, serve};
use honker_queue::{EnqueueOptions, JobId, LeaseToken, Queue, QueueOptionsPatch, RetryOutcome};
use honker_stream::Offset;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde_json::{Value, json};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(db), None) = (args.next(), args.next()) else {
        eprintln!("usage: honker-interop-rust <database file>");
        return ExitCode::from(2);
    };
    let mut driver = RustDriver {
        path: PathBuf::from(db),
        conn: None,
    };
    match serve(&mut driver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("honker-interop-rust: {e}");
            ExitCode::FAILURE
        }
    }
}

struct RustDriver {
    path: PathBuf,
    conn: Option<Connection>,
}

/// An error of any honker crate, with its stable code. `db.busy` is the protocol's `sqlite.busy`.
fn coded(code: &str, message: impl std::fmt::Display) -> Failure {
    let code = if code == "db.busy" {
        "sqlite.busy"
    } else {
        code
    };
    Failure::new(code, message)
}

macro_rules! from_honker_error {
    ($($t:ty),*) => {$(
        impl From<HonkerError<$t>> for Failure {
            fn from(e: HonkerError<$t>) -> Failure {
                coded(e.0.code(), &e.0)
            }
        }
    )*};
}

/// A crate's error on its way to a [`Failure`]: both types are foreign to this binary, so the
/// orphan rule wants a local type between them.
struct HonkerError<E>(E);

from_honker_error!(
    honker_core::Error,
    honker_queue::Error,
    honker_stream::Error,
    honker_cron::Error,
    honker_core::WakeError
);

trait Coded<T> {
    fn coded(self) -> Result<T, Failure>;
}

impl<T, E> Coded<T> for Result<T, E>
where
    Failure: From<HonkerError<E>>,
{
    fn coded(self) -> Result<T, Failure> {
        self.map_err(|e| Failure::from(HonkerError(e)))
    }
}

fn sqlite(e: rusqlite::Error) -> Failure {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Failure::new("sqlite.busy", e)
        }
        _ => Failure::new("sqlite.error", e),
    }
}

impl RustDriver {
    fn conn(&mut self) -> Result<&Connection, Failure> {
        if self.conn.is_none() {
            self.conn = Some(honker_core::open(&self.path).coded()?);
        }
        Ok(self.conn.as_ref().expect("opened above"))
    }
}

impl Driver for RustDriver {
    fn handle(&mut self, op: &str, a: &Args<'_>) -> Result<Reply, Failure> {
        if op == "close" {
            self.conn = None;
            return Ok(Reply::null());
        }
        let path = self.path.clone();
        let conn = self.conn()?;
        match op {
            "open" => Ok(Reply::null()),
            "begin" | "commit" | "rollback" => {
                let sql = match op {
                    "begin" => "BEGIN IMMEDIATE",
                    "commit" => "COMMIT",
                    _ => "ROLLBACK",
                };
                conn.execute_batch(sql).map_err(sqlite)?;
                Ok(Reply::null())
            }
            "sql" => sql_rows(conn, a.text("sql")?),
            "queue_configure" => {
                let patch =
                    QueueOptionsPatch::from_json(&a.opt_json_text("options").unwrap_or_default())
                        .coded()?;
                let q = Queue::new(a.text("queue")?).coded()?;
                Ok(Reply::Raw(q.configure(conn, &patch).coded()?.to_json()))
            }
            "enqueue" => {
                let opts = match a.opt_json_text("options") {
                    Some(t) => EnqueueOptions::from_json(&t).coded()?,
                    None => EnqueueOptions::default(),
                };
                let q = Queue::new(a.text("queue")?).coded()?;
                Ok(Reply::from(
                    q.enqueue(conn, a.text("payload")?, &opts).coded()?.0,
                ))
            }
            "claim" => {
                let q = Queue::new(a.text("queue")?).coded()?;
                let jobs = q
                    .claim(
                        conn,
                        a.text("worker")?,
                        a.count("n")?,
                        a.opt_int("lease_ms")?,
                    )
                    .coded()?;
                let items = jobs.iter().map(|j| {
                    object(&[
                        ("id", json!(j.id.0).to_string()),
                        ("queue", json!(j.queue).to_string()),
                        ("payload", j.payload.trim().to_owned()),
                        ("attempts", j.attempts.to_string()),
                        ("max_attempts", j.max_attempts.to_string()),
                        ("lease_token", j.lease_token.0.to_string()),
                        ("lease_expires_ms", j.lease_expires.get().to_string()),
                        ("priority", j.priority.to_string()),
                    ])
                });
                Ok(Reply::Raw(array(items)))
            }
            "ack" => {
                let (q, id, token) = held(a)?;
                q.ack(conn, id, token).coded()?;
                Ok(Reply::from(1))
            }
            "retry" => {
                let (q, id, token) = held(a)?;
                let outcome = q
                    .retry(
                        conn,
                        id,
                        token,
                        a.opt_int("delay_ms")?,
                        a.opt_text("error")?,
                    )
                    .coded()?;
                Ok(Reply::Json(match outcome {
                    RetryOutcome::Retrying { run_at } => {
                        json!({"state": "retrying", "run_at_ms": run_at.get()})
                    }
                    RetryOutcome::Dead => json!({"state": "dead"}),
                }))
            }
            "fail" => {
                let (q, id, token) = held(a)?;
                q.fail(conn, id, token, a.text("error")?).coded()?;
                Ok(Reply::from(1))
            }
            "job" => {
                let Some(j) = honker_queue::job(conn, JobId(a.int("job_id")?)).coded()? else {
                    return Ok(Reply::null());
                };
                let opt_ms = |m: Option<Millis>| json!(m.map(|m| m.get())).to_string();
                Ok(Reply::Raw(object(&[
                    ("id", j.id.0.to_string()),
                    ("queue", json!(j.queue).to_string()),
                    ("state", json!(j.state.as_str()).to_string()),
                    ("payload", j.payload.trim().to_owned()),
                    ("priority", j.priority.to_string()),
                    ("attempts", j.attempts.to_string()),
                    ("max_attempts", j.max_attempts.to_string()),
                    ("run_at_ms", j.run_at.get().to_string()),
                    ("expires_at_ms", opt_ms(j.expires_at)),
                    ("dedup_key", json!(j.dedup_key).to_string()),
                    ("last_error", json!(j.last_error).to_string()),
                    ("dead_reason", json!(j.dead_reason).to_string()),
                    ("worker", json!(j.worker).to_string()),
                    ("lease_expires_ms", opt_ms(j.lease_expires)),
                    ("created_ms", j.created.get().to_string()),
                ])))
            }
            "dead_requeue" => {
                let q = Queue::new(a.text("queue")?).coded()?;
                let requeued = q.requeue_dead(conn, JobId(a.int("job_id")?)).coded()?;
                Ok(Reply::from(i64::from(requeued)))
            }
            "result_save" => {
                let id = JobId(a.int("job_id")?);
                honker_queue::save_result(
                    conn,
                    &SystemClock,
                    id,
                    a.text("value")?,
                    a.opt_int("ttl_ms")?,
                )
                .coded()?;
                Ok(Reply::from(1))
            }
            "result_get" => {
                let id = JobId(a.int("job_id")?);
                Ok(
                    match honker_queue::get_result(conn, &SystemClock, id).coded()? {
                        Some(text) => Reply::Raw(text),
                        None => Reply::null(),
                    },
                )
            }
            "notify" => {
                let id =
                    honker_stream::notify(conn, a.text("channel")?, a.text("payload")?).coded()?;
                Ok(Reply::from(id))
            }
            "listen" => {
                let rows = honker_stream::listen(
                    conn,
                    a.text("channel")?,
                    a.int("after_id")?,
                    a.count("limit")?,
                )
                .coded()?;
                Ok(Reply::Raw(notifications(&rows)))
            }
            "listen_wait" => listen_wait(conn, &path, a),
            "publish" => {
                let (topic, payload) = (a.text("topic")?, a.text("payload")?);
                let offset = match a.opt_text("key")? {
                    Some(key) => honker_stream::publish_keyed(conn, topic, key, payload),
                    None => honker_stream::publish(conn, topic, payload),
                }
                .coded()?;
                Ok(Reply::from(offset.get()))
            }
            "read" => {
                let events = honker_stream::read(
                    conn,
                    a.text("topic")?,
                    Offset(a.int("after_offset")?),
                    a.count("limit")?,
                )
                .coded()?;
                let items = events.iter().map(|e| {
                    object(&[
                        ("offset", e.offset.get().to_string()),
                        ("topic", json!(e.topic).to_string()),
                        ("key", json!(e.key).to_string()),
                        ("payload", e.payload.trim().to_owned()),
                        ("created_ms", e.created.get().to_string()),
                    ])
                });
                Ok(Reply::Raw(array(items)))
            }
            "commit_offset" => {
                let commit = honker_stream::commit_offset(
                    conn,
                    a.text("consumer")?,
                    a.text("topic")?,
                    Offset(a.int("offset")?),
                )
                .coded()?;
                Ok(Reply::from(i64::from(commit.advanced())))
            }
            "offset" => {
                let offset =
                    honker_stream::committed_offset(conn, a.text("consumer")?, a.text("topic")?)
                        .coded()?;
                Ok(Reply::from(offset.map(Offset::get)))
            }
            "schedule" => {
                let options = a.opt_json_text("options");
                let parsed = ScheduleOptions::from_json(options.as_deref()).coded()?;
                let mut sched = Schedule::parse(a.text("cron")?).coded()?;
                if let Some(zone) = parsed.zone {
                    sched = sched.with_zone(zone);
                }
                let spec =
                    ScheduleSpec::new(a.text("name")?, sched, a.text("queue")?, a.text("payload")?)
                        .with_options(parsed.options);
                let info = honker_cron::register(conn, &spec, SystemClock.now()).coded()?;
                Ok(Reply::from(info.next_fire.map(|m| m.get())))
            }
            "cron_next" => {
                let zone = match a.opt_text("tz")? {
                    Some(name) => Zone::parse(name).coded()?,
                    None => Zone::UTC,
                };
                let sched = Schedule::parse(a.text("cron")?).coded()?.with_zone(zone);
                Ok(Reply::from(
                    sched
                        .next_after(Millis(a.int("after_ms")?))
                        .map(|m| m.get()),
                ))
            }
            "cron_tick" => {
                let report = honker_cron::tick(conn, Millis(a.int("now_ms")?)).coded()?;
                let fires: Vec<Value> = report
                    .fires
                    .iter()
                    .map(|f| json!({"schedule": f.schedule, "fire_ms": f.fire_ms.get(), "job_id": f.job_id.map(|j| j.0)}))
                    .collect();
                Ok(Reply::Json(Value::from(fires)))
            }
            other => Err(Failure::new(
                "driver.unsupported_op",
                format!("no op `{other}`"),
            )),
        }
    }
}

/// The queue, job and token of an `ack`/`retry`/`fail`: a Rust caller names its queue.
fn held(a: &Args<'_>) -> Result<(Queue, JobId, LeaseToken), Failure> {
    Ok((
        Queue::new(a.text("queue")?).coded()?,
        JobId(a.int("job_id")?),
        LeaseToken(a.int("lease_token")?),
    ))
}

/// DESIGN §2's consumer loop: sample the epoch, look, then sleep past the sample.
fn listen_wait(conn: &Connection, path: &std::path::Path, a: &Args<'_>) -> Result<Reply, Failure> {
    let (channel, after, limit) = (a.text("channel")?, a.int("after_id")?, a.count("limit")?);
    let deadline = Instant::now() + Duration::from_millis(a.count("timeout_ms")? as u64);
    honker_core::ensure_no_transaction(conn).coded()?;
    let wake = honker_wake::wake_for(path).coded()?;
    loop {
        let seen = wake.epoch();
        let rows = honker_stream::listen(conn, channel, after, limit).coded()?;
        if !rows.is_empty() || Instant::now() >= deadline {
            return Ok(Reply::Raw(notifications(&rows)));
        }
        wake.wait_past(seen, Some(deadline)).coded()?;
    }
}

fn notifications(rows: &[honker_stream::Notification]) -> String {
    array(rows.iter().map(|n| {
        object(&[
            ("id", n.id.to_string()),
            ("channel", json!(n.channel).to_string()),
            ("payload", n.payload.trim().to_owned()),
            ("created_ms", n.created.get().to_string()),
        ])
    }))
}

/// A JSON object from fields whose values are JSON text already.
fn object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn array(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(","))
}

/// One statement of business SQL; rows as objects keyed by column name.
fn sql_rows(conn: &Connection, sql: &str) -> Result<Reply, Failure> {
    let mut stmt = conn.prepare(sql).map_err(sqlite)?;
    let names: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut rows = stmt.query([]).map_err(sqlite)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite)? {
        let mut obj = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            let v = match row.get_ref(i).map_err(sqlite)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(f) => Value::from(f),
                ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => {
                    Value::from(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                }
            };
            obj.insert(name.clone(), v);
        }
        out.push(Value::Object(obj));
    }
    Ok(Reply::Json(Value::from(out)))
}
