//! Integration tests of honker-wake: the backends (DataVersion, StatPoll, Kernel), the Hub and
//! the SQL functions, against real files, real connections and real OS processes.
//!
//! The conformance suite (`model`, `journal_modes`, `replaced`, `checkpoint`, `busy`, `race`,
//! `locks`, `resources`) runs every case for every backend compiled into this build
//! ([`Backend::compiled`]); build with `--features stat,kernel` to run them all.
//!
//! Tests that count threads or file descriptors, or the global Hub's watchers, run in a child
//! process of their own (this binary re-run with [`ROLE`] set), since the other tests of this
//! binary run in parallel threads of the parent.

mod busy;
mod checkpoint;
mod errors;
mod fork;
mod journal_modes;
mod locks;
mod model;
mod race;
mod replaced;
mod resources;
mod selection;
mod sharing;
mod sql;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use honker_core::WakeSource;
use honker_wake::{
    Backend, DataVersion, DataVersionOptions, Kernel, KernelOptions, StatPoll, StatPollOptions,
    WatcherStats,
};
use rusqlite::Connection;

/// The environment variable naming a child process's role.
pub(crate) const ROLE: &str = "HONKER_WAKE_TEST_ROLE";

/// How long any test waits for a condition before failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) fn deadline() -> Instant {
    Instant::now() + PATIENCE
}

/// Wait until `cond` holds, failing with `what` after [`PATIENCE`].
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = deadline();
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the conformance suite needs of every backend's handle.
pub(crate) trait Watched: WakeSource {
    fn waiters(&self) -> usize;
    fn stats(&self) -> WatcherStats;
    fn has_failed(&self) -> bool;
}

macro_rules! watched {
    ($($ty:ty),*) => {$(
        impl Watched for $ty {
            fn waiters(&self) -> usize {
                <$ty>::waiters(self)
            }
            fn stats(&self) -> WatcherStats {
                <$ty>::stats(self)
            }
            fn has_failed(&self) -> bool {
                <$ty>::has_failed(self)
            }
        }
    )*};
}
watched!(DataVersion, StatPoll, Kernel);

/// Kernel options for the suite: a floor of an hour, so a commit the events and the settle loop
/// miss is a hang (and a failed deadline), not a 250 ms delay that hides the bug.
pub(crate) fn strict_kernel() -> KernelOptions {
    KernelOptions {
        floor: Duration::from_secs(3600),
        ..KernelOptions::default()
    }
}

/// Start `backend` on `path`; `poll` is the polling interval of the polling backends.
pub(crate) fn start_with(backend: Backend, path: &Path, poll: Duration) -> Box<dyn Watched> {
    match backend {
        Backend::DataVersion => Box::new(
            DataVersion::start(
                path,
                DataVersionOptions {
                    poll_interval: poll,
                },
            )
            .unwrap(),
        ),
        Backend::StatPoll => Box::new(
            StatPoll::start(
                path,
                StatPollOptions {
                    poll_interval: poll,
                    ..StatPollOptions::default()
                },
            )
            .unwrap(),
        ),
        Backend::Kernel => Box::new(Kernel::start(path, strict_kernel()).unwrap()),
        other => panic!("no conformance setup for backend {other}"),
    }
}

/// Start `backend` on `path` with the default interval.
pub(crate) fn start(backend: Backend, path: &Path) -> Box<dyn Watched> {
    start_with(backend, path, Duration::from_millis(1))
}

/// Run `case` once for every compiled backend, naming the backend when it fails.
pub(crate) fn for_each_backend(mut case: impl FnMut(Backend)) {
    for backend in Backend::compiled() {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(backend)));
        if let Err(e) = r {
            eprintln!("conformance case failed for backend {backend}");
            std::panic::resume_unwind(e);
        }
    }
}

/// A database file in a temporary directory with a one-row `counter` table.
pub(crate) struct Db {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

impl Db {
    /// A database in `journal_mode` (`wal`, `delete`, `truncate`, `persist`).
    pub(crate) fn new(journal_mode: &str) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(mode, journal_mode);
        conn.execute_batch(
            "CREATE TABLE counter(n INTEGER NOT NULL); INSERT INTO counter VALUES (0);",
        )
        .unwrap();
        Db { _dir: dir, path }
    }

