//! `cargo xtask interop`: play every scenario of `interop/scenarios/` for every ordered pair of
//! participants (`interop/drivers/*/participant.json`) and print the matrix.
//! `interop/README.md` is the protocol and the scenario format this implements.

mod pattern;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{cmd, ext};

const USAGE: &str = "usage: cargo xtask interop [--scenario NAME]... [--participant NAME]...";

/// How long a step may take when the scenario does not say.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Size of the generated `$payload.big` (1 MiB).
const BIG_PAYLOAD_BYTES: usize = 1 << 20;

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut only_scenarios = Vec::new();
    let mut only_participants = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let list = match a.as_str() {
            "--scenario" => &mut only_scenarios,
            "--participant" => &mut only_participants,
            _ => bail!("{USAGE}"),
        };
        list.push(it.next().context(USAGE)?.clone());
    }
    let root = cmd::repo_root();
    let ext = match std::env::var_os("HONKER_EXT_PATH") {
        Some(p) => PathBuf::from(p),
        None => ext::build()?,
    };
    let ext =
        std::fs::canonicalize(&ext).with_context(|| format!("extension {}", ext.display()))?;
    let dir = root.join("interop");
    let corpus = Corpus::load(&dir.join("payloads.json"))?;
    let mut participants = discover(&dir.join("drivers"), &root, &ext)?;
    if !only_participants.is_empty() {
        participants.retain(|p| only_participants.contains(&p.name));
    }
    let mut scenarios = load_scenarios(&dir.join("scenarios"))?;
    if !only_scenarios.is_empty() {
        scenarios.retain(|s| only_scenarios.contains(&s.name));
    }
    if scenarios.is_empty() {
        bail!("no scenario selected");
    }

    let mut present = Vec::new();
    let mut broken = Vec::new();
    for p in participants {
        match p.probe() {
            Err(why) => println!("participant {}: SKIPPED, toolchain absent ({why})", p.name),
            Ok(()) => match p.build() {
                Ok(()) => present.push(p),
                Err(why) => {
                    println!("participant {}: BUILD FAILED ({why})", p.name);
                    broken.push(p.name.clone());
                }
            },
        }
    }
    if present.is_empty() {
        bail!("no participant is present");
    }
    let names: Vec<&str> = present.iter().map(|p| p.name.as_str()).collect();
    println!("participants: {}", names.join(", "));

    let work = root.join("target/interop");
    let _ = std::fs::remove_dir_all(&work);
    let started = Instant::now();
    selfcheck(&dir.join("selfcheck"), &present[0], &corpus, &work)?;

    let mut overall: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    let mut failed = 0;
    for s in &scenarios {
        let mut cells = BTreeMap::new();
        for a in &present {
            for b in &present {
                let out = play(
                    s,
                    a,
                    b,
                    &corpus,
                    &work.join(format!("{}-{}-{}", s.name, a.name, b.name)),
                );
                if !out.is_ok() {
                    failed += 1;
                }
                let key = (a.name.clone(), b.name.clone());
                overall
                    .entry(key.clone())
                    .and_modify(|o| o.merge(&s.name, &out))
                    .or_insert_with(|| out.named(&s.name));
                cells.insert(key, out);
            }
        }
        println!("\nscenario {}", s.name);
        print!("{}", matrix(&names, &cells));
        for ((a, b), out) in &cells {
            if let Outcome::Fail { reason, .. } = out {
                println!("  {a} -> {b}: {reason}");
            }
        }
    }
    println!("\nall scenarios");
    print!("{}", matrix(&names, &overall));
    println!(
        "\n{} scenarios x {} pairs in {:.1} s: {} cells failed",
        scenarios.len(),
        names.len() * names.len(),
        started.elapsed().as_secs_f64(),
        failed
    );
    if failed > 0 {
        bail!("{failed} interop cells failed");
    }
    if !broken.is_empty() {
        bail!("participants failed to build: {}", broken.join(", "));
    }
    Ok(())
}

