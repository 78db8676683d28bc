//! Fixtures and mock set-ups for tests of the domain and of crates built on it (behind
//! the `mocks` feature): one fixed instant, one customer, one reset of theirs with a known
//! token, and [`MockPorts`], every port as a mockall mock with the digester and clock
//! already set up.
//!
//! ```
//! use pwreset_domain::testing::{self, MockPorts};
//! use pwreset_domain::{Caller, Mode, PasswordPolicy, ResetService, TokenPolicy};
//!
//! let mut mocks = MockPorts::new();
//! mocks.expect_reset(testing::reset());
//! let service = ResetService::new(mocks.into_ports(), TokenPolicy::default(), PasswordPolicy::default());
//! # let _ = (service, Caller::new(Mode::Test));
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    reason = "fixtures parse constants known to be valid; a panic here is a broken fixture"
)]

use std::sync::Arc;

use chrono::{TimeDelta, TimeZone, Utc};

use crate::models::{
    Customer, EmailAddress, Mode, PasswordReset, ResetDraft, ResetToken, Timestamp, TokenDigest,
};
use crate::ports::{
    MockClock, MockCustomerStore, MockPasswordHasher, MockResetStore, MockTokenDigester,
};
use crate::service::Ports;

/// The token of [`reset`]: well formed (43 base64url characters).
pub const TOKEN: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE";

/// Another well-formed token, which matches no fixture.
pub const OTHER_TOKEN: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA";

/// The id of [`reset`] (a UUIDv7, as every id pwreset makes).
pub const RESET_ID: &str = "01a0c6a3-8a00-7000-8000-000000000001";

/// The id of [`customer`].
pub const CUSTOMER_ID: &str = "01a0c6a3-8a00-7000-8000-000000000002";

/// The instant every fixture is created at, and the mock clock's time.
#[must_use]
pub fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

/// The fake digest of a token under the mock digester: distinct tokens give distinct
/// digests, and it is not the token.
#[must_use]
pub fn digest_of(token: &str) -> TokenDigest {
    let mut b = [0u8; 32];
    for (i, c) in token.bytes().enumerate() {
        b[i % 32] ^= c.wrapping_add(u8::try_from(i % 256).unwrap_or(0));
    }
    TokenDigest::from_bytes(b)
}

/// A test-mode customer, `jane@example.com`, without a password, created at [`t0`].
#[must_use]
pub fn customer() -> Customer {
    Customer {
        id: CUSTOMER_ID.parse().unwrap(),
        mode: Mode::Test,
        email: EmailAddress::parse("jane@example.com").unwrap(),
        password_hash: None,
        password_version: 0,
        reference: None,
        reference_origin: None,
        metadata: None,
        created_at: t0(),
        updated_at: t0(),
    }
}

/// [`customer`]'s outstanding reset for [`TOKEN`], created at [`t0`], expiring an hour later.
#[must_use]
pub fn reset() -> PasswordReset {
    let c = customer();
    ResetDraft {
        id: RESET_ID.parse().unwrap(),
        mode: Mode::Test,
        token_digest: digest_of(TOKEN),
        expires_at: t0() + TimeDelta::hours(1),
        reference: None,
        reference_origin: None,
        metadata: None,
        created_at: t0(),
    }
    .for_customer(c.id, c.email)
}

/// A digester that issues [`TOKEN`] and digests any token with [`digest_of`].
#[must_use]
pub fn digester() -> MockTokenDigester {
    let mut d = MockTokenDigester::new();
    d.expect_issue()
        .returning(|| (ResetToken::parse(TOKEN).unwrap(), digest_of(TOKEN)));
    d.expect_digests()
        .returning(|t| vec![digest_of(t.expose_secret())]);
    d
}

/// A clock stopped at `t`.
#[must_use]
pub fn clock_at(t: Timestamp) -> MockClock {
    let mut c = MockClock::new();
    c.expect_now().return_const(t);
    c
}

/// Every port of a service as a mock: the stores and the hasher bare (set expectations on
/// them), the digester from [`digester`] and the clock at [`t0`].
#[derive(Debug)]
pub struct MockPorts {
    pub resets: MockResetStore,
    pub customers: MockCustomerStore,
    pub hasher: MockPasswordHasher,
    pub digester: MockTokenDigester,
    pub clock: MockClock,
}

impl Default for MockPorts {
    fn default() -> Self {
        Self::new()
    }
}

impl MockPorts {
    #[must_use]
    pub fn new() -> Self {
        Self {
            resets: MockResetStore::new(),
            customers: MockCustomerStore::new(),
            hasher: MockPasswordHasher::new(),
            digester: digester(),
            clock: clock_at(t0()),
        }
    }

    /// Lets the reset store find `reset` by any id, any number of times.
    pub fn expect_reset(&mut self, reset: PasswordReset) -> &mut Self {
        self.resets
            .expect_find()
            .returning(move |_, _| Ok(Some(reset.clone())));
        self
    }

    /// The mocks as the ports a service takes.
    #[must_use]
    pub fn into_ports(self) -> Ports {
        Ports::new(
            Arc::new(self.resets),
            Arc::new(self.customers),
            Arc::new(self.hasher),
            Arc::new(self.digester),
            Arc::new(self.clock),
        )
    }
}
