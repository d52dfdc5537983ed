//! Tidy: the house rules as `#[test]`s (`cargo xtask tidy` = `cargo test -p xtask`).
//!
//! Each test collects every violation and fails once, naming each file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{cmd, metadata};

// ---------------------------------------------------------------------------------------------
// Dependency edges
// ---------------------------------------------------------------------------------------------

const CORE: &str = "honker-core";
const WAKE: &str = "honker-wake";
const QUEUE: &str = "honker-queue";
const STREAM: &str = "honker-stream";
const CRON: &str = "honker-cron";
const EXT: &str = "honker-ext";
const CLI: &str = "honker-cli";

/// Every crate of ours, with the crates of ours it may depend on (normal and build dependencies).
const ALLOWED_EDGES: &[(&str, &[&str])] = &[
    (CORE, &[]),
    (WAKE, &[CORE]),
    (QUEUE, &[CORE]),
    (STREAM, &[CORE]),
    (CRON, &[CORE, QUEUE]),
    (EXT, &[CORE, WAKE, QUEUE, STREAM, CRON]),
    (CLI, &[CORE, WAKE, QUEUE, STREAM, CRON]),
    // The host tests load the built .so; linking our crates would put a second SQLite beside it.
    ("ext-tests", &[]),
    // The interop drivers are applications of the crates; the extension is reached only through
    // the sqlite3 CLI it loads into.
    ("honker-interop", &[CORE, WAKE, QUEUE, STREAM, CRON]),
    ("xtask", &[]),
];

/// Crates core must not depend on: the wake backends and the cron parser belong to leaf crates.
const BACKEND_CRATES: &[&str] = &["notify", "mio", "croner"];

/// A dependency edge: `from` depends on `to` with this cargo `kind` (`normal`, `dev`, `build`).
#[derive(Debug)]
struct Edge {
    from: String,
    to: String,
    kind: String,
    manifest: String,
}

