//! The extension is built with every wake backend: a host picks one with `HONKER_WAKE_BACKEND`
//! or `SELECT honker_wake_backend(name)`, and `honker_epoch()`/`honker_wait()` then wake on
//! commits through it.

use crate::support::{run, sqlite3, temp_db};

/// A commit by the CLI's own connection is "another connection" to the watcher: the wait on the
/// epoch sampled before it returns at once with a later epoch.
const WAKES: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS t(x);",
    "CREATE TEMP TABLE e AS SELECT honker_epoch() AS seen;",
    "INSERT INTO t VALUES (1);",
    "SELECT honker_wait((SELECT seen FROM e), 20000) > (SELECT seen FROM e);",
];

#[test]
fn every_backend_is_in_the_extension_and_chosen_by_environment() {
    for backend in ["data_version", "stat", "kernel"] {
        let (_dir, db) = temp_db();
        let mut commands = vec![
            "PRAGMA journal_mode = wal;",
            "SELECT honker_wake_backend();",
        ];
        commands.extend(WAKES);
        let mut cmd = sqlite3(&db, &commands);
        cmd.env("HONKER_WAKE_BACKEND", backend);
        let out = run(cmd).ok();
        assert_eq!(out, format!("wal\n{backend}\n1\n"), "{backend}");
    }
}

#[test]
fn honker_wake_backend_chooses_from_sql_before_the_first_wait() {
    for backend in ["data_version", "stat", "kernel"] {
        let (_dir, db) = temp_db();
        let choose = format!("SELECT honker_wake_backend('{backend}');");
        let mut commands = vec!["PRAGMA journal_mode = wal;", choose.as_str()];
        commands.extend(WAKES);
        let mut cmd = sqlite3(&db, &commands);
        cmd.env_remove("HONKER_WAKE_BACKEND");
        assert_eq!(run(cmd).ok(), format!("wal\n{backend}\n1\n"), "{backend}");
    }
}

#[test]
fn an_unknown_backend_and_a_late_switch_are_typed_errors() {
    let (_dir, db) = temp_db();
    let mut cmd = sqlite3(&db, &["SELECT honker_wake_backend('fsevents');"]);
    cmd.env_remove("HONKER_WAKE_BACKEND");
    let err = run(cmd).failed();
    assert!(err.contains("honker: arg.invalid: "), "{err}");

    let (_dir, db) = temp_db();
    let mut cmd = sqlite3(
        &db,
        &[
            "CREATE TABLE t(x);",
            "SELECT honker_epoch() >= 0;",
            "SELECT honker_wake_backend('data_version');",
        ],
    );
    cmd.env_remove("HONKER_WAKE_BACKEND");
    let err = run(cmd).failed();
    assert!(err.contains("honker: wake.start: "), "{err}");
    assert!(err.contains("not comparable"), "{err}");
}
