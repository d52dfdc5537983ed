//! The schedule lifecycle in `honker_schedules`: register (upsert by name), unschedule, pause,
//! resume, look up, list with upcoming fire times, and fire-history retention.

use honker_core::sql::parse_options;
use honker_core::{Millis, kick_after_commit, write_atomically};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::expr::{Schedule, Zone};

/// The longest schedule name, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// How long fire history (`honker_fires`) is kept by default: 7 days.
///
/// A fire row is the dedup key of its boundary. Boundaries only move forward, so an old row is
/// needed only by a process whose clock is behind by more than the retention, which the default
/// makes far-fetched.
pub const DEFAULT_FIRE_RETENTION_MS: i64 = 7 * 86_400_000;

/// What to do with boundaries that passed while nothing ticked (or that a tick reached later
/// than the grace period, or after the following boundary had passed too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Misfire {
    /// Drop them (the default): the schedule resumes with its next on-time boundary.
    #[default]
    Skip,
    /// Fire one job for all of them together, at the latest missed boundary.
    Once,
    /// Fire each of them, but at most `cap` (the latest `cap`).
    All {
        /// The most missed boundaries one tick fires for a schedule.
        cap: u32,
    },
}

/// The default cap of [`Misfire::All`].
pub const DEFAULT_MISFIRE_CAP: u32 = 100;

/// The default grace period: a boundary ticked up to this late still counts as on time (if its
/// successor has not passed yet).
pub const DEFAULT_GRACE_MS: i64 = 60_000;

/// Whether a boundary fires while the previous fire's job is still pending or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Fire regardless (the default).
    #[default]
    Allow,
    /// Skip the boundary (recorded in `honker_fires` with no job).
    Skip,
}

/// How a schedule fires: everything but the expression, the queue and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// Priority of every fired job (default 0).
    pub priority: i64,
    /// Max attempts of every fired job (`None`: the queue's default).
    pub max_attempts: Option<u32>,
    /// Misfire policy (default [`Misfire::Skip`]).
    pub misfire: Misfire,
    /// Grace period in ms (default [`DEFAULT_GRACE_MS`]).
    pub grace_ms: i64,
    /// Overlap policy (default [`Overlap::Allow`]).
    pub overlap: Overlap,
    /// Stop after this many fired jobs.
    pub max_runs: Option<u64>,
    /// No boundary after this instant fires.
    pub end_at_ms: Option<i64>,
}

impl Default for ScheduleOptions {
    fn default() -> ScheduleOptions {
        ScheduleOptions {
            priority: 0,
            max_attempts: None,
            misfire: Misfire::Skip,
            grace_ms: DEFAULT_GRACE_MS,
            overlap: Overlap::Allow,
            max_runs: None,
            end_at_ms: None,
        }
    }
}

const OPTION_KEYS: &[&str] = &[
    "tz",
    "priority",
    "max_attempts",
    "misfire",
    "misfire_cap",
    "grace_ms",
    "overlap",
    "max_runs",
    "end_at_ms",
];
const OPTION_LIST: &str =
    "tz, priority, max_attempts, misfire, misfire_cap, grace_ms, overlap, max_runs, end_at_ms";

/// Options parsed from a JSON object, as the SQL function and the CLI take them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedOptions {
    /// The `tz` key, if given.
    pub zone: Option<Zone>,
    /// Everything else.
    pub options: ScheduleOptions,
}

