//! Schedule expressions: cron (through croner) and `@every` intervals, their time zone, and the
//! next fire time after any instant.
//!
//! # Semantics
//!
//! - Cron has 5 fields (`minute hour day-of-month month day-of-week`) or 6 (`second` first).
//!   Month and weekday names (`JAN`, `MON`) are accepted in any case; day-of-week `0` and `7` are
//!   both Sunday.
//! - `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly` are the
//!   usual abbreviations (`0 0 1 1 *`, `0 0 1 * *`, `0 0 * * 0`, `0 0 * * *`, `0 * * * *`).
//! - Day of month and day of week follow Vixie cron: when *both* are restricted (neither is
//!   `*`), a day matches if it matches *either* (`0 0 13 * FRI` fires on every 13th and on every
//!   Friday). When one is `*`, only the other one restricts.
//! - croner's extensions: `L` in day-of-month (last day), `15W` (weekday nearest the 15th),
//!   `FRI#2` (second Friday), `5L` in day-of-week (last Friday of the month), `?` as `*`.
//! - `@every <n><unit>` with unit `ms`, `s`, `m`, `h` or `d` (e.g. `@every 250ms`): boundaries are
//!   the multiples of the period counted from the Unix epoch, so every process computes the same
//!   boundaries without sharing any state, and the zone does not matter (`@every 1d` fires at
//!   00:00 UTC).
//!
//! # Time zones and daylight saving time
//!
//! Cron fields are matched against the wall clock of the schedule's IANA zone (default UTC,
//! never the host's `TZ`). Wall-clock times that occur twice or never are resolved so that every
//! wall-clock match fires exactly once:
//!
//! - **Spring forward** (a gap, e.g. 02:00-03:00 in New York on the second Sunday of March): a
//!   schedule whose seconds, minute and hour are single fixed values (`30 2 * * *`) and whose time
//!   falls in the gap fires once, at the first instant after the gap (03:00 local). Schedules with
//!   a wildcard, a list, a range or a step in those fields simply have no boundaries inside the
//!   gap (`*/15 * * * *` goes from 01:45 to 03:00).
//! - **Fall back** (a repeated hour, e.g. 01:00-02:00 in New York on the first Sunday of
//!   November): each wall-clock time fires once, at its *first* occurrence (the earlier instant,
//!   still on summer time). The second pass of the repeated hour has no boundaries: after 01:45
//!   EDT, `*/15 * * * *` next fires at 02:00 EST, one hour and fifteen minutes later.
//! - `next_after(x) > x` for every instant `x`, including instants inside the second pass.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use honker_core::Millis;

use crate::error::{Error, Result};

/// The longest `@every` period: 366 days.
pub const MAX_EVERY_MS: i64 = 366 * 86_400_000;

/// Instants after this (year 4000) have no boundaries: croner stops searching at year 5000, and
/// nothing honker stores is that far out.
const LAST_INSTANT_MS: i64 = 64_060_588_800_000;

/// An IANA time zone, such as `Europe/Berlin`. The default is UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Zone(Tz);

impl Zone {
    /// Coordinated Universal Time.
    pub const UTC: Zone = Zone(Tz::UTC);

    /// Look up an IANA zone name (`America/New_York`, `UTC`), compiled into this build, so the
    /// host's zone database and `TZ` play no part.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownZone`] for a name that is not in the IANA database.
    pub fn parse(name: &str) -> Result<Zone> {
        Tz::from_str(name.trim())
            .map(Zone)
            .map_err(|_| Error::UnknownZone { zone: name.into() })
    }

    /// The zone's IANA name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::UTC
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name())
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed schedule expression in a time zone: something that can say when it next fires.
///
/// ```
/// use honker_cron::Schedule;
/// use honker_core::Millis;
///
/// let s = Schedule::parse_in("0 9 * * MON-FRI", "Europe/Berlin")?;
/// // Friday 2026-01-02 09:00 in Berlin is 08:00 UTC.
/// let next = s.next_after(Millis(1_767_312_000_000)).unwrap();
/// assert_eq!(next, Millis(1_767_340_800_000));
/// # Ok::<(), honker_cron::Error>(())
/// ```
#[derive(Clone)]
pub struct Schedule {
    source: String,
    zone: Zone,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cron(Box<Cron>),
    Every { period_ms: i64 },
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("expression", &self.source)
            .field("zone", &self.zone)
            .finish()
    }
}

