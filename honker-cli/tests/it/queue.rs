//! The queue commands as real processes: `enqueue`, `worker -- CMD`, `queue
//! stats|jobs|dead|requeue|purge`, and the queue section of `honker demo`.

use crate::{ok, path_str, run, text};

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn worker_acks_on_exit_zero_and_retries_with_stderr_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let db = path_str(&db);
    let good = ok(&["enqueue", "--db", db, "--queue", "mail", r#"{"to":"a"}"#]);
    let bad = ok(&[
        "enqueue",
        "--db",
        db,
        "--queue",
        "mail",
        r#"{"to":"bounce"}"#,
        "--max-attempts",
        "1",
    ]);
    assert_ne!(good.trim(), bad.trim());
    let jobs = json_lines(&ok(&[
        "queue", "jobs", "--db", db, "--queue", "mail", "--json",
    ]));
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j["state"] == "pending"));

    // The command sees the payload on stdin; "bounce" fails with a message on stderr.
    let script = r#"p=$(cat); case "$p" in *bounce*) echo "mailbox full for $HONKER_JOB_ID" >&2; exit 7;; esac; echo '{"sent":true}'"#;
    ok(&[
        "worker",
        "--db",
        db,
        "--queue",
        "mail",
        "--max-jobs",
        "2",
        "--quiet",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let stats = json_lines(&ok(&["queue", "stats", "--db", db, "--json"]));
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0]["queue"], "mail");
    assert_eq!(stats[0]["pending"], 0);
    assert_eq!(stats[0]["running"], 0);
    assert_eq!(stats[0]["dead"], 1);
    let dead = json_lines(&ok(&[
        "queue", "dead", "--db", db, "--queue", "mail", "--json",
    ]));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"].to_string(), bad.trim());
    let err = dead[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!("mailbox full for {}", bad.trim())) && err.contains("7"),
        "{err}"
    );

    // Requeue brings it back with its attempts reset; purge empties the dead letters.
    assert_eq!(
        ok(&["queue", "requeue", "--db", db, "--queue", "mail", "--all"]).trim(),
        "requeued 1"
    );
    let jobs = json_lines(&ok(&[
        "queue", "jobs", "--db", db, "--queue", "mail", "--json",
    ]));
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["attempts"], 0);
    ok(&[
        "worker",
        "--db",
        db,
        "--queue",
        "mail",
        "--max-jobs",
        "1",
        "--quiet",
        "--",
        "false",
    ]);
    assert_eq!(
        ok(&["queue", "purge", "--db", db, "--queue", "mail"]).trim(),
        "purged 1"
    );
    let stats = json_lines(&ok(&[
        "queue", "stats", "--db", db, "--queue", "mail", "--json",
    ]));
    assert_eq!(
        (stats[0]["pending"].clone(), stats[0]["dead"].clone()),
        (0.into(), 0.into())
    );
}

#[test]
fn a_delayed_job_waits_and_a_stopped_worker_gives_back_nothing_it_did_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let db = path_str(&db);
    ok(&[
        "enqueue",
        "--db",
        db,
        "--queue",
        "later",
        "1",
        "--delay-ms",
        "300",
    ]);
    let stats = json_lines(&ok(&[
        "queue", "stats", "--db", db, "--queue", "later", "--json",
    ]));
    assert_eq!(stats[0]["scheduled"], 1);
    // The worker sleeps until run_at, runs it, and exits after that one job.
    ok(&[
        "worker",
        "--db",
        db,
        "--queue",
        "later",
        "--max-jobs",
        "1",
        "--quiet",
        "--",
        "true",
    ]);
    let stats = json_lines(&ok(&[
        "queue", "stats", "--db", db, "--queue", "later", "--json",
    ]));
    assert_eq!(
        (stats[0]["scheduled"].clone(), stats[0]["pending"].clone()),
        (0.into(), 0.into())
    );
}

#[test]
fn bad_queue_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let db = path_str(&db);
    let out = run(&["enqueue", "--db", db, "--queue", "q", "not json"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not JSON"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["enqueue", "--db", db, "--queue", "", "1"]);
    assert!(!out.status.success());
    let out = run(&["queue", "requeue", "--db", db, "--queue", "q", "--id", "42"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no dead letter 42"),
        "{}",
        text(&out.stderr)
    );
    let stats = json_lines(&ok(&["queue", "stats", "--db", db, "--json"]));
    assert!(stats.is_empty(), "nothing was written: {stats:?}");
}

#[test]
fn demo_queue_section_runs_every_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = run(&[
        "demo",
        "--db",
        path_str(&db),
        "--listeners",
        "1",
        "--count",
        "20",
        "--pace-us",
        "300",
        "--jobs",
        "200",
        "--queue-workers",
        "2",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    for want in [
        "gone, with its order row",
        "handled once: 200  twice or more: 0  never: 0  orders without a job: 0",
        "latency       p50",
        "killed with kill -9 mid-burst",
        "each job was handled once, none twice, none lost",
        "result: OK",
    ] {
        assert!(stdout.contains(want), "no {want:?} in\n{stdout}");
    }
}
