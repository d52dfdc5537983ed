//! Streams across real OS processes: a consumer `kill -9`ed repeatedly while it applies events to
//! a projection and commits its offset in the same transaction (exactly-once effects), and a
//! subscriber in another process switching from a 1000-event backlog to live events.

use std::io::{BufRead, BufReader, Write};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use honker_stream::{
    CommitMode, Offset, StartFrom, SubscribeOptions, Subscriber, commit_offset, committed_offset,
    publish,
};

use crate::util::{TempDb, child_db, integrity_ok, is_child, soon, spawn_child};

fn tell(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "HONKER {line}").unwrap();
    out.flush().unwrap();
}

fn protocol_lines(child: &mut Child) -> impl Iterator<Item = String> + use<> {
    let out = child.stdout.take().unwrap();
    BufReader::new(out)
        .lines()
        .map(|l| l.unwrap())
        .filter_map(|l| l.find("HONKER ").map(|at| l[at + 7..].to_string()))
}

fn env_i64(name: &str) -> i64 {
    std::env::var(name).unwrap().parse().unwrap()
}

const PROJECTION: &str = "CREATE TABLE IF NOT EXISTS projection (
    k INTEGER PRIMARY KEY, total INTEGER NOT NULL, n INTEGER NOT NULL)";

/// Child role: fold events of "ledger" into `projection`, each event's effect and the offset
/// commit in one transaction, until offset `HONKER_LAST` is done.
#[test]
fn child_projector() {
    if !is_child("projector") {
        return;
    }
    let last = Offset(env_i64("HONKER_LAST"));
    let db = child_db();
    let wake = honker_wake::wake_for(&db).unwrap();
    let mut sub = Subscriber::open(
        &db,
        "ledger",
        wake,
        SubscribeOptions {
            consumer: Some("projector".into()),
            start: StartFrom::Committed,
            commit: CommitMode::Manual,
        },
    )
    .unwrap();
    sub.connection().execute_batch(PROJECTION).unwrap();
    while sub.position() < last {
        let e = sub
            .recv(soon())
            .unwrap()
            .expect("an event before the deadline");
        let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
        let conn = sub.connection();
        let tx = conn.unchecked_transaction().unwrap();
        tx.execute(
            "INSERT INTO projection (k, total, n) VALUES (?1, ?2, 1)
             ON CONFLICT (k) DO UPDATE SET total = total + excluded.total, n = n + 1",
            [v["k"].as_i64().unwrap(), v["v"].as_i64().unwrap()],
        )
        .unwrap();
        assert!(
            commit_offset(&tx, "projector", "ledger", e.offset)
                .unwrap()
                .advanced()
        );
        tx.commit().unwrap();
    }
    tell("done");
}

#[test]
fn a_projection_survives_repeated_kill_9_with_exactly_once_effects() {
    const EVENTS: i64 = 3000;
    let db = TempDb::new();
    let conn = db.open();
    let mut want = std::collections::BTreeMap::<i64, (i64, i64)>::new();
    let mut final_last = Offset::ZERO;
    for chunk in 0..EVENTS / 100 {
        let tx = conn.unchecked_transaction().unwrap();
        for i in chunk * 100..(chunk + 1) * 100 {
            let (k, v) = (i % 7, i * 3 + 1);
            final_last = publish(&tx, "ledger", &format!(r#"{{"k":{k},"v":{v}}}"#)).unwrap();
            let e = want.entry(k).or_default();
            e.0 += v;
            e.1 += 1;
        }
        tx.commit().unwrap();
    }
    let spawn = || {
        spawn_child(
            "projector",
            "stream_process::child_projector",
            &db.path(),
            &[("HONKER_LAST", final_last.get().to_string())],
        )
    };
    let mut kills = 0;
    let mut progress = Offset::ZERO;
    // HONKER_DEEP_TESTS=1: many more crashes.
    let rounds = if std::env::var_os("HONKER_DEEP_TESTS").is_some() {
        40
    } else {
        6
    };
    while kills < rounds {
        let mut child = spawn();
        // Wait until it has made some progress, then kill it wherever it is.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = committed_offset(&conn, "projector", "ledger")
                .unwrap()
                .unwrap_or(Offset::ZERO);
            if now > progress || now == final_last {
                progress = now;
                break;
            }
            assert!(Instant::now() < deadline, "the projector made no progress");
            thread::sleep(Duration::from_millis(1));
        }
        if progress == final_last {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert!(
        kills >= 1,
        "the projector finished before it could be killed once"
    );
    eprintln!("projector killed {kills} times, the last at offset {progress} of {final_last}");
    // A last consumer finishes the job.
    let mut child = spawn();
    let mut lines = protocol_lines(&mut child);
    assert_eq!(lines.next().as_deref(), Some("done"));
    assert!(child.wait().unwrap().success());
    integrity_ok(&conn);
    assert_eq!(
        committed_offset(&conn, "projector", "ledger").unwrap(),
        Some(final_last)
    );
    let got: std::collections::BTreeMap<i64, (i64, i64)> = conn
        .prepare("SELECT k, total, n FROM projection")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, want, "projection differs from the fold of all events");
}

/// Child role: subscribe from the beginning, report each offset received, say when the backlog
/// of `HONKER_BACKLOG` events is through, and stop after `HONKER_TOTAL` events.
#[test]
fn child_live_subscriber() {
    if !is_child("live_subscriber") {
        return;
    }
    let backlog = env_i64("HONKER_BACKLOG");
    let total = env_i64("HONKER_TOTAL");
    let db = child_db();
    let wake = honker_wake::wake_for(&db).unwrap();
    let mut sub = Subscriber::open(
        &db,
        "live",
        wake,
        SubscribeOptions {
            consumer: Some("watcher".into()),
            start: StartFrom::Beginning,
            commit: CommitMode::Auto {
                every_events: Some(100),
                every: None,
            },
        },
    )
    .unwrap();
    let mut got = Vec::new();
    for i in 0..total {
        let e = sub
            .recv(soon())
            .unwrap()
            .expect("an event before the deadline");
        got.push(e.offset.get().to_string());
        if i + 1 == backlog {
            tell("caught-up");
        }
    }
    tell(&format!("got {}", got.join(",")));
}

#[test]
fn a_subscriber_in_another_process_switches_from_backlog_to_live_without_gap() {
    const BACKLOG: i64 = 1000;
    let db = TempDb::new();
    let conn = db.open();
    let mut expected = Vec::new();
    for i in 0..BACKLOG {
        expected.push(publish(&conn, "live", &i.to_string()).unwrap().get());
        if i % 3 == 0 {
            publish(&conn, "other", "0").unwrap();
        }
    }
    let mut child = spawn_child(
        "live_subscriber",
        "stream_process::child_live_subscriber",
        &db.path(),
        &[
            ("HONKER_BACKLOG", BACKLOG.to_string()),
            ("HONKER_TOTAL", (BACKLOG + 1).to_string()),
        ],
    );
    let mut lines = protocol_lines(&mut child);
    assert_eq!(lines.next().as_deref(), Some("caught-up"));
    // The child is caught up and (soon) asleep: this event can only reach it as a wake.
    expected.push(publish(&conn, "live", "\"live\"").unwrap().get());
    let got = lines.next().expect("the child's report");
    assert!(child.wait().unwrap().success());
    let want = format!(
        "got {}",
        expected
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(got, want);
    // Its automatic commits: the first 1000 committed before it slept.
    assert!(committed_offset(&conn, "watcher", "live").unwrap() >= Some(Offset(expected[999])));
}
