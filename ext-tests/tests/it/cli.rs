//! The extension in Debian's `sqlite3` CLI: loading, the schema created at load, pub/sub round
//! trips, typed errors, BUSY passing through, and waits refused inside a transaction.

use std::process::Command;

use rusqlite::Connection;

use crate::support::{SQLITE3, ext_path, json_rows, run, sqlite3, temp_db};

/// The honker tables of a file freshly migrated by this build's honker-core: what loading the
/// extension must create.
fn expected_honker_tables() -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reference.db");
    drop(honker_core::open(&path).expect("open"));
    honker_tables(&path)
}

fn honker_tables(path: &std::path::Path) -> Vec<String> {
    let conn = Connection::open(path).expect("open");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'honker%' ORDER BY name")
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

#[test]
fn loads_in_the_sqlite3_cli_and_creates_the_schema_at_load() {
    let (_dir, db) = temp_db();
    let out = run(sqlite3(&db, &["SELECT honker_version()"])).ok();
    assert_eq!(out.trim(), honker_core::VERSION);

    // Loading alone created the schema: no honker_migrate() call, no Rust open.
    let conn = Connection::open(&db).expect("open");
    assert_eq!(
        honker_core::schema::schema_version(&conn).expect("schema version"),
        Some(honker_core::schema::SCHEMA_VERSION)
    );
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");

    // Loading again into a current file is a no-op, and honker_migrate() reports the version.
    let out = run(sqlite3(&db, &["SELECT honker_migrate()"])).ok();
    assert_eq!(out.trim(), honker_core::schema::SCHEMA_VERSION.to_string());
}

#[test]
fn loads_into_memory_and_read_only_databases_without_writing() {
    let mut cmd = Command::new(SQLITE3);
    cmd.arg(":memory:")
        .arg(format!(".load {}", ext_path().display()))
        .arg("SELECT honker_version(), (SELECT count(*) FROM sqlite_master)");
    assert_eq!(run(cmd).ok().trim(), format!("{}|0", honker_core::VERSION));

    // A read-only file without the schema still loads (and stays untouched).
    let (_dir, db) = temp_db();
    Connection::open(&db)
        .and_then(|c| c.execute_batch("CREATE TABLE app (x)"))
        .expect("create app db");
    let mut cmd = Command::new(SQLITE3);
    cmd.arg("-readonly")
        .arg(&db)
        .arg(format!(".load {}", ext_path().display()))
        .arg("SELECT honker_version()");
    assert_eq!(run(cmd).ok().trim(), honker_core::VERSION);
    assert!(honker_tables(&db).is_empty(), "{:?}", honker_tables(&db));
}

#[test]
fn notify_and_listen_round_trip_with_embedded_json() {
    let (_dir, db) = temp_db();
    let out = run(sqlite3(
        &db,
        &[
            r#"SELECT honker_notify('orders', '{"id":7,"tags":["a","b"]}')"#,
            r#"SELECT notify('orders', '"second"')"#,
            r#"SELECT honker_notify('other', '{}')"#,
            "SELECT honker_listen('orders', 0, 10)",
        ],
    ))
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let (first, second): (i64, i64) = (lines[0].parse().unwrap(), lines[1].parse().unwrap());
    assert!(second > first, "{out}");
    let rows = json_rows(lines[3]);
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0]["id"], first);
    assert_eq!(rows[0]["channel"], "orders");
    // Embedded as JSON, not as a string holding JSON.
    assert_eq!(
        rows[0]["payload"],
        serde_json::json!({"id": 7, "tags": ["a", "b"]})
    );
    assert!(
        rows[0]["created_ms"].as_i64().is_some_and(|t| t > 0),
        "{out}"
    );
    assert_eq!(rows[1]["payload"], "second");

    // Past the last id there is nothing; another process sees the same rows.
    let out = run(sqlite3(
        &db,
        &[&format!("SELECT honker_listen('orders', {second}, 10)")],
    ))
    .ok();
    assert!(json_rows(&out).is_empty(), "{out}");
}

