//! `write_atomically`: all-or-nothing in autocommit and under a caller's transaction.

use honker_core::{Error, open, write_atomically};

fn failing_write(conn: &rusqlite::Connection) -> honker_core::Result<()> {
    conn.execute("INSERT INTO app VALUES (1)", [])?;
    conn.execute("INSERT INTO app VALUES (2)", [])?;
    Err(Error::InvalidArgument {
        name: "x",
        reason: "fails after two writes".into(),
    })
}

#[test]
fn autocommit_failure_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(dir.path().join("a.db")).unwrap();
    conn.execute_batch("CREATE TABLE app(x)").unwrap();
    assert!(write_atomically(&conn, failing_write).is_err());
    assert_eq!(crate::count(&conn, "app"), 0);
    assert!(conn.is_autocommit(), "the transaction was closed");
}

#[test]
fn failure_inside_callers_transaction_undoes_only_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open(dir.path().join("a.db")).unwrap();
    conn.execute_batch("CREATE TABLE app(x)").unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO app VALUES (0)", []).unwrap();
    assert!(write_atomically(&tx, failing_write).is_err());
    assert!(
        !tx.is_autocommit(),
        "the caller's transaction is still open"
    );
    tx.commit().unwrap();
    assert_eq!(crate::count(&conn, "app"), 1);
}

#[test]
fn success_commits_in_autocommit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let conn = open(&path).unwrap();
    conn.execute_batch("CREATE TABLE app(x)").unwrap();
    write_atomically(&conn, |c| {
        c.execute("INSERT INTO app VALUES (1)", [])?;
        Ok(())
    })
    .unwrap();
    assert_eq!(crate::count(&open(&path).unwrap(), "app"), 1);
}
