//! RS512 access tokens (JWTs with a `kid`), shaped like Commerce Layer's, and the JWKS that
//! publishes their public keys.
//!
//! Signing and verification are `jsonwebtoken`'s (over `ring`, already in the tree through
//! rustls). `ring` cannot generate RSA keys, so key generation and PEM parsing (PKCS#1 or
//! PKCS#8) use the `rsa` crate, which never signs here. The first key signs; every key
//! verifies, so a new key can be added in front and the old one removed once the tokens it
//! signed have expired.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use pwreset_domain::ports::{AccessTokens, SignError};
use pwreset_domain::{
    AccessClaims, ClientId, ClientKey, ClientKind, CustomerId, Mode, SessionId, Timestamp,
};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The only algorithm tokens are signed and accepted with.
const ALG: Algorithm = Algorithm::RS512;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Why signing keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("no PEM private key found (expected BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)")]
    NoKey,
    #[error("key {index}: not an RSA private key in PKCS#8 or PKCS#1 PEM: {reason}")]
    Unreadable { index: usize, reason: String },
    #[error("key {index}: RSA keys must have at least {MIN_RSA_BITS} bits, got {bits}")]
    TooSmall { index: usize, bits: usize },
    #[error("RSA key generation failed: {0}")]
    Generation(String),
}

/// The organization named in every token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: String,
    pub slug: String,
}

impl Organization {
    /// The organization `slug`, with a stable id derived from it (10 base64url characters
    /// of its SHA-256, the length of Commerce Layer's ids).
    #[must_use]
    pub fn from_slug(slug: &str) -> Self {
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(slug.as_bytes()));
        Self {
            id: digest.chars().take(10).collect(),
            slug: slug.to_owned(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Application {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    kind: String,
    public: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Owner {
    id: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The claims as they travel, Commerce Layer's names plus `sid`.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    organization: Organization,
    application: Application,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<Owner>,
    scope: String,
    test: bool,
    iat: i64,
    exp: i64,
    iss: String,
    rand: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

const SCOPE: &str = "market:all";
const CUSTOMER: &str = "Customer";

impl Claims {
    /// The domain's view, when every claim makes sense together.
    fn into_access(self) -> Option<AccessClaims> {
        let kind = ClientKind::parse(&self.application.kind)?;
        if self.application.public != kind.is_public() {
            return None;
        }
        let client = match (self.application.id, self.application.client_id) {
            (Some(key), Some(id)) => {
                Some((key.parse::<ClientKey>().ok()?, ClientId::parse(&id).ok()?))
            }
            (None, None) => None,
            _ => return None,
        };
        let customer = match self.owner {
            Some(owner) if owner.kind == CUSTOMER => Some(owner.id.parse::<CustomerId>().ok()?),
            Some(_) => return None,
            None => None,
        };
        let session = match self.sid {
            Some(sid) => Some(sid.parse::<SessionId>().ok()?),
            None => None,
        };
        Some(AccessClaims {
            client,
            kind,
            mode: if self.test { Mode::Test } else { Mode::Live },
            customer,
            session,
            issued_at: self.iat,
            expires_at: self.exp,
        })
    }
}

/// One RSA key pair: what signs, what verifies, and its public half for the JWKS.
struct KeyPair {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Modulus and public exponent, big-endian, base64url.
    n: String,
    e: String,
}

impl KeyPair {
    fn new(key: &rsa::RsaPrivateKey, index: usize) -> Result<Self, SigningKeyError> {
        let bits = key.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(SigningKeyError::TooSmall { index, bits });
        }
        let der = key
            .to_pkcs1_der()
            .map_err(|e| SigningKeyError::Unreadable {
                index,
                reason: e.to_string(),
            })?;
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let decoding =
            DecodingKey::from_rsa_components(&n, &e).map_err(|e| SigningKeyError::Unreadable {
                index,
                reason: e.to_string(),
            })?;
        // RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Ok(Self {
            kid,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding,
            n,
            e,
        })
    }
}

/// Generates a 2048-bit RSA private key as PKCS#8 PEM.
///
/// # Errors
/// When the generator or the encoder fails.
pub fn generate_signing_key_pem() -> Result<String, SigningKeyError> {
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, MIN_RSA_BITS)
        .map_err(|e| SigningKeyError::Generation(e.to_string()))?;
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| SigningKeyError::Generation(e.to_string()))
}