/// Play every self-check scenario on (p, p): each must fail at exactly its `must_fail_at` step.
fn selfcheck(dir: &Path, p: &Participant, corpus: &Corpus, work: &Path) -> anyhow::Result<()> {
    for s in load_scenarios(dir)? {
        let want = s
            .must_fail_at
            .with_context(|| format!("self-check {} has no must_fail_at", s.name))?;
        match play(
            &s,
            p,
            p,
            corpus,
            &work.join(format!("selfcheck-{}", s.name)),
        ) {
            Outcome::Fail { step, .. } if step == want => {
                println!("self-check {}: fails at step {want} as it must", s.name);
            }
            other => bail!(
                "self-check {} must fail at step {want}, but it gave: {}",
                s.name,
                other.cell()
            ),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Participants
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Participant {
    name: String,
    probe: Option<Vec<String>>,
    build: Option<Vec<String>>,
    command: Vec<String>,
    env: Vec<(String, String)>,
    root: PathBuf,
    ext: PathBuf,
}

fn discover(drivers: &Path, root: &Path, ext: &Path) -> anyhow::Result<Vec<Participant>> {
    let mut found = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(drivers)
        .with_context(|| format!("reading {}", drivers.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("participant.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let file = dir.join("participant.json");
        let p = Participant::parse(&read_json(&file)?, &dir, root, ext)
            .with_context(|| format!("in {}", file.display()))?;
        if found.iter().any(|q: &Participant| q.name == p.name) {
            bail!("two participants are named {}", p.name);
        }
        found.push(p);
    }
    Ok(found)
}

impl Participant {
    fn parse(v: &Value, dir: &Path, root: &Path, ext: &Path) -> anyhow::Result<Participant> {
        let fill = |s: &str| {
            s.replace("{root}", &root.to_string_lossy())
                .replace("{dir}", &dir.to_string_lossy())
                .replace("{ext}", &ext.to_string_lossy())
        };
        let argv = |key: &str| -> anyhow::Result<Option<Vec<String>>> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(fill)
                            .with_context(|| format!("`{key}` holds a non-string"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
                    .map(Some),
                Some(_) => bail!("`{key}` must be a non-empty array of strings"),
            }
        };
        let command = argv("command")?.context("`command` is missing")?;
        if !command.iter().any(|a| a.contains("{db}")) {
            bail!("`command` must contain {{db}}");
        }
        let env = match v.get("env") {
            None => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        fill(v.as_str().context("`env` values must be strings")?),
                    ))
                })
                .collect::<anyhow::Result<_>>()?,
            Some(_) => bail!("`env` must be an object"),
        };
        Ok(Participant {
            name: v["name"].as_str().context("`name` is missing")?.to_owned(),
            probe: argv("probe")?,
            build: argv("build")?,
            command,
            env,
            root: root.to_path_buf(),
            ext: ext.to_path_buf(),
        })
    }

    fn command(&self, argv: &[String], db: Option<&Path>) -> Command {
        let db = db
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let argv: Vec<String> = argv.iter().map(|a| a.replace("{db}", &db)).collect();
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .current_dir(&self.root)
            .env("HONKER_EXT_PATH", &self.ext)
            .env("HONKER_EXT", &self.ext)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `Ok` when the toolchain is present; the reason otherwise.
    fn probe(&self) -> Result<(), String> {
        let Some(probe) = &self.probe else {
            return Ok(());
        };
        match self.command(probe, None).stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                Err(format!(
                    "`{}` exited with {}: {last}",
                    probe.join(" "),
                    out.status
                ))
            }
            Err(e) => Err(format!("`{}`: {e}", probe[0])),
        }
    }

    fn build(&self) -> Result<(), String> {
        let Some(build) = &self.build else {
            return Ok(());
        };
        let mut c = self.command(build, None);
        println!("participant {}: $ {}", self.name, cmd::display(&c));
        match c.stdin(Stdio::null()).status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("`{}` exited with {s}", build.join(" "))),
            Err(e) => Err(format!("`{}`: {e}", build[0])),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios and payloads
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Scenario {
    name: String,
    steps: Vec<Value>,
    must_fail_at: Option<usize>,
}

fn load_scenarios(dir: &Path) -> anyhow::Result<Vec<Scenario>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let v = read_json(f)?;
            let steps = v["steps"]
                .as_array()
                .with_context(|| format!("{}: no `steps` array", f.display()))?
                .clone();
            Ok(Scenario {
                name: f
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                steps,
                must_fail_at: v["must_fail_at"].as_u64().map(|n| n as usize),
            })
        })
        .collect()
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// The payload corpus: `$payload.<name>` variables, each JSON text.
#[derive(Debug, Clone)]
struct Corpus(HashMap<String, Value>);

