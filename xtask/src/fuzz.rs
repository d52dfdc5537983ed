//! `cargo xtask fuzz [target] [secs]`: run the cargo-fuzz targets under `fuzz/` for a while each.

use std::path::Path;

use anyhow::{Context, bail};

use crate::{cmd, metadata};

const DEFAULT_SECS: u64 = 60;

/// Parse `[target] [secs]` and run `cargo fuzz run -s none` on the chosen targets.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let targets = targets()?;
    let (chosen, secs) = match args {
        [] => (targets.clone(), DEFAULT_SECS),
        [one] => match one.parse::<u64>() {
            Ok(secs) => (targets.clone(), secs),
            Err(_) => (vec![one.clone()], DEFAULT_SECS),
        },
        [one, secs] => (
            vec![one.clone()],
            secs.parse()
                .with_context(|| format!("`{secs}` is not a number of seconds"))?,
        ),
        _ => bail!("usage: cargo xtask fuzz [target] [secs]"),
    };
    if let Some(unknown) = chosen.iter().find(|t| !targets.contains(t)) {
        bail!(
            "no fuzz target `{unknown}`; the targets are: {}",
            targets.join(", ")
        );
    }
    if !cmd::has_cargo_subcommand("fuzz") {
        println!(
            "cargo-fuzz is not installed. Install it with:\n    cargo install cargo-fuzz --locked\n\
             then run `cargo xtask fuzz` again (it runs `cargo fuzz run -s none`, which works on stable)."
        );
        return Ok(());
    }
    for target in &chosen {
        println!("\n==> fuzz {target} for {secs}s");
        cmd::run(cmd::cargo().args([
            "fuzz",
            "run",
            "--fuzz-dir",
            "fuzz",
            "-s",
            "none",
            target,
            "--",
            &format!("-max_total_time={secs}"),
        ]))?;
    }
    Ok(())
}

/// The `[[bin]]` targets of `fuzz/Cargo.toml`.
fn targets() -> anyhow::Result<Vec<String>> {
    let meta = metadata::no_deps(Path::new("fuzz/Cargo.toml"))?;
    let package = metadata::package(&meta, "honker-fuzz")?;
    let targets: Vec<String> = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    if targets.is_empty() {
        bail!("fuzz/Cargo.toml declares no [[bin]] fuzz targets");
    }
    Ok(targets)
}