/// The PEM blocks of private keys in `text`, in order.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") && line.ends_with("PRIVATE KEY-----") {
            current = Some(format!("{line}\n"));
        } else if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                blocks.extend(current.take());
            }
        }
    }
    blocks
}

fn parse_key(pem: &str, index: usize) -> Result<rsa::RsaPrivateKey, SigningKeyError> {
    let parsed = if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        rsa::RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| e.to_string())
    } else {
        rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())
    };
    parsed.map_err(|reason| SigningKeyError::Unreadable { index, reason })
}

/// Signs and verifies RS512 access tokens with one or more RSA keys.
pub struct RsaAccessTokens {
    issuer: String,
    organization: Organization,
    /// The first signs; all verify.
    keys: Vec<KeyPair>,
}

impl fmt::Debug for RsaAccessTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaAccessTokens")
            .field("issuer", &self.issuer)
            .field("organization", &self.organization)
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RsaAccessTokens {
    /// Tokens issued by `issuer` for `organization`, with the RSA private keys in `pems`
    /// (PEM blocks, PKCS#8 or PKCS#1, at least 2048 bits; the first signs).
    ///
    /// # Errors
    /// When `pems` holds no key, or a key is unreadable or too small.
    pub fn from_pem(
        pems: &str,
        issuer: impl Into<String>,
        organization: Organization,
    ) -> Result<Self, SigningKeyError> {
        let keys = pem_blocks(pems)
            .iter()
            .enumerate()
            .map(|(i, pem)| KeyPair::new(&parse_key(pem, i + 1)?, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SigningKeyError::NoKey);
        }
        Ok(Self {
            issuer: issuer.into(),
            organization,
            keys,
        })
    }

    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `kid` of each key, the signing one first.
    #[must_use]
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The JSON Web Key Set of the public halves (RFC 7517), for `/.well-known/jwks.json`.
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "RSA",
                    "kid": k.kid,
                    "use": "sig",
                    "alg": "RS512",
                    "n": k.n,
                    "e": k.e,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    fn claims(&self, claims: &AccessClaims) -> Claims {
        let (id, client_id) = match &claims.client {
            Some((key, id)) => (Some(key.to_string()), Some(id.as_str().to_owned())),
            None => (None, None),
        };
        Claims {
            organization: self.organization.clone(),
            application: Application {
                id,
                kind: claims.kind.as_str().to_owned(),
                public: claims.kind.is_public(),
                client_id,
            },
            owner: claims.customer.map(|c| Owner {
                id: c.to_string(),
                kind: CUSTOMER.to_owned(),
            }),
            scope: SCOPE.to_owned(),
            test: claims.mode == Mode::Test,
            iat: claims.issued_at,
            exp: claims.expires_at,
            iss: self.issuer.clone(),
            rand: uuid::Uuid::new_v4().simple().to_string(),
            sid: claims.session.map(|s| s.to_string()),
        }
    }
}

