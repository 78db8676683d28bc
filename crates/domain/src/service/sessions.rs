//! Sign-in and sessions: the use cases behind `/oauth/token` and `/oauth/revoke`, the API
//! clients they authenticate, and the check every API request's access token goes through.
//!
//! - Every grant opens a [`Session`]; every access token names it, so ending the session
//!   ends the token on every instance that reads the same store.
//! - Refresh tokens are opaque 256-bit secrets, stored as keyed digests, bound to their
//!   client, rotated on every use; presenting a used one ends its session (RFC 9700).
//! - A customer session remembers the password version it began with; a reset or a new
//!   password bumps the version, which ends it even if a revoke was missed.
//! - Sign-in pays the same hash cost whether or not the address is known, and answers a
//!   wrong password and an unknown address alike.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::TimeDelta;

use super::Ports;
use super::limiter::{LimitError, RateLimiter};
use crate::models::{
    AccessClaims, Caller, Client, ClientId, ClientKey, ClientKind, ClientName, CustomerId,
    EmailAddress, Mode, NewSession, Password, PasswordHash, RateLimited, RefreshRecord, ResetToken,
    Rotation, Session, SessionId, SessionStatus, Timestamp, fnv1a64,
};
use crate::ports::{AccessTokens, ClientStore, SessionStore, SignError, StoreError};

/// Lifetimes of what a grant hands out, and how stale a cached session status may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// Access token lifetime (`expires_in`); Commerce Layer's is two hours.
    pub access_ttl: TimeDelta,
    /// Refresh token lifetime, from each rotation; Commerce Layer documents two weeks.
    pub refresh_ttl: TimeDelta,
    /// How long an instance may trust a client token's session status before reading it
    /// again (so a revoked client or token is refused everywhere within this). Customer
    /// tokens are checked on every request.
    pub recheck: TimeDelta,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            access_ttl: TimeDelta::hours(2),
            refresh_ttl: TimeDelta::weeks(2),
            recheck: TimeDelta::seconds(1),
        }
    }
}

/// How a client authenticates a request: its id and, for confidential clients, its secret.
#[derive(Clone, Copy)]
pub struct ClientAuth<'a> {
    pub client_id: &'a str,
    pub secret: Option<&'a str>,
}

impl std::fmt::Debug for ClientAuth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.map(|_| "<redacted>"))
            .finish()
    }
}

/// What a successful grant hands out. Its `Debug` leaves the tokens out.
#[derive(Clone)]
pub struct Grant {
    pub access_token: String,
    pub client: Client,
    pub session: SessionId,
    /// The signed-in customer (password and refresh grants).
    pub customer: Option<CustomerId>,
    /// The next refresh token (password and refresh grants).
    pub refresh_token: Option<ResetToken>,
    pub created_at: Timestamp,
    pub expires_in: TimeDelta,
    /// Why a sign-in could not store a stronger hash of the proven password, for the logs
    /// (the sign-in stands; the next one tries again).
    pub hash_upgrade_error: Option<String>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("access_token", &"<redacted>")
            .field("client", &self.client.client_id)
            .field("session", &self.session)
            .field("customer", &self.customer)
            .field("refresh_token", &self.refresh_token)
            .field("created_at", &self.created_at)
            .field("expires_in", &self.expires_in)
            .field("hash_upgrade_error", &self.hash_upgrade_error)
            .finish()
    }
}

/// A new client and its secret, which exists nowhere else: shown once.
#[derive(Debug, Clone)]
pub struct CreatedClient {
    pub client: Client,
    pub secret: ResetToken,
}

/// Why a token request or a revocation was refused. The names are RFC 6749's.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Unknown or revoked client, a wrong secret, or no secret from a confidential client.
    #[error("client authentication failed")]
    InvalidClient,
    /// A wrong password, an unknown address, or an unusable refresh token; deliberately
    /// one variant, so callers cannot tell them apart.
    #[error("the provided authorization grant is invalid")]
    InvalidGrant,
    /// The client may not use this grant (password grants are for sales channels), or the
    /// token to revoke was issued to another client.
    #[error("the client is not authorized to do this")]
    UnauthorizedClient,
    #[error("too many requests")]
    RateLimited(RateLimited),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

super::errors::unexpected_from_ports!(OAuthError);

impl From<SignError> for OAuthError {
    fn from(e: SignError) -> Self {
        Self::Unexpected(anyhow::Error::from_boxed(e.0))
    }
}

