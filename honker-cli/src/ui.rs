//! `honker ui`: a live operations dashboard and a Prometheus/OpenMetrics endpoint for one
//! database file, served over HTTP by the `honker` command itself.
//!
//! - [`server`]: the HTTP front (tiny_http), routing, authentication and the safety rules
//!   (loopback by default, a token for anything else, writes only with `--allow-writes`).
//! - [`read`]: every read the pages show (overview, jobs with filters and keyset paging, one job,
//!   cron, workers), as plain SQL against the documented schema and the crates' read APIs.
//! - [`actions`]: the writes (retry, cancel, requeue, purge, pause, run now, trim, enqueue), each
//!   one call of a honker crate's API, bulk ones in short `BEGIN IMMEDIATE` batches.
//! - [`live`]: the epoch loop of DESIGN §2 on the file's wake source, pushing "changed" to every
//!   open page over Server-Sent Events, and the in-memory throughput samples.
//! - [`metrics`]: the `/metrics` text.
//! - `page.html`: the one hand-written page (HTML, CSS and JS, no build step, no CDN).

mod actions;
mod live;
mod metrics;
mod read;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

/// Arguments of `honker ui`.
#[derive(Debug, Args)]
pub(crate) struct UiArgs {
    /// The database file (it must exist; the dashboard never creates one).
    #[arg(long, default_value_os_t = crate::default_db())]
    db: PathBuf,
    /// Address to listen on. Anything but a loopback address requires --token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Allow actions (retry, cancel, requeue, purge, pause/resume, run now, trim, enqueue).
    /// Every action then needs the token (given with --token, or generated and printed).
    #[arg(long)]
    allow_writes: bool,
    /// The access token (at least 16 characters). Required for a non-loopback --bind, where
    /// every page needs it; with --allow-writes every action needs it. The environment
    /// variable HONKER_UI_TOKEN is read when it is not given (it keeps the token out of `ps`).
    #[arg(long)]
    token: Option<String>,
}

/// Shortest token accepted from the command line.
const MIN_TOKEN_LEN: usize = 16;

pub(crate) fn run(a: &UiArgs) -> Result<ExitCode> {
    if !a.db.is_file() {
        bail!(
            "database file {} does not exist (honker ui never creates one)",
            a.db.display()
        );
    }
    let loopback = a.bind.ip().is_loopback();
    let given = a.token.clone().or_else(|| {
        std::env::var("HONKER_UI_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
    });
    if let Some(t) = &given
        && (t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        bail!("--token must be at least {MIN_TOKEN_LEN} printable ASCII characters");
    }
    if !loopback && given.is_none() {
        bail!(
            "--bind {} is not a loopback address: give --token (every page will need it)",
            a.bind
        );
    }
    let token = match (&given, a.allow_writes) {
        (Some(t), _) => Some(t.clone()),
        (None, true) => Some(new_token()?),
        (None, false) => None,
    };
    let config = server::Config {
        db: a.db.clone(),
        bind: a.bind,
        allow_writes: a.allow_writes,
        token,
        loopback,
    };
    let ui = server::Server::start(config)?;
    let addr = ui.addr();
    #[allow(clippy::print_stdout)]
    {
        let mode = if a.allow_writes {
            "actions allowed with the token"
        } else {
            "read-only"
        };
        match ui.config().token.as_deref() {
            Some(t) => println!("honker ui on http://{addr}/#token={t} ({mode})"),
            None => println!("honker ui on http://{addr}/ ({mode})"),
        }
        if given.is_none() && a.allow_writes {
            println!(
                "token (generated): {}",
                ui.config().token.as_deref().unwrap_or("")
            );
        }
        println!("database {}", a.db.display());
    }
    ui.serve()?;
    Ok(ExitCode::SUCCESS)
}

/// 128 random bits as hex, from the OS.
fn new_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
