//! The dashboard's writes. Each is one call of a honker crate's API (never a raw UPDATE of a
//! honker table), so every rule of the queue holds: a cancelled job's holder gets
//! `queue.lease_lost` on its next ack, a requeue only ever touches a dead letter, nothing hands a
//! job to a second worker while a lease holds it.
//!
//! An action on "everything matching the filter" walks the ids in batches of [`BATCH`], each in
//! its own `BEGIN IMMEDIATE` transaction, so the write lock is released between batches and
//! workers keep claiming and acking while a large requeue or cancel runs.

use anyhow::{Context, Result, anyhow, bail};
use honker_core::SystemClock;
use honker_queue::{EnqueueOptions, JobId, Queue, QueueOptionsPatch};
use rusqlite::{Connection, TransactionBehavior};
use serde::Deserialize;
use serde_json::{Value, json};

use super::read::{self, Filter, StateFilter};

/// Jobs per transaction of a bulk action.
pub(crate) const BATCH: i64 = 500;

/// One action, as the page posts it (`{"action": "...", ...}`).
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Action {
    /// Requeue dead letters (attempts reset, due now): by id, or every dead job matching the
    /// filter (`state` is taken as `dead`).
    Requeue {
        #[serde(default)]
        ids: Vec<i64>,
        filter: Option<FilterSpec>,
        #[serde(default)]
        confirm: bool,
    },
    /// Cancel live jobs (pending, scheduled, running): by id or by filter.
    Cancel {
        #[serde(default)]
        ids: Vec<i64>,
        filter: Option<FilterSpec>,
        #[serde(default)]
        confirm: bool,
    },
    /// Delete a queue's dead letters, all or those older than `older_than_ms`.
    PurgeDead {
        queue: String,
        #[serde(default)]
        older_than_ms: i64,
        #[serde(default)]
        confirm: bool,
    },
    /// Pause or resume a queue (`honker_queue_configure` with `paused`).
    PauseQueue {
        queue: String,
    },
    ResumeQueue {
        queue: String,
    },
    /// Pause or resume a cron schedule.
    PauseSchedule {
        name: String,
    },
    ResumeSchedule {
        name: String,
    },
    /// Enqueue a schedule's job now (its queue, payload, priority and attempts), outside its
    /// boundaries: no fire is recorded, so the next boundary still fires.
    RunSchedule {
        name: String,
    },
    /// Trim a stream topic (`honker_stream_trim`).
    TrimStream {
        topic: String,
        max_events: Option<i64>,
        max_age_ms: Option<i64>,
        through: Option<i64>,
        #[serde(default)]
        force: bool,
        #[serde(default)]
        confirm: bool,
    },
    /// Enqueue one job.
    Enqueue {
        queue: String,
        payload: Value,
        #[serde(default)]
        options: Option<Value>,
    },
}

/// A job-list filter as JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterSpec {
    pub(crate) queue: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) value: Option<String>,
    pub(crate) error: Option<String>,
}

impl FilterSpec {
    pub(crate) fn to_filter(&self) -> Result<Filter> {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(Filter {
            queue: nonempty(&self.queue),
            state: StateFilter::parse(self.state.as_deref().unwrap_or(""))?,
            key: nonempty(&self.key),
            value: nonempty(&self.value),
            error: nonempty(&self.error),
        })
    }
}

/// A refused action: the HTTP status and a stable code, like the crates' errors.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

impl Action {
    /// Whether the action deletes or changes many jobs, and so needs `"confirm": true`.
    fn needs_confirm(&self) -> Option<bool> {
        match self {
            Action::Requeue {
                ids,
                filter,
                confirm,
            } => Some(*confirm || (filter.is_none() && ids.len() <= 1)),
            Action::Cancel { confirm, .. }
            | Action::PurgeDead { confirm, .. }
            | Action::TrimStream { confirm, .. } => Some(*confirm),
            _ => None,
        }
    }
}

/// Run `action` on `conn`; the JSON answer says what was done.
pub(crate) fn run(conn: &Connection, action: &Action) -> Result<Value, Refusal> {
    if action.needs_confirm() == Some(false) {
        return Err(Refusal::new(
            400,
            "ui.confirm_required",
            "this action is destructive or touches many jobs: send \"confirm\": true",
        ));
    }
    run_confirmed(conn, action).map_err(|e| {
        let code = crate::errors::code_of(&e).unwrap_or("ui.bad_request");
        let status = if code.ends_with(".not_found") {
            404
        } else {
            400
        };
        Refusal::new(status, code, crate::errors::message(&e))
    })
}

fn queue(name: &str) -> Result<Queue> {
    Queue::new(name).with_context(|| format!("bad queue name {name:?}"))
}