impl Schedule {
    /// Parse an expression in UTC.
    ///
    /// # Errors
    ///
    /// [`Error::BadExpression`] with the byte position and the reason.
    pub fn parse(expr: &str) -> Result<Schedule> {
        Ok(Schedule {
            source: expr.trim().to_owned(),
            zone: Zone::UTC,
            kind: parse_kind(expr)?,
        })
    }

    /// Parse an expression in the IANA zone `zone`.
    ///
    /// # Errors
    ///
    /// [`Error::BadExpression`], [`Error::UnknownZone`].
    pub fn parse_in(expr: &str, zone: &str) -> Result<Schedule> {
        let zone = Zone::parse(zone)?;
        Ok(Schedule::parse(expr)?.with_zone(zone))
    }

    /// The same expression in another zone.
    pub fn with_zone(mut self, zone: Zone) -> Schedule {
        self.zone = zone;
        self
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.source
    }

    /// The zone the cron fields are matched in.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The period of an `@every` schedule, or `None` for cron.
    pub fn every_ms(&self) -> Option<i64> {
        match self.kind {
            Kind::Every { period_ms } => Some(period_ms),
            Kind::Cron(_) => None,
        }
    }

    /// The first boundary strictly after `after`, or `None` when there is none (never for
    /// `@every`; for cron only past the year 4000 or for a date that never exists, such as
    /// February 30).
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        match &self.kind {
            Kind::Every { period_ms } => {
                let n = after.0.div_euclid(*period_ms).checked_add(1)?;
                n.checked_mul(*period_ms).map(Millis)
            }
            Kind::Cron(cron) => cron_next(cron, self.zone.0, after.0).map(Millis),
        }
    }

    /// The next `n` boundaries after `after`, in order.
    pub fn upcoming(&self, after: Millis, n: usize) -> Vec<Millis> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut at = after;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// The boundaries in `(after, until]`: how many there are, and the last `keep` of them in
    /// order. Bounded work: cost grows with `keep`, not with the number of boundaries, for
    /// `@every`; for cron at most [`SCAN_LIMIT`] boundaries are walked, and any older ones are
    /// counted as missed without being listed.
    pub(crate) fn due_between(&self, after: Millis, until: Millis, keep: usize) -> Due {
        let mut due = Due::default();
        if until <= after {
            return due;
        }
        match self.kind {
            Kind::Every { period_ms } => {
                let first = after.0.div_euclid(period_ms) + 1;
                let last = until.0.div_euclid(period_ms);
                if last < first {
                    return due;
                }
                due.count = (last - first + 1) as u64;
                let from = last.saturating_sub(keep as i64 - 1).max(first);
                due.last = (from..=last).map(|k| Millis(k * period_ms)).collect();
            }
            Kind::Cron(_) => {
                let mut at = after;
                let mut ring = std::collections::VecDeque::with_capacity(keep.min(1024));
                let mut walked = 0usize;
                let mut jumped = false;
                while let Some(next) = self.next_after(at) {
                    if next > until {
                        break;
                    }
                    walked += 1;
                    due.count += 1;
                    if keep > 0 {
                        if ring.len() == keep {
                            ring.pop_front();
                        }
                        ring.push_back(next);
                    }
                    at = next;
                    if walked >= SCAN_LIMIT && !jumped {
                        // A long outage of a very frequent schedule: jump close to `until`,
                        // walk only the tail that is kept, and count the rest as one unknown
                        // stretch (`count` becomes a lower bound).
                        jumped = true;
                        let tail = self.walk_back_start(until, keep);
                        if tail > at {
                            ring.clear();
                            at = tail;
                            due.count += 1;
                        }
                    }
                }
                due.last = ring.into_iter().collect();
            }
        }
        due
    }

    /// An instant before `until` from which walking forward reaches `until` after at most a few
    /// thousand boundaries: found by halving a look-back window.
    fn walk_back_start(&self, until: Millis, keep: usize) -> Millis {
        let mut span: i64 = 1000;
        let want = keep.max(1);
        loop {
            let from = Millis(until.0.saturating_sub(span));
            let n = self
                .upcoming(from, want)
                .into_iter()
                .filter(|t| *t <= until)
                .count();
            if n >= want || span > 400 * 86_400_000 {
                return from;
            }
            span *= 2;
        }
    }
}

