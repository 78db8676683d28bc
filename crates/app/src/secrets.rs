//! Secrets: from configuration, or generated once into the data dir and reused.
//!
//! A fresh checkout runs with nothing configured: the first start writes a random JWT
//! secret and a random token digest key (32 bytes each, base64url, mode 0600) under
//! `PWRESET_DATA_DIR` and every later start reads them back, so tokens made by
//! `pwreset token` and reset tokens survive restarts. Production sets
//! `PWRESET_JWT_SECRET` and `PWRESET_TOKEN_DIGEST_KEYS` instead, identical on every instance.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pwreset_adapter_crypto::HmacDigester;

use crate::Settings;

fn read_or_create(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return URL_SAFE_NO_PAD
            .decode(text.trim())
            .with_context(|| format!("{} is not base64url", path.display()));
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create PWRESET_DATA_DIR {}", dir.display()))?;
    let bytes = HmacDigester::random_bytes().to_vec();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{}", URL_SAFE_NO_PAD.encode(&bytes))?;
    tracing::warn!(
        path = %path.display(),
        "generated a new secret; set it explicitly in production and share it across instances"
    );
    Ok(bytes)
}

/// The HS256 secret for API tokens.
///
/// # Errors
/// When the configured secret is shorter than 32 bytes or the file cannot be used.
pub fn jwt_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    match &settings.jwt_secret {
        Some(s) if s.len() < 32 => {
            bail!(
                "PWRESET_JWT_SECRET must be at least 32 bytes, got {}",
                s.len()
            )
        }
        Some(s) => Ok(s.as_bytes().to_vec()),
        None => read_or_create(&settings.data_dir, "jwt-secret"),
    }
}

/// The token digest keys, current first.
///
/// # Errors
/// When a configured key is not base64url of at least 32 bytes.
pub fn digest_keys(settings: &Settings) -> anyhow::Result<Vec<Vec<u8>>> {
    match &settings.token_digest_keys {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
            .map(|(i, k)| {
                let bytes = URL_SAFE_NO_PAD.decode(k).with_context(|| {
                    format!("PWRESET_TOKEN_DIGEST_KEYS: key #{i} is not unpadded base64url")
                })?;
                if bytes.len() < 32 {
                    bail!(
                        "PWRESET_TOKEN_DIGEST_KEYS: key #{i} is {} bytes, at least 32 are required",
                        bytes.len()
                    );
                }
                Ok(bytes)
            })
            .collect(),
        None => Ok(vec![read_or_create(
            &settings.data_dir,
            "token-digest-key",
        )?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_reused() {
        let dir = std::env::temp_dir().join(format!("pwreset-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Settings::defaults();
        s.data_dir = dir.clone();
        let first = jwt_secret(&s).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(jwt_secret(&s).unwrap(), first);
        assert_eq!(digest_keys(&s).unwrap(), digest_keys(&s).unwrap());
        assert_ne!(digest_keys(&s).unwrap()[0], first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn configured_keys_must_be_long_base64url() {
        let mut s = Settings::defaults();
        s.token_digest_keys = Some("c2hvcnQ".into());
        let e = digest_keys(&s).unwrap_err().to_string();
        assert!(e.contains("PWRESET_TOKEN_DIGEST_KEYS"), "{e}");
        s.token_digest_keys = Some(format!("{},{}A", "A".repeat(43), "B".repeat(42)));
        assert_eq!(digest_keys(&s).unwrap().len(), 2);
        s.jwt_secret = Some("too short".into());
        assert!(
            jwt_secret(&s)
                .unwrap_err()
                .to_string()
                .contains("PWRESET_JWT_SECRET")
        );
    }
}
