//! pwreset's cross-crate test binary (one binary links once: fast on two cores).
//!
//! - `storage`: the storage contract, written once and run against every storage adapter;
//!   each case appears as `storage::postgres::<case>` and `storage::sqlite::<case>`.
//! - `blackbox`: the real application on a random port over each database, driven over
//!   real HTTP; cases appear as `blackbox::postgres::<case>` and `blackbox::sqlite::<case>`.
//! - `delivery`: mail through a real local SMTP server and signed webhooks to a real local
//!   receiver, with the SMTP server down and back.

mod blackbox;
mod delivery;
mod storage;