impl ScheduleOptions {
    /// Parse `{"tz":..,"priority":..,"max_attempts":..,"misfire":"skip"|"once"|"all",
    /// "misfire_cap":..,"grace_ms":..,"overlap":"allow"|"skip","max_runs":..,"end_at_ms":..}`;
    /// empty text means all defaults.
    ///
    /// # Errors
    ///
    /// `options.unknown` for an unknown key, `arg.invalid` for text that is not an object,
    /// [`Error::BadOption`] for a bad value, [`Error::UnknownZone`].
    pub fn from_json(text: Option<&str>) -> Result<ParsedOptions> {
        let map = parse_options(text, OPTION_KEYS, OPTION_LIST)?;
        let mut out = ParsedOptions::default();
        let o = &mut out.options;
        for (key, value) in &map {
            let value = if value.is_null() { continue } else { value };
            match key.as_str() {
                "tz" => {
                    let name = value
                        .as_str()
                        .ok_or_else(|| bad_option("tz", "must be a string"))?;
                    out.zone = Some(Zone::parse(name)?);
                }
                "priority" => {
                    o.priority = value
                        .as_i64()
                        .ok_or_else(|| bad_option("priority", "must be an integer"))?;
                }
                "max_attempts" => {
                    let n = value
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad_option("max_attempts", "must be an integer >= 1"))?;
                    o.max_attempts = Some(n);
                }
                "misfire" => {
                    o.misfire = match value.as_str() {
                        Some("skip") => Misfire::Skip,
                        Some("once") => Misfire::Once,
                        Some("all") => Misfire::All {
                            cap: match o.misfire {
                                Misfire::All { cap } => cap,
                                _ => DEFAULT_MISFIRE_CAP,
                            },
                        },
                        _ => {
                            return Err(bad_option(
                                "misfire",
                                "must be \"skip\", \"once\" or \"all\"",
                            ));
                        }
                    };
                }
                "misfire_cap" | "grace_ms" | "max_runs" | "end_at_ms" => {}
                "overlap" => {
                    o.overlap = match value.as_str() {
                        Some("allow") => Overlap::Allow,
                        Some("skip") => Overlap::Skip,
                        _ => return Err(bad_option("overlap", "must be \"allow\" or \"skip\"")),
                    };
                }
                _ => {}
            }
        }
        if let Some(v) = map.get("misfire_cap").filter(|v| !v.is_null()) {
            let cap = v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad_option("misfire_cap", "must be an integer >= 1"))?;
            match &mut o.misfire {
                Misfire::All { cap: c } => *c = cap,
                _ => {
                    return Err(bad_option(
                        "misfire_cap",
                        "applies only with \"misfire\": \"all\"",
                    ));
                }
            }
        }
        if let Some(v) = map.get("grace_ms").filter(|v| !v.is_null()) {
            o.grace_ms = v
                .as_i64()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad_option("grace_ms", "must be an integer >= 0"))?;
        }
        if let Some(v) = map.get("max_runs").filter(|v| !v.is_null()) {
            o.max_runs = Some(
                v.as_u64()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad_option("max_runs", "must be an integer >= 1"))?,
            );
        }
        if let Some(v) = map.get("end_at_ms").filter(|v| !v.is_null()) {
            o.end_at_ms = Some(
                v.as_i64()
                    .ok_or_else(|| bad_option("end_at_ms", "must be an integer"))?,
            );
        }
        Ok(out)
    }
}

fn bad_option(option: &'static str, reason: &str) -> Error {
    Error::BadOption {
        option,
        reason: reason.into(),
    }
}

/// Everything needed to register a schedule. Built from parsed, validated parts.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    /// Unique name; registering the same name again updates that schedule.
    pub name: String,
    /// When it fires, in which zone.
    pub schedule: Schedule,
    /// The queue each fire enqueues into.
    pub queue: String,
    /// The JSON payload of each fired job.
    pub payload: String,
    /// How it fires.
    pub options: ScheduleOptions,
}

impl ScheduleSpec {
    /// A spec with default options.
    pub fn new(name: &str, schedule: Schedule, queue: &str, payload: &str) -> ScheduleSpec {
        ScheduleSpec {
            name: name.into(),
            schedule,
            queue: queue.into(),
            payload: payload.into(),
            options: ScheduleOptions::default(),
        }
    }

    /// The same spec with `options`.
    pub fn with_options(mut self, options: ScheduleOptions) -> ScheduleSpec {
        self.options = options;
        self
    }
}

