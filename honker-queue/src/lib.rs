//! honker-queue: the at-least-once job queue (not built yet).
//!
//! This crate is reserved for honker's durable job queue: enqueue inside the caller's
//! transaction, claims with fencing lease tokens, retries with backoff, delays, priorities, dead
//! letters, results, named locks and rate limits, and a blocking worker runtime.
//! None of that exists yet: it is issue 4, which builds on the foundation in `honker-core` and
//! `honker-wake`. Until then this crate exports nothing, and nothing here should be relied on.
//!
//! # Features
//!
//! None.
//!
//! # Known limitations
//!
//! The queue is not implemented yet.
#![warn(missing_docs)]
#![forbid(unsafe_code)]
