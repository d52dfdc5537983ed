//! Integration tests of honker-stream's pub/sub: one test binary, one module per concern.

mod basic;
mod disk_full;
mod model;
mod multiprocess;
mod resources;
mod retention;
mod sql;
mod stream_basic;
mod stream_model;
mod stream_process;
mod stream_sql;
mod util;