impl Corpus {
    fn load(path: &Path) -> anyhow::Result<Corpus> {
        let v = read_json(path)?;
        let map = v.as_object().context("payloads.json must be an object")?;
        let mut vars = HashMap::new();
        for (name, text) in map {
            let text = text
                .as_str()
                .with_context(|| format!("payload {name} must be JSON text"))?;
            serde_json::from_str::<Value>(text)
                .with_context(|| format!("payload {name} is not JSON"))?;
            vars.insert(format!("payload.{name}"), Value::from(text));
        }
        vars.insert("payload.big".into(), Value::from(big_payload()));
        Ok(Corpus(vars))
    }
}

/// `{"body":"..."}` of 1 MiB: multi-byte text (2-, 3- and 4-byte UTF-8, a combining mark) and
/// escapes, so a layer that re-encodes any of them changes the bytes.
fn big_payload() -> String {
    // `{"body":"` and `"}` around it.
    const WRAPPER: usize = 11;
    let unit = "honker é 漢字 😀 e\u{301} \\\"q\\\" \\n ";
    let mut body = String::with_capacity(BIG_PAYLOAD_BYTES + unit.len());
    while body.len() + unit.len() + WRAPPER <= BIG_PAYLOAD_BYTES {
        body.push_str(unit);
    }
    while body.len() + WRAPPER < BIG_PAYLOAD_BYTES {
        body.push('.');
    }
    format!(r#"{{"body":"{body}"}}"#)
}

// ---------------------------------------------------------------------------------------------
// Playing one scenario for one pair
// ---------------------------------------------------------------------------------------------

/// The result of one cell.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Every step passed; the largest wake latency measured, if any.
    Ok { wake: Option<Duration> },
    /// The first failing step (index into `steps`) and why.
    Fail { step: usize, reason: String },
}

impl Outcome {
    fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }

    fn cell(&self) -> String {
        match self {
            Outcome::Ok { wake: None } => "ok".into(),
            Outcome::Ok { wake: Some(d) } => format!("ok (wake {:.1} ms)", d.as_secs_f64() * 1e3),
            Outcome::Fail { reason, .. } => reason.clone(),
        }
    }

    /// The same outcome with the scenario named in a failure, for the overall matrix.
    fn named(&self, scenario: &str) -> Outcome {
        match self {
            Outcome::Fail { step, reason } => Outcome::Fail {
                step: *step,
                reason: format!("{scenario}: {reason}"),
            },
            ok => ok.clone(),
        }
    }

    /// Fold another scenario's outcome into this overall one: the first failure wins; the
    /// largest wake latency is kept.
    fn merge(&mut self, scenario: &str, other: &Outcome) {
        match (&mut *self, other) {
            (Outcome::Fail { .. }, _) => {}
            (Outcome::Ok { .. }, Outcome::Fail { .. }) => *self = other.named(scenario),
            (Outcome::Ok { wake }, Outcome::Ok { wake: w }) => *wake = (*wake).max(*w),
        }
    }
}

/// A driver process playing one actor.
struct Actor {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<(Instant, String)>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    next_id: u64,
}

impl Actor {
    fn start(p: &Participant, db: &Path) -> Result<Actor, String> {
        let mut c = p.command(&p.command, Some(db));
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", cmd::display(&c)))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = Arc::clone(&tail);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = keep.lock().expect("stderr tail");
                t.push_back(line);
                if t.len() > 5 {
                    t.pop_front();
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Actor {
            child,
            stdin,
            lines,
            stderr: tail,
            next_id: 0,
        })
    }

    fn send(&mut self, op: &str, args: &Value) -> Result<u64, String> {
        self.next_id += 1;
        let id = self.next_id;
        let line = format!(r#"{{"id":{id},"op":{},"args":{args}}}"#, Value::from(op));
        let stdin = self.stdin.as_mut().ok_or("driver stdin closed")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("driver stdin: {e}{}", self.stderr_tail()))?;
        Ok(id)
    }

    /// The answer to request `id`: its arrival time, the parsed line and the line itself.
    fn receive(&mut self, id: u64, timeout: Duration) -> Result<(Instant, Value, String), String> {
        let (at, line) = match self.lines.recv_timeout(timeout) {
            Ok(got) => got,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no answer within {} ms", timeout.as_millis()));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                return Err(format!("driver exited ({status:?}){}", self.stderr_tail()));
            }
        };
        let v: Value = serde_json::from_str(&line).map_err(|e| {
            format!(
                "driver printed a line that is not JSON ({e}): {}",
                truncate(&line)
            )
        })?;
        if v["id"] != json!(id) {
            return Err(format!(
                "answer for id {id} expected, got {}",
                truncate(&line)
            ));
        }
        Ok((at, v, line))
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().expect("stderr tail");
        if t.is_empty() {
            String::new()
        } else {
            format!(
                "; stderr: {}",
                t.iter().cloned().collect::<Vec<_>>().join(" | ")
            )
        }
    }

    /// Close stdin and wait for the driver to exit, killing it after a grace period.
    fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}...", &s[..end])
    } else {
        s.to_owned()
    }
}

