//! The loadable extension: build it (it has its own cargo workspace) and smoke-test it in Debian's
//! `sqlite3` CLI. The deeper host tests live in the `ext-tests` crate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::{cmd, metadata};

/// The extension's manifest, relative to the repository root.
pub(crate) const MANIFEST: &str = "honker-ext/Cargo.toml";

/// Build `libhonker_ext.so` in release mode and return its path.
pub(crate) fn build() -> anyhow::Result<PathBuf> {
    ensure!(
        cmd::repo_root().join(MANIFEST).exists(),
        "{MANIFEST} is missing: the extension crate has not landed"
    );
    let mut c = cmd::cargo();
    c.args(["build", "--release", "--manifest-path", MANIFEST])
        .arg("--message-format=json-render-diagnostics");
    println!("$ {}", cmd::display(&c));
    let json = cmd::stdout(&mut c)?;
    // The path comes from cargo's own artifact messages, so CARGO_TARGET_DIR and friends are honoured.
    let mut found = None;
    for line in json.lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != "honker_ext" {
            continue;
        }
        let files = msg["filenames"].as_array().into_iter().flatten();
        if let Some(so) = files.filter_map(Value::as_str).find(|f| f.ends_with(".so")) {
            found = Some(PathBuf::from(so));
        }
    }
    found.context("cargo build reported no libhonker_ext.so artifact (is crate-type cdylib?)")
}

/// Load the extension into `sqlite3` on a fresh file: `honker_version()`, a notify/listen round
/// trip, and one refused payload with its `honker: <code>:` error.
pub(crate) fn smoke(so: &Path) -> anyhow::Result<()> {
    let meta = metadata::no_deps(Path::new("Cargo.toml"))?;
    let version = metadata::package(&meta, "honker-core")?["version"]
        .as_str()
        .context("honker-core has no version")?
        .to_owned();

    let dir = ScratchDir::new("ext-smoke")?;
    let db = dir.0.join("smoke.db");
    let load = format!(".load {}\n", so.display());

    let script = format!(
        "{load}\
         SELECT 'version=' || honker_version();\n\
         SELECT 'id=' || honker_notify('smoke', '{{\"n\": 1}}');\n\
         SELECT 'listen=' || honker_listen('smoke', 0, 10);\n\
         SELECT 'wait=' || honker_listen_wait('smoke', 0, 10, 5000);\n"
    );
    let out = sqlite3(&db, &script)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fail = |why: String| -> anyhow::Error {
        anyhow::anyhow!(
            "extension smoke test: {why}\n--- script ---\n{script}--- sqlite3 stdout ---\n{text}--- sqlite3 stderr ---\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    if !out.status.success() {
        return Err(fail(format!("sqlite3 failed ({})", out.status)));
    }
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .ok_or_else(|| fail(format!("no `{key}` line")))
    };
    let got = field("version=")?;
    if got != version {
        return Err(fail(format!(
            "honker_version() is {got:?}, expected {version:?}"
        )));
    }
    let id: i64 = field("id=")?
        .parse()
        .map_err(|e| fail(format!("honker_notify did not return an integer id: {e}")))?;
    for key in ["listen=", "wait="] {
        let rows: Value = serde_json::from_str(field(key)?)
            .map_err(|e| fail(format!("`{key}` is not JSON: {e}")))?;
        let expected = serde_json::json!([{"id": id, "channel": "smoke", "payload": {"n": 1}}]);
        let matches = rows.as_array().is_some_and(|rows| {
            rows.len() == 1
                && ["id", "channel", "payload"]
                    .iter()
                    .all(|k| rows[0][k] == expected[0][k])
        });
        if !matches {
            return Err(fail(format!(
                "`{key}` is {rows}, expected one row like {expected}"
            )));
        }
    }

    // Bad input gives the typed error form and writes nothing.
    let bad = format!("{load}SELECT honker_notify('smoke', 'not json');\n");
    let out = sqlite3(&db, &bad)?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        !out.status.success() && err.contains("honker: payload.not_json: "),
        "extension smoke test: a non-JSON payload should fail with `honker: payload.not_json: ...`, \
         sqlite3 said ({}):\n{}{err}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let count = sqlite3(&db, "SELECT count(*) FROM honker_notifications;\n")?;
    let count = String::from_utf8_lossy(&count.stdout);
    ensure!(
        count.trim() == "1",
        "extension smoke test: the refused notify wrote a row (count is {count:?})"
    );
    println!(
        "extension smoke test passed: honker_version() = {version}, notify/listen round trip, typed error"
    );
    Ok(())
}

fn sqlite3(db: &Path, script: &str) -> anyhow::Result<std::process::Output> {
    let mut c = Command::new("sqlite3");
    c.args(["-batch", "-bail"]).arg(db);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match c.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("`sqlite3` is not installed (apt-get install sqlite3; `bash .ci/run` does it)")
        }
        Err(e) => return Err(e).context("could not start sqlite3"),
    };
    let mut stdin = child.stdin.take().context("sqlite3 has no stdin")?;
    stdin.write_all(script.as_bytes())?;
    drop(stdin);
    child.wait_with_output().context("waiting for sqlite3")
}

/// A directory under the system temp dir, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(tag: &str) -> anyhow::Result<ScratchDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("honker-xtask-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
