//! Bounded retention: the automatic prune by count and by age, explicit prune, stored policy.

use honker_core::{Millis, SettableClock};
use honker_stream::{
    PRUNE_EVERY, Retention, latest_id, notify, notify_with_clock, prune, prune_with_clock,
    retention, set_retention,
};
use rusqlite::Connection;

use crate::util::{TempDb, count};

fn ids(conn: &Connection) -> Vec<i64> {
    let mut stmt = conn
        .prepare("SELECT id FROM honker_notifications ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn default_policy_and_stored_overrides() {
    let db = TempDb::new();
    let conn = db.open();
    assert_eq!(
        retention(&conn).unwrap(),
        Retention {
            max_age_ms: 3_600_000,
            max_rows: 100_000
        }
    );
    let r = Retention {
        max_age_ms: 5,
        max_rows: 7,
    };
    set_retention(&conn, &r).unwrap();
    assert_eq!(retention(&db.open()).unwrap(), r);
    for bad in [
        Retention {
            max_age_ms: 0,
            max_rows: 7,
        },
        Retention {
            max_age_ms: 5,
            max_rows: -1,
        },
    ] {
        assert_eq!(
            set_retention(&conn, &bad).unwrap_err().code(),
            "arg.invalid"
        );
    }
    assert_eq!(retention(&conn).unwrap(), r);
}

#[test]
fn automatic_prune_bounds_the_table_by_count() {
    let db = TempDb::new();
    let conn = db.open();
    let max_rows = 100;
    set_retention(
        &conn,
        &Retention {
            max_age_ms: 3_600_000,
            max_rows,
        },
    )
    .unwrap();
    let total = 5 * PRUNE_EVERY + 17;
    for i in 1..=total {
        let id = notify(&conn, "c", "1").unwrap();
        assert_eq!(id, i);
        if i % 97 == 0 || i % PRUNE_EVERY == 0 {
            let n = count(&conn);
            assert!(n <= max_rows + PRUNE_EVERY, "{n} rows after {i}");
        }
        if i % PRUNE_EVERY == 0 {
            // Right after a prune: exactly the newest max_rows are left.
            assert_eq!(ids(&conn), ((i - max_rows + 1)..=i).collect::<Vec<_>>());
        }
    }
    assert_eq!(count(&conn), max_rows + 17);
    assert_eq!(latest_id(&conn).unwrap(), total);
}

#[test]
fn automatic_prune_by_age_keeps_everything_inside_the_window() {
    let db = TempDb::new();
    let conn = db.open();
    let clock = SettableClock::new(Millis(1_000_000));
    set_retention(
        &conn,
        &Retention {
            max_age_ms: 1_000,
            max_rows: 1_000_000,
        },
    )
    .unwrap();
    for _ in 0..10 {
        notify_with_clock(&conn, &clock, "old", "1").unwrap();
    }
    clock.advance(600);
    for _ in 0..10 {
        notify_with_clock(&conn, &clock, "middle", "1").unwrap();
    }
    clock.advance(600); // "old" is now 1200 ms old, "middle" 600 ms.
    while notify_with_clock(&conn, &clock, "new", "1").unwrap() % PRUNE_EVERY != 0 {}
    let channels: Vec<(String, i64)> = conn
        .prepare(
            "SELECT channel, count(*) FROM honker_notifications GROUP BY channel ORDER BY channel",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        channels,
        [
            ("middle".to_string(), 10),
            ("new".to_string(), PRUNE_EVERY - 20)
        ]
    );
}

#[test]
fn automatic_prune_is_part_of_the_callers_transaction() {
    let db = TempDb::new();
    let conn = db.open();
    set_retention(
        &conn,
        &Retention {
            max_age_ms: 3_600_000,
            max_rows: 10,
        },
    )
    .unwrap();
    for _ in 1..PRUNE_EVERY {
        notify(&conn, "c", "1").unwrap();
    }
    let before = ids(&conn);
    let tx = conn.unchecked_transaction().unwrap();
    assert_eq!(notify(&tx, "c", "2").unwrap(), PRUNE_EVERY);
    assert_eq!(count(&tx), 10);
    tx.rollback().unwrap();
    // The rollback undid the notification and the prune together.
    assert_eq!(ids(&conn), before);
}

#[test]
fn a_bad_stored_policy_does_not_break_notify() {
    let db = TempDb::new();
    let conn = db.open();
    honker_core::schema::meta_set(&conn, "notify.max_rows", "lots").unwrap();
    assert_eq!(retention(&conn).unwrap_err().code(), "arg.invalid");
    for _ in 0..PRUNE_EVERY {
        notify(&conn, "c", "1").unwrap();
    }
    assert_eq!(count(&conn), PRUNE_EVERY);
}

#[test]
fn explicit_prune_by_age_and_count() {
    let db = TempDb::new();
    let conn = db.open();
    let clock = SettableClock::new(Millis(10_000));
    for i in 0..10 {
        notify_with_clock(&conn, &clock, "c", &i.to_string()).unwrap();
        clock.advance(100);
    }
    // now = 11_000; rows created at 10_000 .. 10_900.
    let deleted = prune_with_clock(
        &conn,
        &Retention {
            max_age_ms: 550,
            max_rows: 1_000,
        },
        &clock,
    )
    .unwrap();
    assert_eq!(deleted, 5);
    assert_eq!(ids(&conn), [6, 7, 8, 9, 10]);
    let deleted = prune_with_clock(
        &conn,
        &Retention {
            max_age_ms: 1_000_000,
            max_rows: 2,
        },
        &clock,
    )
    .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(ids(&conn), [9, 10]);
    let bad = Retention {
        max_age_ms: -1,
        max_rows: 2,
    };
    assert_eq!(prune(&conn, &bad).unwrap_err().code(), "arg.invalid");
    assert_eq!(ids(&conn), [9, 10]);
}

#[test]
fn ids_are_never_reused_after_a_prune() {
    let db = TempDb::new();
    let conn = db.open();
    let mut last = 0;
    for _ in 0..5 {
        last = notify(&conn, "c", "1").unwrap();
    }
    let everything = Retention {
        max_age_ms: 0,
        max_rows: 0,
    };
    assert_eq!(prune(&conn, &everything).unwrap(), 5);
    assert_eq!(count(&conn), 0);
    assert_eq!(latest_id(&conn).unwrap(), last);
    assert_eq!(notify(&db.open(), "c", "1").unwrap(), last + 1);
}

#[test]
fn explicit_prune_inside_a_transaction_rolls_back_with_it() {
    let db = TempDb::new();
    let conn = db.open();
    for _ in 0..5 {
        notify(&conn, "c", "1").unwrap();
    }
    let tx = conn.unchecked_transaction().unwrap();
    let r = Retention {
        max_age_ms: 1_000_000,
        max_rows: 1,
    };
    assert_eq!(prune(&tx, &r).unwrap(), 4);
    tx.rollback().unwrap();
    assert_eq!(count(&conn), 5);
}