/// Play `s` with actors `A...` on `a` and `B...` on `b`, on a fresh database under `dir`.
fn play(s: &Scenario, a: &Participant, b: &Participant, corpus: &Corpus, dir: &Path) -> Outcome {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Outcome::Fail {
            step: 0,
            reason: format!("cannot create {}: {e}", dir.display()),
        };
    }
    let db = dir.join("interop.db");
    let mut state = Play {
        db,
        a,
        b,
        actors: BTreeMap::new(),
        vars: corpus.0.clone(),
        marks: HashMap::new(),
        pending: HashMap::new(),
        wake: None,
    };
    let mut outcome = Outcome::Ok { wake: None };
    for (i, step) in s.steps.iter().enumerate() {
        if let Err(reason) = state.step(step) {
            let actor = step["actor"].as_str().unwrap_or("?");
            let what = step["op"]
                .as_str()
                .or(step["await"].as_str().map(|_| "await"))
                .unwrap_or("?");
            outcome = Outcome::Fail {
                step: i,
                reason: format!("step {i} ({actor} {what}): {reason}"),
            };
            break;
        }
    }
    if outcome.is_ok() {
        if let Some(name) = state.pending.keys().next() {
            outcome = Outcome::Fail {
                step: s.steps.len(),
                reason: format!("background request `{name}` was never awaited"),
            };
        } else {
            outcome = Outcome::Ok { wake: state.wake };
        }
    }
    for (_, actor) in std::mem::take(&mut state.actors) {
        actor.finish();
    }
    outcome
}

struct Play<'p> {
    db: PathBuf,
    a: &'p Participant,
    b: &'p Participant,
    actors: BTreeMap<String, Actor>,
    vars: HashMap<String, Value>,
    marks: HashMap<String, Instant>,
    /// Background requests: name -> (actor, request id).
    pending: HashMap<String, (String, u64)>,
    wake: Option<Duration>,
}

