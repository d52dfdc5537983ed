//! `cargo xtask`: the project's automation (ci, ext, fuzz, tidy, bench, interop), in Rust rather than shell.
//!
//! Arguments are parsed by hand to keep this crate's dependencies few.

mod bench;
mod bench_e2e;
mod bench_host;
mod bench_liveness;
mod ci;
mod cmd;
mod ext;
mod fuzz;
mod interop;
mod metadata;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci [step...]          everything CI checks, in order: fmt, clippy, clippy-ext, tests,
                        ext (build + sqlite3 smoke test), fuzz (targets checked), tidy,
                        powerset (honker-wake features); name steps to run only those
  ext [--smoke]         build the loadable extension (release) and print its path;
                        --smoke also runs the sqlite3 smoke test that ci runs
  fuzz [target] [secs]  run one fuzz target (or all) for `secs` seconds each (default 60)
  tidy                  the repository's house-rule checks (= cargo test -p xtask)
  bench [--runs N] [--quick] [--strict] [--only core|wake|host|e2e]... [--peer] [--binding]
                        cross-process figures, each against a raw baseline; `host` runs
                        them through Debian's python3 and the sqlite3 CLI, `--peer` adds
                        honker 0.5's Python package, `--binding` the Python binding
  interop [--scenario NAME]... [--participant NAME]...
                        every interop/scenarios for every ordered pair of participants
                        (interop/drivers/*/participant.json), printed as a matrix";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let result = match command.as_str() {
        "ci" => ci::run(rest),
        "ext" => match rest {
            [] => ext::build().map(|so| println!("{}", so.display())),
            [flag] if flag == "--smoke" => ext::build().and_then(|so| ext::smoke(&so)),
            _ => Err(anyhow::anyhow!("usage: cargo xtask ext [--smoke]")),
        },
        "fuzz" => fuzz::run(rest),
        "bench" => bench::run(rest),
        "interop" => interop::run(rest),
        "tidy" => no_args(command, rest)
            .and_then(|()| cmd::run(cmd::cargo().args(["test", "-p", "xtask"]))),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {command}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn no_args(command: &str, rest: &[String]) -> anyhow::Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("`cargo xtask {command}` takes no arguments, got {rest:?}\n\n{USAGE}")
    }
}
