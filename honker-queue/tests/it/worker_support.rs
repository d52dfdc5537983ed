//! Helpers of the worker, multi-process and crash tests: temporary databases, child processes
//! (this test binary re-run in a role), their line protocol, and waits with generous deadlines.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Give `q` a ten-minute retry backoff, so a retried job stays scheduled and its state can be
/// read.
pub(crate) fn long_backoff(conn: &Connection, q: &honker_queue::Queue) {
    q.configure(
        conn,
        &honker_queue::QueueOptionsPatch {
            backoff_base_ms: Some(600_000),
            backoff_cap_ms: Some(600_000),
            ..honker_queue::QueueOptionsPatch::default()
        },
    )
    .unwrap();
}

/// Generous: the machine may be busy; no test asserts a timing with it.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// A temporary directory holding `app.db`, migrated, with the test's own `handled` table: one
/// row per job a handler finished, written in the same transaction as the ack.
pub(crate) struct WorkDb {
    pub(crate) dir: tempfile::TempDir,
}

impl WorkDb {
    pub(crate) fn new() -> WorkDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = WorkDb { dir };
        db.open()
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS handled (
                     job_id INTEGER NOT NULL, token INTEGER NOT NULL, pid INTEGER NOT NULL,
                     attempts INTEGER NOT NULL, payload TEXT NOT NULL,
                     at_ms INTEGER NOT NULL
                         DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
                 );",
            )
            .expect("create handled");
        db
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    pub(crate) fn open(&self) -> Connection {
        honker_core::open(self.path()).expect("open")
    }
}

/// Record that this process handled `job` (inside the caller's transaction).
pub(crate) fn record_handled(conn: &Connection, job: &honker_queue::ClaimedJob) {
    conn.execute(
        "INSERT INTO handled (job_id, token, pid, attempts, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            job.id.0,
            job.lease_token.0,
            std::process::id(),
            job.attempts,
            job.payload
        ],
    )
    .expect("record handled");
}

pub(crate) fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The first column of every row `sql` returns.
pub(crate) fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    conn.prepare(sql)
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub(crate) fn integrity_ok(conn: &Connection) {
    let s: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(s, "ok");
}

/// Wait until `cond` holds, checking every few milliseconds; panic with `what` after
/// [`DEADLINE`].
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Now in milliseconds since the Unix epoch (the queue's system clock).
pub(crate) fn now_ms() -> i64 {
    use honker_core::Clock;
    honker_core::SystemClock.now().0
}

/// The environment variable naming a child's role.
pub(crate) const ROLE: &str = "HONKER_QUEUE_TEST_ROLE";
const DB_VAR: &str = "HONKER_QUEUE_TEST_DB";

/// Whether this process is a child started for `role`.
pub(crate) fn is_child(role: &str) -> bool {
    std::env::var(ROLE).as_deref() == Ok(role)
}

/// The database path a child was given.
pub(crate) fn child_db() -> PathBuf {
    PathBuf::from(std::env::var(DB_VAR).expect(DB_VAR))
}

/// A value of the child's environment.
pub(crate) fn child_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child without {name}"))
}

/// A child process (this test binary running only `test` in role `role`) and its protocol lines.
pub(crate) struct Proc {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    stdin: Option<std::process::ChildStdin>,
}

impl Proc {
    pub(crate) fn spawn(role: &str, test: &str, db: &Path, extra: &[(&str, String)]) -> Proc {
        let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(DB_VAR, db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn child");
        let out = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // libtest may print "test name ... " on the same line first.
                if let Some(at) = line.find("HONKER ")
                    && tx.send(line[at + "HONKER ".len()..].to_owned()).is_err()
                {
                    return;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            stdin,
        }
    }

    /// The next protocol line starting with `word` (others are skipped); panics at the deadline
    /// or when the child ends first.
    pub(crate) fn expect_line(&mut self, word: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.split_whitespace().next() == Some(word) => return l,
                Ok(_) => {}
                Err(e) => panic!("child sent no {word:?} line: {e:?}"),
            }
        }
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal (`STOP`, `CONT`, ...) to the child with the `kill` command.
    pub(crate) fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Send a line to the child's stdin.
    pub(crate) fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    /// Close stdin (the child's cue to finish) and wait for a successful exit.
    pub(crate) fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "child failed: {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "child did not exit within {DEADLINE:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9`, and reap.
    pub(crate) fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Print one protocol line for the parent.
pub(crate) fn tell(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "HONKER {line}").unwrap();
    out.flush().unwrap();
}

/// In a child: block until the parent closes stdin (or says anything: `None` at EOF).
pub(crate) fn read_parent_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}