impl AccessTokens for RsaAccessTokens {
    fn sign(&self, claims: &AccessClaims) -> Result<String, SignError> {
        let key = self
            .keys
            .first()
            .ok_or_else(|| SignError::new("no signing key"))?;
        let mut header = Header::new(ALG);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &self.claims(claims), &key.encoding).map_err(SignError::new)
    }

    fn verify(&self, token: &str, now: Timestamp) -> Option<AccessClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != ALG {
            return None;
        }
        let kid = header.kid?;
        let key = self.keys.iter().find(|k| k.kid == kid)?;
        let mut validation = Validation::new(ALG);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        // Expiry is checked against the caller's clock below, with no leeway.
        validation.validate_exp = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .ok()?
            .claims;
        if claims.exp <= now.timestamp() || claims.iss != self.issuer {
            return None;
        }
        claims.into_access()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;
    use chrono::DateTime;

    /// Two keys made once for the whole test binary (generation takes a moment).
    static PEMS: LazyLock<(String, String)> = LazyLock::new(|| {
        (
            generate_signing_key_pem().unwrap(),
            generate_signing_key_pem().unwrap(),
        )
    });

    const ISS: &str = "https://auth.example.com";

    fn tokens(pems: &str) -> RsaAccessTokens {
        RsaAccessTokens::from_pem(pems, ISS, Organization::from_slug("acme")).unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn customer_claims() -> AccessClaims {
        let t = at(1_000);
        AccessClaims {
            client: Some((ClientKey::new_at(t), ClientId::parse("abc_DEF-1").unwrap())),
            kind: ClientKind::SalesChannel,
            mode: Mode::Test,
            customer: Some(CustomerId::new_at(t)),
            session: Some(SessionId::new_at(t)),
            issued_at: 1_000,
            expires_at: 1_060,
        }
    }

    fn part(token: &str, i: usize) -> serde_json::Value {
        let seg = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
    }

    #[test]
    fn tokens_carry_commerce_layer_claims_and_verify_until_they_expire() {
        let t = tokens(&PEMS.0);
        let claims = customer_claims();
        let token = t.sign(&claims).unwrap();
        let header = part(&token, 0);
        assert_eq!(header["alg"], "RS512");
        assert_eq!(header["kid"], t.kids()[0]);
        let body = part(&token, 1);
        let (key, id) = claims.client.clone().unwrap();
        assert_eq!(body["organization"]["slug"], "acme");
        assert_eq!(body["organization"]["id"].as_str().unwrap().len(), 10);
        assert_eq!(body["application"]["id"], key.to_string());
        assert_eq!(body["application"]["client_id"], id.as_str());
        assert_eq!(body["application"]["kind"], "sales_channel");
        assert_eq!(body["application"]["public"], true);
        assert_eq!(body["owner"]["id"], claims.customer.unwrap().to_string());
        assert_eq!(body["owner"]["type"], "Customer");
        assert_eq!(body["scope"], "market:all");
        assert_eq!(body["test"], true);
        assert_eq!(
            (body["iat"].as_i64(), body["exp"].as_i64()),
            (Some(1_000), Some(1_060))
        );
        assert_eq!(body["iss"], ISS);
        assert_eq!(body["sid"], claims.session.unwrap().to_string());
        assert_eq!(body["rand"].as_str().unwrap().len(), 32);

        assert_eq!(t.verify(&token, at(1_059)), Some(claims));
        assert_eq!(t.verify(&token, at(1_060)), None, "expired at exp");
    }

    #[test]
    fn operator_tokens_have_no_application_id_owner_or_session() {
        let t = tokens(&PEMS.0);
        let claims = AccessClaims {
            client: None,
            kind: ClientKind::Integration,
            mode: Mode::Live,
            customer: None,
            session: None,
            issued_at: 1_000,
            expires_at: 2_000,
        };
        let token = t.sign(&claims).unwrap();
        let body = part(&token, 1);
        assert!(body.get("owner").is_none() && body.get("sid").is_none());
        assert_eq!(body["application"]["public"], false);
        assert_eq!(body["test"], false);
        assert_eq!(t.verify(&token, at(1_500)), Some(claims));
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let both = tokens(&format!("{}\n{}", PEMS.1, PEMS.0));
        let old = tokens(&PEMS.0);
        let new_only = tokens(&PEMS.1);
        let from_old = old.sign(&customer_claims()).unwrap();
        let from_both = both.sign(&customer_claims()).unwrap();
        assert!(
            both.verify(&from_old, at(1_000)).is_some(),
            "old key still verifies"
        );
        assert_eq!(
            part(&from_both, 0)["kid"],
            new_only.kids()[0],
            "the first key signs"
        );
        assert!(new_only.verify(&from_both, at(1_000)).is_some());
        assert!(
            new_only.verify(&from_old, at(1_000)).is_none(),
            "unknown kid"
        );
        let jwks = both.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for k in keys {
            let mut names: Vec<&String> = k.as_object().unwrap().keys().collect();
            names.sort();
            assert_eq!(
                names,
                ["alg", "e", "kid", "kty", "n", "use"],
                "public halves only"
            );
            assert_eq!(
                (&k["kty"], &k["alg"], &k["use"]),
                (&"RSA".into(), &"RS512".into(), &"sig".into())
            );
        }
    }

    #[test]
    fn the_jwks_verifies_a_token_on_its_own() {
        let t = tokens(&PEMS.0);
        let token = t.sign(&customer_claims()).unwrap();
        let jwks = t.jwks();
        let k = &jwks["keys"][0];
        let key =
            DecodingKey::from_rsa_components(k["n"].as_str().unwrap(), k["e"].as_str().unwrap())
                .unwrap();
        let mut v = Validation::new(Algorithm::RS512);
        v.validate_exp = false;
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).is_ok());
    }

    #[test]
    fn properly_signed_claims_that_do_not_fit_together_are_refused() {
        // Signed with the right key, so only the claims' own checks can refuse them.
        let t = tokens(&PEMS.0);
        let token = t.sign(&customer_claims()).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS512);
        header.kid = part(&token, 0)["kid"].as_str().map(str::to_owned);
        let der = parse_key(&PEMS.0, 0).unwrap().to_pkcs1_der().unwrap();
        let key = EncodingKey::from_rsa_der(der.as_bytes());
        let sign =
            |claims: &serde_json::Value| jsonwebtoken::encode(&header, claims, &key).unwrap();
        assert!(
            t.verify(&sign(&part(&token, 1)), at(1_000)).is_some(),
            "as issued"
        );
        let mut user = part(&token, 1);
        user["owner"]["type"] = "User".into();
        assert!(
            t.verify(&sign(&user), at(1_000)).is_none(),
            "an owner that is no customer"
        );
        let mut public = part(&token, 1);
        public["application"]["public"] = false.into();
        assert!(
            t.verify(&sign(&public), at(1_000)).is_none(),
            "a private sales channel"
        );
    }

    #[test]
    fn other_issuers_algorithms_kids_and_tampering_are_refused() {
        let t = tokens(&PEMS.0);
        let token = t.sign(&customer_claims()).unwrap();
        let elsewhere = RsaAccessTokens::from_pem(
            &PEMS.0,
            "https://auth.other.com",
            Organization::from_slug("acme"),
        )
        .unwrap();
        assert!(
            elsewhere.verify(&token, at(1_000)).is_none(),
            "another issuer"
        );

        let segs: Vec<&str> = token.split('.').collect();
        let mut header = part(&token, 0);
        for (field, value) in [
            ("alg", "RS256"),
            ("alg", "HS512"),
            ("alg", "none"),
            ("kid", "nope"),
        ] {
            header[field] = value.into();
            let forged = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                segs[1],
                segs[2]
            );
            assert!(t.verify(&forged, at(1_000)).is_none(), "{field}={value}");
            header = part(&token, 0);
        }
        let mut body = part(&token, 1);
        body["test"] = false.into();
        let swapped = format!(
            "{}.{}.{}",
            segs[0],
            URL_SAFE_NO_PAD.encode(body.to_string()),
            segs[2]
        );
        assert!(t.verify(&swapped, at(1_000)).is_none(), "payload swapped");
        for junk in ["", "a.b", "a.b.c", "a.b.c.d", "..."] {
            assert!(t.verify(junk, at(1_000)).is_none(), "{junk:?}");
        }
        // An HS512 token keyed with the public modulus (algorithm confusion).
        let k = t.jwks()["keys"][0]["n"].as_str().unwrap().to_owned();
        let mut h = Header::new(Algorithm::HS512);
        h.kid = Some(t.kids()[0].to_owned());
        let confused = jsonwebtoken::encode(
            &h,
            &part(&token, 1),
            &EncodingKey::from_secret(k.as_bytes()),
        )
        .unwrap();
        assert!(
            t.verify(&confused, at(1_000)).is_none(),
            "HS512 with the public key"
        );
    }

    #[test]
    fn unusable_key_material_is_refused_with_a_reason() {
        assert!(matches!(
            RsaAccessTokens::from_pem("", ISS, Organization::from_slug("a")),
            Err(SigningKeyError::NoKey)
        ));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            RsaAccessTokens::from_pem(garbage, ISS, Organization::from_slug("a")),
            Err(SigningKeyError::Unreadable { index: 1, .. })
        ));
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let pkcs1 = small.to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
        assert!(matches!(
            RsaAccessTokens::from_pem(&pkcs1, ISS, Organization::from_slug("a")),
            Err(SigningKeyError::TooSmall {
                index: 1,
                bits: 1024
            })
        ));
    }

    #[test]
    fn pkcs1_keys_load_too_and_keep_their_kid() {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&PEMS.0).unwrap();
        let pkcs1 = key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
        assert_eq!(tokens(&pkcs1).kids(), tokens(&PEMS.0).kids());
    }
}