impl Play<'_> {
    fn step(&mut self, step: &Value) -> Result<(), String> {
        let actor = step["actor"].as_str().ok_or("no `actor`")?.to_owned();
        let timeout = step["timeout_ms"]
            .as_u64()
            .map_or(STEP_TIMEOUT, Duration::from_millis);
        if actor == "runner" {
            return self.runner_step(step);
        }
        // When the step's request left the runner: a mark on an `op` step is taken here, so a
        // latency measured from a commit includes the commit, and a waiter woken by the commit
        // can never be seen "before" it (the committer's answer may arrive after the waiter's).
        let sent = Instant::now();
        let (at, answer, line) = if let Some(name) = step["await"].as_str() {
            let (owner, id) = self
                .pending
                .remove(name)
                .ok_or_else(|| format!("nothing in the background is named `{name}`"))?;
            if owner != actor {
                return Err(format!("`{name}` was sent to {owner}, not {actor}"));
            }
            self.actor(&actor)?.receive(id, timeout)?
        } else {
            let op = step["op"].as_str().ok_or("no `op`")?;
            let args = pattern::substitute(step.get("args").unwrap_or(&json!({})), &self.vars)?;
            let id = self.actor(&actor)?.send(op, &args)?;
            if let Some(name) = step["background"].as_str() {
                self.pending.insert(name.to_owned(), (actor, id));
                return Ok(());
            }
            self.actor(&actor)?.receive(id, timeout)?
        };
        if let Some(mark) = step["latency_since"].as_str() {
            let since = *self
                .marks
                .get(mark)
                .ok_or_else(|| format!("no mark `{mark}`"))?;
            let latency = at.checked_duration_since(since).ok_or_else(|| {
                format!("the result arrived before mark `{mark}`: it did not wait for it")
            })?;
            self.wake = self.wake.max(Some(latency));
        }
        if let Some(mark) = step["mark"].as_str() {
            let when = if step.get("await").is_some() {
                at
            } else {
                sent
            };
            self.marks.insert(mark.to_owned(), when);
        }
        self.judge(step, &answer, &line)
    }

    fn judge(&mut self, step: &Value, answer: &Value, line: &str) -> Result<(), String> {
        let ok = answer["ok"].as_bool().ok_or("answer has no boolean `ok`")?;
        if let Some(code) = step["expect_error"].as_str() {
            return match (ok, answer["error"]["code"].as_str()) {
                (false, Some(c)) if c == code => Ok(()),
                (false, _) => Err(format!(
                    "expected error {code}, got error {}",
                    answer["error"]
                )),
                (true, _) => Err(format!(
                    "expected error {code}, got {}",
                    truncate(&answer["value"].to_string())
                )),
            };
        }
        if !ok {
            return Err(format!(
                "error {}: {}",
                answer["error"]["code"].as_str().unwrap_or("?"),
                truncate(answer["error"]["message"].as_str().unwrap_or(""))
            ));
        }
        let value = &answer["value"];
        if let Some(expect) = step.get("expect") {
            let expect = pattern::substitute(expect, &self.vars)?;
            let raw =
                pattern::raw_at(line, &["value".to_owned()]).ok_or("answer has no `value`")?;
            pattern::check(&expect, value, raw)?;
        }
        if let Some(save) = step.get("save") {
            let save = save.as_object().ok_or("`save` must be an object")?;
            for (name, pointer) in save {
                let pointer = pointer.as_str().ok_or("`save` pointers are strings")?;
                let v = value.pointer(pointer).ok_or_else(|| {
                    format!(
                        "nothing at {pointer:?} to save as `{name}` in {}",
                        truncate(&value.to_string())
                    )
                })?;
                self.vars.insert(name.clone(), v.clone());
            }
        }
        Ok(())
    }

    fn runner_step(&mut self, step: &Value) -> Result<(), String> {
        let args = pattern::substitute(step.get("args").unwrap_or(&json!({})), &self.vars)?;
        match step["op"].as_str() {
            Some("sleep") => {
                let ms = args["ms"].as_u64().ok_or("sleep needs `ms`")?;
                std::thread::sleep(Duration::from_millis(ms));
                Ok(())
            }
            Some("now") => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let value = json!(now + args["plus_ms"].as_i64().unwrap_or(0));
                let line = json!({"ok": true, "value": value}).to_string();
                self.judge(step, &json!({"ok": true, "value": value}), &line)
            }
            other => Err(format!("the runner has no op {other:?}")),
        }
    }

    fn actor(&mut self, name: &str) -> Result<&mut Actor, String> {
        if !self.actors.contains_key(name) {
            let p = match name.chars().next() {
                Some('A') => self.a,
                Some('B') => self.b,
                _ => return Err(format!("actor `{name}` must start with A or B")),
            };
            self.actors
                .insert(name.to_owned(), Actor::start(p, &self.db)?);
        }
        Ok(self.actors.get_mut(name).expect("inserted above"))
    }
}

