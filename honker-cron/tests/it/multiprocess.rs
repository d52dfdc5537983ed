//! Real processes: placeholder until the scheduler tests land.