/// A registered schedule, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInfo {
    /// Name.
    pub name: String,
    /// The expression as registered.
    pub expression: String,
    /// IANA zone name.
    pub zone: String,
    /// Target queue.
    pub queue: String,
    /// JSON payload.
    pub payload: String,
    /// How it fires.
    pub options: ScheduleOptions,
    /// Paused schedules do not fire.
    pub paused: bool,
    /// The next boundary to fire (`None`: finished by `max_runs` or `end_at_ms`).
    pub next_fire: Option<Millis>,
    /// Jobs fired so far.
    pub runs: u64,
    /// The boundary of the last fire.
    pub last_fire: Option<Millis>,
    /// The job of the last fire.
    pub last_job_id: Option<i64>,
    /// Why a tick paused this schedule (`code: message` of the queue's refusal of its job);
    /// `None` unless that is why it is paused.
    pub last_error: Option<String>,
    /// The boundaries after `next_fire`, as many as were asked for by [`list`] (empty otherwise).
    pub upcoming: Vec<Millis>,
}

pub(crate) const SELECT_COLUMNS: &str = "name, expr, tz, queue, payload, priority, max_attempts, misfire, misfire_cap, grace_ms, overlap, max_runs, end_at_ms, paused, next_fire_ms, runs, last_fire_ms, last_job_id, last_error";

pub(crate) fn info_from_row(r: &Row<'_>) -> rusqlite::Result<ScheduleInfo> {
    let misfire: String = r.get(7)?;
    let cap: i64 = r.get(8)?;
    let overlap: String = r.get(10)?;
    Ok(ScheduleInfo {
        name: r.get(0)?,
        expression: r.get(1)?,
        zone: r.get(2)?,
        queue: r.get(3)?,
        payload: r.get(4)?,
        options: ScheduleOptions {
            priority: r.get(5)?,
            max_attempts: r
                .get::<_, Option<i64>>(6)?
                .map(|n| n.clamp(1, u32::MAX as i64) as u32),
            misfire: match misfire.as_str() {
                "once" => Misfire::Once,
                "all" => Misfire::All {
                    cap: cap.clamp(1, u32::MAX as i64) as u32,
                },
                _ => Misfire::Skip,
            },
            grace_ms: r.get(9)?,
            overlap: if overlap == "skip" {
                Overlap::Skip
            } else {
                Overlap::Allow
            },
            max_runs: r.get::<_, Option<i64>>(11)?.map(|n| n.max(0) as u64),
            end_at_ms: r.get(12)?,
        },
        paused: r.get::<_, i64>(13)? != 0,
        next_fire: r.get::<_, Option<i64>>(14)?.map(Millis),
        runs: r.get::<_, i64>(15)?.max(0) as u64,
        last_fire: r.get::<_, Option<i64>>(16)?.map(Millis),
        last_job_id: r.get(17)?,
        last_error: r.get(18)?,
        upcoming: Vec::new(),
    })
}

/// Check a schedule name: 1 to [`MAX_NAME_BYTES`] bytes, no control characters.
///
/// # Errors
///
/// [`Error::BadName`].
pub fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_NAME_BYTES {
        "is longer than 200 bytes"
    } else if name.chars().any(char::is_control) {
        "has control characters"
    } else {
        return Ok(());
    };
    Err(Error::BadName {
        name: name.into(),
        reason,
    })
}

/// The first boundary after `now` that this schedule may still fire (respecting `end_at_ms` and
/// `max_runs`), or `None` when it is finished.
pub(crate) fn next_fire(
    schedule: &Schedule,
    options: &ScheduleOptions,
    runs: u64,
    now: Millis,
) -> Option<Millis> {
    if options.max_runs.is_some_and(|max| runs >= max) {
        return None;
    }
    schedule
        .next_after(now)
        .filter(|n| options.end_at_ms.is_none_or(|end| n.0 <= end))
}

