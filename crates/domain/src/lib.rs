//! The pure core of pwreset, a Commerce Layer compatible customer password reset service.
//!
//! This crate holds everything that is true of a password reset regardless of where it is
//! stored, how it is hashed or how it travels over the wire. It performs no I/O and depends
//! on no runtime, database or HTTP crate, so other services can reuse it with their own
//! adapters.
//!
//! Layout:
//! - [`models`]: entities ([`models::PasswordReset`], [`models::Customer`]), validated value
//!   types, the token and password policies, and the typed list query.
//! - [`ports`]: the traits adapters implement (storage, password hashing, token digests,
//!   notifications, clock), each with its contract. With the `mocks` feature every port has
//!   a mockall mock (`MockResetStore`, ...).
//! - [`service`]: the use cases, one error enum per operation.
//! - `testing` (feature `mocks`): fixtures and mock set-ups for tests built on this crate.

pub mod models;
pub mod ports;
pub mod service;
#[cfg(any(test, feature = "mocks"))]
pub mod testing;

pub use models::*;
pub use service::{CustomerService, ResetService};