fn edges(meta: &Value) -> Vec<Edge> {
    let mut out = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        for d in p["dependencies"].as_array().into_iter().flatten() {
            out.push(Edge {
                from: p["name"].as_str().unwrap_or_default().to_owned(),
                to: d["name"].as_str().unwrap_or_default().to_owned(),
                kind: d["kind"].as_str().unwrap_or("normal").to_owned(),
                manifest: p["manifest_path"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    out
}

/// The workspace's edges plus honker-ext's (it has its own workspace) when it exists.
fn all_edges() -> Vec<Edge> {
    let mut all = edges(&metadata::no_deps(Path::new("Cargo.toml")).expect("cargo metadata"));
    if cmd::repo_root().join(crate::ext::MANIFEST).exists() {
        let ext = metadata::no_deps(Path::new(crate::ext::MANIFEST))
            .expect("cargo metadata of honker-ext");
        all.extend(edges(&ext).into_iter().filter(|e| e.from == EXT));
    }
    all
}

/// The rule for one edge, or `None` when it is allowed.
fn edge_violation(e: &Edge) -> Option<String> {
    let ours = |name: &str| ALLOWED_EDGES.iter().any(|(n, _)| *n == name);
    let Some((_, allowed)) = ALLOWED_EDGES.iter().find(|(n, _)| *n == e.from) else {
        return Some(format!(
            "`{}` is not in tidy's dependency table (xtask/src/tidy.rs ALLOWED_EDGES): add it with its allowed edges",
            e.from
        ));
    };
    if e.from == CORE && BACKEND_CRATES.contains(&e.to.as_str()) {
        return Some(format!(
            "honker-core must not depend on the backend crate `{}`",
            e.to
        ));
    }
    if !ours(&e.to) {
        return None;
    }
    if e.from == "xtask" {
        return Some(format!(
            "xtask depends on none of our crates, but has a {} dependency on `{}`",
            e.kind, e.to
        ));
    }
    if e.kind == "dev" {
        // Tests may use more of ours (a real wake source, say), but never the cdylib, never a
        // cycle through core, and queue and stream stay independent even in tests.
        let forbidden = e.to == EXT
            || e.from == CORE
            || (e.from == QUEUE && e.to == STREAM)
            || (e.from == STREAM && e.to == QUEUE);
        return forbidden
            .then(|| format!("dev-dependency `{}` -> `{}` is not allowed", e.from, e.to));
    }
    (!allowed.contains(&e.to.as_str())).then(|| {
        format!(
            "`{}` -> `{}` ({}) is not an allowed edge; `{}` may depend on: {}",
            e.from,
            e.to,
            e.kind,
            e.from,
            if allowed.is_empty() {
                "none of our crates".to_owned()
            } else {
                allowed.join(", ")
            }
        )
    })
}

#[test]
fn crate_dependency_edges_are_allowed() {
    let bad: Vec<String> = all_edges()
        .iter()
        .filter_map(|e| edge_violation(e).map(|why| format!("{}: {why}", e.manifest)))
        .collect();
    assert!(
        bad.is_empty(),
        "dependency rules broken:\n{}",
        bad.join("\n")
    );
}

#[test]
fn edge_rules_catch_what_they_should() {
    let e = |from: &str, to: &str, kind: &str| Edge {
        from: from.into(),
        to: to.into(),
        kind: kind.into(),
        manifest: String::new(),
    };
    assert!(edge_violation(&e(STREAM, CORE, "normal")).is_none());
    assert!(edge_violation(&e(STREAM, WAKE, "dev")).is_none());
    assert!(edge_violation(&e(STREAM, "serde_json", "normal")).is_none());
    assert!(edge_violation(&e(STREAM, WAKE, "normal")).is_some());
    assert!(edge_violation(&e(STREAM, QUEUE, "dev")).is_some());
    assert!(edge_violation(&e(QUEUE, STREAM, "normal")).is_some());
    assert!(edge_violation(&e(CORE, "notify", "normal")).is_some());
    assert!(edge_violation(&e(CLI, EXT, "normal")).is_some());
    assert!(edge_violation(&e(CLI, CRON, "normal")).is_none());
    assert!(edge_violation(&e("xtask", CORE, "dev")).is_some());
    assert!(edge_violation(&e("honker-new", CORE, "normal")).is_some());
}

// ---------------------------------------------------------------------------------------------
// Source files
// ---------------------------------------------------------------------------------------------

/// Every `.rs` file of the repository, skipping build output, fuzz corpora and hidden directories.
fn rust_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                let skip = name.starts_with('.')
                    || name == "target"
                    || name.starts_with("target-")
                    || matches!(name, "corpus" | "artifacts" | "node_modules");
                if !skip {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&cmd::repo_root(), &mut out);
    assert!(
        !out.is_empty(),
        "tidy found no .rs files under {}",
        cmd::repo_root().display()
    );
    out
}

/// A file's path relative to the repository root, with `/` separators.
fn rel(path: &Path) -> String {
    let root = cmd::repo_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `src` with every comment and the inside of every string and char literal replaced by spaces,
/// newlines kept, so a search for code finds only code at its original line.
fn code_only(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !prev_is_ident(&chars, i)
            && raw_string_hashes(&chars, i + usize::from(c == 'b') + 1).is_some()
        {
            // r"..." / r#"..."# / br#"..."#: ends at `"` followed by the same number of `#`.
            let start = i + usize::from(c == 'b') + 1;
            let hashes = raw_string_hashes(&chars, start).unwrap_or_default();
            for _ in i..start + hashes + 1 {
                out.push(' ');
            }
            i = start + hashes + 1;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|h| chars.get(i + 1 + h) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{1F600}'); a lone quote is a lifetime or label.
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// At `chars[at..]`: `#`* then `"` opens a raw string; returns the number of `#`.
fn raw_string_hashes(chars: &[char], at: usize) -> Option<usize> {
    let hashes = chars[at.min(chars.len())..]
        .iter()
        .take_while(|c| **c == '#')
        .count();
    (chars.get(at + hashes) == Some(&'"')).then_some(hashes)
}

/// 1-based line numbers where `word` occurs as a whole identifier in `code`.
fn word_lines(code: &str, word: &str) -> Vec<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut lines = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut from = 0;
        while let Some(pos) = line[from..].find(word) {
            let start = from + pos;
            let end = start + word.len();
            let before = line[..start].chars().next_back();
            let after = line[end..].chars().next();
            if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
                lines.push(n + 1);
            }
            from = end;
        }
    }
    lines
}

#[test]
fn every_rust_file_opens_with_a_module_doc_line() {
    let mut bad = Vec::new();
    for path in rust_files() {
        let src = read(&path);
        let first = src.lines().enumerate().find(|(_, l)| !l.trim().is_empty());
        match first {
            Some((_, l)) if l.trim_start().starts_with("//!") => {}
            Some((n, l)) => bad.push(format!(
                "{}:{}: first line is `{}`",
                rel(&path),
                n + 1,
                l.trim()
            )),
            None => bad.push(format!("{}:1: empty file", rel(&path))),
        }
    }
    assert!(
        bad.is_empty(),
        "every .rs file must start with a `//!` line saying what it is for:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_ignored_or_should_panic_tests_and_no_placeholders() {
    // Built from pieces so this file does not trip its own check.
    let forbidden = [
        concat!("#[", "ignore"),
        concat!("#[", "should_panic"),
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
    ];
    let mut bad = Vec::new();
    for path in rust_files() {
        let code = code_only(&read(&path));
        for (n, line) in code.lines().enumerate() {
            let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            for f in forbidden {
                if squeezed.contains(f) {
                    bad.push(format!("{}:{}: `{f}`", rel(&path), n + 1));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "no ignored or should-panic tests, no placeholder bodies (fix the test, assert on the error, or write the code):\n{}",
        bad.join("\n")
    );
}

/// SQLite reads the value bound to `LIMIT ?N` while planning, so every rebind expires a cached
/// statement and the next step re-prepares it (honker-core's test
/// `limit_parameter_written_plus_zero_is_not_reprepared_on_rebind`). The crates' SQL writes
/// `LIMIT ?N + 0`, which the planner does not read.
#[test]
fn no_bare_limit_parameter_in_crate_sql() {
    let mut bad = Vec::new();
    for path in rust_files() {
        let rel = rel(&path);
        if !(rel.starts_with("honker-") && (rel.contains("/src/") || rel.contains("/benches/"))) {
            continue;
        }
        for (n, line) in read(&path).lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("LIMIT ?") {
                let after = &rest[at + "LIMIT ?".len()..];
                let digits = after.chars().take_while(char::is_ascii_digit).count();
                if !after[digits..].starts_with(" + 0") {
                    bad.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                }
                rest = &after[digits..];
            }
        }
    }
    assert!(
        bad.is_empty(),
        "write `LIMIT ?N + 0` (a bare LIMIT parameter re-prepares the statement on every call):\n{}",
        bad.join("\n")
    );
}

/// Files outside honker-ext allowed to hold `unsafe`, with how many. Each is audited: see the
/// `// SAFETY:` comment at the site.
const UNSAFE_ALLOWLIST: &[(&str, usize)] = &[
    // `context_connection`: rusqlite only hands out the calling connection through an unsafe getter.
    ("honker-core/src/sql.rs", 1),
    // `in_write_statement`: walking the connection's statements (`sqlite3_next_stmt`) to see
    // whether a write statement is running, which rusqlite does not expose.
    ("honker-core/src/conn.rs", 1),
    // The per-connection statement cache: the raw handle as a map key, a non-owning wrapper of it
    // (`Connection::from_handle`), and rusqlite's two unsafe virtual-table traits for the anchor
    // table whose disconnect finalizes the cache before `sqlite3_close` checks.
    ("honker-core/src/sql/functions.rs", 4),
    // The liveness registry's fork handlers: `pthread_atfork`, and the child's `dup2` of its
    // inherited lock descriptors onto `/dev/null`; its test forks for real.
    ("honker-core/src/liveness.rs", 3),
];

#[test]
fn no_unsafe_outside_the_extension_but_the_audited_one() {
    let keyword = concat!("un", "safe");
    let mut counts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for path in rust_files() {
        let rel = rel(&path);
        if rel.starts_with("honker-ext/") {
            continue;
        }
        let lines = word_lines(&code_only(&read(&path)), keyword);
        if !lines.is_empty() {
            counts.insert(rel, lines);
        }
    }
    let mut bad = Vec::new();
    for (file, lines) in &counts {
        let allowed = UNSAFE_ALLOWLIST
            .iter()
            .find(|(f, _)| f == file)
            .map_or(0, |(_, n)| *n);
        if lines.len() != allowed {
            for line in lines {
                bad.push(format!(
                    "{file}:{line}: `{keyword}` ({} in this file, {allowed} allowed)",
                    lines.len()
                ));
            }
        }
    }
    for (file, n) in UNSAFE_ALLOWLIST {
        if !counts.contains_key(*file) {
            bad.push(format!(
                "{file}: allowlisted for {n} `{keyword}` but has none: shrink UNSAFE_ALLOWLIST"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "`{keyword}` lives only in honker-ext (and the audited allowlist in xtask/src/tidy.rs):\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_library_crate_warns_on_missing_docs() {
    let meta = metadata::no_deps(Path::new("Cargo.toml")).expect("cargo metadata");
    let mut bad = Vec::new();
    let mut checked = 0;
    for p in meta["packages"].as_array().into_iter().flatten() {
        // Library crates are the ones published for users; `publish = false` marks helpers such as
        // xtask and ext-tests (whose lib target only exists to hold its tests).
        if p["publish"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            let is_lib = t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "lib"));
            let Some(src) = t["src_path"].as_str().filter(|_| is_lib) else {
                continue;
            };
            checked += 1;
            let code = code_only(&read(Path::new(src)));
            let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            if !["warn", "deny", "forbid"]
                .iter()
                .any(|level| squeezed.contains(&format!("#![{level}(missing_docs")))
            {
                bad.push(format!(
                    "{}:1: no `#![warn(missing_docs)]`",
                    rel(Path::new(src))
                ));
            }
        }
    }
    assert!(checked > 0, "found no library targets in cargo metadata");
    assert!(
        bad.is_empty(),
        "every library crate documents its public items:\n{}",
        bad.join("\n")
    );
}

/// Whether a Cargo.toml opts into the workspace lints (`[lints]` + `workspace = true`, or the dotted
/// `lints.workspace = true`).
fn uses_workspace_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if squeezed.starts_with('[') {
            in_lints = squeezed == "[lints]";
        } else if (in_lints && squeezed == "workspace=true") || squeezed == "lints.workspace=true" {
            return true;
        }
    }
    false
}

#[test]
fn every_workspace_member_uses_the_workspace_lints() {
    let meta = metadata::no_deps(Path::new("Cargo.toml")).expect("cargo metadata");
    let members: Vec<&Value> = meta["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut bad = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        if !members.contains(&&p["id"]) {
            continue;
        }
        let manifest = Path::new(p["manifest_path"].as_str().expect("manifest_path"));
        if !uses_workspace_lints(&read(manifest)) {
            bad.push(format!("{}: no `[lints] workspace = true`", rel(manifest)));
        }
    }
    assert!(
        bad.is_empty(),
        "every workspace member inherits the workspace lints:\n{}",
        bad.join("\n")
    );
}

#[test]
fn lexer_blanks_comments_and_literals_but_keeps_code_and_lines() {
    let kw = concat!("un", "safe");
    let src = format!(
        "let a = \"{kw} {{\"; // {kw}\n/* {kw} /* nested */ {kw} */ let b = 'x';\nlet c = r#\"{kw}\"#; {kw} {{ f::<'a>() }}\nlet d = '\\''; {kw}_code"
    );
    let code = code_only(&src);
    assert_eq!(code.lines().count(), src.lines().count());
    assert_eq!(word_lines(&code, kw), vec![3]);
    assert!(code.contains("f::<'a>()"), "{code}");
    assert!(uses_workspace_lints(
        "[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n"
    ));
    assert!(!uses_workspace_lints(
        "[lints]\n[dependencies]\nworkspace = true\n"
    ));
}
