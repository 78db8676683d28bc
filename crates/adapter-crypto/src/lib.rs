//! Crypto adapters for pwreset's ports.
//!
//! - [`Argon2Hasher`] implements `PasswordHasher` with argon2id. Hashing is CPU-bound by
//!   design (about 20 ms at the OWASP minimum), so it runs on a fixed pool of threads, one
//!   per core by default: a burst of resets queues there instead of freezing the async
//!   workers that serve every other request, and memory stays at threads x 19 MiB.
//! - [`HmacDigester`] implements `TokenDigester`: tokens are 32 bytes from the OS CSPRNG in
//!   unpadded base64url, digested with HMAC-SHA256 under a server secret. The first key
//!   signs; every listed key is tried when checking, so keys can rotate.
//! - [`RsaAccessTokens`] implements `AccessTokens`: RS512 JWTs with a `kid`, claims shaped
//!   like Commerce Layer's, signed and verified by `jsonwebtoken` over `ring`; the first
//!   key signs, every key verifies; [`RsaAccessTokens::jwks`] publishes the public halves.
//!   [`generate_signing_key_pem`] makes a 2048-bit key with the `rsa` crate (ring cannot).
//! - [`CommonPasswordList`] implements the domain's `CommonPasswords` with the 100,000 most
//!   common passwords, compiled in (origin and licence in `data/README.md`).

mod common;
mod digest;
mod hash;
mod jwt;

pub use common::CommonPasswordList;
pub use digest::{DigestKeyError, HmacDigester};
pub use hash::{Argon2Hasher, HashParamsError};
pub use jwt::{
    MIN_RSA_BITS, Organization, RsaAccessTokens, SigningKeyError, generate_signing_key_pem,
};
