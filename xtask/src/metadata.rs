//! `cargo metadata` (`--no-deps`) for the workspace and for the crates with their own workspace.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cmd;

/// `cargo metadata --no-deps` of the workspace holding `manifest` (relative to the repository root).
pub(crate) fn no_deps(manifest: &Path) -> anyhow::Result<Value> {
    let text = cmd::stdout(
        cmd::cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(manifest),
    )?;
    serde_json::from_str(&text).context("cargo metadata printed something that is not JSON")
}

/// The package called `name` in a metadata document.
pub(crate) fn package<'a>(meta: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    let Some(packages) = meta["packages"].as_array() else {
        bail!("cargo metadata has no `packages` array");
    };
    packages
        .iter()
        .find(|p| p["name"] == name)
        .with_context(|| format!("package `{name}` is not in cargo metadata"))
}

/// The features a package declares, without `default`, sorted.
pub(crate) fn features(package: &Value) -> Vec<String> {
    let mut names: Vec<String> = package["features"]
        .as_object()
        .map(|m| m.keys().filter(|k| *k != "default").cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}
