//! The driver side of `interop/README.md`'s protocol: read one request per stdin line, answer one
//! result per stdout line, in order.
//!
//! A participant implements [`Driver`] and hands it to [`serve`]. Results that are JSON text
//! honker returned travel as [`Reply::Raw`] and are spliced into the output line verbatim, so the
//! runner can compare a payload's bytes, not only its value.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::io::{self, BufRead, Write};

use serde_json::{Map, Value};

/// What a successful request answers.
#[derive(Debug)]
pub enum Reply {
    /// A value the driver built.
    Json(Value),
    /// JSON text as honker returned it; written to the output line byte for byte.
    Raw(String),
}

impl Reply {
    /// JSON `null`.
    pub fn null() -> Reply {
        Reply::Json(Value::Null)
    }
}

impl From<i64> for Reply {
    fn from(n: i64) -> Reply {
        Reply::Json(Value::from(n))
    }
}

impl From<Option<i64>> for Reply {
    fn from(n: Option<i64>) -> Reply {
        Reply::Json(n.map_or(Value::Null, Value::from))
    }
}

/// A failed request: a stable code (honker's `area.reason`, or one of the protocol's own
/// `sqlite.*` / `driver.*` codes) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The stable code, such as `queue.lease_lost`.
    pub code: String,
    /// Free text.
    pub message: String,
}

impl Failure {
    /// A failure with this code and message.
    pub fn new(code: &str, message: impl fmt::Display) -> Failure {
        Failure {
            code: code.to_owned(),
            message: message.to_string(),
        }
    }

    /// The arguments could not be used (`driver.bad_args`).
    pub fn bad_args(message: impl fmt::Display) -> Failure {
        Failure::new("driver.bad_args", message)
    }
}

/// A participant: executes one request on its connection.
pub trait Driver {
    /// Run `op` with `args`; the protocol's operation table says what each returns.
    ///
    /// # Errors
    ///
    /// A [`Failure`] carrying the stable code of what went wrong.
    fn handle(&mut self, op: &str, args: &Args<'_>) -> Result<Reply, Failure>;
}

/// The `args` object of a request, with typed getters that fail with `driver.bad_args`.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a>(pub &'a Map<String, Value>);

impl<'a> Args<'a> {
    /// A required string argument.
    ///
    /// # Errors
    ///
    /// `driver.bad_args` when it is absent or not a string.
    pub fn text(&self, name: &str) -> Result<&'a str, Failure> {
        self.opt_text(name)?
            .ok_or_else(|| Failure::bad_args(format!("missing string argument `{name}`")))
    }

    /// An optional string argument (absent or `null`: `None`).
    ///
    /// # Errors
    ///
    /// `driver.bad_args` when it is present but not a string.
    pub fn opt_text(&self, name: &str) -> Result<Option<&'a str>, Failure> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Failure::bad_args(format!(
                "argument `{name}` must be a string, got {other}"
            ))),
        }
    }

    /// A required integer argument.
    ///
    /// # Errors
    ///
    /// `driver.bad_args` when it is absent or not an integer.
    pub fn int(&self, name: &str) -> Result<i64, Failure> {
        self.opt_int(name)?
            .ok_or_else(|| Failure::bad_args(format!("missing integer argument `{name}`")))
    }

    /// An optional integer argument (absent or `null`: `None`).
    ///
    /// # Errors
    ///
    /// `driver.bad_args` when it is present but not an integer.
    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, Failure> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                Failure::bad_args(format!("argument `{name}` must be an integer, got {v}"))
            }),
        }
    }

    /// A required non-negative integer argument, as a count.
    ///
    /// # Errors
    ///
    /// `driver.bad_args` when it is absent, not an integer, or negative (a negative count cannot
    /// be expressed in the Rust API, so the driver refuses it before honker sees it).
    pub fn count(&self, name: &str) -> Result<usize, Failure> {
        let n = self.int(name)?;
        usize::try_from(n)
            .map_err(|_| Failure::bad_args(format!("argument `{name}` must be >= 0, got {n}")))
    }

    /// An optional JSON argument (`options`), serialized back to JSON text for honker.
    pub fn opt_json_text(&self, name: &str) -> Option<String> {
        match self.0.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.to_string()),
        }
    }
}

