//! A schedule fires jobs into a queue; a worker runs them. Run with `cargo run -p honker-cron
//! --example cron_jobs [DB_PATH]`; without a path it uses a temporary file. Start a second copy
//! on the same file while the first runs: the two schedulers share the file without a leader,
//! and each boundary still fires exactly one job.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use honker_core::{Clock, SystemClock};
use honker_cron::{Schedule, ScheduleSpec, Scheduler, SchedulerOptions};
use honker_queue::{Queue, Worker, WorkerOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| dir.path().join("cron.db"), PathBuf::from);
    let conn = honker_core::open(&path)?;
    let now = SystemClock.now();

    // Upserted by name, so every copy of this program may register the same schedules.
    let heartbeat = Schedule::parse("@every 250ms")?;
    let spec = ScheduleSpec::new("heartbeat", heartbeat, "ticks", r#"{"kind":"heartbeat"}"#);
    honker_cron::register(&conn, &spec, now)?;
    // Wall-clock schedules follow their own zone, whatever the host's TZ says.
    let standup = Schedule::parse_in("0 9 * * MON-FRI", "America/New_York")?;
    let spec = ScheduleSpec::new("standup", standup.clone(), "ticks", r#"{"kind":"standup"}"#);
    honker_cron::register(&conn, &spec, now)?;
    let new_york: chrono_tz::Tz = "America/New_York".parse()?;
    for at in standup.upcoming(now, 3) {
        let utc = chrono::DateTime::from_timestamp_millis(at.0).ok_or("out of range")?;
        println!(
            "standup fires at {} ({utc})",
            utc.with_timezone(&new_york).to_rfc3339()
        );
    }

    let wake = honker_wake::wake_for(&path)?;
    let scheduler = Scheduler::start(&path, wake.clone(), SchedulerOptions::default())?;
    let worker = Worker::start(
        &path,
        Queue::new("ticks")?,
        wake,
        WorkerOptions::default(),
        |job| {
            println!("job {} ran: {}", job.id.0, job.payload);
            Ok(None)
        },
    )?;

    let until = Instant::now() + Duration::from_millis(1100);
    while Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    let fired = scheduler.shutdown()?;
    let ran = worker.shutdown()?;
    println!(
        "this scheduler fired {} jobs in {} ticks; this worker acked {}",
        fired.jobs, fired.ticks, ran.acked
    );
    Ok(())
}
