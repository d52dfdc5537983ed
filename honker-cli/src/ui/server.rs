//! The HTTP side of `honker ui`: a tiny_http server, a few threads answering requests (each
//! with its own read connection, and a write connection when writes are allowed), one thread
//! per Server-Sent Events stream, and the rules that keep it safe by default.
//!
//! Safety: a loopback bind answers only requests whose `Host` is a loopback name (no DNS
//! rebinding); any other bind needs the token on every request but `/health`. Actions need
//! `--allow-writes` and the token in the `X-Honker-Token` (or `Authorization: Bearer`) header,
//! which a cross-site form or image cannot send. The page is served with a Content-Security-Policy
//! that allows only its own script and style, and it renders every value as text.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rusqlite::Connection;
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, StatusCode};

use super::actions::{self, Refusal};
use super::live::{self, KEEPALIVE, Live, Next, Throughput};
use super::metrics;
use super::read::{self, DEFAULT_PAGE, Filter, StateFilter};

const PAGE_HTML: &str = include_str!("page.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// Threads answering ordinary requests (event streams get their own).
const REQUEST_THREADS: usize = 4;
/// Largest action body accepted.
const MAX_BODY: u64 = 1 << 20;
/// An overview computed this recently, with no commit since, is served again as is.
const OVERVIEW_MAX_AGE: Duration = Duration::from_millis(1000);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What `honker ui` was started with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) db: PathBuf,
    pub(crate) bind: SocketAddr,
    pub(crate) allow_writes: bool,
    pub(crate) token: Option<String>,
    pub(crate) loopback: bool,
}

/// The last overview, keyed by the `data_version` of one connection kept for that purpose: it
/// changes whenever any other connection (another process, or this server's own writes) commits.
#[derive(Debug)]
struct OverviewCache {
    version_conn: Connection,
    last: Option<(i64, Instant, Value)>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    live: Arc<Live>,
    throughput: Mutex<Throughput>,
    cache: Mutex<OverviewCache>,
}

/// A started server; [`Server::serve`] answers requests until the process ends.
pub(crate) struct Server {
    http: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    pub(crate) fn start(config: Config) -> Result<Server> {
        // Fail at start, with the file's name, if it cannot be read as a honker database.
        let probe = open_read(&config)?;
        read::queue_names(&probe).context("reading the queues")?;
        let live = Arc::new(Live::default());
        live::start(&config.db, Arc::clone(&live))?;
        let http = tiny_http::Server::http(config.bind)
            .map_err(|e| anyhow!("cannot listen on {}: {e}", config.bind))?;
        Ok(Server {
            http: Arc::new(http),
            shared: Arc::new(Shared {
                config,
                live,
                throughput: Mutex::new(Throughput::default()),
                cache: Mutex::new(OverviewCache {
                    version_conn: probe,
                    last: None,
                }),
            }),
        })
    }

