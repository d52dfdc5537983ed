//! The `honker` command: a demo of cross-process NOTIFY/LISTEN, plus small tools to notify, listen
//! and inspect a database (and hidden subcommands that the demo and `cargo xtask bench` drive).
#![forbid(unsafe_code)]

mod bench;
mod bench_e2e;
mod bench_liveness;
mod bench_queue;
mod bench_stream;
mod bench_wake;
mod commands;
mod cron;
mod demo;
mod errors;
mod queue;
mod stats;
mod stream;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// honker: Postgres-style NOTIFY/LISTEN, queues, streams and cron on one SQLite file.
#[derive(Debug, Parser)]
#[command(
    name = "honker",
    version,
    after_help = "Start with `honker demo`: it shows listener processes waking on another process's commits."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show honker working across processes: real listener processes, a publisher, and a
    /// summary of what arrived (lost, duplicated, order, wake latency).
    Demo(demo::DemoArgs),
    /// Print notifications on a channel as they arrive.
    Listen(commands::ListenArgs),
    /// Send one notification (a JSON payload) on a channel; prints its id.
    Notify(commands::NotifyArgs),
    /// Create or upgrade the honker schema in a database file.
    Migrate(commands::DbArgs),
    /// Show a database's honker schema version, journal mode and row counts.
    Info(commands::DbArgs),
    /// Durable streams: list topics, tail a topic (`-f` follows), list consumers with lag, trim.
    Stream(stream::StreamArgs),
    /// Cron schedules: list, preview next fire times, add, remove, pause, resume.
    Cron(cron::CronArgs),
    /// Run the cron scheduler: fire due schedules into their queues (any number may run at once).
    Scheduler(cron::SchedulerArgs),
    /// Job queues: stats, live jobs, dead letters, requeue, purge.
    Queue(queue::QueueArgs),
    /// Enqueue one job (a JSON payload) on a queue; prints its id.
    Enqueue(queue::EnqueueArgs),
    /// Serve a live dashboard and /metrics for one database file (read-only unless
    /// --allow-writes; loopback unless --token).
    Ui(ui::UiArgs),
    /// Run a command per job of a queue, the payload on its stdin: exit 0 acks the job, any
    /// other status retries it with the command's stderr as the error.
    Worker(queue::worker::WorkerArgs),
    /// One worker process of `honker demo`'s queue section.
    #[command(hide = true)]
    DemoQueueWorker(demo::queue::WorkerArgs),
    /// Queue benchmark helpers for `cargo xtask bench`.
    #[command(flatten)]
    BenchQueue(bench_queue::BenchQueueCommand),
    /// End-to-end queue benchmark helpers for `cargo xtask bench --only e2e`.
    #[command(flatten)]
    BenchE2e(bench_e2e::BenchE2eCommand),
    /// One listener process of `honker demo` (reports to the demo over stdout).
    #[command(hide = true)]
    DemoListener(demo::pubsub::ListenerArgs),
    /// One stream consumer process of `honker demo` (applies events to a projection).
    #[command(hide = true)]
    DemoStreamConsumer(demo::stream::ConsumerArgs),
    /// Benchmark helpers for `cargo xtask bench`.
    #[command(flatten)]
    Bench(bench::BenchCommand),
    /// Stream benchmark helpers for `cargo xtask bench`.
    #[command(flatten)]
    BenchStream(bench_stream::BenchStreamCommand),
    /// Wake-backend benchmark helpers for `cargo xtask bench`.
    #[command(flatten)]
    BenchWake(bench_wake::BenchWakeCommand),
    /// Redelivery-after-`kill -9` benchmark helpers for `cargo xtask bench`.
    #[command(flatten)]
    BenchLiveness(bench_liveness::BenchLivenessCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Listen(args) => commands::listen(&args),
        Command::Notify(args) => commands::notify(&args),
        Command::Migrate(args) => commands::migrate(&args),
        Command::Info(args) => commands::info(&args),
        Command::Stream(args) => stream::run(&args),
        Command::Cron(args) => cron::run(&args),
        Command::Scheduler(args) => cron::scheduler(&args),
        Command::Queue(args) => queue::run(&args),
        Command::Enqueue(args) => queue::enqueue(&args),
        Command::Worker(args) => queue::worker::run(&args),
        Command::Ui(args) => ui::run(&args),
        Command::DemoQueueWorker(args) => demo::queue::worker_child(&args),
        Command::BenchQueue(cmd) => bench_queue::run(cmd),
        Command::BenchE2e(cmd) => bench_e2e::run(cmd),
        Command::DemoListener(args) => demo::pubsub::listener_child(&args),
        Command::DemoStreamConsumer(args) => demo::stream::consumer_child(&args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::BenchStream(cmd) => bench_stream::run(cmd),
        Command::BenchWake(cmd) => bench_wake::run(cmd),
        Command::BenchLiveness(cmd) => bench_liveness::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            errors::print(&e);
            ExitCode::FAILURE
        }
    }
}

/// The database file a command works on; the default is the demo's file.
fn default_db() -> PathBuf {
    PathBuf::from("./honker-demo.db")
}
