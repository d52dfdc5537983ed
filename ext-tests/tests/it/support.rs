//! Helpers shared by the tests: locating (building) the extension, running the `sqlite3` CLI and
//! the C host with deadlines, and waiting until a process is asleep in a wait.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long any child process or wait may take before the test fails (generous: the slowest
/// host run opens 10,000 connections on a shared machine).
pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// The Debian `sqlite3` CLI (3.40.1 on Debian 12).
pub(crate) const SQLITE3: &str = "sqlite3";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ext-tests lives in the repository root")
}

/// The built `libhonker_ext.so`: `HONKER_EXT_PATH`, or built once per test binary.
pub(crate) fn ext_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("HONKER_EXT_PATH") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "HONKER_EXT_PATH={} is not a file", p.display());
            return p;
        }
        let manifest = repo_root().join("honker-ext/Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // The extension has its own workspace and target dir; a CARGO_TARGET_DIR meant for the
        // main workspace must not redirect it.
        let status = Command::new(cargo)
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo to build honker-ext");
        assert!(status.success(), "building honker-ext failed: {status}");
        let p = repo_root().join("honker-ext/target/release/libhonker_ext.so");
        assert!(p.is_file(), "{} was not built", p.display());
        p
    })
}

/// A fresh directory for a test's database; the path of `app.db` inside it.
pub(crate) fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    (dir, path)
}

/// What a finished process left.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Finished {
    /// The stdout, after asserting the process exited with status 0 and said nothing on stderr.
    pub(crate) fn ok(self) -> String {
        assert!(
            self.status.success() && self.stderr.is_empty(),
            "process failed: {self:#?}"
        );
        self.stdout
    }

    /// The stderr, after asserting the process exited with a plain non-zero status (not a
    /// signal such as SIGABRT).
    pub(crate) fn failed(self) -> String {
        assert!(
            self.status.code().is_some_and(|c| c != 0),
            "expected a clean non-zero exit: {self:#?}"
        );
        self.stderr
    }
}

/// `sqlite3 <db> .load <ext> <commands...>`: the CLI runs each argument in turn and stops at the
/// first error.
pub(crate) fn sqlite3(db: &Path, commands: &[&str]) -> Command {
    let mut cmd = Command::new(SQLITE3);
    cmd.arg(db)
        .arg(format!(".load {}", ext_path().display()))
        .args(commands)
        .stdin(Stdio::null());
    cmd
}

/// Run `cmd` to completion within [`DEADLINE`], capturing its output.
pub(crate) fn run(mut cmd: Command) -> Finished {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    finish(child, &format!("{cmd:?}"))
}

/// Wait for `child` (stdout and stderr piped) within [`DEADLINE`]; kill it and fail after that.
pub(crate) fn finish(mut child: Child, what: &str) -> Finished {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Finished {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// A running child whose stdout is read line by line.
#[derive(Debug)]
pub(crate) struct Running {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    what: String,
}

impl Running {
    /// Spawn `cmd` with piped stdin and stdout (stderr goes to the test's stderr).
    pub(crate) fn spawn(mut cmd: Command) -> Running {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
            seen: Vec::new(),
            what,
        }
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The next stdout line, which must start with `prefix`; returns the rest of it.
    pub(crate) fn expect_line(&mut self, prefix: &str) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => {
                self.seen.push(line.clone());
                match line.strip_prefix(prefix) {
                    Some(rest) => rest.trim().to_owned(),
                    None => panic!(
                        "{}: expected a line starting {prefix:?}, got {line:?}; output so far: {:#?}",
                        self.what, self.seen
                    ),
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no line starting {prefix:?} within {DEADLINE:?}; output so far: {:#?}",
                self.what, self.seen
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "{}: exited before printing a line starting {prefix:?}; output so far: {:#?}",
                self.what, self.seen
            ),
        }
    }

    /// Write one line to the child's stdin.
    pub(crate) fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    /// `kill -9` the child and reap it.
    pub(crate) fn kill(&mut self) {
        let child = self.child.as_mut().expect("running");
        child.kill().expect("kill the child");
        child.wait().expect("reap the child");
    }

    /// Wait for the child to exit within [`DEADLINE`]; its status and remaining stdout lines.
    pub(crate) fn finish(mut self) -> (ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within {DEADLINE:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let rest = self.lines.try_iter().collect();
        (status, rest)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave a blocked child behind.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Wait until thread `tid` of process `pid` is asleep in `futex` (a condition-variable wait) in
/// several consecutive samples: the waiter got past loading and its own queries and is blocked.
///
/// When `/proc/<pid>/task/<tid>/syscall` cannot be read (a sandbox that forbids it), this says so
/// on stderr and returns: the tests still check delivery, only not that the waiter slept first.
pub(crate) fn wait_until_asleep(pid: u32, tid: u32, what: &str) {
    wait_until_in_syscall(pid, tid, &[libc::SYS_futex], what);
}

/// Wait until thread `tid` of process `pid` is in one of the system calls `numbers` in several
/// consecutive samples (see [`wait_until_asleep`]).
pub(crate) fn wait_until_in_syscall(pid: u32, tid: u32, numbers: &[libc::c_long], what: &str) {
    let path = format!("/proc/{pid}/task/{tid}/syscall");
    let numbers: Vec<String> = numbers.iter().map(ToString::to_string).collect();
    let deadline = Instant::now() + DEADLINE;
    let mut in_a_row = 0;
    let mut last;
    loop {
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let nr = s.split_whitespace().next().unwrap_or_default();
                if numbers.iter().any(|n| n == nr) {
                    in_a_row += 1;
                    if in_a_row >= 3 {
                        return;
                    }
                } else {
                    in_a_row = 0;
                }
                last = s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                eprintln!("cannot read {path} ({e}); not checking where {what} is");
                return;
            }
            Err(e) => panic!("{what} (pid {pid}, tid {tid}) is gone before it was seen: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{what} was not seen in syscall {numbers:?} within {DEADLINE:?}; last {path}: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Parse the JSON array a listen function returns.
pub(crate) fn json_rows(text: &str) -> Vec<serde_json::Value> {
    match serde_json::from_str(text.trim()) {
        Ok(serde_json::Value::Array(rows)) => rows,
        other => panic!("expected a JSON array, got {text:?} ({other:?})"),
    }
}
