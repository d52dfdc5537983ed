//! The small commands: `listen`, `notify`, `migrate` and `info`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rusqlite::{Connection, OpenFlags};

/// A database file.
#[derive(Debug, Args)]
pub(crate) struct DbArgs {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db())]
    pub(crate) db: PathBuf,
}

/// Arguments of `honker listen`.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db())]
    db: PathBuf,
    /// The channel to listen on.
    #[arg(long)]
    channel: String,
    /// Exit after this many notifications.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many milliseconds, however many notifications arrived.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print each notification as one JSON object per line
    /// (`{"id":..,"channel":..,"payload":..,"created_ms":..}`) instead of `<id> <channel> <payload>`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `honker notify`.
#[derive(Debug, Args)]
pub(crate) struct NotifyArgs {
    /// The database file.
    #[arg(long, default_value_os_t = crate::default_db())]
    db: PathBuf,
    /// The channel to notify.
    #[arg(long)]
    channel: String,
    /// The payload: JSON text, such as '{"order":17}' or '"hello"'.
    payload: String,
}

/// Open `db` with honker's settings, naming the file in the error.
pub(crate) fn open(db: &Path) -> Result<Connection> {
    honker_core::open(db).with_context(|| format!("cannot open {}", db.display()))
}

/// The wake source of `db` from the process's Hub; the first time the platform's default backend
/// could not start and the Hub fell back to `data_version`, says so on stderr.
pub(crate) fn wake_for(db: &Path) -> Result<std::sync::Arc<dyn honker_core::WakeSource>> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let wake = honker_wake::wake_for(db)
        .with_context(|| format!("cannot watch {} for commits", db.display()))?;
    if let Ok((backend, why)) = honker_wake::Hub::global().backend_choice()
        && why.starts_with("fell back")
    {
        SAID.call_once(|| {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("honker: wake backend {backend}: {why}");
            }
        });
    }
    Ok(wake)
}

/// A blocking listener on `channel`, starting after the newest notification now.
pub(crate) fn listener(db: &Path, channel: &str) -> Result<honker_stream::Listener> {
    let conn = open(db)?;
    let wake = wake_for(db)?;
    Ok(honker_stream::Listener::new(conn, channel, wake)?)
}

pub(crate) fn listen(args: &ListenArgs) -> Result<ExitCode> {
    let mut listener = listener(&args.db, &args.channel)?;
    // Printed once the listener exists, so a script (or test) knows a notify sent from now on
    // will be seen.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "listening on {:?} in {} (after id {})",
            args.channel,
            args.db.display(),
            listener.last_id()
        );
    }
    let deadline = args
        .timeout_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    while args.count.is_none_or(|c| seen < c) {
        let Some(n) = listener.recv(deadline)? else {
            break;
        };
        seen += 1;
        if args.json {
            let payload: serde_json::Value =
                serde_json::from_str(&n.payload).unwrap_or(serde_json::Value::String(n.payload));
            let line = serde_json::json!({
                "id": n.id,
                "channel": n.channel,
                "payload": payload,
                "created_ms": n.created.get(),
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{} {} {}", n.id, n.channel, n.payload)?;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn notify(args: &NotifyArgs) -> Result<ExitCode> {
    let conn = open(&args.db)?;
    let id = honker_stream::notify(&conn, &args.channel, &args.payload)?;
    #[allow(clippy::print_stdout)]
    {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn migrate(args: &DbArgs) -> Result<ExitCode> {
    let conn = open(&args.db)?;
    let version = honker_core::schema::schema_version(&conn)?.unwrap_or(0);
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{}: honker schema version {version} (this build: {})",
            args.db.display(),
            honker_core::schema::SCHEMA_VERSION
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `honker info` reports.
#[derive(Debug)]
struct Info {
    schema_version: Option<i64>,
    journal_mode: String,
    notifications: i64,
    newest_id: Option<i64>,
    channels: i64,
    facts: honker_wake::Info,
}

pub(crate) fn info(args: &DbArgs) -> Result<ExitCode> {
    let info = read_info(&args.db)?;
    let schema = match info.schema_version {
        Some(v) => v.to_string(),
        None => "none (honker is not set up in this file; run `honker migrate`)".into(),
    };
    #[allow(clippy::print_stdout)]
    {
        println!("database        {}", args.db.display());
        println!("honker          {}", honker_core::VERSION);
        println!(
            "schema version  {schema} (this build: {})",
            honker_core::schema::SCHEMA_VERSION
        );
        println!("journal mode    {}", info.journal_mode);
        if let Some(note) = info.facts.journal_note {
            println!("                {note}");
        }
        println!(
            "wake backend    {} ({})",
            info.facts.wake_backend, info.facts.wake_backend_reason
        );
        match &info.facts.liveness_unavailable {
            None => println!("liveness        a dead worker's jobs come back at once"),
            Some(why) => println!(
                "liveness        unavailable ({why}): a dead worker's jobs come back at lease expiry"
            ),
        }
        if info.facts.litestream {
            println!("litestream      {}", honker_wake::LITESTREAM_NOTE);
        }
        println!(
            "notifications   {} rows on {} channels, newest id {}",
            info.notifications,
            info.channels,
            info.newest_id.map_or("-".into(), |i| i.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Read `info` without creating, migrating or writing anything.
fn read_info(db: &Path) -> Result<Info> {
    if !db.is_file() {
        bail!("database file {} does not exist", db.display());
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db, flags).map_err(|e| core_error(e, db))?;
    conn.busy_timeout(honker_core::BUSY_TIMEOUT)?;
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| core_error(e, db))?;
    let schema_version = honker_core::schema::schema_version(&conn)?;
    let (notifications, newest_id, channels) = if schema_version.is_some() {
        conn.query_row(
            "SELECT count(*), max(id), count(DISTINCT channel) FROM honker_notifications",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
    } else {
        (0, None, 0)
    };
    let facts = honker_wake::info(&conn)?;
    Ok(Info {
        schema_version,
        journal_mode,
        notifications,
        newest_id,
        channels,
        facts,
    })
}

/// Classify a SQLite error the way honker-core does, naming the file.
fn core_error(e: rusqlite::Error, db: &Path) -> honker_core::Error {
    match honker_core::Error::from(e) {
        honker_core::Error::NotDatabase { .. } => honker_core::Error::NotDatabase {
            path: db.to_owned(),
        },
        other => other,
    }
}
