//! Integration tests of the `honker` binary: each runs the built executable as a real process.

mod queue;
mod stream_cron;
mod ui;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Generous: the machine may be busy; no test asserts a timing.
const DEADLINE: Duration = Duration::from_secs(30);

fn honker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_honker"))
}

fn run(args: &[&str]) -> Output {
    honker().args(args).output().expect("run honker")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run `honker args...`, require success (showing both streams if not), and return stdout.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "honker {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn help_lists_the_commands_and_hides_the_helpers() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in ["demo", "listen", "notify", "migrate", "info"] {
        assert!(help.contains(cmd), "--help does not list {cmd}:\n{help}");
    }
    for hidden in ["demo-listener", "bench-listener", "bench-idle"] {
        assert!(!help.contains(hidden), "--help shows {hidden}:\n{help}");
    }
}

#[test]
fn demo_on_a_fresh_db_loses_nothing_and_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    for round in 1..=2 {
        let out = run(&[
            "demo",
            "--db",
            path_str(&db),
            "--listeners",
            "2",
            "--count",
            "200",
            "--pace-us",
            "300",
            "--quiet-check",
        ]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: demo failed\nstdout:\n{stdout}\nstderr:\n{}",
            text(&out.stderr)
        );
        for want in [
            "lost: 0",
            "duplicated: 0",
            "out of order: 0",
            "listener 1: 200",
            "listener 2: 200",
            "quiet listener: 1",
            "wake latency  p50",
            "result: OK",
        ] {
            assert!(
                stdout.contains(want),
                "round {round}: no {want:?} in\n{stdout}"
            );
        }
    }
    // Both rounds' notifications are in the file, and it is intact.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let demo_rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM honker_notifications WHERE channel = 'demo'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(demo_rows, 400);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn demo_fails_and_says_so_when_a_listener_loses_a_notification() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lossy.db");
    let out = run(&[
        "demo",
        "--db",
        path_str(&db),
        "--listeners",
        "2",
        "--count",
        "40",
        "--pace-us",
        "300",
        "--drop-seq",
        "25",
    ]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "a lossy demo exited 0:\n{stdout}");
    for want in [
        "lost: 1 ",
        "listener 1: 39",
        "listener 2: 40",
        "result: FAILED",
    ] {
        assert!(stdout.contains(want), "no {want:?} in\n{stdout}");
    }
    assert!(!stdout.contains("exactly once"), "{stdout}");
}

/// Lines of a child's pipe, delivered over a channel so the test can wait with a deadline.
fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn notify_from_one_process_reaches_listen_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rt.db");
    let db = path_str(&db);
    let mut listen = honker()
        .args(["listen", "--db", db, "--channel", "orders", "--count", "2"])
        .args(["--json", "--timeout-ms", "60000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(listen.stderr.take().unwrap());
    let stdout = lines(listen.stdout.take().unwrap());
    let ready = stderr
        .recv_timeout(DEADLINE)
        .expect("listen did not say it was listening");
    assert!(ready.starts_with("listening on \"orders\""), "{ready}");

    let other = run(&["notify", "--db", db, "--channel", "other", "{}"]);
    assert!(other.status.success(), "{}", text(&other.stderr));
    let mut ids = Vec::new();
    for payload in [r#"{"order":17}"#, r#""two""#] {
        let out = run(&["notify", "--db", db, "--channel", "orders", payload]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        ids.push(
            text(&out.stdout)
                .trim()
                .parse::<i64>()
                .expect("notify prints the id"),
        );
    }

    let got: Vec<serde_json::Value> = (0..2)
        .map(|_| {
            let line = stdout
                .recv_timeout(DEADLINE)
                .expect("listen printed nothing");
            serde_json::from_str(&line).expect("a JSON line")
        })
        .collect();
    assert_eq!(got[0]["id"], ids[0]);
    assert_eq!(got[0]["channel"], "orders");
    assert_eq!(got[0]["payload"], serde_json::json!({"order": 17}));
    assert_eq!(got[1]["id"], ids[1]);
    assert_eq!(got[1]["payload"], "two");
    assert!(got[0]["created_ms"].as_i64().unwrap() > 0);
    let status = listen.wait().unwrap();
    assert!(
        status.success(),
        "listen exits 0 after --count notifications"
    );
}

#[test]
fn listen_with_a_timeout_and_nothing_sent_prints_nothing_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quiet.db");
    let out = run(&[
        "listen",
        "--db",
        path_str(&db),
        "--channel",
        "c",
        "--timeout-ms",
        "50",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn a_text_file_is_refused_with_a_coded_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.txt");
    std::fs::write(&db, "these are my notes, not a database\n".repeat(40)).unwrap();
    let before = std::fs::read(&db).unwrap();
    for args in [
        vec!["info", "--db", path_str(&db)],
        vec!["migrate", "--db", path_str(&db)],
        vec!["notify", "--db", path_str(&db), "--channel", "c", "{}"],
        vec!["demo", "--db", path_str(&db), "--count", "10"],
    ] {
        let out = run(&args);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded on a text file");
        assert!(
            stderr.starts_with("error [db.not_database]: "),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("notes.txt"),
            "the error names the file: {stderr}"
        );
    }
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file was modified");
}

#[test]
fn notify_refuses_a_payload_that_is_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let out = run(&[
        "notify",
        "--db",
        path_str(&db),
        "--channel",
        "c",
        "not json",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error [payload.not_json]: "), "{stderr}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM honker_notifications", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 0, "nothing was written");
}

#[test]
fn migrate_then_info_reports_schema_journal_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("i.db");
    let db = path_str(&db);

    let out = run(&["info", "--db", db]);
    assert!(!out.status.success(), "info does not create a missing file");
    assert!(!Path::new(db).exists());

    let out = run(&["migrate", "--db", db]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = format!(
        "honker schema version {}",
        honker_core::schema::SCHEMA_VERSION
    );
    assert!(
        text(&out.stdout).contains(&expected),
        "{}",
        text(&out.stdout)
    );
    for payload in ["1", "2", "3"] {
        assert!(
            run(&["notify", "--db", db, "--channel", "a", payload])
                .status
                .success()
        );
    }
    assert!(
        run(&["notify", "--db", db, "--channel", "b", "4"])
            .status
            .success()
    );

    let out = run(&["info", "--db", db]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = honker_core::schema::SCHEMA_VERSION;
    assert!(
        stdout.contains(&format!("schema version  {v} (this build: {v})")),
        "{stdout}"
    );
    assert!(stdout.contains("journal mode    wal"), "{stdout}");
    assert!(
        stdout.contains("notifications   4 rows on 2 channels, newest id 4"),
        "{stdout}"
    );
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

#[test]
fn info_on_a_plain_sqlite_file_says_honker_is_not_set_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plain.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let out = run(&["info", "--db", path_str(&db)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("schema version  none"));
}
