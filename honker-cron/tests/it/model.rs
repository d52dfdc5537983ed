//! Model-based property test of ticking: random tick times (gaps shorter and longer than the
//! period and the grace) against an in-memory model of which boundaries must fire, for every
//! misfire policy. Each boundary fires at most once, and exactly the ones the model says.

use honker_core::Millis;
use honker_cron::{Misfire, Schedule, ScheduleOptions, ScheduleSpec, register, tick};
use proptest::prelude::*;

use crate::util::{db, jobs_in, proptest_cases};

/// What the model says one tick at `now` fires, given the first boundary not yet considered.
fn model_tick(period: i64, grace: i64, misfire: Misfire, next: &mut i64, now: i64) -> Vec<i64> {
    if *next > now {
        return Vec::new();
    }
    let last = now.div_euclid(period) * period;
    let due: Vec<i64> = (0..)
        .map(|k| *next + k * period)
        .take_while(|t| *t <= last)
        .collect();
    *next = last + period;
    let on_time = (now - last <= grace).then_some(last);
    let missed = if on_time.is_some() {
        &due[..due.len() - 1]
    } else {
        &due[..]
    };
    let mut fired: Vec<i64> = match misfire {
        Misfire::Skip => Vec::new(),
        Misfire::Once => missed.last().copied().into_iter().collect(),
        Misfire::All { cap } => missed[missed.len().saturating_sub(cap as usize)..].to_vec(),
    };
    fired.extend(on_time);
    fired
}

fn misfires() -> impl Strategy<Value = Misfire> {
    prop_oneof![
        Just(Misfire::Skip),
        Just(Misfire::Once),
        (1u32..6).prop_map(|cap| Misfire::All { cap }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(48)))]

    #[test]
    fn ticks_fire_exactly_the_boundaries_the_model_says(
        period in prop::sample::select(vec![100i64, 250, 1000, 60_000]),
        grace in 0i64..2000,
        misfire in misfires(),
        gaps in prop::collection::vec(0i64..5000, 1..40),
    ) {
        let (_d, _p, conn) = db();
        let every = Schedule::parse(&format!("@every {period}ms")).unwrap();
        let options = ScheduleOptions { misfire, grace_ms: grace, ..ScheduleOptions::default() };
        let start = 1_000_000i64 + 7;
        let info = register(&conn, &ScheduleSpec::new("m", every, "q", "{}").with_options(options), Millis(start)).unwrap();
        let mut next = info.next_fire.unwrap().0;
        let mut now = start;
        let mut expected_total = 0usize;
        for gap in gaps {
            now += gap;
            let want = model_tick(period, grace, misfire, &mut next, now);
            let got: Vec<i64> = tick(&conn, Millis(now)).unwrap().fires.iter().map(|f| f.fire_ms.0).collect();
            prop_assert_eq!(&got, &want, "tick at {}", now);
            expected_total += want.len();
            // Ticking again at the same instant never fires anything.
            prop_assert!(tick(&conn, Millis(now)).unwrap().fires.is_empty());
        }
        prop_assert_eq!(jobs_in(&conn, "q") as usize, expected_total);
    }
}