impl From<LimitError> for OAuthError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Exceeded(r) => Self::RateLimited(r),
            LimitError::Store(e) => e.into(),
        }
    }
}

/// Why an access token does not authenticate a request.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, badly signed, expired, or its session has ended.
    #[error("the access token is invalid")]
    Invalid,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

super::errors::unexpected_from_ports!(TokenError);

/// A client id from 256 random bits in base64url, never starting with `-`, so that it is
/// never mistaken for an option on a command line (`pwreset client revoke <id>`).
fn generated_client_id(random: &str) -> String {
    match random.strip_prefix('-') {
        Some(rest) => format!("x{rest}"),
        None => random.to_owned(),
    }
}

/// The longest password a sign-in hashes; longer ones cannot be a customer's.
const SIGNIN_PASSWORD_MAX_BYTES: usize = 4096;

/// How many verified tokens an instance remembers before starting over.
const VERIFIED_CACHE_CAPACITY: usize = 10_000;

/// A proven password: whose, and the version it was.
struct SignedIn {
    customer: CustomerId,
    password_version: i64,
    hash_upgrade_error: Option<String>,
}

#[derive(Debug, Clone)]
struct Verified {
    claims: AccessClaims,
    /// When its session was last read as live.
    checked_at: Timestamp,
}

/// The sign-in and session use cases. Its `Debug` shows no cached token.
#[derive(Clone)]
pub struct SessionService {
    ports: Ports,
    clients: Arc<dyn ClientStore>,
    sessions: Arc<dyn SessionStore>,
    tokens: Arc<dyn AccessTokens>,
    limiter: RateLimiter,
    settings: SessionSettings,
    /// A hash of no one's password, verified against when the address is unknown so that
    /// the answer costs the same; made on first need with the current parameters.
    decoy: Arc<Mutex<Option<PasswordHash>>>,
    verified: Arc<Mutex<HashMap<String, Verified>>>,
}

impl std::fmt::Debug for SessionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("settings", &self.settings)
            .field("limiter", &self.limiter)
            .field("cached_tokens", &self.lock_verified().len())
            .finish_non_exhaustive()
    }
}

impl SessionService {
    /// Makes the decoy hash now, so that the first sign-in for an unknown address costs
    /// what every later one does. Call once at start-up.
    ///
    /// # Errors
    /// When the hasher fails.
    pub async fn prepare(&self) -> Result<(), OAuthError> {
        self.decoy().await.map(|_| ())
    }

