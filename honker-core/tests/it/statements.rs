//! How hot statements are written so SQLite's statement cache actually saves the prepare.

use rusqlite::{StatementStatus, params};

/// SQLite (3.53 here) reads the value bound to `LIMIT ?N` while planning, so every new binding
/// expires the plan and the next step re-prepares the statement: a cached claim or read paid a
/// full prepare per call (27% of a claim+ack loop in a profile). `LIMIT ?N + 0` is not an integer
/// constant to the planner, so the plan survives rebinding. Every `LIMIT` parameter in honker's
/// SQL uses that form (tidy forbids the bare one).
#[test]
fn limit_parameter_written_plus_zero_is_not_reprepared_on_rebind() {
    let dir = tempfile::tempdir().unwrap();
    let conn = honker_core::open(dir.path().join("a.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE app (id INTEGER PRIMARY KEY, k TEXT);
         CREATE INDEX app_k ON app (k, id);
         INSERT INTO app (k) VALUES ('a'), ('a'), ('b');",
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT id FROM app WHERE k = ?1 AND id > ?2 ORDER BY id LIMIT ?3 + 0")
        .unwrap();
    for (i, limit) in [1, 2, 5, 1, 3].into_iter().enumerate() {
        let n = stmt
            .query_map(params!["a", i64::try_from(i % 2).unwrap(), limit], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
            .count();
        assert!(n <= limit as usize);
    }
    assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
}
