//! `honker ui` as a real process: every endpoint and action against a real file, with real
//! worker processes running, over plain HTTP/1.1 from this test process.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use honker_queue::{EnqueueOptions, JobId, Queue};
use serde_json::{Value, json};

use crate::{DEADLINE, honker, lines, ok, path_str};

const TOKEN: &str = "test-token-0123456789abcdef";

/// A running `honker ui`; killed on drop.
struct Ui {
    child: Child,
    addr: String,
}

impl Ui {
    fn start(db: &Path, extra: &[&str]) -> Ui {
        let mut child = honker()
            .args(["ui", "--db", path_str(db), "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start honker ui");
        let out = lines(child.stdout.take().unwrap());
        let first = out
            .recv_timeout(DEADLINE)
            .expect("honker ui printed its address");
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        Ui { child, addr }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = http(&self.addr, "GET", path, &[], "");
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    fn ok(&self, path: &str) -> Value {
        let (status, v) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    fn act(&self, action: Value) -> (u16, Value) {
        let (status, _, body) = http(
            &self.addr,
            "POST",
            "/api/action",
            &[
                ("X-Honker-Token", TOKEN),
                ("Content-Type", "application/json"),
            ],
            &action.to_string(),
        );
        (status, serde_json::from_str(&body).expect("a JSON answer"))
    }

    fn act_ok(&self, action: Value) -> Value {
        let (status, v) = self.act(action.clone());
        assert_eq!(status, 200, "{action}: {v}");
        v
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status, head and body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to honker ui");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// A `honker worker` process on `queue` running `script` per job; stops when dropped (its
/// stdin closes, so it shuts down gracefully).
struct WorkerProc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl WorkerProc {
    fn start(db: &Path, queue: &str, concurrency: &str, script: &str) -> WorkerProc {
        let mut child = honker()
            .args([
                "worker",
                "--db",
                path_str(db),
                "--queue",
                queue,
                "--concurrency",
                concurrency,
            ])
            .args(["--until-stdin-closes", "--", "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start honker worker");
        let stdin = child.stdin.take();
        WorkerProc { child, stdin }
    }

    /// Stop it and return its closing report line.
    fn stop(mut self) -> String {
        drop(self.stdin.take());
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "worker failed: {err}");
        err.lines()
            .rev()
            .find(|l| l.starts_with("honker worker:"))
            .unwrap_or_else(|| panic!("no report in {err}"))
            .to_owned()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The number before `what` in a worker report ("honker worker: 3 acked, 0 retried (0 dead),
/// 0 released on shutdown, 0 lost leases").
fn report_count(report: &str, what: &str) -> u64 {
    report
        .split(',')
        .find(|p| p.contains(what))
        .and_then(|p| p.split_whitespace().rev().find_map(|w| w.parse().ok()))
        .unwrap_or_else(|| panic!("no {what:?} in {report:?}"))
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn opts() -> EnqueueOptions {
    EnqueueOptions::default()
}

/// A file with a bit of everything, and a worker process acking jobs of queue "work".
fn populated(dir: &Path) -> (std::path::PathBuf, rusqlite::Connection) {
    let db = dir.join("ui.db");
    let conn = honker_core::open(&db).unwrap();
    let mail = Queue::new("mail").unwrap();
    mail.enqueue(&conn, r#"{"to":"a@x","user":{"id":7}}"#, &opts())
        .unwrap();
    mail.enqueue(&conn, r#"{"to":"b@x","user":{"id":8}}"#, &opts())
        .unwrap();
    mail.enqueue(
        &conn,
        r#"{"later":true}"#,
        &EnqueueOptions {
            delay_ms: Some(3_600_000),
            ..opts()
        },
    )
    .unwrap();
    // One dead letter with an error.
    let dead = mail
        .enqueue(
            &conn,
            r#"{"x":"<script>alert(1)</script>"}"#,
            &EnqueueOptions {
                max_attempts: Some(1),
                ..opts()
            },
        )
        .unwrap();
    let c = mail.claim(&conn, "setup", 10, None).unwrap();
    for j in &c {
        if j.id == dead {
            mail.fail(&conn, j.id, j.lease_token, "SMTP 550: mailbox <full>")
                .unwrap();
        } else {
            mail.release(&conn, j.id, j.lease_token).unwrap();
        }
    }
    honker_stream::publish(&conn, "orders", r#"{"n":1}"#).unwrap();
    honker_stream::publish(&conn, "orders", r#"{"n":2}"#).unwrap();
    honker_stream::register_consumer(&conn, "billing", "orders", honker_stream::Offset(0)).unwrap();
    // One notification two minutes old, then one now: only the second is of the last minute.
    conn.execute(
        "INSERT INTO honker_notifications (channel, payload, created_ms)
         VALUES ('pings', '{}', CAST(unixepoch('subsec') * 1000 AS INTEGER) - 120000)",
        [],
    )
    .unwrap();
    honker_stream::notify(&conn, "pings", r#"{"hi":1}"#).unwrap();
    let sched = honker_cron::Schedule::parse("@every 1h").unwrap();
    let spec = honker_cron::ScheduleSpec::new("hourly", sched, "reports", r#"{"kind":"hourly"}"#);
    honker_cron::register(
        &conn,
        &spec,
        honker_core::Clock::now(&honker_core::SystemClock),
    )
    .unwrap();
    (db, conn)
}

#[test]
fn every_read_endpoint_reports_what_the_file_holds_while_a_worker_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn) = populated(dir.path());
    let work = Queue::new("work").unwrap();
    // A queue that keeps a history: its throughput is counted exactly from it.
    let patch =
        honker_queue::QueueOptionsPatch::from_json(r#"{"keep_history_ms":3600000}"#).unwrap();
    work.configure(&conn, &patch).unwrap();
    let worker = WorkerProc::start(&db, "work", "2", "cat >/dev/null");
    let ui = Ui::start(&db, &[]);
    for i in 0..20 {
        work.enqueue(&conn, &format!(r#"{{"i":{i}}}"#), &opts())
            .unwrap();
    }
    // A lease held by this process, so the workers page has someone to show.
    let held_q = Queue::new("held").unwrap();
    held_q.enqueue(&conn, "{}", &opts()).unwrap();
    let held = held_q
        .claim(&conn, "test-holder", 1, Some(600_000))
        .unwrap();

    let health = ui.ok("/health");
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["schema_version"],
        honker_core::schema::SCHEMA_VERSION
    );
    let config = ui.ok("/api/config");
    assert_eq!(config["writes"], false);

    // The overview's counts are the queue's own stats.
    wait_for("the worker to drain queue work", || {
        work.stats(&conn).unwrap().pending + work.stats(&conn).unwrap().running == 0
    });
    let o = ui.ok("/api/overview");
    let queues = o["queues"].as_array().unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["held", "mail", "work"]);
    for q in queues {
        let s = Queue::new(q["name"].as_str().unwrap())
            .unwrap()
            .stats(&conn)
            .unwrap();
        for (k, v) in [
            ("pending", s.pending),
            ("scheduled", s.scheduled),
            ("running", s.running),
            ("dead", s.dead),
        ] {
            assert_eq!(q[k], v, "{k} of {}", q["name"]);
        }
        assert_eq!(q["throughput"]["per_minute"].as_array().unwrap().len(), 30);
    }
    let per_minute = &queues[2]["throughput"]["per_minute"];
    assert_eq!(queues[2]["throughput"]["exact"], true);
    let acked: u64 = per_minute
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(acked, 20, "{per_minute}");
    let mail = &queues[1];
    assert_eq!(
        (
            mail["pending"].as_u64(),
            mail["scheduled"].as_u64(),
            mail["dead"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(o["streams"][0]["topic"], "orders");
    assert_eq!(o["streams"][0]["events"], 2);
    assert_eq!(o["streams"][0]["consumers"][0]["consumer"], "billing");
    assert_eq!(o["streams"][0]["consumers"][0]["lag_events"], 2);
    assert_eq!(o["schedules"][0]["name"], "hourly");
    assert!(o["schedules"][0]["next_fire_ms"].as_i64().unwrap() > 0);
    assert_eq!(
        o["schedules"][0]["upcoming_ms"].as_array().unwrap().len(),
        5
    );
    assert_eq!(o["channels"][0]["channel"], "pings");
    assert_eq!(o["channels"][0]["last_minute"], 1);

    // Jobs: non-final by default, filters by state, payload key and error text.
    let live = ui.ok("/api/jobs?queue=mail");
    assert_eq!(live["count"], 3);
    assert_eq!(live["count_exact"], true);
    assert_eq!(live["jobs"].as_array().unwrap().len(), 3);
    let by_key = ui.ok("/api/jobs?key=user.id&value=8");
    assert_eq!(by_key["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(
        by_key["jobs"][0]["payload_preview"],
        r#"{"to":"b@x","user":{"id":8}}"#
    );
    let scheduled = ui.ok("/api/jobs?queue=mail&state=scheduled");
    assert_eq!(scheduled["jobs"][0]["state"], "scheduled");
    let dead = ui.ok("/api/jobs?state=dead&error=MAILBOX");
    assert_eq!(dead["jobs"].as_array().unwrap().len(), 1);
    let dead_id = dead["jobs"][0]["id"].as_i64().unwrap();
    assert_eq!(dead["jobs"][0]["dead_reason"], "failed");
    // Keyset paging: a page of one, then the next below it.
    let p1 = ui.ok("/api/jobs?queue=mail&limit=1");
    let before = p1["next_before"].as_i64().unwrap();
    let p2 = ui.ok(&format!("/api/jobs?queue=mail&limit=1&before={before}"));
    assert!(p2["jobs"][0]["id"].as_i64().unwrap() < p1["jobs"][0]["id"].as_i64().unwrap());
    // Bad filters are typed errors.
    for bad in [
        "/api/jobs?state=zombie",
        "/api/jobs?key=a..b",
        "/api/jobs?value=1",
        "/api/jobs?limit=x",
    ] {
        let (status, v) = ui.get(bad);
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("ui.bad_filter")),
            "{bad}: {v}"
        );
    }

    // One job: payload as JSON, the error, the lease of a held job.
    let j = ui.ok(&format!("/api/job/{dead_id}"))["job"].clone();
    assert_eq!(j["payload"], json!({"x": "<script>alert(1)</script>"}));
    assert_eq!(j["state"], "dead");
    assert_eq!(j["last_error"], "SMTP 550: mailbox <full>");
    let h = ui.ok(&format!("/api/job/{}", held[0].id.0))["job"].clone();
    assert_eq!(h["worker"], "test-holder");
    assert_eq!(h["lease_token"], held[0].lease_token.0);
    assert_eq!(h["lease_expires_ms"], held[0].lease_expires.get());
    assert_eq!(ui.get("/api/job/999999").0, 404);
    assert_eq!(ui.get("/api/job/abc").0, 400);

    let cron = ui.ok("/api/cron");
    assert_eq!(cron["schedules"][0]["expr"], "@every 1h");
    let workers = ui.ok("/api/workers")["workers"].clone();
    assert_eq!(workers.as_array().unwrap().len(), 1, "{workers}");
    assert_eq!(workers[0]["worker"], "test-holder");
    assert_eq!(workers[0]["job_ids"], json!([held[0].id.0]));
    assert_eq!(workers[0]["alive"], Value::Null);

    let (status, head, metrics) = http(&ui.addr, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for want in [
        r#"honker_queue_jobs{queue="mail",state="pending"} 2"#,
        r#"honker_queue_jobs{queue="mail",state="dead"} 1"#,
        r#"honker_queue_jobs{queue="held",state="running"} 1"#,
        r#"honker_stream_consumer_lag_events{topic="orders",consumer="billing"} 2"#,
        r#"honker_cron_lateness_seconds{schedule="hourly"} 0"#,
        "# TYPE honker_queue_finished_total counter",
    ] {
        assert!(metrics.contains(want), "no {want:?} in\n{metrics}");
    }
    let (_, head, om) = http(
        &ui.addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text")],
        "",
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(om.ends_with("# EOF\n"));

    // The page and its assets, with a policy that allows only them.
    let (status, head, page) = http(&ui.addr, "GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(page.contains(r#"<script src="/app.js""#));
    assert_eq!(http(&ui.addr, "GET", "/app.js", &[], "").0, 200);
    assert_eq!(http(&ui.addr, "GET", "/app.css", &[], "").0, 200);
    assert_eq!(ui.get("/nope").0, 404);

    // Read-only: every action is refused and nothing changes.
    let (status, v) = ui.act(json!({"action": "requeue", "ids": [dead_id]}));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("ui.read_only"))
    );
    assert_eq!(Queue::new("mail").unwrap().stats(&conn).unwrap().dead, 1);

    held_q.ack(&conn, held[0].id, held[0].lease_token).unwrap();
    let report = worker.stop();
    assert_eq!(report_count(&report, "acked"), 20, "{report}");
}

#[test]
fn a_commit_in_another_process_reaches_an_open_event_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _conn) = populated(dir.path());
    let ui = Ui::start(&db, &[]);
    let mut s = TcpStream::connect(&ui.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET /api/events HTTP/1.1\r\nHost: {}\r\n\r\n", ui.addr).unwrap();
    let mut r = BufReader::new(s);
    let mut next_event = || -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(r.read_line(&mut line).unwrap() > 0, "the stream closed");
            if let Some(e) = line.strip_prefix("event: ") {
                return e.trim().to_owned();
            }
        }
    };
    assert_eq!(next_event(), "hello");
    // Another process commits; the stream says so (within the generous deadline).
    ok(&[
        "enqueue",
        "--db",
        path_str(&db),
        "--queue",
        "mail",
        r#"{"new":1}"#,
    ]);
    assert_eq!(next_event(), "change");
    ok(&["notify", "--db", path_str(&db), "--channel", "pings", "{}"]);
    assert_eq!(next_event(), "change");
    // And the overview shows the new job.
    let o = ui.ok("/api/overview");
    assert_eq!(o["queues"][0]["name"], "mail");
    assert_eq!(o["queues"][0]["pending"], 3);
}

#[test]
fn a_non_loopback_bind_needs_a_token_and_every_page_then_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _conn) = populated(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_honker"))
        .args(["ui", "--db", path_str(&db), "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give --token"),
        "{out:?}"
    );
    let short = Command::new(env!("CARGO_BIN_EXE_honker"))
        .args(["ui", "--db", path_str(&db), "--token", "short"])
        .output()
        .unwrap();
    assert!(!short.status.success());
    let missing = Command::new(env!("CARGO_BIN_EXE_honker"))
        .args(["ui", "--db", path_str(&dir.path().join("none.db"))])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        !dir.path().join("none.db").exists(),
        "honker ui created a file"
    );

    // Bound to every address, reached here through loopback only.
    let mut child = honker()
        .args([
            "ui",
            "--db",
            path_str(&db),
            "--bind",
            "0.0.0.0:0",
            "--token",
            TOKEN,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first = lines(child.stdout.take().unwrap())
        .recv_timeout(DEADLINE)
        .unwrap();
    let port = first
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .unwrap()
        .to_owned();
    let addr = format!("127.0.0.1:{port}");
    let ui = Ui { child, addr };
    assert_eq!(ui.get("/health").0, 200, "health needs no token");
    let (status, v) = ui.get("/api/overview");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("ui.token_required"))
    );
    assert_eq!(ui.get("/metrics").0, 401);
    assert_eq!(ui.get("/api/overview?token=wrong-token-0123456789").0, 401);
    assert_eq!(ui.get(&format!("/api/overview?token={TOKEN}")).0, 200);
    let (status, _, _) = http(
        &ui.addr,
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_eq!(status, 200);
}

#[test]
fn a_loopback_server_refuses_foreign_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _conn) = populated(dir.path());
    let ui = Ui::start(&db, &[]);
    let (status, _, body) = http(&ui.addr, "GET", "/api/overview", &[], "");
    assert_eq!(status, 200, "{body}");
    // http() sends Host: 127.0.0.1:port; a rebinding attack would send its own name.
    let mut s = TcpStream::connect(&ui.addr).unwrap();
    write!(
        s,
        "GET /api/overview HTTP/1.1\r\nHost: attacker.example:80\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert!(raw.contains("ui.bad_host"), "{raw}");
}

#[test]
fn every_action_goes_through_the_api_and_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn) = populated(dir.path());
    let ui = Ui::start(&db, &["--allow-writes", "--token", TOKEN]);
    let mail = Queue::new("mail").unwrap();

    // Without the token header (or with the token only in the query), nothing happens.
    let (status, _, _) = http(
        &ui.addr,
        "POST",
        "/api/action",
        &[],
        r#"{"action":"pause_queue","queue":"mail"}"#,
    );
    assert_eq!(status, 401);
    let (status, _, _) = http(
        &ui.addr,
        "POST",
        &format!("/api/action?token={TOKEN}"),
        &[],
        r#"{"action":"pause_queue","queue":"mail"}"#,
    );
    assert_eq!(status, 401);
    assert!(!mail.options(&conn).unwrap().paused);
    // Unknown actions and fields are typed errors.
    let (status, v) = ui.act(json!({"action": "drop_table"}));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("ui.bad_action"))
    );
    let (status, v) = ui.act(json!({"action": "pause_queue", "queue": "mail", "extra": 1}));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("ui.bad_action"))
    );

    // Enqueue, with options; a bad payload is refused with the queue's code.
    let v = ui.act_ok(json!({"action": "enqueue", "queue": "mail", "payload": {"to": "c@x"}, "options": {"priority": 5, "dedup_key": "c"}}));
    let new_id = v["job_id"].as_i64().unwrap();
    let j = honker_queue::job(&conn, JobId(new_id)).unwrap().unwrap();
    assert_eq!((j.priority, j.dedup_key.as_deref()), (5, Some("c")));
    let (status, v) = ui
        .act(json!({"action": "enqueue", "queue": "mail", "payload": {}, "options": {"bogus": 1}}));
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["code"].as_str().unwrap().contains("option"),
        "{v}"
    );

    // Pause and resume a queue.
    ui.act_ok(json!({"action": "pause_queue", "queue": "mail"}));
    assert!(mail.options(&conn).unwrap().paused);
    assert!(
        mail.claim(&conn, "w", 10, None).unwrap().is_empty(),
        "a paused queue hands out nothing"
    );
    ui.act_ok(json!({"action": "resume_queue", "queue": "mail"}));
    assert!(!mail.options(&conn).unwrap().paused);

    // Cancel needs a confirmation; then it removes the job.
    let (status, v) = ui.act(json!({"action": "cancel", "ids": [new_id]}));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("ui.confirm_required"))
    );
    assert_eq!(
        ui.act_ok(json!({"action": "cancel", "ids": [new_id], "confirm": true}))["done"],
        1
    );
    assert!(honker_queue::job(&conn, JobId(new_id)).unwrap().is_none());

    // Requeue one dead job; requeue of a live job does nothing.
    let dead = mail.dead_letters(&conn, 10).unwrap();
    assert_eq!(dead.len(), 1);
    let v = ui.act_ok(json!({"action": "requeue", "ids": [dead[0].id.0]}));
    assert_eq!(
        (v["done"].as_u64(), v["skipped"].as_u64()),
        (Some(1), Some(0))
    );
    let back = honker_queue::job(&conn, dead[0].id).unwrap().unwrap();
    assert_eq!(
        (back.state, back.attempts),
        (honker_queue::JobState::Pending, 0)
    );
    let v = ui.act_ok(json!({"action": "requeue", "ids": [dead[0].id.0]}));
    assert_eq!(
        (v["done"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(1))
    );

    // Bulk: 1 200 dead jobs of another queue, requeued by filter in batches of 500.
    let bulk = Queue::new("bulk").unwrap();
    let payloads: Vec<String> = (0..1200)
        .map(|i| format!(r#"{{"i":{i},"tenant":"{}"}}"#, i % 2))
        .collect();
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    bulk.enqueue_batch(
        &conn,
        &refs,
        &EnqueueOptions {
            max_attempts: Some(1),
            ..opts()
        },
    )
    .unwrap();
    loop {
        let c = bulk.claim(&conn, "w", 1000, None).unwrap();
        if c.is_empty() {
            break;
        }
        for j in c {
            bulk.fail(&conn, j.id, j.lease_token, "boom").unwrap();
        }
    }
    assert_eq!(bulk.stats(&conn).unwrap().dead, 1200);
    let (status, v) =
        ui.act(json!({"action": "requeue", "filter": {"queue": "bulk", "state": "dead"}}));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("ui.confirm_required"))
    );
    // Only tenant 1 (600 jobs): a payload filter, two batches.
    let v = ui.act_ok(json!({"action": "requeue", "filter": {"queue": "bulk", "state": "dead", "key": "tenant", "value": "\"1\""}, "confirm": true}));
    assert_eq!(
        (v["done"].as_u64(), v["batches"].as_u64()),
        (Some(600), Some(2)),
        "{v}"
    );
    let s = bulk.stats(&conn).unwrap();
    assert_eq!((s.pending, s.dead), (600, 600));
    // Cancel the live ones by filter.
    let v = ui.act_ok(json!({"action": "cancel", "filter": {"queue": "bulk"}, "confirm": true}));
    assert_eq!(v["done"], 600, "{v}");
    // Purge the rest of the dead letters.
    assert_eq!(
        ui.act_ok(json!({"action": "purge_dead", "queue": "bulk", "confirm": true}))["done"],
        600
    );
    let s = bulk.stats(&conn).unwrap();
    assert_eq!((s.pending, s.dead), (0, 0));

    // Schedules: pause, resume, run now (a job in the schedule's queue, no fire recorded).
    ui.act_ok(json!({"action": "pause_schedule", "name": "hourly"}));
    assert!(honker_cron::get(&conn, "hourly").unwrap().unwrap().paused);
    ui.act_ok(json!({"action": "resume_schedule", "name": "hourly"}));
    assert!(!honker_cron::get(&conn, "hourly").unwrap().unwrap().paused);
    let v = ui.act_ok(json!({"action": "run_schedule", "name": "hourly"}));
    let run = honker_queue::job(&conn, JobId(v["job_id"].as_i64().unwrap()))
        .unwrap()
        .unwrap();
    assert_eq!(
        (run.queue.as_str(), run.payload.as_str()),
        ("reports", r#"{"kind":"hourly"}"#)
    );
    let (status, v) = ui.act(json!({"action": "pause_schedule", "name": "nope"}));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("cron.not_found"))
    );

    // Trim a stream: a registered consumer holds the cut back unless forced.
    let v = ui.act_ok(
        json!({"action": "trim_stream", "topic": "orders", "max_events": 1, "confirm": true}),
    );
    assert_eq!(
        (v["done"].as_u64(), v["held_back"].as_bool()),
        (Some(0), Some(true))
    );
    let v = ui.act_ok(json!({"action": "trim_stream", "topic": "orders", "max_events": 1, "force": true, "confirm": true}));
    assert_eq!(v["done"], 1);
    let (status, _) = ui.act(json!({"action": "trim_stream", "topic": "orders", "confirm": true}));
    assert_eq!(status, 400);

    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn an_action_on_a_job_a_worker_holds_never_breaks_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn) = populated(dir.path());
    let ui = Ui::start(&db, &["--allow-writes", "--token", TOKEN]);
    let q = Queue::new("fence").unwrap();
    for i in 0..3 {
        q.enqueue(&conn, &format!(r#"{{"i":{i}}}"#), &opts())
            .unwrap();
    }
    // This process is the worker; the UI is another process.
    let a = q
        .claim(&conn, "holder", 1, Some(600_000))
        .unwrap()
        .remove(0);
    // A requeue aimed at a held job skips it; pausing the queue leaves the lease alone.
    let v = ui.act_ok(json!({"action": "requeue", "ids": [a.id.0]}));
    assert_eq!(v["skipped"], 1);
    let (status, _) = ui.act(json!({"action": "requeue", "filter": {"queue": "fence", "state": "running"}, "confirm": true}));
    assert_eq!(status, 400, "requeue refuses live states");
    ui.act_ok(json!({"action": "pause_queue", "queue": "fence"}));
    let info = honker_queue::job(&conn, a.id).unwrap().unwrap();
    assert_eq!(
        (info.state, info.worker.as_deref()),
        (honker_queue::JobState::Running, Some("holder"))
    );
    q.ack(&conn, a.id, a.lease_token)
        .expect("the holder's ack still succeeds");
    ui.act_ok(json!({"action": "resume_queue", "queue": "fence"}));

    // Cancelling a held job: the holder's ack is refused (lease_lost), and nobody else gets it.
    let b = q
        .claim(&conn, "holder", 1, Some(600_000))
        .unwrap()
        .remove(0);
    assert_eq!(
        ui.act_ok(json!({"action": "cancel", "ids": [b.id.0], "confirm": true}))["done"],
        1
    );
    let err = q.ack(&conn, b.id, b.lease_token).unwrap_err();
    assert_eq!(err.code(), "queue.lease_lost");
    let rest = q.claim(&conn, "other", 10, None).unwrap();
    assert!(
        rest.iter().all(|j| j.id != b.id),
        "a cancelled job was handed out again"
    );
    for j in rest {
        q.ack(&conn, j.id, j.lease_token).unwrap();
    }

    // A bulk cancel racing a real worker process: every job is either acked by the worker or
    // cancelled (a cancelled running job's ack is refused), none runs twice, none is lost.
    let race = Queue::new("race").unwrap();
    let n = 400;
    let payloads: Vec<String> = (0..n).map(|i| format!(r#"{{"i":{i}}}"#)).collect();
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    race.enqueue_batch(&conn, &refs, &opts()).unwrap();
    let ran = dir.path().join("ran.txt");
    let script = format!("echo $HONKER_JOB_ID >> {}", path_str(&ran));
    let worker = WorkerProc::start(&db, "race", "4", &script);
    wait_for("the worker to start on queue race", || {
        std::fs::read_to_string(&ran)
            .map(|s| s.lines().count() >= 20)
            .unwrap_or(false)
    });
    let v = ui.act_ok(json!({"action": "cancel", "filter": {"queue": "race"}, "confirm": true}));
    let cancelled = v["done"].as_u64().unwrap();
    wait_for("queue race to empty", || {
        let s = race.stats(&conn).unwrap();
        s.pending + s.running + s.scheduled == 0
    });
    let report = worker.stop();
    let acked = report_count(&report, "acked");
    let lost = report_count(&report, "lost leases");
    assert_eq!(acked + cancelled, n, "{report}; cancelled {cancelled}");
    assert!(lost <= cancelled, "{report}");
    assert!(
        acked > 0 && cancelled > 0,
        "both sides of the race happened: {report}; cancelled {cancelled}"
    );
    let ran = std::fs::read_to_string(&ran).unwrap();
    let ids: Vec<&str> = ran.lines().collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a job ran twice");
    assert_eq!(race.stats(&conn).unwrap().dead, 0);
}