    #[must_use]
    pub fn new(
        ports: Ports,
        clients: Arc<dyn ClientStore>,
        sessions: Arc<dyn SessionStore>,
        tokens: Arc<dyn AccessTokens>,
        limiter: RateLimiter,
        settings: SessionSettings,
    ) -> Self {
        Self {
            ports,
            clients,
            sessions,
            tokens,
            limiter,
            settings,
            decoy: Arc::new(Mutex::new(None)),
            verified: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    #[must_use]
    pub fn settings(&self) -> SessionSettings {
        self.settings
    }

    /// Creates a client with a fresh random id and secret.
    ///
    /// # Errors
    /// `Unexpected` when the store fails.
    pub async fn create_client(
        &self,
        kind: ClientKind,
        mode: Mode,
        name: ClientName,
    ) -> Result<CreatedClient, StoreError> {
        let now = self.ports.now();
        let (id_token, _) = self.ports.digester.issue();
        let client_id = ClientId::parse(&generated_client_id(id_token.expose_secret()))
            .map_err(|e| StoreError::unexpected(format!("generated client id: {e}")))?;
        let (secret, secret_digest) = self.ports.digester.issue();
        let client = Client {
            key: ClientKey::new_at(now),
            client_id,
            kind,
            mode,
            name,
            secret_digest: Some(secret_digest),
            created_at: now,
            revoked_at: None,
        };
        self.clients.create(&client).await?;
        Ok(CreatedClient { client, secret })
    }

    /// Every client, oldest first.
    ///
    /// # Errors
    /// `Unexpected` when the store fails.
    pub async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        self.clients.list().await
    }

    /// Revokes a client: its refresh tokens stop working at once, its access tokens on
    /// every instance within [`SessionSettings::recheck`]. `false` when unknown or revoked.
    ///
    /// # Errors
    /// `Unexpected` when the store fails.
    pub async fn revoke_client(&self, client_id: &ClientId) -> Result<bool, StoreError> {
        let revoked = self.clients.revoke(client_id, self.ports.now()).await?;
        if revoked {
            self.forget(|c| c.client.as_ref().is_some_and(|(_, id)| id == client_id));
        }
        Ok(revoked)
    }

    /// The client `auth` names, if its credentials hold: it exists and is not revoked; a
    /// confidential client gave its secret; a public client gave its secret or none.
    ///
    /// # Errors
    /// `InvalidClient` otherwise.
    pub async fn authenticate_client(&self, auth: ClientAuth<'_>) -> Result<Client, OAuthError> {
        let client_id = ClientId::parse(auth.client_id).map_err(|_| OAuthError::InvalidClient)?;
        let client = self
            .clients
            .find(&client_id)
            .await?
            .filter(|c| !c.is_revoked())
            .ok_or(OAuthError::InvalidClient)?;
        let secret_ok = match (auth.secret, &client.secret_digest) {
            (None, _) => client.kind.is_public(),
            (Some(given), Some(stored)) => ResetToken::parse(given).is_ok_and(|given| {
                self.ports
                    .digester
                    .digests(&given)
                    .iter()
                    .fold(false, |ok, d| ok | d.ct_eq(stored))
            }),
            (Some(_), None) => false,
        };
        if secret_ok {
            Ok(client)
        } else {
            Err(OAuthError::InvalidClient)
        }
    }

    /// The `client_credentials` grant: an access token for the client itself.
    ///
    /// # Errors
    /// `RateLimited` over the per-address token request limit; `InvalidClient`.
    pub async fn client_credentials(
        &self,
        client_ip: Option<IpAddr>,
        auth: ClientAuth<'_>,
    ) -> Result<Grant, OAuthError> {
        let now = self.ports.now();
        self.count_request(client_ip, now).await?;
        let client = self.authenticate_client(auth).await?;
        self.open(client, None, 0, now).await
    }

    /// The `password` grant: a sales channel signs a customer in with their address and
    /// password, in the client's mode.
    ///
    /// # Errors
    /// `RateLimited` over the per-address token request limit or while the username's
    /// sign-in attempts are over their limit (even with the right password); `InvalidClient`;
    /// `UnauthorizedClient` for an integration; `InvalidGrant` for a wrong password, an
    /// unknown address or a customer without a password, alike.
    pub async fn password(
        &self,
        client_ip: Option<IpAddr>,
        auth: ClientAuth<'_>,
        username: &str,
        password: &str,
    ) -> Result<Grant, OAuthError> {
        let now = self.ports.now();
        self.count_request(client_ip, now).await?;
        let client = self.authenticate_client(auth).await?;
        if client.kind != ClientKind::SalesChannel {
            return Err(OAuthError::UnauthorizedClient);
        }
        self.limiter.count_signin(username, now).await?;
        match self.check_password(client.mode, username, password).await? {
            Some(signed_in) => {
                let mut grant = self
                    .open(
                        client,
                        Some(signed_in.customer),
                        signed_in.password_version,
                        now,
                    )
                    .await?;
                grant.hash_upgrade_error = signed_in.hash_upgrade_error;
                Ok(grant)
            }
            None => Err(OAuthError::InvalidGrant),
        }
    }

    /// The customer and password version `password` signs in, if any. Unknown addresses
    /// and customers without a password verify against the decoy hash, so every answer
    /// costs one verification.
    async fn check_password(
        &self,
        mode: Mode,
        username: &str,
        password: &str,
    ) -> Result<Option<SignedIn>, OAuthError> {
        if password.is_empty() || password.len() > SIGNIN_PASSWORD_MAX_BYTES {
            return Ok(None);
        }
        let password = Password::new(password);
        let customer = match EmailAddress::parse(username) {
            Ok(email) => self.ports.customers.find_by_email(mode, &email).await?,
            Err(_) => None,
        };
        let Some((customer, hash)) = customer.and_then(|c| c.password_hash.clone().map(|h| (c, h)))
        else {
            let decoy = self.decoy().await?;
            let _ = self.ports.hasher.verify(&password, &decoy).await?;
            return Ok(None);
        };
        if !self.ports.hasher.verify(&password, &hash).await? {
            return Ok(None);
        }
        let mut hash_upgrade_error = None;
        if self.ports.hasher.needs_rehash(&hash) {
            // Best effort: the sign-in stands whether or not the upgrade lands.
            let upgraded = match self.ports.hasher.hash(&password).await {
                Ok(fresh) => self
                    .ports
                    .customers
                    .upgrade_hash(mode, customer.id, &hash, &fresh)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            hash_upgrade_error = upgraded.err();
        }
        Ok(Some(SignedIn {
            customer: customer.id,
            password_version: customer.password_version,
            hash_upgrade_error,
        }))
    }

    async fn decoy(&self) -> Result<PasswordHash, OAuthError> {
        if let Some(h) = self.lock_decoy().clone() {
            return Ok(h);
        }
        let (random, _) = self.ports.digester.issue();
        let made = self
            .ports
            .hasher
            .hash(&Password::new(random.expose_secret()))
            .await?;
        Ok(self.lock_decoy().get_or_insert(made).clone())
    }

    fn lock_decoy(&self) -> std::sync::MutexGuard<'_, Option<PasswordHash>> {
        self.decoy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `refresh_token` grant: rotates the refresh token and mints a new access token
    /// for the same session.
    ///
    /// # Errors
    /// `RateLimited`; `InvalidClient`; `InvalidGrant` when the token is not a current
    /// refresh token of this client with a live session (a reused one ends its session).
    pub async fn refresh(
        &self,
        client_ip: Option<IpAddr>,
        auth: ClientAuth<'_>,
        refresh_token: &str,
    ) -> Result<Grant, OAuthError> {
        let now = self.ports.now();
        self.count_request(client_ip, now).await?;
        let client = self.authenticate_client(auth).await?;
        let presented = ResetToken::parse(refresh_token).map_err(|_| OAuthError::InvalidGrant)?;
        let digests = self.ports.digester.digests(&presented);
        let (next, next_digest) = self.ports.digester.issue();
        let record = RefreshRecord {
            digest: next_digest,
            expires_at: now + self.settings.refresh_ttl,
        };
        match self
            .sessions
            .rotate(&digests, client.key, &record, now)
            .await?
        {
            Rotation::Rotated(session) => {
                let access_token = self.sign(&client, &session, now)?;
                Ok(Grant {
                    access_token,
                    client,
                    session: session.id,
                    customer: session.customer,
                    refresh_token: Some(next),
                    created_at: now,
                    expires_in: self.settings.access_ttl,
                    hash_upgrade_error: None,
                })
            }
            Rotation::Reused(session) => {
                self.forget(|c| c.session == Some(session));
                Err(OAuthError::InvalidGrant)
            }
            Rotation::Invalid => Err(OAuthError::InvalidGrant),
        }
    }

    /// Revokes a token (RFC 7009): an access token or a refresh token ends its whole
    /// session. Unknown, malformed and expired tokens are not an error.
    ///
    /// # Errors
    /// `InvalidClient`; `UnauthorizedClient` when the token was issued to another client.
    pub async fn revoke(&self, auth: ClientAuth<'_>, token: &str) -> Result<(), OAuthError> {
        let client = self.authenticate_client(auth).await?;
        let now = self.ports.now();
        let session = if let Ok(refresh) = ResetToken::parse(token) {
            let digests = self.ports.digester.digests(&refresh);
            self.sessions.find_by_refresh(&digests).await?
        } else if let Some(claims) = self
            .tokens
            .verify(token, chrono::DateTime::<chrono::Utc>::MIN_UTC)
        {
            // Expired access tokens are revoked too (verified as of the earliest instant,
            // so only the signature, key and issuer count): a storefront logs out with
            // whatever access token it kept, and its session, refresh token included,
            // must end all the same.
            match claims.session {
                Some(id) => self.sessions.find(id).await?,
                None => None,
            }
        } else {
            None
        };
        let Some(session) = session else {
            return Ok(());
        };
        if session.client != client.key {
            return Err(OAuthError::UnauthorizedClient);
        }
        self.sessions.revoke(session.id, now).await?;
        self.forget(|c| c.session == Some(session.id));
        Ok(())
    }

    /// What `token` says, if it authenticates a request now: well-formed, signed, unexpired
    /// and its session live. A client token's session status is cached for up to
    /// [`SessionSettings::recheck`]; a customer token's is read every time.
    ///
    /// # Errors
    /// `Invalid` otherwise; `Unexpected` when the store fails.
    pub async fn authenticate_token(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let now = self.ports.now();
        let cached = self.lock_verified().get(token).cloned();
        let (claims, checked_at) = match cached {
            Some(v) => (v.claims, Some(v.checked_at)),
            None => (
                self.tokens.verify(token, now).ok_or(TokenError::Invalid)?,
                None,
            ),
        };
        if claims.expires_at <= now.timestamp() {
            self.lock_verified().remove(token);
            return Err(TokenError::Invalid);
        }
        let fresh = match (claims.session, checked_at) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(_), Some(at)) => {
                claims.customer.is_none() && at <= now && now - at < self.settings.recheck
            }
        };
        if let (Some(session), false) = (claims.session, fresh)
            && self.sessions.status(session, now).await? == SessionStatus::Ended
        {
            self.lock_verified().remove(token);
            return Err(TokenError::Invalid);
        }
        if !fresh {
            let mut cache = self.lock_verified();
            if cache.len() >= VERIFIED_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(
                token.to_owned(),
                Verified {
                    claims: claims.clone(),
                    checked_at: now,
                },
            );
        }
        Ok(claims)
    }

