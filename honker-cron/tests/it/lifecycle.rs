//! Registering (upsert by name), updating, unscheduling, listing, and bad input: typed errors
//! with nothing written.

use honker_core::Millis;
use honker_cron::{Schedule, ScheduleOptions, ScheduleSpec, get, list, register, unschedule};

use crate::util::{count, db};

const H: i64 = 3_600_000;

#[test]
fn register_twice_keeps_the_next_fire_and_changing_the_expression_recomputes_it() {
    let (_d, _p, conn) = db();
    let spec = ScheduleSpec::new("s", Schedule::parse("@every 1h").unwrap(), "q", "{}");
    assert_eq!(
        register(&conn, &spec, Millis(0)).unwrap().next_fire,
        Some(Millis(H))
    );
    // Every process registering its schedules at start-up moves nothing.
    assert_eq!(
        register(&conn, &spec, Millis(H / 2)).unwrap().next_fire,
        Some(Millis(H))
    );
    // A new expression: next fire computed from now.
    let spec = ScheduleSpec::new("s", Schedule::parse("@every 1m").unwrap(), "q", "{}");
    let info = register(&conn, &spec, Millis(H / 2 + 1)).unwrap();
    assert_eq!(info.next_fire, Some(Millis(H / 2 + 60_000)));
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_schedules"), 1);
    // A new zone recomputes as well.
    let spec = ScheduleSpec::new(
        "s",
        Schedule::parse_in("0 0 * * *", "Asia/Tokyo").unwrap(),
        "q",
        "{}",
    );
    let info = register(&conn, &spec, Millis(0)).unwrap();
    assert_eq!(info.zone, "Asia/Tokyo");
    assert_eq!(info.next_fire, Some(Millis(15 * H)));
}

#[test]
fn list_shows_upcoming_fire_times() {
    let (_d, _p, conn) = db();
    let spec = ScheduleSpec::new("b", Schedule::parse("@every 1h").unwrap(), "q", "{}");
    register(&conn, &spec, Millis(0)).unwrap();
    let spec = ScheduleSpec::new("a", Schedule::parse("0 0 * * *").unwrap(), "q", "{}");
    register(&conn, &spec, Millis(0)).unwrap();
    let all = list(&conn, 3).unwrap();
    assert_eq!(
        all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(
        all[1].upcoming,
        vec![Millis(H), Millis(2 * H), Millis(3 * H)]
    );
    assert_eq!(all[0].upcoming[0], Millis(24 * H));
}

#[test]
fn unschedule_removes_the_schedule_and_its_history() {
    let (_d, _p, conn) = db();
    let spec = ScheduleSpec::new("s", Schedule::parse("@every 1h").unwrap(), "q", "{}");
    register(&conn, &spec, Millis(0)).unwrap();
    honker_cron::tick(&conn, Millis(H)).unwrap();
    assert!(unschedule(&conn, "s").unwrap());
    assert!(!unschedule(&conn, "s").unwrap());
    assert!(get(&conn, "s").unwrap().is_none());
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_fires"), 0);
    assert_eq!(
        honker_cron::pause(&conn, "s", Millis(0))
            .unwrap_err()
            .code(),
        "cron.not_found"
    );
    assert_eq!(
        honker_cron::resume(&conn, "s", Millis(0))
            .unwrap_err()
            .code(),
        "cron.not_found"
    );
}

/// `expr` is refused with `cron.bad_expression` at byte `position`.
#[track_caller]
fn check_bad(expr: &str, position: usize) {
    match Schedule::parse(expr) {
        Err(e) => {
            assert_eq!(e.code(), "cron.bad_expression", "{expr:?}: {e}");
            let honker_cron::Error::BadExpression { position: p, .. } = &e else {
                panic!("{expr:?}: {e:?} is not BadExpression");
            };
            assert_eq!(*p, position, "{expr:?}: {e}");
        }
        Ok(s) => panic!("{expr:?} should be refused, got {s:?}"),
    }
}

#[test]
fn malformed_expressions_are_refused_with_position_and_reason() {
    check_bad("", 0);
    check_bad("   ", 0);
    check_bad("* * * *", 7);
    check_bad("* * * * * * *", 12);
    check_bad("61 * * * *", 0);
    check_bad("* 24 * * *", 2);
    check_bad("* * 32 * *", 4);
    check_bad("* * * 13 *", 6);
    check_bad("* * * * 8", 8);
    check_bad("* * * FOO *", 6);
    check_bad("*/0 * * * *", 0);
    check_bad("* * * * * ;", 10);
    check_bad("0 0 30 2 *", 4);
    check_bad("@sometimes", 0);
    check_bad("@daily 5", 7);
    check_bad("@every", 6);
    check_bad("@every 5", 8);
    check_bad("@every 5w", 8);
    check_bad("@every 0s", 7);
    check_bad("@every ms", 7);
    check_bad("@every 400d", 7);
    check_bad("@every 99999999999999999999999s", 7);
}

#[test]
fn bad_input_is_typed_and_writes_nothing() {
    let (_d, _p, conn) = db();
    assert_eq!(
        Schedule::parse_in("* * * * *", "Mars/Olympus")
            .unwrap_err()
            .code(),
        "cron.unknown_zone"
    );
    assert_eq!(
        ScheduleOptions::from_json(Some(r#"{"nope":1}"#))
            .unwrap_err()
            .code(),
        "options.unknown"
    );
    assert_eq!(
        ScheduleOptions::from_json(Some(r#"{"misfire":"twice"}"#))
            .unwrap_err()
            .code(),
        "cron.bad_option"
    );
    assert_eq!(
        ScheduleOptions::from_json(Some(r#"{"misfire_cap":3}"#))
            .unwrap_err()
            .code(),
        "cron.bad_option"
    );
    assert_eq!(
        ScheduleOptions::from_json(Some(r#"{"tz":"Nowhere/Land"}"#))
            .unwrap_err()
            .code(),
        "cron.unknown_zone"
    );
    let every = Schedule::parse("@every 1s").unwrap();
    let bad_payload = ScheduleSpec::new("s", every.clone(), "q", "not json");
    assert_eq!(
        register(&conn, &bad_payload, Millis(0)).unwrap_err().code(),
        "payload.not_json"
    );
    let bad_name = ScheduleSpec::new("", every.clone(), "q", "{}");
    assert_eq!(
        register(&conn, &bad_name, Millis(0)).unwrap_err().code(),
        "cron.bad_name"
    );
    let bad_queue = ScheduleSpec::new("s", every, "", "{}");
    assert!(
        register(&conn, &bad_queue, Millis(0))
            .unwrap_err()
            .code()
            .starts_with("queue.")
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM honker_schedules"), 0);
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}
