//! honker-cron's integration tests: one binary, one module per area.

mod fire;
mod lifecycle;
mod model;
mod multiprocess;
mod next;
mod sql;
mod util;