    /// A signed token for an operator (`pwreset token`): no client, no session, valid
    /// until it expires.
    ///
    /// # Errors
    /// When the key cannot sign.
    pub fn operator_token(
        &self,
        kind: ClientKind,
        mode: Mode,
        ttl: TimeDelta,
    ) -> Result<String, SignError> {
        let now = self.ports.now().timestamp();
        self.tokens.sign(&AccessClaims {
            client: None,
            kind,
            mode,
            customer: None,
            session: None,
            issued_at: now,
            expires_at: now + ttl.num_seconds(),
        })
    }

    /// The caller an access token stands for, for limits and the audit trail.
    #[must_use]
    pub fn caller(claims: &AccessClaims, client_ip: Option<IpAddr>) -> Caller {
        // Runs on every API request: hash the id's bytes, no string is built.
        let credential = match &claims.client {
            Some((key, _)) => fnv1a64(key.as_uuid().as_bytes()),
            None => match claims.kind {
                ClientKind::Integration => fnv1a64(b"operator|integration"),
                ClientKind::SalesChannel => fnv1a64(b"operator|sales_channel"),
            },
        };
        let caller = Caller::new(claims.mode).with_credential(credential);
        match client_ip {
            Some(ip) => caller.with_ip(ip),
            None => caller,
        }
    }

