//! pwreset's cross-crate test binary (one binary links once: fast on two cores).
//!
//! - `storage`: the storage contract, written once and run against every storage adapter;
//!   each case appears as `storage::postgres::<case>` and `storage::sqlite::<case>`.
//! - `blackbox`: the real application on a random port over each database, driven over
//!   real HTTP; cases appear as `blackbox::postgres::<case>` and `blackbox::sqlite::<case>`.

mod blackbox;
mod storage;
