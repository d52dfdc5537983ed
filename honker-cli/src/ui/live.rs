//! Live updates: one thread runs the epoch loop of DESIGN §2 on the file's wake source and
//! bumps a generation that every Server-Sent Events stream waits on; and the in-memory
//! throughput samples behind the overview's chart and the `/metrics` counters.
//!
//! The loop only waits on the wake source while at least one page is subscribed, so with no page
//! open nothing polls the file (the Hub's watcher parks when nobody waits), and with a page open
//! and nothing happening the cost is the wake backend's own idle cost plus a keep-alive comment
//! every [`KEEPALIVE`]. Pushes are coalesced to one per [`MIN_PUSH_INTERVAL`]: a busy queue
//! committing thousands of times a second still costs each page a few refreshes a second.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use honker_core::WakeSource;
use rusqlite::{Connection, params};
use serde_json::Value;

use super::read;

/// A stream with nothing to say writes a comment this often (it also finds closed clients).
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(10);
/// At most one push per this interval; commits in between are folded into the next push.
pub(crate) const MIN_PUSH_INTERVAL: Duration = Duration::from_millis(200);
/// The loop wakes at least this often even when nothing is due (a scheduled job or cron fire
/// computed before a clock jump, say, is looked at again by then).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Most Server-Sent Events streams open at once.
pub(crate) const MAX_STREAMS: usize = 64;

#[derive(Debug, Default)]
struct State {
    /// Bumped whenever the file may have changed (a commit, or a due time passing).
    generation: u64,
    subscribers: usize,
    /// Why the loop stopped (the file was replaced or deleted, the watcher died).
    failed: Option<String>,
}

/// What every stream and the loop share.
#[derive(Debug, Default)]
pub(crate) struct Live {
    state: Mutex<State>,
    changed: Condvar,
    /// The loop's wake source, kicked when the last stream closes so the loop stops waiting on
    /// the file (and the watcher parks) at once instead of at its next due time.
    wake: Mutex<Option<Arc<dyn WakeSource>>>,
}