/// How many cron boundaries [`Schedule::due_between`] walks before it jumps ahead.
pub(crate) const SCAN_LIMIT: usize = 10_000;

/// Boundaries in a window: how many, and the latest ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) count: u64,
    pub(crate) last: Vec<Millis>,
}

impl FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Schedule> {
        Schedule::parse(s)
    }
}

const FIELD_NAMES_5: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const FIELD_NAMES_6: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];

fn bad(expr: &str, position: usize, reason: impl Into<String>) -> Error {
    Error::BadExpression {
        expression: expr.to_owned(),
        position,
        reason: reason.into(),
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

fn parse_kind(expr: &str) -> Result<Kind> {
    let start = expr.len() - expr.trim_start().len();
    let body = expr.trim();
    if body.is_empty() {
        return Err(bad(expr, 0, "the expression is empty"));
    }
    if let Some(rest) = body.strip_prefix('@') {
        let word_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..word_len];
        let alias = match word.to_ascii_lowercase().as_str() {
            "every" => return parse_every(expr, start + 1 + word_len, &rest[word_len..]),
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            _ => {
                return Err(bad(
                    expr,
                    start,
                    format!(
                        "unknown @-expression {:?}; known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <n><ms|s|m|h|d>",
                        format!("@{word}")
                    ),
                ));
            }
        };
        if word_len < rest.len() {
            return Err(bad(
                expr,
                start
                    + 1
                    + word_len
                    + (rest[word_len..].len() - rest[word_len..].trim_start().len()),
                format!("@{word} takes no arguments"),
            ));
        }
        let cron = parser()
            .parse(alias)
            .map_err(|e| bad(expr, start, e.to_string()))?;
        return Ok(Kind::Cron(Box::new(cron)));
    }
    let fields = split_fields(expr);
    let names: &[&str] = match fields.len() {
        5 => &FIELD_NAMES_5,
        6 => &FIELD_NAMES_6,
        n => {
            let position = if n > 6 {
                fields[6].0
            } else {
                expr.trim_end().len()
            };
            return Err(bad(
                expr,
                position,
                format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second first), found {n}"
                ),
            ));
        }
    };
    // croner accepts some characters anywhere (it upper-cases and substitutes names first); a
    // quick check here gives a position for the common typos.
    for &(offset, text) in &fields {
        if let Some((i, c)) = text.char_indices().find(|(_, c)| {
            !(c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/' | '?' | '#'))
        }) {
            return Err(bad(expr, offset + i, format!("unexpected character {c:?}")));
        }
    }
    match parser().parse(body) {
        Ok(cron) => {
            // croner accepts dates that never exist (`0 0 30 2 *`); refuse them here rather than
            // storing a schedule that never fires.
            if cron_next(&cron, Tz::UTC, 0).is_none() {
                return Err(bad(
                    expr,
                    fields[names.len() - 3].0,
                    "the day-of-month and month fields never match a real date",
                ));
            }
            Ok(Kind::Cron(Box::new(cron)))
        }
        Err(whole) => {
            // Find the first field that is wrong on its own, to point at it.
            for (i, &(offset, text)) in fields.iter().enumerate() {
                let probe: Vec<&str> = (0..fields.len())
                    .map(|j| if j == i { text } else { "*" })
                    .collect();
                if let Err(e) = parser().parse(&probe.join(" ")) {
                    return Err(bad(
                        expr,
                        offset,
                        format!("{} field {text:?}: {e}", names[i]),
                    ));
                }
            }
            Err(bad(expr, start, whole.to_string()))
        }
    }
}

