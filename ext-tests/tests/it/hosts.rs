//! Host-process safety, driven through a small C host (`hosts/host.c`) linked against the system
//! libsqlite3: closing the connection that loaded the extension while another waits, forking
//! after the extension's watcher started, and a forked child that does not claim keeping nothing
//! of its parent's liveness lock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{Running, ext_path, json_rows, run, sqlite3, temp_db, wait_until_asleep};

/// `hosts/host.c` compiled once per test binary with the system C compiler and libsqlite3.
fn host_binary() -> &'static Path {
    static HOST: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    c_host(&HOST, "host")
}

/// `hosts/<name>.c` compiled once (kept in `slot`) with the system C compiler and libsqlite3.
pub(crate) fn c_host<'a>(slot: &'a OnceLock<(tempfile::TempDir, PathBuf)>, name: &str) -> &'a Path {
    let (_, path) = slot.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join(name);
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/it/hosts/{name}.c"));
        let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
        let mut cmd = Command::new(cc);
        // -rdynamic: the host's own `dlclose` interposes libc's for libsqlite3 (see host.c).
        cmd.args(["-O1", "-Wall", "-Wextra", "-Werror", "-rdynamic", "-o"])
            .arg(&out)
            .arg(&src)
            .args(["-lsqlite3", "-lpthread", "-ldl"]);
        let built = run(cmd);
        assert!(
            built.status.success(),
            "compiling {} failed (needs a C compiler and libsqlite3-dev): {built:#?}",
            src.display()
        );
        (dir, out)
    });
    path
}

fn host(db: &Path, mode: &str, channel: &str) -> Command {
    let mut cmd = Command::new(host_binary());
    cmd.arg(ext_path()).arg(db).arg(mode).arg(channel);
    cmd
}

/// `ready <after_id> <tid>` from the host, as numbers.
fn ready(line: &str) -> (i64, u32) {
    let mut parts = line.split_whitespace();
    let after = parts.next().and_then(|p| p.parse().ok());
    let tid = parts.next().and_then(|p| p.parse().ok());
    match (after, tid) {
        (Some(after), Some(tid)) => (after, tid),
        _ => panic!("bad ready line {line:?}"),
    }
}

fn notify_from_cli(db: &Path, channel: &str, payload: &str) -> i64 {
    let sql = format!("SELECT honker_notify('{channel}', '{payload}')");
    run(sqlite3(db, &[&sql]))
        .ok()
        .trim()
        .parse()
        .expect("notification id")
}

#[test]
fn closing_the_loading_connection_while_another_waits_keeps_the_extension_loaded() {
    let (_dir, db) = temp_db();
    drop(honker_core::open(&db).expect("create"));
    let mut h = Running::spawn(host(&db, "close", "events"));
    let (_, tid) = ready(&h.expect_line("ready "));
    wait_until_asleep(h.pid(), tid, "connection B in honker_listen_wait");
    h.send_line("close");
    h.expect_line("closed A");

    let id = notify_from_cli(&db, "events", r#"{"after":"close"}"#);
    let rows = json_rows(&h.expect_line("got "));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["payload"], serde_json::json!({"after": "close"}));
    // Every connection that loaded it is closed, and SQLite never dlclosed it: the watcher
    // thread still runs its code.
    assert_eq!(h.expect_line("dlclose "), "0");
    let (status, rest) = h.finish();
    assert!(status.success(), "host exited with {status}: {rest:?}");
}

#[test]
fn a_forked_child_waits_and_is_woken() {
    let (_dir, db) = temp_db();
    drop(honker_core::open(&db).expect("create"));
    let mut h = Running::spawn(host(&db, "fork", "forked"));
    let (_, child) = ready(&h.expect_line("ready "));
    // The child's waiting thread is its main thread: its tid is its pid.
    wait_until_asleep(child, child, "the forked child in honker_listen_wait");

    let id = notify_from_cli(&db, "forked", r#"{"to":"child"}"#);
    let rows = json_rows(&h.expect_line("got "));
    assert_eq!(rows.len(), 1, "the child was not woken: {rows:?}");
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["payload"], serde_json::json!({"to": "child"}));
    let (status, rest) = h.finish();
    assert!(status.success(), "host exited with {status}: {rest:?}");
}

/// Claim up to 1000 jobs of `queue` through the CLI with a 10-minute lease: how many came.
fn claim_all(db: &Path, queue: &str) -> i64 {
    run(sqlite3(
        db,
        &[&format!(
            "SELECT json_array_length(honker_claim('{queue}', 'taker', 1000, 600000))"
        )],
    ))
    .ok()
    .trim()
    .parse()
    .expect("a count")
}

#[test]
fn a_forked_child_that_does_not_claim_keeps_nothing_of_its_dead_parents_jobs() {
    let (_dir, db) = temp_db();
    let enqueues: Vec<String> = (0..10)
        .map(|i| format!("SELECT honker_enqueue('forkhold', '{{\"n\":{i}}}')"))
        .collect();
    let enqueues: Vec<&str> = enqueues.iter().map(String::as_str).collect();
    run(sqlite3(&db, &enqueues)).ok();
    let mut h = Running::spawn(host(&db, "forkhold", "forkhold"));
    let held = h.expect_line("held ");
    let (n, child) = held
        .split_once(" child ")
        .map(|(n, c)| (n.parse::<i64>().unwrap(), c.parse::<u32>().unwrap()))
        .unwrap_or_else(|| panic!("bad held line {held:?}"));
    assert_eq!(n, 10, "the parent claimed every job");
    // While the parent lives, its jobs stay with it.
    assert_eq!(
        claim_all(&db, "forkhold"),
        0,
        "a live holder keeps its jobs"
    );
    h.kill();
    // The parent is dead, its 10-minute leases run on, its child lives: the jobs come back at
    // once, because nothing holds the parent's liveness lock any more.
    let mut got = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while got < 10 && std::time::Instant::now() < deadline {
        got += claim_all(&db, "forkhold");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let child_alive = std::path::Path::new(&format!("/proc/{child}")).exists();
    let _ = Command::new("kill")
        .args(["-9", &child.to_string()])
        .status();
    assert!(child_alive, "the forked child should still be running");
    assert_eq!(
        got, 10,
        "the dead parent's jobs must come back while its non-claiming child lives"
    );
}
