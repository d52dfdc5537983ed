//! Every statement the queue runs uses an index: this test records each statement executed by
//! every queue operation and SQL function (through SQLite's trace, with parameters expanded) and
//! checks its `EXPLAIN QUERY PLAN` shows no `SCAN` of a table, so no cost grows with queue depth
//! or dead-letter history.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use honker_core::ManualWake;
use honker_queue::{
    EnqueueOptions, JobId, LeaseToken, QueueOptionsPatch, cancel, get_result, job, lock_acquire,
    lock_release, lock_renew, rate_limit, save_result,
};
use rusqlite::Connection;

use crate::util::{TempDb, queue_at_t0};

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record(event: rusqlite::trace::TraceEvent<'_>) {
    if let rusqlite::trace::TraceEvent::Stmt(stmt, sql) = event {
        // Parameters expanded, so the plan is the one of the values really used.
        let sql = stmt.expanded_sql().unwrap_or_else(|| sql.to_owned());
        SEEN.lock().unwrap().push(sql);
    }
}

/// Run every operation, with jobs in every state, so each statement path executes.
fn exercise(conn: &Connection) {
    let (q, clock) = queue_at_t0("q");
    q.configure(
        conn,
        &QueueOptionsPatch {
            keep_history_ms: Some(5),
            backoff_base_ms: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    let o = EnqueueOptions::default();
    q.enqueue(conn, "1", &o).unwrap();
    q.enqueue_batch(conn, &["2", "3", "4", "5"], &o).unwrap();
    q.enqueue(
        conn,
        "6",
        &EnqueueOptions {
            delay_ms: Some(10),
            priority: 9,
            ..Default::default()
        },
    )
    .unwrap();
    q.enqueue(
        conn,
        "7",
        &EnqueueOptions {
            expires_in_ms: Some(5),
            ..Default::default()
        },
    )
    .unwrap();
    let dk = EnqueueOptions {
        dedup_key: Some("k".into()),
        max_attempts: Some(1),
        ..Default::default()
    };
    let deduped = q.enqueue(conn, "8", &dk).unwrap();
    q.enqueue(conn, "9", &dk).unwrap();
    let jobs = q.claim(conn, "w", 5, Some(100)).unwrap();
    q.ack(conn, jobs[0].id, jobs[0].lease_token).unwrap();
    q.retry(conn, jobs[1].id, jobs[1].lease_token, None, Some("e"))
        .unwrap();
    q.release(conn, jobs[2].id, jobs[2].lease_token).unwrap();
    q.heartbeat(conn, jobs[3].id, jobs[3].lease_token, 50)
        .unwrap();
    q.ack_with_result(conn, jobs[3].id, jobs[3].lease_token, "{}", Some(5))
        .unwrap();
    q.fail(conn, jobs[4].id, jobs[4].lease_token, "bad")
        .unwrap();
    q.ack_batch(conn, &[(JobId(1), LeaseToken(1))]).unwrap();
    let _ = q.ack(conn, JobId(1), LeaseToken(1));
    clock.advance(20);
    let more = q.claim(conn, "w", 3, Some(5)).unwrap();
    assert!(!more.is_empty());
    clock.advance(200);
    q.claim(conn, "w", 2, None).unwrap();
    q.next_due(conn).unwrap();
    q.stats(conn).unwrap();
    job(conn, deduped).unwrap();
    job(conn, JobId(1)).unwrap();
    cancel(conn, JobId(2)).unwrap();
    q.dead_letters(conn, 10).unwrap();
    let dead = q.dead_letters(conn, 1).unwrap();
    q.requeue_dead(conn, dead[0].id).unwrap();
    q.requeue_all_dead(conn).unwrap();
    let j = q.claim(conn, "w", 10, None).unwrap();
    for j in &j {
        q.fail(conn, j.id, j.lease_token, "x").unwrap();
    }
    q.purge_dead(conn, 1_000).unwrap();
    save_result(conn, &clock, JobId(99), "[1]", Some(1)).unwrap();
    get_result(conn, &clock, JobId(99)).unwrap();
    let t = lock_acquire(conn, &clock, "l", "me", 100).unwrap().unwrap();
    lock_renew(conn, &clock, "l", t, 100).unwrap();
    lock_release(conn, &clock, "l", t).unwrap();
    rate_limit(conn, &clock, "r", 2, 1_000).unwrap();
    // The SQL functions, including the ones with a statement of their own.
    conn.execute_batch(
        "SELECT honker_enqueue('s', '{}');
         SELECT honker_enqueue_batch('s', '[1,2,3]', '{\"priority\":1}');
         SELECT honker_claim('s', 'w', 2);
         SELECT honker_claim_wait('s', 'w', 1, NULL, 0);
         SELECT honker_ack_batch('[[1,1]]');
         SELECT honker_job(1);
         SELECT honker_queue_stats('s');
         SELECT honker_next_due('s');
         SELECT honker_dead_list('s');
         SELECT honker_dead_requeue(3);
         SELECT honker_dead_purge('s', '{\"older_than_ms\":5}');
         SELECT honker_result_get(99);",
    )
    .unwrap();
}

fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn every_queue_statement_uses_an_index() {
    let db = TempDb::new();
    let conn = db.open();
    honker_queue::sql::register(&conn, Arc::new(ManualWake::new())).unwrap();
    conn.trace_v2(
        rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
        Some(record),
    );
    exercise(&conn);
    conn.trace_v2(rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT, None);
    let statements: BTreeSet<String> = SEEN
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| {
            let head = s
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            matches!(head.as_str(), "SELECT" | "INSERT" | "UPDATE" | "DELETE")
                && s.contains("honker_")
        })
        .collect();
    assert!(
        statements.len() > 30,
        "too few statements traced: {}",
        statements.len()
    );
    // The checker itself catches a scan, through an alias too.
    assert!(
        !scans(&plan(
            &conn,
            "SELECT id FROM honker_jobs WHERE payload = '1'"
        ))
        .is_empty()
    );
    assert!(
        !scans(&plan(
            &conn,
            "SELECT d.id FROM honker_dead d WHERE d.reason = 'x'"
        ))
        .is_empty()
    );
    let mut failures = Vec::new();
    for sql in &statements {
        let lines = plan(&conn, sql);
        for l in scans(&lines) {
            // The look for dead holders passes over the running jobs (the partial leases index:
            // bounded by the jobs in flight, not by queue depth), at most once per 20 ms per
            // process; it has no index of its own since schema v7.
            if sql.contains("holder") && l.ends_with("USING INDEX honker_jobs_leases") {
                continue;
            }
            // A claimer's first claim in a file forgets the claimers that are gone: one pass
            // over honker_claimers, which holds about a row per live claimer (schema v8).
            if sql.contains("FROM honker_claimers") && l.ends_with("SCAN honker_claimers") {
                continue;
            }
            failures.push(format!("{sql}\n    -> {l}"));
        }
        if sql.contains("lease_token = (SELECT value FROM honker_meta") {
            for l in lines.iter().filter(|l| l.contains("TEMP B-TREE")) {
                failures.push(format!(
                    "claim sorts instead of walking the ready index: {sql}\n    -> {l}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "statements that scan:\n{}",
        failures.join("\n")
    );
}

/// The plan lines that walk a whole table or index.
fn scans(lines: &[String]) -> Vec<String> {
    // Subqueries in FROM are materialized or run as co-routines; scanning those few rows is
    // fine. Every other SCAN walks a whole table or index.
    let derived: Vec<&str> = lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix("MATERIALIZE ")
                .or_else(|| l.strip_prefix("CO-ROUTINE "))
        })
        .collect();
    lines
        .iter()
        .filter(|l| {
            l.strip_prefix("SCAN ").is_some_and(|target| {
                let name = target.split_whitespace().next().unwrap_or("");
                name != "CONSTANT" && !derived.contains(&name)
            })
        })
        .cloned()
        .collect()
}