/// Register `spec`, or update the schedule of that name; returns it as stored.
///
/// A new schedule, or one whose expression or zone changed, gets its next fire computed from
/// `now`; an update that changes neither keeps its next fire, so every process may register its
/// schedules at start-up without moving anything. Runs in the caller's transaction when there
/// is one.
///
/// # Errors
///
/// [`Error::BadName`], [`Error::BadOption`], payload errors (`payload.not_json`), a bad queue
/// name (the queue's code), SQLite errors. Nothing is written on error.
pub fn register(conn: &Connection, spec: &ScheduleSpec, now: Millis) -> Result<ScheduleInfo> {
    check_name(&spec.name)?;
    honker_queue::Queue::new(&spec.queue)?;
    honker_core::payload::check_json(
        &spec.payload,
        honker_core::payload::DEFAULT_MAX_PAYLOAD_BYTES,
    )?;
    let o = &spec.options;
    if o.grace_ms < 0 {
        return Err(bad_option("grace_ms", "must be >= 0"));
    }
    if matches!(o.misfire, Misfire::All { cap: 0 }) {
        return Err(bad_option("misfire_cap", "must be >= 1"));
    }
    if o.max_attempts == Some(0) {
        return Err(bad_option("max_attempts", "must be >= 1"));
    }
    if o.max_runs == Some(0) {
        return Err(bad_option("max_runs", "must be >= 1"));
    }
    let info =
        write_atomically(conn, |c| {
            let existing = get(c, &spec.name)?;
            let expr = spec.schedule.expression();
            let zone = spec.schedule.zone().name();
            let runs = existing.as_ref().map_or(0, |e| e.runs);
            let keep_next = existing.as_ref().and_then(|e| {
                let same = e.expression == expr && e.zone == zone;
                let same_limits =
                    e.options.end_at_ms == o.end_at_ms && e.options.max_runs == o.max_runs;
                (same && same_limits && e.next_fire.is_some()).then_some(e.next_fire)
            });
            let next = match keep_next {
                Some(n) => n,
                None => next_fire(&spec.schedule, o, runs, now),
            };
            let (misfire, cap) = match o.misfire {
                Misfire::Skip => ("skip", DEFAULT_MISFIRE_CAP),
                Misfire::Once => ("once", DEFAULT_MISFIRE_CAP),
                Misfire::All { cap } => ("all", cap),
            };
            c.prepare_cached(
            "INSERT INTO honker_schedules (name, expr, tz, queue, payload, priority, max_attempts,
                 misfire, misfire_cap, grace_ms, overlap, max_runs, end_at_ms, paused, next_fire_ms,
                 runs, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0, ?14, 0, ?15, ?15)
             ON CONFLICT (name) DO UPDATE SET expr = excluded.expr, tz = excluded.tz,
                 queue = excluded.queue, payload = excluded.payload, priority = excluded.priority,
                 max_attempts = excluded.max_attempts, misfire = excluded.misfire,
                 misfire_cap = excluded.misfire_cap, grace_ms = excluded.grace_ms,
                 overlap = excluded.overlap, max_runs = excluded.max_runs,
                 end_at_ms = excluded.end_at_ms, next_fire_ms = excluded.next_fire_ms,
                 paused = CASE WHEN last_error IS NULL THEN paused ELSE 0 END,
                 last_error = NULL, updated_ms = excluded.updated_ms",
        )?
        .execute(params![
            spec.name,
            expr,
            zone,
            spec.queue,
            spec.payload,
            o.priority,
            o.max_attempts,
            misfire,
            cap,
            o.grace_ms,
            if o.overlap == Overlap::Skip { "skip" } else { "allow" },
            o.max_runs.map(|n| n.min(i64::MAX as u64) as i64),
            o.end_at_ms,
            next.map(|n| n.0),
            now.0,
        ])?;
            get(c, &spec.name)?.ok_or_else(|| honker_core::Error::NotHonker {
                detail: "a schedule vanished inside its own transaction".into(),
            })
        })?;
    kick_after_commit(conn);
    Ok(info)
}

/// The schedule named `name`, if any.
///
/// # Errors
///
/// SQLite errors.
pub fn get(conn: &Connection, name: &str) -> honker_core::Result<Option<ScheduleInfo>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SELECT_COLUMNS} FROM honker_schedules WHERE name = ?1"
        ))?
        .query_row([name], info_from_row)
        .optional()?)
}

/// Remove the schedule and its fire history; `false` if there was no such schedule.
///
/// # Errors
///
/// SQLite errors.
pub fn unschedule(conn: &Connection, name: &str) -> Result<bool> {
    let removed = write_atomically(conn, |c| {
        c.prepare_cached("DELETE FROM honker_fires WHERE schedule = ?1")?
            .execute([name])?;
        Ok(
            c.prepare_cached("DELETE FROM honker_schedules WHERE name = ?1")?
                .execute([name])?
                > 0,
        )
    })?;
    kick_after_commit(conn);
    Ok(removed)
}