    /// The address actually bound (a `:0` port resolved).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.http
            .server_addr()
            .to_ip()
            .unwrap_or(self.shared.config.bind)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    pub(crate) fn serve(self) -> Result<()> {
        let mut threads = Vec::new();
        for i in 0..REQUEST_THREADS {
            let http = Arc::clone(&self.http);
            let shared = Arc::clone(&self.shared);
            threads.push(
                thread::Builder::new()
                    .name(format!("honker-ui-http-{i}"))
                    .spawn(move || {
                        let mut conns = Conns::default();
                        while let Ok(req) = http.recv() {
                            handle(&shared, &mut conns, req);
                        }
                    })
                    .context("cannot start a request thread")?,
            );
        }
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

fn open_read(config: &Config) -> Result<Connection> {
    honker_core::open_read_only(&config.db)
        .with_context(|| format!("cannot open {} read-only", config.db.display()))
}

/// A request thread's connections, opened on first use and reopened after an error.
#[derive(Debug, Default)]
struct Conns {
    read: Option<Connection>,
    write: Option<Connection>,
}

impl Conns {
    fn read(&mut self, config: &Config) -> Result<&Connection> {
        if self.read.is_none() {
            self.read = Some(open_read(config)?);
        }
        Ok(self.read.as_ref().expect("just opened"))
    }

    fn write(&mut self, config: &Config) -> Result<&Connection> {
        if self.write.is_none() {
            let c = honker_core::open(&config.db)
                .with_context(|| format!("cannot open {} for writing", config.db.display()))?;
            self.write = Some(c);
        }
        Ok(self.write.as_ref().expect("just opened"))
    }
}

/// An answer before it is sent.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: v.to_string(),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(
            status,
            &json!({"error": {"code": code, "message": message}}),
        )
    }

    fn refusal(r: &Refusal) -> Reply {
        Reply::error(r.status, r.code, &r.message)
    }

    fn internal(e: &anyhow::Error) -> Reply {
        let code = crate::errors::code_of(e).unwrap_or("ui.internal");
        let status = if code == "db.busy" { 503 } else { 500 };
        Reply::error(status, code, &crate::errors::message(e))
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn send(req: Request, r: Reply) {
    let mut resp = Response::from_string(r.body)
        .with_status_code(StatusCode(r.status))
        .with_header(header(
            "Content-Type",
            &format!("{}; charset=utf-8", r.content_type),
        ))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Referrer-Policy", "no-referrer"));
    if r.content_type == "text/html" {
        resp = resp
            .with_header(header("Content-Security-Policy", CSP))
            .with_header(header("X-Frame-Options", "DENY"));
    }
    let _ = req.respond(resp);
}

/// The request's header `name` (case-insensitive).
fn req_header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Percent-decode a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token a request carries: `X-Honker-Token`, `Authorization: Bearer`, or (for reads
/// only, since EventSource cannot send headers) `?token=`.
fn token_of(req: &Request, query: &HashMap<String, String>, allow_query: bool) -> Option<String> {
    req_header(req, "X-Honker-Token")
        .map(str::to_owned)
        .or_else(|| {
            req_header(req, "Authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
        .or_else(|| allow_query.then(|| query.get("token").cloned()).flatten())
}

/// Whether a loopback server should answer this `Host` (DNS rebinding defence).
fn host_ok(config: &Config, req: &Request) -> bool {
    if !config.loopback {
        return true;
    }
    let Some(host) = req_header(req, "Host") else {
        return true;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn handle(shared: &Arc<Shared>, conns: &mut Conns, mut req: Request) {
    let config = &shared.config;
    let url = req.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let query = parse_query(query);
    let method = req.method().clone();
    if !host_ok(config, &req) {
        return send(
            req,
            Reply::error(
                403,
                "ui.bad_host",
                "this server answers loopback host names only",
            ),
        );
    }
    // Static files and /health need no token: the page holds no data, and load balancers
    // probe /health without one.
    match (&method, path) {
        (Method::Get, "/" | "/index.html") => {
            return send(
                req,
                Reply {
                    status: 200,
                    content_type: "text/html",
                    body: PAGE_HTML.to_owned(),
                },
            );
        }
        (Method::Get, "/app.js") => {
            return send(
                req,
                Reply {
                    status: 200,
                    content_type: "text/javascript",
                    body: APP_JS.to_owned(),
                },
            );
        }
        (Method::Get, "/app.css") => {
            return send(
                req,
                Reply {
                    status: 200,
                    content_type: "text/css",
                    body: APP_CSS.to_owned(),
                },
            );
        }
        (Method::Get, "/health") => return send(req, health(config, conns)),
        _ => {}
    }
    let given = token_of(&req, &query, method == Method::Get);
    let token_ok = match (&config.token, &given) {
        (Some(t), Some(g)) => same(t, g),
        _ => false,
    };
    if !config.loopback && !token_ok {
        return send(
            req,
            Reply::error(401, "ui.token_required", "this server needs its token"),
        );
    }
    let reply = match (&method, path) {
        (Method::Get, "/api/events") => return events(shared, req),
        (Method::Get, "/api/config") => Ok(Reply::json(
            200,
            &json!({
                "db": config.db.display().to_string(),
                "writes": config.allow_writes,
                "token_required": !config.loopback,
                "version": honker_core::VERSION,
            }),
        )),
        (Method::Get, "/api/overview") => overview(shared, conns).map(|v| Reply::json(200, &v)),
        (Method::Get, "/metrics") => {
            let om = req_header(&req, "Accept")
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            overview(shared, conns).map(|v| {
                let t = lock(&shared.throughput);
                Reply {
                    status: 200,
                    content_type: if om {
                        "application/openmetrics-text; version=1.0.0"
                    } else {
                        "text/plain; version=0.0.4"
                    },
                    body: metrics::render(&v, &t, om),
                }
            })
        }
        (Method::Get, "/api/jobs") => jobs(conns, config, &query),
        (Method::Get, p) if p.starts_with("/api/job/") => {
            job(conns, config, &p["/api/job/".len()..])
        }
        (Method::Get, "/api/cron") => conns
            .read(config)
            .and_then(read::schedules)
            .map(|v| Reply::json(200, &json!({"now_ms": read::now_ms(), "schedules": v}))),
        (Method::Get, "/api/workers") => conns
            .read(config)
            .and_then(read::workers)
            .map(|v| Reply::json(200, &json!({"now_ms": read::now_ms(), "workers": v}))),
        (Method::Post, "/api/action") => {
            if !config.allow_writes {
                Ok(Reply::error(
                    403,
                    "ui.read_only",
                    "this server is read-only: start it with --allow-writes",
                ))
            } else if !token_ok || !given_by_header(&req) {
                Ok(Reply::error(
                    401,
                    "ui.token_required",
                    "actions need the token in the X-Honker-Token header",
                ))
            } else {
                Ok(action(conns, config, &mut req))
            }
        }
        (Method::Get | Method::Head, _) => Ok(Reply::error(404, "ui.not_found", "no such page")),
        _ => Ok(Reply::error(405, "ui.method", "method not allowed")),
    };
    let reply = reply.unwrap_or_else(|e| {
        // A connection that failed may be broken (the file replaced, say): open a new one.
        *conns = Conns::default();
        Reply::internal(&e)
    });
    send(req, reply)
}

fn given_by_header(req: &Request) -> bool {
    req_header(req, "X-Honker-Token").is_some()
        || req_header(req, "Authorization").is_some_and(|v| v.starts_with("Bearer "))
}

fn health(config: &Config, conns: &mut Conns) -> Reply {
    let r = conns
        .read(config)
        .and_then(|c| Ok(honker_core::schema::schema_version(c)?.unwrap_or(0)));
    match r {
        Ok(v) => Reply::json(200, &json!({"status": "ok", "schema_version": v})),
        Err(e) => {
            *conns = Conns::default();
            Reply::json(
                503,
                &json!({"status": "unavailable", "error": crate::errors::message(&e)}),
            )
        }
    }
}

/// The overview: queues (with throughput), streams, schedules, channels.
fn overview(shared: &Shared, conns: &mut Conns) -> Result<Value> {
    let config = &shared.config;
    // Sample the version before looking, as the epoch loop does: a commit after this line
    // changes the version the next request sees, so it is never cached away.
    let version: i64 = {
        let cache = lock(&shared.cache);
        let v = cache
            .version_conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if let Some((cv, at, value)) = &cache.last
            && *cv == v
            && at.elapsed() < OVERVIEW_MAX_AGE
        {
            return Ok(value.clone());
        }
        v
    };
    let conn = conns.read(config)?;
    let mut queues = read::queues(conn)?;
    {
        let mut t = lock(&shared.throughput);
        t.record(conn, &queues)?;
        for q in &mut queues {
            let name = q["name"].as_str().unwrap_or_default().to_owned();
            let exact = q["keep_history_ms"].as_i64().unwrap_or(0) > 0;
            let minutes = if exact {
                live::history_minutes(conn, &name)?
            } else {
                t.minutes(&name)
            };
            q["throughput"] = json!({"exact": exact, "per_minute": minutes});
        }
    }
    let info = honker_wake::info(conn).ok();
    let v = json!({
        "now_ms": read::now_ms(),
        "db": config.db.display().to_string(),
        "writes": config.allow_writes,
        "wake_backend": info.as_ref().map(|i| i.wake_backend.to_string()),
        "queues": queues,
        "streams": read::streams(conn)?,
        "schedules": read::schedules(conn)?,
        "channels": read::channels(conn)?,
        "streams_open": shared.live.subscribers(),
    });
    lock(&shared.cache).last = Some((version, Instant::now(), v.clone()));
    Ok(v)
}

/// The filter of a job-list request's query.
fn filter_of(query: &HashMap<String, String>) -> Result<Filter> {
    let get = |k: &str| query.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(Filter {
        queue: get("queue"),
        state: StateFilter::parse(query.get("state").map_or("", String::as_str))?,
        key: get("key"),
        value: get("value"),
        error: get("error"),
    })
}

fn jobs(conns: &mut Conns, config: &Config, query: &HashMap<String, String>) -> Result<Reply> {
    let filter = match filter_of(query) {
        Ok(f) => f,
        Err(e) => return Ok(Reply::error(400, "ui.bad_filter", &format!("{e:#}"))),
    };
    let int = |k: &str| -> Result<Option<i64>, String> {
        query
            .get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{k} must be an integer"))
            })
            .transpose()
    };
    let (before, limit) = match (int("before"), int("limit")) {
        (Ok(b), Ok(l)) => (b, l.unwrap_or(DEFAULT_PAGE)),
        (Err(e), _) | (_, Err(e)) => return Ok(Reply::error(400, "ui.bad_filter", &e)),
    };
    let conn = conns.read(config)?;
    let page = match read::jobs(conn, &filter, before, limit) {
        Ok(p) => p,
        // A bad JSON path or filter combination is the caller's mistake, not ours.
        Err(e) if crate::errors::code_of(&e).is_none() => {
            return Ok(Reply::error(400, "ui.bad_filter", &format!("{e:#}")));
        }
        Err(e) => return Err(e),
    };
    Ok(Reply::json(
        200,
        &json!({
            "now_ms": read::now_ms(),
            "state": filter.state.as_str(),
            "jobs": page.jobs,
            "next_before": page.next_before,
            "count": page.count,
            "count_exact": page.count_exact,
            "count_cap": read::COUNT_CAP,
            "scanned_to": page.scanned_to,
            "queues": read::queue_names(conn)?,
        }),
    ))
}

fn job(conns: &mut Conns, config: &Config, id: &str) -> Result<Reply> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(Reply::error(400, "ui.bad_id", "a job id is an integer"));
    };
    match read::job(conns.read(config)?, id)? {
        Some(j) => Ok(Reply::json(
            200,
            &json!({"now_ms": read::now_ms(), "job": j}),
        )),
        None => Ok(Reply::error(
            404,
            "ui.not_found",
            &format!("no job {id} (acked without history, cancelled, purged, or never enqueued)"),
        )),
    }
}

fn action(conns: &mut Conns, config: &Config, req: &mut Request) -> Reply {
    let mut body = String::new();
    if req
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_string(&mut body)
        .is_err()
    {
        return Reply::error(400, "ui.bad_action", "the body is not UTF-8 text");
    }
    if body.len() as u64 > MAX_BODY {
        return Reply::error(413, "ui.too_large", "the body is over 1 MiB");
    }
    let action = match actions::parse(&body) {
        Ok(a) => a,
        Err(r) => return Reply::refusal(&r),
    };
    let conn = match conns.write(config) {
        Ok(c) => c,
        Err(e) => return Reply::internal(&e),
    };
    match actions::run(conn, &action) {
        Ok(v) => Reply::json(200, &v),
        Err(r) => Reply::refusal(&r),
    }
}

/// A Server-Sent Events stream: `change` whenever the file may have changed, a comment every
/// [`KEEPALIVE`] otherwise, `gone` if the file can no longer be watched.
fn events(shared: &Arc<Shared>, req: Request) {
    let Some(sub) = shared.live.subscribe() else {
        return send(
            req,
            Reply::error(503, "ui.too_many_streams", "too many open event streams"),
        );
    };
    let live = Arc::clone(&shared.live);
    let spawned = thread::Builder::new()
        .name("honker-ui-sse".into())
        .spawn(move || {
            let _sub = sub;
            let mut w = req.into_writer();
            let mut seen = live.generation();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                 X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n\
                 retry: 2000\n\nevent: hello\ndata: {{\"generation\":{seen}}}\n\n"
            );
            if w.write_all(head.as_bytes())
                .and_then(|()| w.flush())
                .is_err()
            {
                return;
            }
            loop {
                let msg = match live.wait_past(seen, KEEPALIVE) {
                    Next::Changed(g) => {
                        seen = g;
                        format!("event: change\ndata: {{\"generation\":{g}}}\n\n")
                    }
                    Next::Quiet => ": keep-alive\n\n".to_owned(),
                    Next::Failed(why) => {
                        let data = json!({ "error": why }).to_string();
                        let _ = write!(w, "event: gone\ndata: {data}\n\n");
                        let _ = w.flush();
                        return;
                    }
                };
                if w.write_all(msg.as_bytes())
                    .and_then(|()| w.flush())
                    .is_err()
                {
                    return; // the page closed the stream
                }
            }
        });
    // If the thread cannot start, the request went down with the closure: the client sees
    // the connection close, and its EventSource retries.
    drop(spawned);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = parse_query("key=user.id&value=%22a+b%22&error=disk%20full&x");
        assert_eq!(q["key"], "user.id");
        assert_eq!(q["value"], "\"a b\"");
        assert_eq!(q["error"], "disk full");
        assert_eq!(q["x"], "");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%E2%9C%93"), "✓");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abcdef0123456789", "abcdef0123456789"));
        assert!(!same("abcdef0123456789", "abcdef012345678"));
        assert!(!same("abcdef0123456789", "abcdef0123456780"));
    }
}
