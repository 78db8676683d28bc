//! Reset tokens and their HMAC-SHA256 digests.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use pwreset_domain::ports::TokenDigester;
use pwreset_domain::{ResetToken, TokenDigest};
use sha2::Sha256;

/// The shortest digest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// A digest key list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestKeyError {
    #[error("at least one token digest key is required")]
    NoKeys,
    #[error("token digest key #{index} is {len} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort { index: usize, len: usize },
}

/// Issues tokens and digests them under a list of keys (first = current).
pub struct HmacDigester {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for HmacDigester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacDigester({} keys, redacted)", self.keys.len())
    }
}

impl HmacDigester {
    /// A digester with `keys`, the first of which signs new tokens.
    ///
    /// # Errors
    /// When the list is empty or a key is shorter than 32 bytes.
    pub fn new(keys: Vec<Vec<u8>>) -> Result<Self, DigestKeyError> {
        if keys.is_empty() {
            return Err(DigestKeyError::NoKeys);
        }
        if let Some((index, k)) = keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.len() < MIN_KEY_BYTES)
        {
            return Err(DigestKeyError::TooShort {
                index,
                len: k.len(),
            });
        }
        Ok(Self { keys })
    }

    /// 32 fresh bytes from the OS CSPRNG, e.g. for generating a key.
    ///
    /// # Panics
    /// When the operating system has no working random source, which leaves nothing safe
    /// to do.
    #[must_use]
    pub fn random_bytes() -> [u8; 32] {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
        bytes
    }

    fn mac(key: &[u8], parts: &[&[u8]]) -> TokenDigest {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key length"));
        for p in parts {
            mac.update(p);
        }
        TokenDigest::from_bytes(mac.finalize().into_bytes().into())
    }

    fn digest_with(key: &[u8], token: &ResetToken) -> TokenDigest {
        Self::mac(key, &[token.expose_secret().as_bytes()])
    }
}

impl TokenDigester for HmacDigester {
    fn issue(&self) -> (ResetToken, TokenDigest) {
        let encoded = URL_SAFE_NO_PAD.encode(Self::random_bytes());
        let token = ResetToken::parse(&encoded).expect("32 bytes encode to a canonical token");
        let digest = Self::digest_with(&self.keys[0], &token);
        (token, digest)
    }

    fn digests(&self, token: &ResetToken) -> Vec<TokenDigest> {
        self.keys
            .iter()
            .map(|k| Self::digest_with(k, token))
            .collect()
    }

    fn fingerprint(&self, text: &str) -> TokenDigest {
        // A separate prefix keeps fingerprints and token digests apart.
        Self::mac(&self.keys[0], &[b"fingerprint:", text.as_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_are_43_chars_and_unique() {
        let d = HmacDigester::new(vec![vec![1; 32]]).unwrap();
        let (a, da) = d.issue();
        let (b, db) = d.issue();
        assert_eq!(a.expose_secret().len(), 43);
        assert_ne!(a, b);
        assert_ne!(da, db);
        assert_eq!(d.digests(&a), vec![da]);
    }

    #[test]
    fn digests_are_keyed_and_rotation_keeps_old_tokens_checkable() {
        let old = HmacDigester::new(vec![vec![1; 32]]).unwrap();
        let (token, digest) = old.issue();
        let rotated = HmacDigester::new(vec![vec![2; 32], vec![1; 32]]).unwrap();
        let ds = rotated.digests(&token);
        assert_ne!(ds[0], digest, "a different key gives a different digest");
        assert_eq!(ds[1], digest, "the old key still checks the old token");
        let removed = HmacDigester::new(vec![vec![2; 32]]).unwrap();
        assert!(!removed.digests(&token).contains(&digest));
    }

    #[test]
    fn debug_counts_the_keys_and_shows_none() {
        let d = HmacDigester::new(vec![vec![0xab; 32], vec![0xcd; 32]]).unwrap();
        assert_eq!(format!("{d:?}"), "HmacDigester(2 keys, redacted)");
    }

    #[test]
    fn weak_key_lists_are_refused() {
        assert_eq!(
            HmacDigester::new(vec![]).unwrap_err(),
            DigestKeyError::NoKeys
        );
        assert_eq!(
            HmacDigester::new(vec![vec![0; 32], vec![0; 31]]).unwrap_err(),
            DigestKeyError::TooShort { index: 1, len: 31 }
        );
    }

    #[test]
    fn the_digest_is_neither_the_token_nor_an_unkeyed_hash_of_it() {
        let token = ResetToken::parse(&"A".repeat(43)).unwrap();
        let d = HmacDigester::new(vec![b"0123456789abcdef0123456789abcdef".to_vec()]).unwrap();
        let digest = d.digests(&token)[0];
        let plain = <Sha256 as sha2::Digest>::digest("A".repeat(43).as_bytes());
        assert_ne!(digest.as_bytes()[..], plain[..]);
        assert_ne!(&digest.as_bytes()[..], &"A".repeat(43).as_bytes()[..32]);
    }
}
