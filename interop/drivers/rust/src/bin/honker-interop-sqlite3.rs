//! The `sqlite3` interop participant: Debian's `sqlite3` CLI with `.load` of `libhonker_ext.so`.
//!
//! One interactive `sqlite3` process per actor (so a transaction spans requests), driven through
//! pipes: each request becomes one SQL statement in `.mode json`, followed by a `.print` of a
//! sentinel line that marks the end of its output. The CLI writes errors to stderr, which is
//! merged into stdout so an error line arrives before the sentinel. JSON text that a honker
//! function returns is passed on byte for byte.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};

use honker_interop::{Args, Driver, Failure, Reply, honker_code, serve};
use serde_json::Value;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(db), None) = (args.next(), args.next()) else {
        eprintln!(
            "usage: honker-interop-sqlite3 <database file>  (HONKER_EXT_PATH: the extension)"
        );
        return ExitCode::from(2);
    };
    let Some(ext) = std::env::var_os("HONKER_EXT_PATH") else {
        eprintln!("honker-interop-sqlite3: HONKER_EXT_PATH must name libhonker_ext.so");
        return ExitCode::from(2);
    };
    let mut driver = Sqlite3Driver {
        db: PathBuf::from(db),
        ext: PathBuf::from(ext),
        session: None,
        sentinels: 0,
    };
    let served = serve(&mut driver);
    if let Some(s) = driver.session.take() {
        s.quit();
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("honker-interop-sqlite3: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Sqlite3Driver {
    db: PathBuf,
    ext: PathBuf,
    session: Option<Session>,
    sentinels: u64,
}

/// One running `sqlite3` process.
struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    fn quit(mut self) {
        // Closing stdin ends the CLI; wait so no process outlives the driver.
        let _ = writeln!(self.stdin, ".quit");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// What one statement printed: its rows, or the error line the CLI wrote.
enum Output {
    Rows(Vec<Value>),
    Error(String),
}

/// How a SQL function's single result (`v`) becomes the reply.
#[derive(Clone, Copy)]
enum Shape {
    /// INTEGER or NULL.
    Scalar,
    /// JSON text or NULL, spliced verbatim.
    JsonText,
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn sql_int(n: Option<i64>) -> String {
    n.map_or_else(|| "NULL".to_owned(), |n| n.to_string())
}

fn sql_opt_text(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".to_owned(), sql_text)
}

impl Sqlite3Driver {
    fn open(&mut self) -> Result<(), Failure> {
        if self.session.is_some() {
            return Ok(());
        }
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec sqlite3 -batch "$0" 2>&1"#)
            .arg(&self.db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::new("driver.failed", format!("cannot start sqlite3: {e}")))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        self.session = Some(Session {
            child,
            stdin,
            stdout,
        });
        // What honker_core::open applies (until the extension's honker_setup() lands), set
        // before the load so the schema is created in WAL mode.
        let setup = [
            ".mode json",
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA busy_timeout=5000",
            "PRAGMA foreign_keys=ON",
        ];
        for stmt in setup {
            self.statement(stmt)?;
        }
        let ext = self.ext.to_string_lossy().into_owned();
        if let Err(f) = self.statement(&format!(".load {ext}")) {
            if let Some(s) = self.session.take() {
                s.quit();
            }
            return Err(f);
        }
        Ok(())
    }

    /// Run one statement (or dot command) and collect what it printed up to the sentinel.
    fn run(&mut self, stmt: &str) -> Result<Output, Failure> {
        self.sentinels += 1;
        let sentinel = format!("@@honker-interop-{}@@", self.sentinels);
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| Failure::new("driver.failed", "no sqlite3 session"))?;
        let stmt = stmt.trim().trim_end_matches(';');
        let terminator = if stmt.starts_with('.') { "" } else { ";" };
        let script = format!("{stmt}{terminator}\n.print {sentinel}\n");
        let broken =
            |e: std::io::Error| Failure::new("driver.failed", format!("sqlite3 pipe: {e}"));
        session.stdin.write_all(script.as_bytes()).map_err(broken)?;
        session.stdin.flush().map_err(broken)?;
        let mut printed = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if session.stdout.read_line(&mut line).map_err(broken)? == 0 {
                self.session = None;
                return Err(Failure::new(
                    "driver.failed",
                    format!("sqlite3 exited; it printed: {printed}"),
                ));
            }
            if line.trim_end() == sentinel {
                break;
            }
            printed.push_str(&line);
        }
        // In `.mode json` every row line starts with `[` or `{`; anything else is the CLI's error.
        if let Some(err) = printed
            .lines()
            .find(|l| !l.is_empty() && !l.starts_with('[') && !l.starts_with('{'))
        {
            return Ok(Output::Error(err.to_owned()));
        }
        if printed.trim().is_empty() {
            return Ok(Output::Rows(Vec::new()));
        }
        match serde_json::from_str::<Value>(&printed) {
            Ok(Value::Array(rows)) => Ok(Output::Rows(rows)),
            _ => Err(Failure::new(
                "driver.failed",
                format!("sqlite3 printed what is not a JSON array: {printed}"),
            )),
        }
    }

    /// Run one statement; an error line becomes a [`Failure`] with its honker code.
    fn statement(&mut self, stmt: &str) -> Result<Vec<Value>, Failure> {
        match self.run(stmt)? {
            Output::Rows(rows) => Ok(rows),
            Output::Error(line) => Err(match honker_code(&line) {
                Some((code, message)) => Failure::new(code, message),
                None if line.contains("database is locked") => Failure::new("sqlite.busy", line),
                None => Failure::new("sqlite.error", line),
            }),
        }
    }

    /// `SELECT <call> AS v` and shape its one value.
    fn call(&mut self, call: &str, shape: Shape) -> Result<Reply, Failure> {
        let rows = self.statement(&format!("SELECT {call} AS v"))?;
        let v = rows
            .first()
            .and_then(|r| r.get("v"))
            .cloned()
            .unwrap_or(Value::Null);
        match (shape, v) {
            (_, Value::Null) => Ok(Reply::null()),
            (Shape::JsonText, Value::String(text)) => Ok(Reply::Raw(text)),
            (Shape::Scalar, v) => Ok(Reply::Json(v)),
            (Shape::JsonText, other) => Err(Failure::new(
                "driver.failed",
                format!("{call} returned {other}, not JSON text"),
            )),
        }
    }
}

impl Driver for Sqlite3Driver {
    fn handle(&mut self, op: &str, a: &Args<'_>) -> Result<Reply, Failure> {
        if op == "close" {
            if let Some(s) = self.session.take() {
                s.quit();
            }
            return Ok(Reply::null());
        }
        self.open()?;
        let t = |name: &str| a.text(name).map(sql_text);
        let i = |name: &str| a.int(name).map(|n| n.to_string());
        let oi = |name: &str| a.opt_int(name).map(sql_int);
        let ot = |name: &str| a.opt_text(name).map(sql_opt_text);
        let oj = |name: &str| sql_opt_text(a.opt_json_text(name).as_deref());
        use Shape::{JsonText, Scalar};
        match op {
            "open" => Ok(Reply::null()),
            "begin" => self.statement("BEGIN IMMEDIATE").map(|_| Reply::null()),
            "commit" => self.statement("COMMIT").map(|_| Reply::null()),
            "rollback" => self.statement("ROLLBACK").map(|_| Reply::null()),
            "sql" => {
                let rows = self.statement(a.text("sql")?)?;
                Ok(Reply::Json(Value::from(rows)))
            }
            "queue_configure" => {
                let call = format!("honker_queue_configure({}, {})", t("queue")?, oj("options"));
                self.call(&call, JsonText)
            }
            "enqueue" => {
                let call = format!(
                    "honker_enqueue({}, {}, {})",
                    t("queue")?,
                    t("payload")?,
                    oj("options")
                );
                self.call(&call, Scalar)
            }
            "claim" => {
                let call = format!(
                    "honker_claim({}, {}, {}, {})",
                    t("queue")?,
                    t("worker")?,
                    i("n")?,
                    oi("lease_ms")?
                );
                self.call(&call, JsonText)
            }
            "ack" => self.call(
                &format!("honker_ack({}, {})", i("job_id")?, i("lease_token")?),
                Scalar,
            ),
            "retry" => {
                let call = format!(
                    "honker_retry({}, {}, {}, {})",
                    i("job_id")?,
                    i("lease_token")?,
                    oi("delay_ms")?,
                    ot("error")?
                );
                self.call(&call, JsonText)
            }
            "fail" => {
                let call = format!(
                    "honker_fail({}, {}, {})",
                    i("job_id")?,
                    i("lease_token")?,
                    t("error")?
                );
                self.call(&call, Scalar)
            }
            "job" => self.call(&format!("honker_job({})", i("job_id")?), JsonText),
            "dead_requeue" => self.call(&format!("honker_dead_requeue({})", i("job_id")?), Scalar),
            "result_save" => {
                let call = format!(
                    "honker_result_save({}, {}, {})",
                    i("job_id")?,
                    t("value")?,
                    oi("ttl_ms")?
                );
                self.call(&call, Scalar)
            }
            "result_get" => self.call(&format!("honker_result_get({})", i("job_id")?), JsonText),
            "notify" => self.call(
                &format!("honker_notify({}, {})", t("channel")?, t("payload")?),
                Scalar,
            ),
            "listen" => {
                let call = format!(
                    "honker_listen({}, {}, {})",
                    t("channel")?,
                    i("after_id")?,
                    i("limit")?
                );
                self.call(&call, JsonText)
            }
            "listen_wait" => {
                let call = format!(
                    "honker_listen_wait({}, {}, {}, {})",
                    t("channel")?,
                    i("after_id")?,
                    i("limit")?,
                    i("timeout_ms")?
                );
                self.call(&call, JsonText)
            }
            "publish" => {
                let call = format!(
                    "honker_publish({}, {}, {})",
                    t("topic")?,
                    t("payload")?,
                    ot("key")?
                );
                self.call(&call, Scalar)
            }
            "read" => {
                let call = format!(
                    "honker_read({}, {}, {})",
                    t("topic")?,
                    i("after_offset")?,
                    i("limit")?
                );
                self.call(&call, JsonText)
            }
            "commit_offset" => {
                let call = format!(
                    "honker_commit_offset({}, {}, {})",
                    t("consumer")?,
                    t("topic")?,
                    i("offset")?
                );
                self.call(&call, Scalar)
            }
            "offset" => self.call(
                &format!("honker_offset({}, {})", t("consumer")?, t("topic")?),
                Scalar,
            ),
            "schedule" => {
                let call = format!(
                    "honker_schedule({}, {}, {}, {}, {})",
                    t("name")?,
                    t("cron")?,
                    t("queue")?,
                    t("payload")?,
                    oj("options")
                );
                self.call(&call, Scalar)
            }
            "cron_next" => {
                let call = format!(
                    "honker_cron_next({}, {}, {})",
                    t("cron")?,
                    i("after_ms")?,
                    ot("tz")?
                );
                self.call(&call, Scalar)
            }
            "cron_tick" => self.call(&format!("honker_cron_tick({})", i("now_ms")?), JsonText),
            other => Err(Failure::new(
                "driver.unsupported_op",
                format!("no op `{other}`"),
            )),
        }
    }
}