/// What a stream learns from [`Live::wait_past`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Changed(u64),
    Quiet,
    Failed(String),
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Register a stream; `None` when [`MAX_STREAMS`] are open.
    pub(crate) fn subscribe(self: &Arc<Self>) -> Option<Subscription> {
        let mut s = self.lock();
        if s.subscribers >= MAX_STREAMS {
            return None;
        }
        s.subscribers += 1;
        self.changed.notify_all();
        Some(Subscription {
            live: Arc::clone(self),
        })
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.lock().subscribers
    }

    /// Block until the generation is past `seen`, or `timeout` passes.
    pub(crate) fn wait_past(&self, seen: u64, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if let Some(why) = &s.failed {
                return Next::Failed(why.clone());
            }
            if s.generation > seen {
                return Next::Changed(s.generation);
            }
            let now = Instant::now();
            if now >= deadline {
                return Next::Quiet;
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn bump(&self) {
        let mut s = self.lock();
        s.generation += 1;
        self.changed.notify_all();
    }

    fn fail(&self, why: String) {
        self.lock().failed = Some(why);
        self.changed.notify_all();
    }

    /// Sleep until some stream is subscribed.
    fn wait_for_subscribers(&self) {
        let mut s = self.lock();
        while s.subscribers == 0 && s.failed.is_none() {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A subscribed stream; dropping it unsubscribes.
#[derive(Debug)]
pub(crate) struct Subscription {
    live: Arc<Live>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let last = {
            let mut s = self.live.lock();
            s.subscribers = s.subscribers.saturating_sub(1);
            s.subscribers == 0
        };
        if last {
            let wake = self
                .live
                .wake
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(w) = wake {
                w.kick();
            }
        }
    }
}

/// Start the epoch loop for `db` on its own thread.
pub(crate) fn start(db: &Path, live: Arc<Live>) -> Result<()> {
    let wake = honker_wake::wake_for(db)
        .with_context(|| format!("cannot watch {} for commits", db.display()))?;
    let conn =
        honker_core::open_read_only(db).with_context(|| format!("cannot open {}", db.display()))?;
    thread::Builder::new()
        .name("honker-ui-live".into())
        .spawn(move || {
            if let Err(e) = epoch_loop(&*wake, &conn, &live) {
                live.fail(format!("{e:#}"));
            }
        })
        .context("cannot start the live-update thread")?;
    Ok(())
}

/// DESIGN §2's loop: sample the epoch, "look" (tell every stream to refetch), then sleep past
/// the sample until a commit or the next due time. A commit after the sample returns the wait at
/// once, so no change is slept through.
fn epoch_loop(wake: &dyn WakeSource, conn: &Connection, live: &Live) -> Result<()> {
    let mut last_epoch = wake.epoch();
    loop {
        live.wait_for_subscribers();
        let seen = wake.epoch();
        if seen != last_epoch {
            last_epoch = seen;
            live.bump();
        }
        let wake_at = next_due(conn).unwrap_or(None);
        // Coalesce: whatever commits during this pause is seen by the wait below at once.
        thread::sleep(MIN_PUSH_INTERVAL);
        let now = read::now_ms();
        let sleep = match wake_at {
            Some(t) if t > now => Duration::from_millis((t - now) as u64).min(MAX_SLEEP),
            _ => MAX_SLEEP,
        };
        let after = wake.wait_past(seen, Some(Instant::now() + sleep))?;
        if after == seen && wake_at.is_some_and(|t| t <= read::now_ms()) {
            // A due time passed with no commit: a scheduled job became pending, a cron boundary
            // is late. The pages show it, so they refetch.
            live.bump();
        }
    }
}

/// The earliest future time something changes without a commit: a job becoming due, a lease
/// running out, a cron boundary.
fn next_due(conn: &Connection) -> Result<Option<i64>> {
    let now = read::now_ms();
    let mut best: Option<i64> = None;
    for name in read::queue_names(conn)? {
        if let Some(t) = honker_queue::Queue::new(&name)?.next_due(conn)?
            && t.get() > now
        {
            best = Some(best.map_or(t.get(), |b| b.min(t.get())));
        }
    }
    if let Some(t) = honker_cron::next_due(conn)?
        && t.get() > now
    {
        best = Some(best.map_or(t.get(), |b| b.min(t.get())));
    }
    Ok(best)
}

/// Minutes of throughput kept per queue.
pub(crate) const MINUTES: usize = 30;
/// Samples closer together than this are skipped.
const SAMPLE_EVERY_MS: i64 = 1000;
/// A sample walks at most this many new ids to attribute new jobs to queues.
const MAX_NEW_IDS: i64 = 500_000;

/// One look at every queue: live and dead counts, and the job id sequence.
#[derive(Debug, Clone)]
struct Sample {
    at: i64,
    seq: i64,
    live: BTreeMap<String, i64>,
    dead: BTreeMap<String, i64>,
}

/// Finished jobs (acked or cancelled) per queue and minute, estimated from samples.
///
/// Acked jobs are deleted unless a queue keeps a history, so the file holds no count of them.
/// Between two samples, a queue finished `live before + new jobs seen - live now - new dead`;
/// jobs enqueued and finished entirely between two samples are seen only as a gap in the id
/// sequence and are shared out by each queue's new jobs. Queues with `keep_history_ms > 0` get
/// exact per-minute counts from `honker_history` instead (see [`history_minutes`]).
#[derive(Debug, Default)]
pub(crate) struct Throughput {
    last: Option<Sample>,
    minutes: BTreeMap<String, VecDeque<(i64, u64)>>,
    /// Since the server started: finished and newly dead jobs per queue (counter metrics).
    pub(crate) finished_total: BTreeMap<String, u64>,
    pub(crate) dead_total: BTreeMap<String, u64>,
}

impl Throughput {
    /// Take a sample from the overview's queue rows (if the last one is old enough).
    pub(crate) fn record(&mut self, conn: &Connection, queues: &[Value]) -> Result<()> {
        let now = read::now_ms();
        if self
            .last
            .as_ref()
            .is_some_and(|l| now - l.at < SAMPLE_EVERY_MS)
        {
            return Ok(());
        }
        let seq: i64 = conn
            .prepare_cached(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'honker_jobs'), 0)",
            )?
            .query_row([], |r| r.get(0))?;
        let mut s = Sample {
            at: now,
            seq,
            live: BTreeMap::new(),
            dead: BTreeMap::new(),
        };
        for q in queues {
            let name = q["name"].as_str().unwrap_or_default().to_owned();
            let live = ["pending", "scheduled", "running"]
                .iter()
                .map(|k| q[*k].as_i64().unwrap_or(0))
                .sum();
            s.live.insert(name.clone(), live);
            s.dead.insert(name, q["dead"].as_i64().unwrap_or(0));
        }
        if let Some(prev) = self.last.take() {
            self.account(conn, &prev, &s)?;
        }
        self.last = Some(s);
        Ok(())
    }

    fn account(&mut self, conn: &Connection, prev: &Sample, s: &Sample) -> Result<()> {
        let new_ids = s.seq - prev.seq;
        let mut seen: BTreeMap<String, i64> = BTreeMap::new();
        if new_ids > 0 && new_ids <= MAX_NEW_IDS {
            for table in ["honker_jobs", "honker_dead", "honker_history"] {
                let sql = format!(
                    "SELECT queue, count(*) FROM {table} WHERE id > ?1 AND id <= ?2 GROUP BY queue"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                for row in stmt.query_map(params![prev.seq, s.seq], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })? {
                    let (q, n) = row?;
                    *seen.entry(q).or_default() += n;
                }
            }
        }
        let seen_total: i64 = seen.values().sum();
        let unseen = (new_ids - seen_total).max(0);
        let minute = s.at / 60_000 * 60_000;
        for (q, live) in &s.live {
            let was = prev.live.get(q).copied().unwrap_or(0);
            let new = seen.get(q).copied().unwrap_or(0);
            let dead_now = s.dead.get(q).copied().unwrap_or(0);
            let dead_was = prev.dead.get(q).copied().unwrap_or(dead_now);
            let share = if seen_total > 0 {
                unseen * new / seen_total
            } else if s.live.len() == 1 {
                unseen
            } else {
                0
            };
            let finished = (was + new - live - (dead_now - dead_was)).max(0) + share;
            let finished = finished as u64;
            *self.finished_total.entry(q.clone()).or_default() += finished;
            *self.dead_total.entry(q.clone()).or_default() += (dead_now - dead_was).max(0) as u64;
            let ring = self.minutes.entry(q.clone()).or_default();
            match ring.back_mut() {
                Some((m, n)) if *m == minute => *n += finished,
                _ => ring.push_back((minute, finished)),
            }
            while ring
                .front()
                .is_some_and(|(m, _)| *m <= minute - (MINUTES as i64) * 60_000)
            {
                ring.pop_front();
            }
        }
        Ok(())
    }

    /// The last [`MINUTES`] minutes of `queue`, oldest first (the last is the current minute);
    /// `None` for minutes with no sample.
    pub(crate) fn minutes(&self, queue: &str) -> Vec<Option<u64>> {
        let now = read::now_ms() / 60_000 * 60_000;
        let ring = self.minutes.get(queue);
        (0..MINUTES as i64)
            .rev()
            .map(|k| {
                let m = now - k * 60_000;
                ring.and_then(|r| r.iter().find(|(t, _)| *t == m).map(|(_, n)| *n))
            })
            .collect()
    }
}

/// Acked jobs per minute over the last [`MINUTES`] minutes of a queue that keeps a history,
/// counted from `honker_history (queue, done_ms)`: an index range of the last half hour.
pub(crate) fn history_minutes(conn: &Connection, queue: &str) -> Result<Vec<Option<u64>>> {
    let now = read::now_ms() / 60_000 * 60_000;
    let from = now - (MINUTES as i64 - 1) * 60_000;
    let mut out = vec![Some(0u64); MINUTES];
    let mut stmt = conn.prepare_cached(
        "SELECT done_ms / 60000, count(*) FROM honker_history
         WHERE queue = ?1 AND done_ms >= ?2 GROUP BY 1",
    )?;
    for row in stmt.query_map(params![queue, from], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (m, n) = row?;
        let k = (m * 60_000 - from) / 60_000;
        if let Some(slot) = usize::try_from(k).ok().and_then(|k| out.get_mut(k)) {
            *slot = Some(n as u64);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_sees_every_bump_and_a_quiet_wait_times_out() {
        let live = Arc::new(Live::default());
        let sub = live.subscribe().unwrap();
        assert_eq!(live.subscribers(), 1);
        let g = live.generation();
        assert_eq!(live.wait_past(g, Duration::from_millis(1)), Next::Quiet);
        let l2 = Arc::clone(&live);
        let t = thread::spawn(move || l2.wait_past(g, Duration::from_secs(60)));
        live.bump();
        assert_eq!(t.join().unwrap(), Next::Changed(g + 1));
        drop(sub);
        assert_eq!(live.subscribers(), 0);
        live.fail("gone".into());
        assert_eq!(
            live.wait_past(g + 1, Duration::from_secs(60)),
            Next::Failed("gone".into())
        );
    }

    #[test]
    fn streams_beyond_the_limit_are_refused() {
        let live = Arc::new(Live::default());
        let subs: Vec<_> = (0..MAX_STREAMS)
            .map(|_| live.subscribe().unwrap())
            .collect();
        assert!(live.subscribe().is_none());
        drop(subs);
        assert!(live.subscribe().is_some());
    }

    #[test]
    fn throughput_counts_jobs_finished_between_samples_even_unseen_ones() {
        let dir = tempfile::tempdir().unwrap();
        let conn = honker_core::open(dir.path().join("t.db")).unwrap();
        let q = honker_queue::Queue::new("q").unwrap();
        let o = honker_queue::EnqueueOptions::default();
        for _ in 0..5 {
            q.enqueue(&conn, "{}", &o).unwrap();
        }
        let mut t = Throughput::default();
        t.record(&conn, &read::queues(&conn).unwrap()).unwrap();
        // 3 of the 5 seen ones finish, and 4 more come and go unseen between the samples.
        for j in q.claim(&conn, "w", 3, None).unwrap() {
            q.ack(&conn, j.id, j.lease_token).unwrap();
        }
        for _ in 0..4 {
            q.enqueue(&conn, "{}", &o).unwrap();
            let j = q.claim(&conn, "w", 1, None).unwrap();
            q.ack(&conn, j[0].id, j[0].lease_token).unwrap();
        }
        t.last.as_mut().unwrap().at -= SAMPLE_EVERY_MS;
        t.record(&conn, &read::queues(&conn).unwrap()).unwrap();
        assert_eq!(t.finished_total.get("q"), Some(&7));
        assert_eq!(t.minutes("q").last(), Some(&Some(7)));
    }
}