#[test]
fn typed_errors_carry_the_honker_code_prefix_and_write_nothing() {
    let (_dir, db) = temp_db();
    for (sql, code) in [
        ("SELECT honker_listen('c', 'x', 10)", "arg.invalid"),
        ("SELECT honker_listen('c', 0, -1)", "arg.invalid"),
        ("SELECT honker_notify('c', 'not json')", "payload.not_json"),
        ("SELECT honker_notify(NULL, '{}')", "arg.invalid"),
        (
            r#"SELECT honker_notify_prune('{"bogus":1}')"#,
            "options.unknown",
        ),
        ("SELECT honker_wait(honker_epoch(), 'soon')", "arg.invalid"),
    ] {
        let stderr = run(sqlite3(&db, &[sql])).failed();
        assert!(
            stderr.contains(&format!("honker: {code}: ")),
            "{sql}: expected code {code}, got {stderr:?}"
        );
    }
    let conn = Connection::open(&db).expect("open");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM honker_notifications", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(n, 0);
}

#[test]
fn busy_passes_through_untouched() {
    let (_dir, db) = temp_db();
    let holder = honker_core::open(&db).expect("open");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let stderr = run(sqlite3(
        &db,
        &[".timeout 50", r#"SELECT honker_notify('c', '{}')"#],
    ))
    .failed();
    assert!(stderr.contains("database is locked"), "{stderr:?}");
    assert!(!stderr.contains("honker:"), "BUSY was wrapped: {stderr:?}");
    holder.execute_batch("ROLLBACK").expect("rollback");
    let n: i64 = holder
        .query_row("SELECT count(*) FROM honker_notifications", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(n, 0);
}

#[test]
fn waits_inside_a_transaction_are_refused() {
    let (_dir, db) = temp_db();
    for sql in [
        "SELECT honker_wait(honker_epoch(), 10)",
        "SELECT honker_listen_wait('c', 0, 10, 10)",
    ] {
        let stderr = run(sqlite3(&db, &["BEGIN", sql])).failed();
        assert!(
            stderr.contains("honker: wait.in_transaction: "),
            "{sql}: {stderr:?}"
        );
    }
    // Outside a transaction the same calls return at their timeout.
    let out = run(sqlite3(&db, &["SELECT honker_listen_wait('c', 0, 10, 10)"])).ok();
    assert!(json_rows(&out).is_empty(), "{out}");
}

#[test]
fn loads_through_select_load_extension_and_migrates_inside_the_statement() {
    let (_dir, db) = temp_db();
    let mut cmd = Command::new(SQLITE3);
    cmd.arg(&db)
        .arg(format!("SELECT load_extension('{}')", ext_path().display()))
        .arg(r#"SELECT honker_notify('c', '[1]')"#);
    let out = run(cmd).ok();
    assert_eq!(out.lines().last(), Some("1"), "{out}");
    assert_eq!(honker_tables(&db), expected_honker_tables());
}

#[test]
fn a_file_from_a_newer_honker_refuses_the_load_with_schema_too_new() {
    let (_dir, db) = temp_db();
    let conn = honker_core::open(&db).expect("open");
    honker_core::schema::meta_set(&conn, "schema_version", 999).expect("pretend a newer build");
    let stderr = run(sqlite3(&db, &["SELECT honker_version()"])).failed();
    assert!(stderr.contains("honker: schema.too_new: "), "{stderr:?}");
    let version: i64 = conn
        .query_row(
            "SELECT value FROM honker_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, 999, "the refused load changed the schema version");
}

#[test]
fn the_migration_at_load_waits_for_a_held_write_lock_instead_of_failing() {
    let (_dir, db) = temp_db();
    let holder = Connection::open(&db).expect("open");
    holder
        .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE app (x); BEGIN IMMEDIATE;")
        .expect("take the write lock");
    // The CLI's busy timeout is 0: without the extension's own retry the load would fail at once.
    let mut cli = crate::support::Running::spawn(sqlite3(&db, &["SELECT honker_version()"]));
    let pid = cli.pid();
    crate::support::wait_until_in_syscall(
        pid,
        pid,
        &[libc::SYS_nanosleep, libc::SYS_clock_nanosleep],
        "the CLI retrying the migration",
    );
    holder
        .execute_batch("COMMIT")
        .expect("release the write lock");
    assert_eq!(cli.expect_line(""), honker_core::VERSION);
    let (status, _) = cli.finish();
    assert!(status.success(), "{status}");
    assert_eq!(honker_tables(&db), expected_honker_tables());
}
