//! Secrets: from configuration, or generated once into the data dir and reused.
//!
//! A fresh checkout runs with nothing configured: the first start writes a 2048-bit RSA
//! signing key (PKCS#8 PEM) and a random token digest key (32 bytes, base64url), each mode
//! 0600, under `PWRESET_DATA_DIR`, and every later start reads them back, so access tokens,
//! refresh tokens, client secrets and reset tokens survive restarts. Production sets
//! `PWRESET_SIGNING_KEYS` and `PWRESET_TOKEN_DIGEST_KEYS` instead, identical on every
//! instance.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pwreset_adapter_crypto::{HmacDigester, generate_signing_key_pem};

use crate::Settings;

fn read_or_create(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let text = read_or_create_text(dir, name, || {
        Ok(URL_SAFE_NO_PAD.encode(HmacDigester::random_bytes()))
    })?;
    URL_SAFE_NO_PAD
        .decode(text.trim())
        .with_context(|| format!("{} is not base64url", dir.join(name).display()))
}

/// The text of `dir/name`, made by `make` and written with mode 0600 if it does not exist.
fn read_or_create_text(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let path = dir.join(name);
    if path.exists() {
        return std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()));
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create PWRESET_DATA_DIR {}", dir.display()))?;
    let text = make()?;
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
    writeln!(file, "{}", text.trim_end())?;
    tracing::warn!(
        path = %path.display(),
        "generated a new secret; set it explicitly in production and share it across instances"
    );
    Ok(text)
}

/// The PEM of the RSA keys that sign access tokens, the signing one first: configured, or
/// one generated into the data dir on first start (`signing-key.pem`).
///
/// # Errors
/// When the file cannot be read or written, or generation fails.
pub fn signing_keys(settings: &Settings) -> anyhow::Result<String> {
    match &settings.signing_keys {
        Some(pem) => Ok(pem.clone()),
        None => read_or_create_text(&settings.data_dir, "signing-key.pem", || {
            Ok(generate_signing_key_pem()?)
        }),
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
        let first = signing_keys(&s).unwrap();
        assert!(first.starts_with("-----BEGIN PRIVATE KEY-----"), "{first}");
        assert_eq!(signing_keys(&s).unwrap(), first);
        let key = digest_keys(&s).unwrap();
        assert_eq!(key[0].len(), 32);
        assert_eq!(digest_keys(&s).unwrap(), key);
        #[cfg(unix)]
        for name in ["signing-key.pem", "token-digest-key"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
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
        s.signing_keys = Some("configured".into());
        assert_eq!(signing_keys(&s).unwrap(), "configured");
    }
}
