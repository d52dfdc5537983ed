//! The demo's stream section: a consumer in another process keeps a projection table in step
//! with its committed offset (the event's effect and the offset commit in one transaction), is
//! `kill -9`ed halfway, and a fresh process resumes; the projection must equal the fold of every
//! event exactly.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use honker_stream::{
    CommitMode, Offset, StartFrom, SubscribeOptions, Subscriber, commit_offset, committed_offset,
    publish,
};
use rusqlite::Connection;

use super::{Children, DemoArgs, Section};

const TOPIC: &str = "demo.ledger";
const CONSUMER: &str = "demo-projection";
const PROJECTION: &str = "CREATE TABLE IF NOT EXISTS demo_balances (
    account INTEGER PRIMARY KEY, balance INTEGER NOT NULL, events INTEGER NOT NULL)";
const EVENTS: i64 = 1000;
const ACCOUNTS: i64 = 5;

/// Arguments of the hidden `honker demo-stream-consumer` process.
#[derive(Debug, Args)]
pub(crate) struct ConsumerArgs {
    #[arg(long)]
    db: std::path::PathBuf,
    /// Exit once this offset is applied and committed.
    #[arg(long)]
    until: i64,
    /// Pause after each event, microseconds (so the demo can kill it halfway).
    #[arg(long, default_value_t = 300)]
    pace_us: u64,
}

/// What the stream section saw.
#[derive(Debug)]
pub(crate) struct StreamDemo {
    published: i64,
    killed_at: Option<Offset>,
    last: Offset,
    committed: Offset,
    projection_ok: bool,
    accounts: Vec<(i64, i64, i64)>,
}

/// The fold of every event of the topic up to `through`, computed with plain SQL.
fn fold(conn: &Connection, through: Offset) -> Result<Vec<(i64, i64, i64)>> {
    Ok(conn
        .prepare(
            r#"SELECT json_extract(payload, '$.account') AS a,
                      sum(json_extract(payload, '$.amount')), count(*)
                 FROM honker_streams WHERE topic = ?1 AND "offset" <= ?2
                GROUP BY a ORDER BY a"#,
        )?
        .query_map(rusqlite::params![TOPIC, through], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?)
}

fn projection(conn: &Connection) -> Result<Vec<(i64, i64, i64)>> {
    Ok(conn
        .prepare("SELECT account, balance, events FROM demo_balances ORDER BY account")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

fn wait_for(what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done()? {
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

pub(crate) fn run(_args: &DemoArgs, db: &Path, conn: &Connection) -> Result<StreamDemo> {
    conn.execute_batch(PROJECTION)?;
    let exe = std::env::current_exe().context("cannot find the honker executable")?;
    let start = committed_offset(conn, CONSUMER, TOPIC)?.unwrap_or(Offset::ZERO);
    // Publish the first half now; the second half goes out while the consumers run.
    let publish_half = |from: i64| -> Result<Offset> {
        let tx = conn.unchecked_transaction()?;
        let mut last = Offset::ZERO;
        for i in from..from + EVENTS / 2 {
            let payload = format!(r#"{{"account":{},"amount":{}}}"#, i % ACCOUNTS, i + 1);
            last = publish(&tx, TOPIC, &payload)?;
        }
        tx.commit()?;
        Ok(last)
    };
    let half = publish_half(0)?;
    // The last offset is known only after the second half; give the first consumer a target
    // it cannot reach before it is killed.
    let spawn = |until: i64| -> Result<std::process::Child> {
        Command::new(&exe)
            .arg("demo-stream-consumer")
            .arg("--db")
            .arg(db)
            .args(["--until", &until.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a stream consumer process")
    };
    let mut children = Children::default();
    children.0.push(spawn(i64::MAX)?);
    let midway = Offset(start.get() + (half.get() - start.get()) / 2);
    wait_for("the first consumer to pass halfway", || {
        Ok(committed_offset(conn, CONSUMER, TOPIC)?.unwrap_or(Offset::ZERO) >= midway)
    })?;
    let first = &mut children.0[0];
    first.kill().context("cannot kill the consumer")?; // SIGKILL: no chance to clean up
    first.wait()?;
    let killed_at = committed_offset(conn, CONSUMER, TOPIC)?;
    let last = publish_half(EVENTS / 2)?;
    children.0.push(spawn(last.get())?);
    wait_for("the second consumer to catch up", || {
        Ok(committed_offset(conn, CONSUMER, TOPIC)? == Some(last))
    })?;
    let status = children.0[1].wait()?;
    if !status.success() {
        bail!("the second stream consumer failed: {status}");
    }
    let committed = committed_offset(conn, CONSUMER, TOPIC)?.unwrap_or(Offset::ZERO);
    let accounts = projection(conn)?;
    let projection_ok = accounts == fold(conn, committed)?;
    Ok(StreamDemo {
        published: EVENTS,
        killed_at,
        last,
        committed,
        projection_ok,
        accounts,
    })
}

impl Section for StreamDemo {
    fn print(&self) {
        #[allow(clippy::print_stdout)]
        {
            println!();
            println!("streams: a projection kept in step with a consumer's committed offset");
            println!(
                "  published     {} events on {TOPIC:?} (half before, half while consumers ran)",
                self.published
            );
            match self.killed_at {
                Some(o) => println!(
                    "  kill -9       first consumer process killed after committing offset {o}"
                ),
                None => println!("  kill -9       first consumer killed before its first commit"),
            }
            println!(
                "  resumed       a new process continued from there to offset {} (committed {})",
                self.last, self.committed
            );
            let shown: Vec<String> = self
                .accounts
                .iter()
                .map(|(a, b, n)| format!("#{a}={b} ({n} events)"))
                .collect();
            println!("  projection    {}", shown.join(", "));
            println!(
                "  checks        projection == fold of all events through the committed offset: {}",
                if self.projection_ok { "yes" } else { "NO" }
            );
            if self.ok() {
                println!(
                    "  => every event's effect applied once across the crash, none twice, none lost: effect and offset commit are one transaction"
                );
            }
        }
    }

    fn ok(&self) -> bool {
        self.projection_ok && self.committed == self.last
    }
}

/// The hidden `honker demo-stream-consumer` process.
pub(crate) fn consumer_child(args: &ConsumerArgs) -> Result<std::process::ExitCode> {
    let wake = crate::commands::wake_for(&args.db)?;
    let mut sub = Subscriber::open(
        &args.db,
        TOPIC,
        wake,
        SubscribeOptions {
            consumer: Some(CONSUMER.into()),
            start: StartFrom::Committed,
            commit: CommitMode::Manual,
        },
    )?;
    sub.connection().execute_batch(PROJECTION)?;
    let pace = Duration::from_micros(args.pace_us);
    while sub.position().get() < args.until {
        let Some(e) = sub.recv(Some(Instant::now() + Duration::from_secs(60)))? else {
            bail!("no event for 60 s");
        };
        let v: serde_json::Value = serde_json::from_str(&e.payload)?;
        let (account, amount) = (
            v["account"].as_i64().context("event without account")?,
            v["amount"].as_i64().context("event without amount")?,
        );
        let tx = sub.connection().unchecked_transaction()?;
        tx.execute(
            "INSERT INTO demo_balances (account, balance, events) VALUES (?1, ?2, 1)
             ON CONFLICT (account) DO UPDATE
                SET balance = balance + excluded.balance, events = events + 1",
            [account, amount],
        )?;
        commit_offset(&tx, CONSUMER, TOPIC, e.offset)?;
        tx.commit()?;
        thread::sleep(pace);
    }
    Ok(std::process::ExitCode::SUCCESS)
}
