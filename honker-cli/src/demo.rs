//! `honker demo`: shows honker working across real processes on one database file, section by
//! section (pub/sub now; queue, stream and cron sections join later), and ends with a summary
//! that says plainly whether anything was lost.

pub(crate) mod cron;
pub(crate) mod pubsub;
pub(crate) mod queue;
pub(crate) mod stream;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{Child, ExitCode};

use anyhow::{Context, Result};
use clap::Args;

/// Arguments of `honker demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The database file (created if missing; an existing demo database is reused).
    #[arg(long, default_value_os_t = crate::default_db())]
    db: PathBuf,
    /// How many listener processes to start on the "demo" channel.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    listeners: u32,
    /// How many notifications to publish on the "demo" channel: the first half as one burst,
    /// the second half paced (see --pace-us) to measure wake latency.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    count: u64,
    /// Also start a listener process on the "quiet" channel, which must get exactly the one
    /// notification sent there (the "demo" listeners always check they never see it).
    #[arg(long)]
    quiet_check: bool,
    /// Microseconds between notifications in the paced phase.
    #[arg(long, default_value_t = 1500)]
    pace_us: u64,
    /// How many jobs the queue section enqueues (half as a burst, half paced by --pace-us).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    jobs: u64,
    /// How many worker processes the queue section starts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    queue_workers: u64,
    /// For tests of the checks themselves: listener 1 throws away the notification with this
    /// `seq`, as a lossy system would, so the demo must report it lost and fail.
    #[arg(long, hide = true)]
    pub(crate) drop_seq: Option<u64>,
}

/// The outcome of one demo section.
pub(crate) trait Section {
    /// Print the section's summary to stdout.
    fn print(&self);
    /// Whether everything the section checked held.
    fn ok(&self) -> bool;
}

pub(crate) fn run(args: &DemoArgs) -> Result<ExitCode> {
    // Open once up front: creates or migrates the file, and fails with a clear error for a file
    // that is not a (honker) database before any process starts.
    let conn = crate::commands::open(&args.db)?;
    let db = args
        .db
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.db.display()))?;
    let version = honker_core::schema::schema_version(&conn)?.unwrap_or(0);
    let journal: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "honker {} demo on {} (schema v{version}, journal {journal})",
            honker_core::VERSION,
            db.display()
        );
        println!();
    }
    let sections: Vec<Box<dyn Section>> = vec![
        Box::new(pubsub::run(args, &db, &conn)?),
        Box::new(queue::run(args, &db, &conn)?),
        Box::new(stream::run(args, &db, &conn)?),
        Box::new(cron::run(args, &db, &conn)?),
    ];
    for s in &sections {
        s.print();
    }
    let ok = sections.iter().all(|s| s.ok());
    #[allow(clippy::print_stdout)]
    {
        println!();
        if ok {
            println!("result: OK");
        } else {
            println!("result: FAILED (see above)");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Child processes that are killed (if still running) and reaped when dropped, so an error in
/// the demo never leaves listeners behind.
#[derive(Debug, Default)]
pub(crate) struct Children(pub(crate) Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Writes a progress line to stderr: rewritten in place on a terminal, one line each otherwise.
#[derive(Debug)]
pub(crate) struct Progress {
    tty: bool,
    drawn: bool,
    /// Off a terminal, a line equal to the last one is not repeated.
    last: String,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            drawn: false,
            last: String::new(),
        }
    }

    pub(crate) fn show(&mut self, line: &str) {
        #[allow(clippy::print_stderr)]
        if self.tty {
            eprint!("\r\x1b[2K{line}");
            self.drawn = true;
        } else if line != self.last {
            eprintln!("{line}");
            self.last = line.to_owned();
        }
    }

    pub(crate) fn finish(&mut self) {
        #[allow(clippy::print_stderr)]
        if self.tty && self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
