//! Bearer-token authentication: Commerce Layer style JWTs signed with HS256.
//!
//! Claims used: `application.kind` (`integration` or `sales_channel`), `test` (true means
//! test mode), `exp` (required), and `organization.slug` (informational). Only HS256 is
//! accepted; the header's `alg` must say so, which shuts out `none` and algorithm
//! confusion. A missing, malformed, badly signed or expired token is `INVALID_TOKEN`; a
//! valid token without the needed permission is `UNAUTHORIZED` (checked by the handlers).

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use pwreset_domain::{Caller, Mode};
use serde_json::json;
use sha2::Sha256;

use crate::{ApiError, ApiState};

/// What kind of Commerce Layer application a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// A merchant's trusted backend: may do everything.
    Integration,
    /// A storefront: may only complete a reset with its token.
    SalesChannel,
}

impl AppKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Integration => "integration",
            AppKind::SalesChannel => "sales_channel",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "integration" => Some(AppKind::Integration),
            "sales_channel" => Some(AppKind::SalesChannel),
            _ => None,
        }
    }
}

/// The verified identity behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub kind: AppKind,
    pub mode: Mode,
    pub organization: Option<String>,
    pub caller: Caller,
}

impl Credentials {
    /// `UNAUTHORIZED` unless an integration token.
    ///
    /// # Errors
    /// For sales channel tokens.
    pub fn require_integration(&self) -> Result<(), ApiError> {
        if self.kind == AppKind::Integration {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub kind: AppKind,
    pub mode: Mode,
    pub organization: Option<String>,
    /// A stable fingerprint of the credential (kind, organization, application id).
    pub fingerprint: u64,
}

/// HS256 signing and verification with one shared secret.
#[derive(Clone)]
pub struct JwtKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(<redacted>)")
    }
}

/// The secret is too short to sign tokens safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the JWT secret must be at least 32 bytes, got {0}")]
pub struct JwtKeyError(pub usize);

impl JwtKey {
    /// # Errors
    /// When the secret is shorter than 32 bytes.
    pub fn new(secret: Vec<u8>) -> Result<Self, JwtKeyError> {
        if secret.len() < 32 {
            return Err(JwtKeyError(secret.len()));
        }
        Ok(Self { secret })
    }

    fn mac(&self, signing_input: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(signing_input.as_bytes());
        mac
    }

    /// A signed token for `kind` in `mode`, valid for `ttl_seconds` from `now`.
    #[must_use]
    pub fn sign(
        &self,
        kind: AppKind,
        mode: Mode,
        organization: &str,
        now: i64,
        ttl_seconds: i64,
    ) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "organization": { "slug": organization },
            "application": { "kind": kind.as_str(), "public": kind == AppKind::SalesChannel },
            "test": mode == Mode::Test,
            "iat": now,
            "exp": now + ttl_seconds,
            "rand": uuid::Uuid::new_v4().simple().to_string(),
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&input).finalize().into_bytes());
        format!("{input}.{sig}")
    }

    /// Checks signature, algorithm and expiry at `now`, then reads the claims.
    ///
    /// # Errors
    /// `INVALID_TOKEN` for anything wrong with the token.
    pub fn verify(&self, token: &str, now: i64) -> Result<Verified, ApiError> {
        let invalid = ApiError::invalid_token;
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(invalid)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(invalid());
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid())?;
        self.mac(&format!("{h}.{p}"))
            .verify_slice(&sig)
            .map_err(|_| invalid())?;
        let claims: serde_json::Value = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(invalid)?;
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(invalid)?;
        if exp <= now {
            return Err(invalid());
        }
        let kind = claims
            .pointer("/application/kind")
            .and_then(|k| k.as_str())
            .and_then(AppKind::parse)
            .ok_or_else(invalid)?;
        let mode = match claims.get("test") {
            Some(serde_json::Value::Bool(true)) => Mode::Test,
            Some(serde_json::Value::Bool(false)) | None => Mode::Live,
            Some(_) => return Err(invalid()),
        };
        let organization = claims
            .pointer("/organization/slug")
            .and_then(|s| s.as_str())
            .map(str::to_owned);
        let application = claims
            .pointer("/application/id")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        let fingerprint = pwreset_domain::fnv1a64(
            format!(
                "{}|{}|{application}",
                kind.as_str(),
                organization.as_deref().unwrap_or_default()
            )
            .as_bytes(),
        );
        Ok(Verified {
            kind,
            mode,
            organization,
            fingerprint,
        })
    }
}

fn credentials(req: &HttpRequest) -> Result<Credentials, ApiError> {
    let state = req
        .app_data::<web::Data<ApiState>>()
        .ok_or_else(|| ApiError::internal(&anyhow::anyhow!("ApiState is not registered")))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::invalid_token)?;
    let (scheme, token) = value.split_once(' ').ok_or_else(ApiError::invalid_token)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::invalid_token());
    }
    let now = chrono::Utc::now().timestamp();
    let Verified {
        kind,
        mode,
        organization,
        fingerprint,
    } = state.jwt.verify(token.trim(), now)?;
    let mut caller = Caller::new(mode).with_credential(fingerprint);
    if let Some(ip) = crate::client_ip(req, &state.trusted_proxies) {
        caller = caller.with_ip(ip);
    }
    Ok(Credentials {
        kind,
        mode,
        organization,
        caller,
    })
}

impl FromRequest for Credentials {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(credentials(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> JwtKey {
        JwtKey::new(vec![7; 32]).unwrap()
    }

    #[test]
    fn signed_tokens_verify_with_their_claims() {
        let t = key().sign(AppKind::SalesChannel, Mode::Live, "acme", 1_000, 60);
        let v = key().verify(&t, 1_059).unwrap();
        assert_eq!(
            (v.kind, v.mode, v.organization.as_deref()),
            (AppKind::SalesChannel, Mode::Live, Some("acme"))
        );
        let other = key().sign(AppKind::Integration, Mode::Live, "acme", 1_000, 60);
        assert_ne!(
            key().verify(&other, 1_000).unwrap().fingerprint,
            v.fingerprint
        );
    }

    #[test]
    fn expired_tampered_foreign_and_unsigned_tokens_are_invalid() {
        let t = key().sign(AppKind::Integration, Mode::Test, "acme", 1_000, 60);
        assert!(key().verify(&t, 1_060).is_err(), "expired at exp");
        let other = JwtKey::new(vec![8; 32]).unwrap();
        assert!(other.verify(&t, 1_000).is_err(), "signed with another key");
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD
            .encode(br#"{"application":{"kind":"integration"},"test":false,"exp":99999999999}"#);
        parts[1] = &forged;
        assert!(
            key().verify(&parts.join("."), 1_000).is_err(),
            "payload swapped"
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"application":{"kind":"integration"},"exp":99999999999}"#)
        );
        assert!(key().verify(&none, 1_000).is_err(), "alg none");
        for junk in ["", "a.b", "a.b.c.d", "...", "x.y.z"] {
            assert!(key().verify(junk, 1_000).is_err(), "{junk:?}");
        }
        assert!(JwtKey::new(vec![0; 31]).is_err());
    }
}
