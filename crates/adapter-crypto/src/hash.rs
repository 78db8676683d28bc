//! argon2id password hashing on a bounded blocking pool.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{
    PasswordHash as Phc, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use pwreset_domain::ports::PasswordHasher;
use pwreset_domain::{Password, PasswordHash};
use tokio::sync::Semaphore;

/// argon2 parameters below the OWASP minimum (m=19456 KiB, t=2, p=1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argon2id parameters must be at least m=19456 KiB, t=2, p=1 (got m={m}, t={t}, p={p})")]
pub struct HashParamsError {
    pub m: u32,
    pub t: u32,
    pub p: u32,
}

/// Hashes with argon2id on tokio's blocking pool, at most `permits` at a time.
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Argon2Hasher(m={}, t={}, p={}, concurrency={})",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost(),
            self.permits.available_permits()
        )
    }
}

impl Argon2Hasher {
    pub const MIN_M_KIB: u32 = 19_456;
    pub const MIN_T: u32 = 2;

    /// A hasher with the given memory (KiB), iterations and lanes, running at most
    /// `concurrency` hashes at once (0 means one per available core).
    ///
    /// # Errors
    /// When the parameters are below the OWASP minimum or invalid for argon2.
    pub fn new(m_kib: u32, t: u32, p: u32, concurrency: usize) -> Result<Self, HashParamsError> {
        let err = HashParamsError { m: m_kib, t, p };
        if m_kib < Self::MIN_M_KIB || t < Self::MIN_T || p < 1 {
            return Err(err);
        }
        let params = Params::new(m_kib, t, p, None).map_err(|_| err)?;
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            concurrency
        };
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
        })
    }

    /// The OWASP minimum: m=19456 KiB, t=2, p=1, one hash per core at a time.
    #[must_use]
    pub fn owasp_minimum() -> Self {
        #[allow(clippy::expect_used)]
        Self::new(Self::MIN_M_KIB, Self::MIN_T, 1, 0).expect("the minimum is valid")
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(Argon2<'static>) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        let argon2 = self.argon2();
        tokio::task::spawn_blocking(move || work(argon2)).await?
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> anyhow::Result<PasswordHash> {
        let secret = password.expose_secret().to_owned();
        self.run(move |argon2| {
            let salt = SaltString::generate(&mut OsRng);
            let phc = argon2
                .hash_password(secret.as_bytes(), &salt)
                .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
            Ok(PasswordHash::new(phc.to_string()))
        })
        .await
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> anyhow::Result<bool> {
        let secret = password.expose_secret().to_owned();
        let phc = hash.as_str().to_owned();
        self.run(move |argon2| {
            let parsed =
                Phc::new(&phc).map_err(|e| anyhow::anyhow!("stored hash is not PHC: {e}"))?;
            Ok(argon2.verify_password(secret.as_bytes(), &parsed).is_ok())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let h = Argon2Hasher::owasp_minimum();
        let pw = Password::new("correct horse battery staple");
        let hash = h.hash(&pw).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(&pw, &hash).await.unwrap());
        assert!(!h.verify(&Password::new("wrong"), &hash).await.unwrap());
        assert_ne!(h.hash(&pw).await.unwrap(), hash, "salts differ");
        assert!(h.verify(&pw, &PasswordHash::new("garbage")).await.is_err());
    }

    #[tokio::test]
    async fn long_passwords_are_not_truncated() {
        let h = Argon2Hasher::owasp_minimum();
        let long = "é".repeat(256);
        let hash = h.hash(&Password::new(long.clone())).await.unwrap();
        assert!(h.verify(&Password::new(long.clone()), &hash).await.unwrap());
        let prefix: String = long.chars().take(255).collect();
        assert!(!h.verify(&Password::new(prefix), &hash).await.unwrap());
    }

    #[test]
    fn parameters_below_the_owasp_minimum_are_refused() {
        assert!(Argon2Hasher::new(19_455, 2, 1, 1).is_err());
        assert!(Argon2Hasher::new(19_456, 1, 1, 1).is_err());
        assert!(Argon2Hasher::new(19_456, 2, 0, 1).is_err());
        assert!(Argon2Hasher::new(65_536, 3, 2, 1).is_ok());
    }
}
