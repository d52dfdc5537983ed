//! Tests of libhonker_ext.so from real host processes: Debian's `sqlite3` CLI and a small C host
//! (`hosts/host.c`, compiled at test time against the system libsqlite3).
//!
//! The extension is never loaded into this test process: rusqlite's `load_extension` is unsafe,
//! and unsafe code lives only in honker-ext. The Rust side of the cross-process tests uses
//! honker-stream and honker-wake directly (bundled SQLite), as an application would.
//!
//! The `.so` comes from `HONKER_EXT_PATH` when set, else it is built once per test binary with
//! `cargo build --release --manifest-path honker-ext/Cargo.toml`.

mod cli;
mod cron;
mod cross;
mod floor;
mod hosts;
mod queue;
mod statements;
mod stream;
mod support;
mod wake_backends;