    async fn count_request(
        &self,
        client_ip: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<(), OAuthError> {
        let Some(ip) = client_ip else {
            return Ok(());
        };
        // The mode does not matter to this counter: it is keyed by address alone.
        let caller = Caller::new(Mode::Live).with_ip(ip);
        self.limiter.count_token_request(&caller, now).await?;
        Ok(())
    }

    async fn open(
        &self,
        client: Client,
        customer: Option<CustomerId>,
        password_version: i64,
        now: Timestamp,
    ) -> Result<Grant, OAuthError> {
        let refresh = customer.map(|_| self.ports.digester.issue());
        let expires_at = match &refresh {
            Some(_) => now + self.settings.refresh_ttl,
            None => now + self.settings.access_ttl,
        };
        let session = Session {
            id: SessionId::new_at(now),
            client: client.key,
            mode: client.mode,
            customer,
            password_version,
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        self.sessions
            .open(&NewSession {
                session: session.clone(),
                refresh: refresh.as_ref().map(|(_, digest)| RefreshRecord {
                    digest: *digest,
                    expires_at,
                }),
            })
            .await?;
        let access_token = self.sign(&client, &session, now)?;
        Ok(Grant {
            access_token,
            client,
            session: session.id,
            customer,
            refresh_token: refresh.map(|(token, _)| token),
            created_at: now,
            expires_in: self.settings.access_ttl,
            hash_upgrade_error: None,
        })
    }

    fn sign(
        &self,
        client: &Client,
        session: &Session,
        now: Timestamp,
    ) -> Result<String, SignError> {
        let iat = now.timestamp();
        self.tokens.sign(&AccessClaims {
            client: Some((client.key, client.client_id.clone())),
            kind: client.kind,
            mode: client.mode,
            customer: session.customer,
            session: Some(session.id),
            issued_at: iat,
            expires_at: iat + self.settings.access_ttl.num_seconds(),
        })
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops cached verdicts matching `ended`, so this instance refuses them at once.
    fn forget(&self, ended: impl Fn(&AccessClaims) -> bool) {
        self.lock_verified().retain(|_, v| !ended(&v.claims));
    }
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