/// Whitespace-separated fields with their byte offsets.
fn split_fields(expr: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut field_start = None;
    for (i, c) in expr.char_indices() {
        match (c.is_whitespace(), field_start) {
            (false, None) => field_start = Some(i),
            (true, Some(s)) => {
                out.push((s, &expr[s..i]));
                field_start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = field_start {
        out.push((s, &expr[s..]));
    }
    out
}

fn parse_every(expr: &str, offset: usize, rest: &str) -> Result<Kind> {
    let lead = rest.len() - rest.trim_start().len();
    let arg = rest.trim();
    let at = offset + lead;
    if arg.is_empty() {
        return Err(bad(
            expr,
            at,
            "@every needs a period such as 250ms, 10s, 5m, 1h or 1d",
        ));
    }
    if lead == 0 {
        return Err(bad(expr, at, "expected a space after @every"));
    }
    let digits = arg.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad(
            expr,
            at,
            "the period must start with a whole number, as in 250ms",
        ));
    }
    let (number, unit) = arg.split_at(digits);
    let unit_ms: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(bad(
                expr,
                at + digits,
                format!("unknown unit {unit:?}; use ms, s, m, h or d"),
            ));
        }
    };
    let n: i64 = number
        .parse()
        .map_err(|_| bad(expr, at, "the number is too large"))?;
    let period_ms = n
        .checked_mul(unit_ms)
        .filter(|p| *p <= MAX_EVERY_MS)
        .ok_or_else(|| bad(expr, at, "the period is longer than 366 days"))?;
    if period_ms == 0 {
        return Err(bad(expr, at, "the period must be at least 1ms"));
    }
    Ok(Kind::Every { period_ms })
}

fn to_datetime(tz: Tz, ms: i64) -> Option<DateTime<Tz>> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|d| d.with_timezone(&tz))
}

/// The first cron boundary strictly after `after_ms`, applying the DST rules in the module doc.
fn cron_next(cron: &Cron, tz: Tz, after_ms: i64) -> Option<i64> {
    if after_ms >= LAST_INSTANT_MS {
        return None;
    }
    // croner works in whole seconds and steps one second past its start: start from the second
    // that holds `after`, so the answer is a whole second strictly after `after`.
    let start = to_datetime(tz, after_ms.div_euclid(1000) * 1000)?;
    let found = croner_next(cron, &start, false)?;
    let found_ms = found.timestamp_millis();
    if found_ms > after_ms {
        return Some(found_ms);
    }
    // `after` is in the second pass of a repeated hour: croner resolved a later wall-clock time
    // to its first occurrence, which is already past. Those wall-clock times have fired (on the
    // first pass); continue from the first wall-clock time after the repeated hour.
    let resume = end_of_overlap(tz, start.naive_local())?;
    let resumed = croner_next(cron, &resume, true)?;
    Some(resumed.timestamp_millis()).filter(|ms| *ms > after_ms)
}

/// croner's next occurrence, with its spring-forward snapping checked.
///
/// croner moves a fixed-time job whose wall-clock time falls in a DST gap to the first instant
/// after the gap, but it also does so when the search merely *walks through* the gap: from
/// 01:30 in New York on a spring-forward day, "30 1 * * *" came back as 03:00 that same day.
/// An answer that does not match the pattern is therefore kept only when some wall-clock
/// second inside the gap it closes does match; otherwise the search goes on from it.
fn croner_next(cron: &Cron, start: &DateTime<Tz>, inclusive: bool) -> Option<DateTime<Tz>> {
    let mut found = cron.find_next_occurrence(start, inclusive).ok()?;
    // Each false snap moves past one gap; a handful of them in a row cannot happen in any
    // real zone, so the bound only guards against a loop.
    for _ in 0..8 {
        if clock_matches(cron, &found) || gap_has_match(cron, &found).unwrap_or(false) {
            return Some(found);
        }
        found = cron.find_next_occurrence(&found, false).ok()?;
    }
    None
}