fn run_confirmed(conn: &Connection, action: &Action) -> Result<Value> {
    Ok(match action {
        Action::Requeue { ids, filter, .. } => {
            let f = one_of(ids, filter.as_ref(), StateFilter::Dead)?;
            bulk(conn, ids, f.as_ref(), |c, id| {
                let Some(j) = honker_queue::job(c, JobId(id))? else {
                    return Ok(false);
                };
                if j.state != honker_queue::JobState::Dead {
                    return Ok(false);
                }
                Ok(queue(&j.queue)?.requeue_dead(c, JobId(id))?)
            })?
        }
        Action::Cancel { ids, filter, .. } => {
            let f = one_of(ids, filter.as_ref(), StateFilter::Live)?;
            if let Some(f) = &f
                && matches!(f.state, StateFilter::Dead | StateFilter::Done)
            {
                bail!("cancel works on live jobs (pending, scheduled, running)");
            }
            bulk(conn, ids, f.as_ref(), |c, id| {
                Ok(honker_queue::cancel(c, JobId(id))?)
            })?
        }
        Action::PurgeDead {
            queue: q,
            older_than_ms,
            ..
        } => {
            let n = queue(q)?.purge_dead(conn, *older_than_ms)?;
            json!({"done": n})
        }
        Action::PauseQueue { queue: q } | Action::ResumeQueue { queue: q } => {
            let paused = matches!(action, Action::PauseQueue { .. });
            let patch = QueueOptionsPatch::from_json(&json!({ "paused": paused }).to_string())?;
            let o = queue(q)?.configure(conn, &patch)?;
            json!({"done": 1, "paused": o.paused})
        }
        Action::PauseSchedule { name } => {
            honker_cron::pause(conn, name, honker_core::Clock::now(&SystemClock))?;
            json!({"done": 1})
        }
        Action::ResumeSchedule { name } => {
            honker_cron::resume(conn, name, honker_core::Clock::now(&SystemClock))?;
            json!({"done": 1})
        }
        Action::RunSchedule { name } => {
            let s = honker_cron::get(conn, name)?.ok_or_else(|| {
                anyhow::Error::new(honker_cron::Error::NotFound { name: name.clone() })
            })?;
            let opts = EnqueueOptions {
                priority: s.options.priority,
                max_attempts: s.options.max_attempts,
                ..EnqueueOptions::default()
            };
            let id = queue(&s.queue)?.enqueue(conn, &s.payload, &opts)?;
            json!({"done": 1, "job_id": id.0})
        }
        Action::TrimStream {
            topic,
            max_events,
            max_age_ms,
            through,
            force,
            ..
        } => {
            if max_events.is_none() && max_age_ms.is_none() && through.is_none() {
                bail!("a trim needs max_events, max_age_ms or through");
            }
            let t = honker_stream::Trim {
                max_events: *max_events,
                max_age_ms: *max_age_ms,
                through: through.map(honker_stream::Offset),
                force: *force,
            };
            let r = honker_stream::trim(conn, topic, &t)?;
            json!({"done": r.deleted, "trimmed_through": r.trimmed_through.get(), "held_back": r.held_back})
        }
        Action::Enqueue {
            queue: q,
            payload,
            options,
        } => {
            let opts = match options {
                Some(Value::Null) | None => EnqueueOptions::default(),
                Some(o) => EnqueueOptions::from_json(&o.to_string())?,
            };
            let id = queue(q)?.enqueue(conn, &payload.to_string(), &opts)?;
            json!({"done": 1, "job_id": id.0})
        }
    })
}

/// Exactly one of ids and a filter; the filter's state defaults to `state`.
fn one_of(ids: &[i64], filter: Option<&FilterSpec>, state: StateFilter) -> Result<Option<Filter>> {
    match (ids.is_empty(), filter) {
        (false, None) => Ok(None),
        (true, Some(spec)) => {
            let mut f = spec.to_filter()?;
            if spec.state.as_deref().unwrap_or("").is_empty() {
                f.state = state;
            }
            if state == StateFilter::Dead && f.state != StateFilter::Dead {
                bail!("requeue works on dead jobs: use state \"dead\"");
            }
            Ok(Some(f))
        }
        (false, Some(_)) => bail!("give either ids or a filter, not both"),
        (true, None) => bail!("give ids or a filter"),
    }
}

/// Apply `op` to each id (or each id matching `filter`), [`BATCH`] per `BEGIN IMMEDIATE`
/// transaction. Returns `{"done": applied, "skipped": not applicable}`.
fn bulk(
    conn: &Connection,
    ids: &[i64],
    filter: Option<&Filter>,
    op: impl Fn(&Connection, i64) -> Result<bool>,
) -> Result<Value> {
    let (mut done, mut skipped, mut batches) = (0u64, 0u64, 0u64);
    let mut chunks = ids.chunks(BATCH as usize);
    let mut before = match filter {
        Some(f) => Some(read::first_before(conn, f.state)?),
        None => None,
    };
    loop {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        // With a filter, the ids are read inside the batch's own write transaction, so what it
        // acts on is what matches at that moment.
        let (batch, more) = match (filter, before) {
            (Some(f), Some(b)) => {
                let (batch, next) = read::matching_ids(&tx, f, b, BATCH)?;
                before = next;
                (batch, next.is_some())
            }
            _ => match chunks.next() {
                Some(c) => (c.to_vec(), true),
                None => (Vec::new(), false),
            },
        };
        for &id in &batch {
            if op(&tx, id)? {
                done += 1;
            } else {
                skipped += 1;
            }
        }
        tx.commit()?;
        if !batch.is_empty() {
            honker_core::kick_after_commit(conn);
            batches += 1;
        }
        if !more {
            break;
        }
    }
    Ok(json!({"done": done, "skipped": skipped, "batches": batches}))
}

/// Parse an action body, refusing unknown actions and fields with a typed error.
pub(crate) fn parse(body: &str) -> Result<Action, Refusal> {
    serde_json::from_str(body)
        .map_err(|e| anyhow!(e))
        .map_err(|e| Refusal::new(400, "ui.bad_action", format!("bad action: {e:#}")))
}
