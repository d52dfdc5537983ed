//! Fuzz the cron expression parser and the next-fire computation.
//!
//! An input is an expression (raw text, or fields assembled from cron's vocabulary so the fuzzer
//! reaches deep into valid syntax), a zone and an instant. The target checks:
//!
//! - `Schedule::parse` never panics; a refusal is `cron.bad_expression` with a position inside
//!   the expression (or at its end);
//! - for an accepted schedule, `next_after(x)` is strictly after `x`, and nothing lies between:
//!   `next_after(next - 1ms) == next`;
//! - the SQL function `honker_schedule` agrees with the parser: it accepts exactly what parses,
//!   and a refused call writes nothing.
#![no_main]

use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use honker_core::Millis;
use honker_cron::{Error, Schedule, Zone};
use libfuzzer_sys::fuzz_target;
use rusqlite::Connection;

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
];

const WORDS: &[&str] = &[
    "*", "?", "0", "1", "5", "7", "12", "13", "15", "23", "29", "30", "31", "59", "60", "L", "W",
    "15W", "LW", "5L", "FRI#2", "MON#5", "MON-FRI", "SUN", "JAN", "dec", "*/5", "*/0", "1-5",
    "5-1", "1,15", "0-59/7", "#", "/", "-", ",", "@daily", "@every", "250ms", "1s", "0s", "7m",
    "1h", "2d", "400d", "@hourly",
];

#[derive(Debug, Arbitrary)]
enum Expr {
    Raw(String),
    Words(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    expr: Expr,
    zone: u8,
    after: i64,
}

fn text(expr: &Expr) -> String {
    match expr {
        Expr::Raw(s) => s.chars().take(80).collect(),
        Expr::Words(picks) => picks
            .iter()
            .take(8)
            .map(|i| WORDS[*i as usize % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn conn() -> &'static Mutex<Connection> {
    static CONN: OnceLock<Mutex<Connection>> = OnceLock::new();
    CONN.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().expect("tempdir")));
        let conn = honker_core::open(dir.path().join("fuzz.db")).expect("open");
        honker_cron::sql::register(&conn).expect("register");
        Mutex::new(conn)
    })
}

fuzz_target!(|input: Input| {
    let expr = text(&input.expr);
    let zone = Zone::parse(ZONES[input.zone as usize % ZONES.len()]).expect("zone");
    // Instants from 1900 to 3000: far enough to cover every rule, near enough to stay fast.
    let after = Millis(input.after.rem_euclid(34_700_000_000_000) - 2_208_988_800_000);
    let parsed = Schedule::parse(&expr);
    match &parsed {
        Ok(s) => {
            let s = s.clone().with_zone(zone);
            if let Some(next) = s.next_after(after) {
                assert!(
                    next > after,
                    "{expr:?} in {zone}: next({after:?}) = {next:?}"
                );
                assert_eq!(
                    s.next_after(Millis(next.0 - 1)),
                    Some(next),
                    "{expr:?} in {zone}: a boundary between {after:?} and {next:?}"
                );
            }
        }
        Err(e @ Error::BadExpression { position, .. }) => {
            assert_eq!(e.code(), "cron.bad_expression");
            assert!(
                *position <= expr.len(),
                "{expr:?}: position {position} is past the end"
            );
        }
        Err(other) => panic!("{expr:?}: unexpected error {other:?}"),
    }

    let conn = conn().lock().unwrap_or_else(|p| p.into_inner());
    let before: i64 = conn
        .query_row("SELECT count(*) FROM honker_schedules", [], |r| r.get(0))
        .expect("count");
    let sql = conn.query_row(
        "SELECT honker_schedule('fuzz', ?1, 'q', '{}', ?2)",
        rusqlite::params![expr, format!("{{\"tz\":\"{}\"}}", zone.name())],
        |r| r.get::<_, Option<i64>>(0),
    );
    match (parsed.is_ok(), sql) {
        (true, Ok(_)) => {}
        (false, Err(e)) => {
            assert!(
                e.to_string().starts_with("honker: cron.bad_expression: "),
                "{expr:?}: {e}"
            );
            let after: i64 = conn
                .query_row("SELECT count(*) FROM honker_schedules", [], |r| r.get(0))
                .expect("count");
            assert_eq!(before, after, "a refused schedule wrote a row");
        }
        (ok, sql) => panic!("{expr:?}: parse ok = {ok}, but SQL gave {sql:?}"),
    }
});