/// Pause a schedule: it does not fire until resumed. Pausing twice is fine.
///
/// # Errors
///
/// [`Error::NotFound`], SQLite errors.
pub fn pause(conn: &Connection, name: &str, now: Millis) -> Result<()> {
    let n = conn
        .prepare_cached("UPDATE honker_schedules SET paused = 1, updated_ms = ?2 WHERE name = ?1")?
        .execute(params![name, now.0])?;
    if n == 0 {
        return Err(Error::NotFound { name: name.into() });
    }
    kick_after_commit(conn);
    Ok(())
}

/// Resume a paused schedule. Its next fire is recomputed from `now`: boundaries that passed
/// while it was paused never fire, whatever the misfire policy (pausing means "do not fire").
/// Resuming a schedule that is not paused changes nothing.
///
/// # Errors
///
/// [`Error::NotFound`], a stored expression that no longer parses, SQLite errors.
pub fn resume(conn: &Connection, name: &str, now: Millis) -> Result<()> {
    write_atomically(conn, |c| {
        let Some(info) = get(c, name)? else {
            return Ok(Err(Error::NotFound { name: name.into() }));
        };
        if !info.paused {
            return Ok(Ok(()));
        }
        let schedule = match Schedule::parse_in(&info.expression, &info.zone) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let next = next_fire(&schedule, &info.options, info.runs, now);
        c.prepare_cached(
            "UPDATE honker_schedules SET paused = 0, last_error = NULL, next_fire_ms = ?2,
                 updated_ms = ?3 WHERE name = ?1",
        )?
        .execute(params![name, next.map(|n| n.0), now.0])?;
        Ok(Ok(()))
    })??;
    kick_after_commit(conn);
    Ok(())
}

/// Every schedule, by name, each with its next `upcoming` boundaries after its next fire.
///
/// # Errors
///
/// SQLite errors.
pub fn list(conn: &Connection, upcoming: usize) -> Result<Vec<ScheduleInfo>> {
    let mut out: Vec<ScheduleInfo> = conn
        .prepare_cached(&format!(
            "SELECT {SELECT_COLUMNS} FROM honker_schedules ORDER BY name"
        ))?
        .query_map([], info_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    if upcoming > 0 {
        for info in &mut out {
            if let (Some(next), Ok(s)) = (
                info.next_fire,
                Schedule::parse_in(&info.expression, &info.zone),
            ) {
                let mut times = vec![next];
                times.extend(
                    s.upcoming(next, upcoming.saturating_sub(1))
                        .into_iter()
                        .filter(|t| info.options.end_at_ms.is_none_or(|end| t.0 <= end)),
                );
                if let Some(max) = info.options.max_runs {
                    times.truncate(max.saturating_sub(info.runs).min(usize::MAX as u64) as usize);
                }
                info.upcoming = times;
            }
        }
    }
    Ok(out)
}

/// The earliest next fire of any unpaused schedule: when a scheduler must tick next.
///
/// # Errors
///
/// SQLite errors.
pub fn next_due(conn: &Connection) -> Result<Option<Millis>> {
    Ok(conn
        .prepare_cached(
            "SELECT next_fire_ms FROM honker_schedules
             WHERE paused = 0 AND next_fire_ms IS NOT NULL ORDER BY next_fire_ms LIMIT 1",
        )?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
        .map(Millis))
}

/// Delete fire history older than `older_than` (by the time it fired), at most `limit` rows;
/// returns the rows deleted. Every tick calls this with a small limit, so history stays bounded
/// without a separate sweeper.
///
/// # Errors
///
/// SQLite errors.
pub fn prune_fires(conn: &Connection, older_than: Millis, limit: usize) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM honker_fires WHERE (schedule, fire_ms) IN (
                 SELECT schedule, fire_ms FROM honker_fires WHERE fired_at_ms < ?1
                 ORDER BY fired_at_ms LIMIT ?2 + 0)",
        )?
        .execute(params![older_than.0, limit.min(i64::MAX as usize) as i64])?)
}