    /// A plain connection (no honker setup, so the journal mode stays as it is).
    pub(crate) fn connect(&self) -> Connection {
        connect(&self.path)
    }
}

pub(crate) fn connect(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(PATIENCE).unwrap();
    conn
}

/// One commit: always exactly one changed page (the `counter` table's only page).
pub(crate) fn commit(conn: &Connection) {
    conn.execute("UPDATE counter SET n = n + 1", []).unwrap();
}

/// A transaction that writes and rolls back.
pub(crate) fn rollback(conn: &Connection) {
    conn.execute_batch("BEGIN IMMEDIATE; UPDATE counter SET n = n + 1; ROLLBACK;")
        .unwrap();
}

pub(crate) fn counter(conn: &Connection) -> i64 {
    conn.query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap()
}

/// The number of threads of this process.
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The number of open file descriptors of this process.
pub(crate) fn fd_count() -> usize {
    // The directory handle itself is one of them, in every count alike.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn child_command(role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_role", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role);
    cmd
}

/// Run this binary's `role` in a child process and fail with its output unless it succeeds.
pub(crate) fn run_child(role: &str) {
    let out = child_command(role).output().unwrap();
    assert!(
        out.status.success(),
        "child role {role} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A long-lived child process that writes to databases when told to, over stdin/stdout.
pub(crate) struct Committer {
    child: std::process::Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

const REPLY: &str = "HONKER_REPLY ";

impl Committer {
    pub(crate) fn spawn() -> Committer {
        let mut child = child_command("committer")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Committer {
            child,
            stdin,
            stdout,
        }
    }

    /// Send `<verb> <path> [arg]` and return the reply once the child has done it.
    fn send(&mut self, verb: &str, path: &Path, arg: &str) -> String {
        writeln!(self.stdin, "{verb}\t{}\t{arg}", path.display()).unwrap();
        self.stdin.flush().unwrap();
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "committer child exited early");
            // libtest prints "test child_role ... " without a newline before the test runs.
            if let Some(at) = line.find(REPLY) {
                let reply = line[at + REPLY.len()..].trim_end();
                assert!(!reply.starts_with("ERR"), "committer child: {reply}");
                return reply.to_owned();
            }
        }
    }

    pub(crate) fn commit(&mut self, path: &Path) {
        self.send("commit", path, "");
    }

    pub(crate) fn rollback(&mut self, path: &Path) {
        self.send("rollback", path, "");
    }

    pub(crate) fn journal_mode(&mut self, path: &Path, mode: &str) {
        let got = self.send("mode", path, mode);
        assert_eq!(got, format!("OK {mode}"));
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing stdin ends the child's loop.
        let _ = writeln!(self.stdin, "quit\t\t");
        let _ = self.child.wait();
    }
}

/// The child side of [`Committer`]: one cached connection, commands from stdin.
fn committer_main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut conn: Option<(String, Connection)> = None;
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let mut parts = line.splitn(3, '\t');
        let (verb, path, arg) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if verb == "quit" {
            return;
        }
        if conn.as_ref().is_none_or(|(p, _)| p != path) {
            conn = Some((path.to_owned(), connect(Path::new(path))));
        }
        let c = &conn.as_ref().unwrap().1;
        let reply = match verb {
            "commit" => {
                commit(c);
                format!("OK {}", counter(c))
            }
            "rollback" => {
                rollback(c);
                format!("OK {}", counter(c))
            }
            "mode" => {
                let mode: String = c
                    .query_row(&format!("PRAGMA journal_mode = {arg}"), [], |r| r.get(0))
                    .unwrap();
                format!("OK {mode}")
            }
            other => format!("ERR unknown verb {other:?}"),
        };
        writeln!(out, "{REPLY}{reply}").unwrap();
        out.flush().unwrap();
    }
}

/// The entry point of child processes; does nothing in the parent.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "committer" => committer_main(),
        "resources" => resources::child_main(),
        "sharing" => sharing::child_main(),
        "selection" => selection::child_main(),
        "fallback" => selection::fallback_main(),
        other => panic!("unknown child role {other:?}"),
    }
}
