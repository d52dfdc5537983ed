//! Integration tests of honker-queue: one test binary, one module per concern.

mod bad_input;
mod basic;
mod completer;
mod crash;
mod disk_full;
mod liveness;
mod liveness_model;
mod locks;
mod model;
mod multiprocess;
mod plans;
mod sql_fns;
mod util;
mod worker;
mod worker_support;