/// Rows are producers, columns consumers.
fn matrix(names: &[&str], cells: &BTreeMap<(String, String), Outcome>) -> String {
    let text = |a: &str, b: &str| {
        cells
            .get(&(a.to_owned(), b.to_owned()))
            .map_or_else(|| "-".to_owned(), |o| short_cell(&o.cell()))
    };
    let corner = "producer \\ consumer";
    let first = names
        .iter()
        .map(|n| n.len())
        .chain([corner.len()])
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = names
        .iter()
        .map(|b| {
            names
                .iter()
                .map(|a| text(a, b).len())
                .chain([b.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!("{corner:<first$}");
    for (b, w) in names.iter().zip(&widths) {
        out.push_str(&format!("  {b:<w$}"));
    }
    out = out.trim_end().to_owned();
    out.push('\n');
    for a in names {
        out.push_str(&format!("{a:<first$}"));
        for (b, w) in names.iter().zip(&widths) {
            out.push_str(&format!("  {:<w$}", text(a, b)));
        }
        out = out.trim_end().to_owned();
        out.push('\n');
    }
    out
}

/// A matrix cell stays readable; the full reason is printed under the scenario's matrix.
fn short_cell(text: &str) -> String {
    const MAX: usize = 48;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    format!("{}...", text.chars().take(MAX - 3).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A participant that answers every request with `{"ok":true,"value":1}`, in plain `sh`.
    fn always_one(dir: &Path) -> Participant {
        let script = r#"while IFS= read -r l; do id=${l#*\"id\":}; id=${id%%,*}; printf '{"id":%s,"ok":true,"value":1}\n' "$id"; done"#;
        let v = json!({"name": "one", "command": ["sh", "-c", script, "{db}"]});
        Participant::parse(&v, dir, dir, dir).unwrap()
    }

    fn scenario(steps: Value) -> Scenario {
        Scenario {
            name: "t".into(),
            steps: steps.as_array().unwrap().clone(),
            must_fail_at: None,
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("honker-interop-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_wrong_expected_value_turns_the_cell_red_at_that_step() {
        let dir = scratch("red");
        let p = always_one(&dir);
        let corpus = Corpus(HashMap::new());
        let good = scenario(json!([
            {"actor": "A", "op": "enqueue", "args": {}, "expect": 1, "save": {"x": ""}},
            {"actor": "B", "op": "ack", "args": {"job_id": "$x"}, "expect": "$x"},
        ]));
        assert_eq!(
            play(&good, &p, &p, &corpus, &dir.join("good")),
            Outcome::Ok { wake: None }
        );
        let bad = scenario(json!([
            {"actor": "A", "op": "enqueue", "args": {}, "expect": 1},
            {"actor": "B", "op": "ack", "args": {}, "expect": 2},
        ]));
        let out = play(&bad, &p, &p, &corpus, &dir.join("bad"));
        let Outcome::Fail { step, reason } = &out else {
            panic!("a mismatch passed: {out:?}");
        };
        assert_eq!(*step, 1);
        assert!(
            reason.contains("step 1 (B ack): the value: expected 2, got 1"),
            "{reason}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_expected_error_that_does_not_come_and_a_missing_await_fail() {
        let dir = scratch("err");
        let p = always_one(&dir);
        let corpus = Corpus(HashMap::new());
        let s = scenario(json!([{"actor": "B", "op": "ack", "expect_error": "queue.lease_lost"}]));
        let out = play(&s, &p, &p, &corpus, &dir.join("a"));
        assert!(
            matches!(&out, Outcome::Fail { step: 0, reason } if reason.contains("expected error queue.lease_lost")),
            "{out:?}"
        );
        let s = scenario(json!([{"actor": "B", "op": "listen_wait", "background": "w"}]));
        let out = play(&s, &p, &p, &corpus, &dir.join("b"));
        assert!(matches!(&out, Outcome::Fail { step: 1, .. }), "{out:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_driver_that_dies_fails_its_cell_instead_of_hanging() {
        let dir = scratch("dies");
        let v = json!({"name": "dies", "command": ["sh", "-c", "echo gone >&2; exit 3", "{db}"]});
        let p = Participant::parse(&v, &dir, &dir, &dir).unwrap();
        let s = scenario(json!([{"actor": "A", "op": "open"}]));
        let out = play(&s, &p, &p, &Corpus(HashMap::new()), &dir.join("a"));
        assert!(
            matches!(&out, Outcome::Fail { step: 0, reason } if reason.contains("driver")),
            "{out:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_overall_cell_keeps_the_first_failure_and_the_largest_latency() {
        let ms = |n| Some(Duration::from_millis(n));
        let mut o = Outcome::Ok { wake: ms(2) }.named("a");
        o.merge("b", &Outcome::Ok { wake: ms(5) });
        assert_eq!(o, Outcome::Ok { wake: ms(5) });
        o.merge(
            "c",
            &Outcome::Fail {
                step: 3,
                reason: "boom".into(),
            },
        );
        o.merge(
            "d",
            &Outcome::Fail {
                step: 1,
                reason: "later".into(),
            },
        );
        assert_eq!(o.cell(), "c: boom");
    }

    #[test]
    fn the_big_payload_is_one_mebibyte_of_json() {
        let big = big_payload();
        assert_eq!(big.len(), BIG_PAYLOAD_BYTES);
        let v: Value = serde_json::from_str(&big).unwrap();
        assert!(v["body"].as_str().unwrap().contains("😀"));
    }

    #[test]
    fn every_scenario_and_descriptor_in_the_repository_parses() {
        let root = cmd::repo_root();
        let dir = root.join("interop");
        Corpus::load(&dir.join("payloads.json")).unwrap();
        for d in ["scenarios", "selfcheck"] {
            let s = load_scenarios(&dir.join(d)).unwrap();
            assert!(!s.is_empty(), "no scenario in interop/{d}");
        }
        let ps = discover(&dir.join("drivers"), &root, &root).unwrap();
        assert!(ps.iter().any(|p| p.name == "rust") && ps.iter().any(|p| p.name == "sqlite3"));
    }
}