/// Whether the wall-clock second, minute and hour of `at` match: croner's answers always
/// match the date fields, so a snapped answer is the only kind that fails this.
fn clock_matches(cron: &Cron, at: &DateTime<Tz>) -> bool {
    let t = at.naive_local();
    let p = &cron.pattern;
    p.second_match(t.second()).unwrap_or(false)
        && p.minute_match(t.minute()).unwrap_or(false)
        && p.hour_match(t.hour()).unwrap_or(false)
}

/// Whether `after_gap` is the first instant after a DST gap that contains a wall-clock
/// second matching `cron`.
fn gap_has_match(cron: &Cron, after_gap: &DateTime<Tz>) -> Option<bool> {
    let tz = after_gap.timezone();
    let before = to_datetime(tz, after_gap.timestamp_millis() - 1)?;
    let offset_before = before.offset().fix();
    let gap = after_gap.offset().fix().local_minus_utc() - offset_before.local_minus_utc();
    if gap <= 0 {
        return Some(false);
    }
    // The gap's wall-clock seconds do exist in the fixed offset in force before it, where
    // croner searches them without any DST handling.
    let end = after_gap.naive_local();
    let gap_start = end.checked_sub_signed(chrono::Duration::seconds(i64::from(gap)))?;
    let from = offset_before.from_local_datetime(&gap_start).single()?;
    let hit = cron.find_next_occurrence(&from, true).ok()?;
    Some(hit.naive_local() < end)
}

/// The first wall-clock second at or after `naive` that is not ambiguous, as an instant.
fn end_of_overlap(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Tz>> {
    let minute = chrono::Duration::minutes(1);
    let second = chrono::Duration::seconds(1);
    let mut n = naive;
    // Coarse steps to leave the overlap (at most a few hours long), then fine steps back.
    let mut steps = 0;
    while matches!(tz.from_local_datetime(&n), LocalResult::Ambiguous(..)) {
        n = n.checked_add_signed(minute)?;
        steps += 1;
        if steps > 24 * 60 {
            return None;
        }
    }
    for _ in 0..60 {
        let back = n.checked_sub_signed(second)?;
        if back < naive || matches!(tz.from_local_datetime(&back), LocalResult::Ambiguous(..)) {
            break;
        }
        n = back;
    }
    match tz.from_local_datetime(&n) {
        LocalResult::Single(dt) => Some(dt),
        LocalResult::Ambiguous(_, late) => Some(late),
        LocalResult::None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_boundaries_are_multiples_from_the_epoch() {
        let s = Schedule::parse("@every 250ms").unwrap();
        assert_eq!(s.next_after(Millis(0)), Some(Millis(250)));
        assert_eq!(s.next_after(Millis(249)), Some(Millis(250)));
        assert_eq!(s.next_after(Millis(250)), Some(Millis(500)));
        assert_eq!(s.next_after(Millis(-1)), Some(Millis(0)));
    }

    #[test]
    fn due_between_counts_every_boundaries_without_walking_them() {
        let s = Schedule::parse("@every 1ms").unwrap();
        let due = s.due_between(Millis(0), Millis(1_000_000_000), 3);
        assert_eq!(due.count, 1_000_000_000);
        assert_eq!(
            due.last,
            vec![
                Millis(999_999_998),
                Millis(999_999_999),
                Millis(1_000_000_000)
            ]
        );
    }

    #[test]
    fn due_between_for_cron_keeps_the_latest() {
        let s = Schedule::parse("0 * * * *").unwrap();
        let h = 3_600_000;
        let due = s.due_between(Millis(0), Millis(5 * h + 10), 2);
        assert_eq!(due.count, 5);
        assert_eq!(due.last, vec![Millis(4 * h), Millis(5 * h)]);
        let none = s.due_between(Millis(0), Millis(5 * h), 0);
        assert_eq!(none.count, 5);
        assert!(none.last.is_empty());
    }

    #[test]
    fn due_between_survives_a_long_outage_of_a_per_second_schedule() {
        let s = Schedule::parse("* * * * * *").unwrap();
        let day = 86_400_000;
        let due = s.due_between(Millis(0), Millis(7 * day), 2);
        assert!(due.count >= 2);
        assert_eq!(due.last, vec![Millis(7 * day - 1000), Millis(7 * day)]);
    }
}