/// Serve requests from stdin until it ends; each answer is one line on stdout.
///
/// # Errors
///
/// I/O errors on stdin or stdout (the runner went away).
pub fn serve(driver: &mut dyn Driver) -> io::Result<()> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let answer = answer(driver, &line);
        out.write_all(answer.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
}

/// The output line (without its newline) for one input line.
pub fn answer(driver: &mut dyn Driver, line: &str) -> String {
    let request: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return failure_line(
                &Value::Null,
                &Failure::new("driver.bad_request", format!("not JSON: {e}")),
            );
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(op) = request.get("op").and_then(Value::as_str) else {
        return failure_line(&id, &Failure::new("driver.bad_request", "no string `op`"));
    };
    let empty = Map::new();
    let args = match request.get("args") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            return failure_line(
                &id,
                &Failure::new(
                    "driver.bad_request",
                    format!("`args` is not an object: {other}"),
                ),
            );
        }
    };
    match driver.handle(op, &Args(args)) {
        Ok(Reply::Json(v)) => format!(r#"{{"id":{id},"ok":true,"value":{v}}}"#),
        Ok(Reply::Raw(text)) => format!(r#"{{"id":{id},"ok":true,"value":{}}}"#, text.trim()),
        Err(f) => failure_line(&id, &f),
    }
}

fn failure_line(id: &Value, f: &Failure) -> String {
    let error = serde_json::json!({"code": f.code, "message": f.message});
    format!(r#"{{"id":{id},"ok":false,"error":{error}}}"#)
}

/// The `honker: <code>: <message>` form of a SQL function's error, split; `None` when `text`
/// does not carry a honker code.
pub fn honker_code(text: &str) -> Option<(&str, &str)> {
    let at = text.find("honker: ")?;
    let rest = &text[at + "honker: ".len()..];
    let (code, message) = rest.split_once(": ")?;
    let well_formed = code.contains('.')
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_' || c.is_ascii_digit());
    well_formed.then_some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Driver for Echo {
        fn handle(&mut self, op: &str, args: &Args<'_>) -> Result<Reply, Failure> {
            match op {
                "raw" => Ok(Reply::Raw(args.text("text")?.to_owned())),
                "n" => Ok(Reply::from(args.int("n")?)),
                _ => Err(Failure::new("driver.unsupported_op", op)),
            }
        }
    }

    #[test]
    fn raw_replies_are_spliced_byte_for_byte() {
        let line = answer(
            &mut Echo,
            r#"{"id":3,"op":"raw","args":{"text":"{\"b\":1.0,\"a\":\"é\"}"}}"#,
        );
        assert_eq!(line, r#"{"id":3,"ok":true,"value":{"b":1.0,"a":"é"}}"#);
    }

    #[test]
    fn failures_carry_the_code_and_echo_the_id() {
        let line = answer(&mut Echo, r#"{"id":"x","op":"nope"}"#);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["code"], "driver.unsupported_op");
        let line = answer(&mut Echo, r#"{"id":1,"op":"n","args":{"n":"1"}}"#);
        assert!(line.contains("driver.bad_args"), "{line}");
        let line = answer(&mut Echo, "not json");
        assert!(line.contains("driver.bad_request"), "{line}");
    }

    #[test]
    fn honker_code_is_split_only_from_a_well_formed_prefix() {
        assert_eq!(
            honker_code("Runtime error near line 3: honker: queue.lease_lost: job 1 lost"),
            Some(("queue.lease_lost", "job 1 lost"))
        );
        assert_eq!(honker_code("database is locked"), None);
        assert_eq!(honker_code("honker: Not A Code: x"), None);
    }
}
