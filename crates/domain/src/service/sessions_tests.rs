//! Unit tests of [`SessionService`] against mocked ports.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use chrono::TimeDelta;

use super::*;
use crate::models::{Bucket, Customer, PasswordHash, RateLimits};
use crate::ports::{
    MockAccessTokens, MockClientStore, MockRateLimitStore, MockSessionStore, StoreError,
};
use crate::testing::{self, MockPorts, OTHER_TOKEN, TOKEN, digest_of, t0};

const CLIENT_ID: &str = "storefront-eu";
const SECRET: &str = TOKEN;
const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

fn client(kind: ClientKind) -> Client {
    Client {
        key: "01a0c6a3-8a00-7000-8000-0000000000c1".parse().unwrap(),
        client_id: ClientId::parse(CLIENT_ID).unwrap(),
        kind,
        mode: Mode::Test,
        name: ClientName::parse("Storefront").unwrap(),
        secret_digest: Some(digest_of(SECRET)),
        created_at: t0(),
        revoked_at: None,
    }
}

fn customer_with_password() -> Customer {
    Customer {
        password_hash: Some(PasswordHash::new("$argon2id$jane")),
        password_version: 3,
        ..testing::customer()
    }
}

fn auth(secret: Option<&'static str>) -> ClientAuth<'static> {
    ClientAuth {
        client_id: CLIENT_ID,
        secret,
    }
}

/// Mocks for one service: the stores hold `clients`, tokens sign to `"signed"`, limits
/// off unless a store is given.
struct Setup {
    ports: MockPorts,
    clients: MockClientStore,
    sessions: MockSessionStore,
    tokens: MockAccessTokens,
    limits: Option<MockRateLimitStore>,
}

impl Setup {
    fn with_client(found: Option<Client>) -> Self {
        let mut clients = MockClientStore::new();
        clients.expect_find().returning(move |_| Ok(found.clone()));
        let mut tokens = MockAccessTokens::new();
        tokens.expect_sign().returning(|_| Ok("signed".into()));
        let mut ports = MockPorts::new();
        ports.digester.expect_fingerprint().returning(digest_of);
        Self {
            ports,
            clients,
            sessions: MockSessionStore::new(),
            tokens,
            limits: None,
        }
    }

    fn service(self) -> SessionService {
        let ports = self.ports.into_ports();
        let limiter = match self.limits {
            Some(store) => RateLimiter::new(
                Arc::new(store),
                RateLimits::default(),
                ports.digester.clone(),
            ),
            None => RateLimiter::off(ports.digester.clone()),
        };
        SessionService::new(
            ports,
            Arc::new(self.clients),
            Arc::new(self.sessions),
            Arc::new(self.tokens),
            limiter,
            SessionSettings::default(),
        )
    }
}

#[tokio::test]
async fn clients_authenticate_by_kind_and_secret() {
    use ClientKind::{Integration, SalesChannel};
    let cases: [(ClientKind, Option<&'static str>, bool); 6] = [
        (Integration, Some(SECRET), true),
        (Integration, None, false),
        (Integration, Some(OTHER_TOKEN), false),
        (SalesChannel, None, true),
        (SalesChannel, Some(SECRET), true),
        (SalesChannel, Some(OTHER_TOKEN), false),
    ];
    for (kind, secret, ok) in cases {
        let service = Setup::with_client(Some(client(kind))).service();
        let result = service.authenticate_client(auth(secret)).await;
        assert_eq!(result.is_ok(), ok, "{kind:?} with {secret:?}: {result:?}");
        if !ok {
            assert!(matches!(result, Err(OAuthError::InvalidClient)));
        }
    }
}

#[tokio::test]
async fn unknown_revoked_and_malformed_clients_are_invalid() {
    let revoked = Client {
        revoked_at: Some(t0()),
        ..client(ClientKind::SalesChannel)
    };
    for found in [None, Some(revoked)] {
        let service = Setup::with_client(found).service();
        assert!(matches!(
            service.authenticate_client(auth(None)).await,
            Err(OAuthError::InvalidClient)
        ));
    }
    let mut setup = Setup::with_client(None);
    setup.clients.checkpoint();
    setup.clients.expect_find().never();
    let service = setup.service();
    for id in ["", "a b", &"x".repeat(200)] {
        let bad = ClientAuth {
            client_id: id,
            secret: None,
        };
        assert!(matches!(
            service.authenticate_client(bad).await,
            Err(OAuthError::InvalidClient)
        ));
    }
}

/// A sales channel set-up whose hasher accepts exactly `right` against jane's hash and
/// records every hash it was asked to verify against.
fn signin_setup(known: bool, right: &'static str) -> (Setup, Arc<Mutex<Vec<String>>>) {
    let mut s = Setup::with_client(Some(client(ClientKind::SalesChannel)));
    let found = known.then(customer_with_password);
    s.ports
        .customers
        .expect_find_by_email()
        .returning(move |_, _| Ok(found.clone()));
    let verified = Arc::new(Mutex::new(Vec::new()));
    let seen = verified.clone();
    s.ports.hasher.expect_verify().returning(move |p, h| {
        seen.lock().unwrap().push(h.as_str().to_owned());
        Ok(p.expose_secret() == right && h.as_str() == "$argon2id$jane")
    });
    s.ports
        .hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$decoy")));
    s.ports.hasher.expect_needs_rehash().return_const(false);
    (s, verified)
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_address_cost_one_verification_and_answer_alike() {
    for known in [true, false] {
        let (setup, verified) = signin_setup(known, "right password");
        let service = setup.service();
        let result = service
            .password(Some(IP), auth(None), "jane@example.com", "wrong password")
            .await;
        assert!(
            matches!(result, Err(OAuthError::InvalidGrant)),
            "{result:?}"
        );
        let against = verified.lock().unwrap().clone();
        let expected = if known {
            "$argon2id$jane"
        } else {
            "$argon2id$decoy"
        };
        assert_eq!(against, [expected], "known = {known}");
    }
}

#[tokio::test]
async fn the_right_password_opens_a_customer_session_with_a_refresh_token() {
    let (mut setup, _) = signin_setup(true, "right password");
    let opened = Arc::new(Mutex::new(None));
    let seen = opened.clone();
    setup.sessions.expect_open().times(1).returning(move |n| {
        *seen.lock().unwrap() = Some(n.clone());
        Ok(())
    });
    let jane = customer_with_password();
    let grant = setup
        .service()
        .password(Some(IP), auth(None), "Jane@Example.com", "right password")
        .await
        .unwrap();
    let opened = opened.lock().unwrap().clone().unwrap();
    assert_eq!(opened.session.customer, Some(jane.id));
    assert_eq!(opened.session.password_version, 3);
    assert_eq!(opened.session.mode, Mode::Test);
    assert_eq!(opened.session.expires_at, t0() + TimeDelta::weeks(2));
    let refresh = opened.refresh.unwrap();
    assert_eq!(refresh.expires_at, t0() + TimeDelta::weeks(2));
    let token = grant.refresh_token.unwrap();
    assert_eq!(refresh.digest, digest_of(token.expose_secret()));
    assert_eq!(
        (grant.customer, grant.session, grant.access_token.as_str()),
        (Some(jane.id), opened.session.id, "signed")
    );
    assert_eq!(grant.expires_in, TimeDelta::hours(2));
}

#[tokio::test]
async fn integrations_may_not_sign_customers_in() {
    let mut setup = Setup::with_client(Some(client(ClientKind::Integration)));
    setup.ports.customers.expect_find_by_email().never();
    let result = setup
        .service()
        .password(None, auth(Some(SECRET)), "jane@example.com", "pw")
        .await;
    assert!(
        matches!(result, Err(OAuthError::UnauthorizedClient)),
        "{result:?}"
    );
}

/// A counter store in which the sign-in counter already holds `count` (so a hit makes it
/// `count + 1`), every other counter nothing; it records what was hit.
fn counters(count: u64) -> (MockRateLimitStore, Arc<Mutex<Vec<String>>>) {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let mut store = MockRateLimitStore::new();
    store.expect_peek().never();
    let seen = hits.clone();
    store.expect_hit().returning(move |b: &[Bucket], _| {
        seen.lock().unwrap().extend(b.iter().map(|b| b.key.clone()));
        Ok(b.iter()
            .map(|b| {
                if b.key.starts_with("signin:") {
                    count + 1
                } else {
                    1
                }
            })
            .collect())
    });
    (store, hits)
}

#[tokio::test]
async fn a_throttled_address_is_refused_even_with_the_right_password() {
    let (mut setup, verified) = signin_setup(true, "right password");
    let limit = RateLimits::default().signin_attempts_per_email.unwrap();
    let (store, _) = counters(u64::from(limit.max));
    setup.limits = Some(store);
    let result = setup
        .service()
        .password(Some(IP), auth(None), "jane@example.com", "right password")
        .await;
    assert!(
        matches!(result, Err(OAuthError::RateLimited(r)) if r.limit == limit),
        "{result:?}"
    );
    assert!(verified.lock().unwrap().is_empty(), "no hash was verified");
}

#[tokio::test]
async fn one_below_the_limit_a_sign_in_still_goes_through() {
    let (mut setup, _) = signin_setup(true, "right password");
    let limit = RateLimits::default().signin_attempts_per_email.unwrap();
    let (store, _) = counters(u64::from(limit.max) - 1);
    setup.limits = Some(store);
    setup.sessions.expect_open().returning(|_| Ok(()));
    let result = setup
        .service()
        .password(Some(IP), auth(None), "jane@example.com", "right password")
        .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn attempts_count_per_address_in_any_spelling_and_requests_per_client_ip() {
    let mut keys = Vec::new();
    for username in ["Jane@Example.com", "jane@example.com", "nobody@example.com"] {
        let (mut setup, _) = signin_setup(true, "right password");
        let (store, hits) = counters(0);
        setup.limits = Some(store);
        let _ = setup
            .service()
            .password(Some(IP), auth(None), username, "wrong")
            .await;
        let hits = hits.lock().unwrap().clone();
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert_eq!(hits[0], format!("token:client:{IP}"));
        assert!(hits[1].starts_with("signin:attempts:"), "{hits:?}");
        assert!(!hits[1].contains("example"), "no address in the clear");
        keys.push(hits[1].clone());
    }
    assert_eq!(keys[0], keys[1], "spellings of one address share a counter");
    assert_ne!(keys[1], keys[2]);
}

#[tokio::test]
async fn a_proven_password_with_a_weak_hash_is_rehashed_compare_and_set() {
    let (mut setup, _) = signin_setup(true, "right password");
    setup.ports.hasher.checkpoint();
    setup
        .ports
        .hasher
        .expect_verify()
        .returning(|_, _| Ok(true));
    setup.ports.hasher.expect_needs_rehash().return_const(true);
    setup
        .ports
        .hasher
        .expect_hash()
        .times(1)
        .returning(|_| Ok(PasswordHash::new("$argon2id$stronger")));
    let jane = customer_with_password();
    setup
        .ports
        .customers
        .expect_upgrade_hash()
        .withf(move |mode, id, old, new| {
            *mode == Mode::Test
                && *id == jane.id
                && old.as_str() == "$argon2id$jane"
                && new.as_str() == "$argon2id$stronger"
        })
        .times(1)
        .returning(|_, _, _, _| Err(StoreError::unexpected("disk full")));
    setup.sessions.expect_open().returning(|_| Ok(()));
    let grant = setup
        .service()
        .password(None, auth(None), "jane@example.com", "right password")
        .await
        .unwrap();
    assert_eq!(grant.hash_upgrade_error.as_deref(), Some("disk full"));
}

#[tokio::test]
async fn refresh_rotates_or_refuses_per_the_store() {
    let session = Session {
        id: SessionId::new_at(t0()),
        client: client(ClientKind::SalesChannel).key,
        mode: Mode::Test,
        customer: Some(testing::customer().id),
        password_version: 0,
        created_at: t0(),
        expires_at: t0() + TimeDelta::weeks(2),
        revoked_at: None,
    };
    for outcome in [
        Rotation::Rotated(session.clone()),
        Rotation::Reused(session.id),
        Rotation::Invalid,
    ] {
        let mut setup = Setup::with_client(Some(client(ClientKind::SalesChannel)));
        let expected = outcome.clone();
        let key = client(ClientKind::SalesChannel).key;
        setup
            .sessions
            .expect_rotate()
            .withf(move |presented, c, next, now| {
                presented == [digest_of(OTHER_TOKEN)]
                    && *c == key
                    && next.expires_at == t0() + TimeDelta::weeks(2)
                    && *now == t0()
            })
            .times(1)
            .returning(move |_, _, _, _| Ok(outcome.clone()));
        let result = setup.service().refresh(None, auth(None), OTHER_TOKEN).await;
        match expected {
            Rotation::Rotated(s) => {
                let grant = result.unwrap();
                assert_eq!((grant.session, grant.customer), (s.id, s.customer));
                assert!(grant.refresh_token.is_some());
            }
            _ => assert!(
                matches!(result, Err(OAuthError::InvalidGrant)),
                "{result:?}"
            ),
        }
    }
    let mut setup = Setup::with_client(Some(client(ClientKind::SalesChannel)));
    setup.sessions.expect_rotate().never();
    let malformed = setup.service().refresh(None, auth(None), "short").await;
    assert!(matches!(malformed, Err(OAuthError::InvalidGrant)));
}

fn access_claims(session: Option<SessionId>, customer: Option<CustomerId>) -> AccessClaims {
    let c = client(ClientKind::SalesChannel);
    AccessClaims {
        client: Some((c.key, c.client_id)),
        kind: c.kind,
        mode: c.mode,
        customer,
        session,
        issued_at: t0().timestamp(),
        expires_at: t0().timestamp() + 7200,
    }
}

#[tokio::test]
async fn revoking_ends_the_whole_session_of_the_callers_own_token_only() {
    let id = SessionId::new_at(t0());
    let theirs = Session {
        id,
        client: client(ClientKind::SalesChannel).key,
        mode: Mode::Test,
        customer: None,
        password_version: 0,
        created_at: t0(),
        expires_at: t0() + TimeDelta::hours(2),
        revoked_at: None,
    };
    let other_clients = Session {
        client: "01a0c6a3-8a00-7000-8000-0000000000c2".parse().unwrap(),
        ..theirs.clone()
    };
    for (session, ok) in [(theirs, true), (other_clients, false)] {
        let mut setup = Setup::with_client(Some(client(ClientKind::SalesChannel)));
        // Expired tokens are revoked too: verified as of the earliest instant.
        setup
            .tokens
            .expect_verify()
            .withf(|_, at| *at == chrono::DateTime::<chrono::Utc>::MIN_UTC)
            .returning(move |_, _| Some(access_claims(Some(id), None)));
        setup
            .sessions
            .expect_find()
            .returning(move |_| Ok(Some(session.clone())));
        setup
            .sessions
            .expect_revoke()
            .withf(move |s, _| *s == id)
            .times(usize::from(ok))
            .returning(|_, _| Ok(true));
        let result = setup.service().revoke(auth(None), "a.jwt.token").await;
        if ok {
            assert!(result.is_ok(), "{result:?}");
        } else {
            assert!(
                matches!(result, Err(OAuthError::UnauthorizedClient)),
                "{result:?}"
            );
        }
    }
}

#[tokio::test]
async fn revoking_an_unknown_token_is_not_an_error() {
    let mut setup = Setup::with_client(Some(client(ClientKind::SalesChannel)));
    setup.tokens.expect_verify().returning(|_, _| None);
    setup
        .sessions
        .expect_find_by_refresh()
        .returning(|_| Ok(None));
    setup.sessions.expect_revoke().never();
    let service = setup.service();
    assert!(service.revoke(auth(None), "not a token").await.is_ok());
    assert!(service.revoke(auth(None), OTHER_TOKEN).await.is_ok());
}

/// A service whose tokens all verify to `claims` and whose session status answers are
/// counted.
fn token_setup(
    claims: AccessClaims,
    status: SessionStatus,
    recheck: TimeDelta,
    now: Arc<Mutex<Timestamp>>,
) -> (SessionService, Arc<Mutex<u32>>) {
    let mut setup = Setup::with_client(None);
    setup
        .tokens
        .expect_verify()
        .returning(move |_, _| Some(claims.clone()));
    setup.clients.expect_revoke().returning(|_, _| Ok(true));
    let reads = Arc::new(Mutex::new(0));
    let seen = reads.clone();
    setup.sessions.expect_status().returning(move |_, _| {
        *seen.lock().unwrap() += 1;
        Ok(status)
    });
    setup.ports.clock.checkpoint();
    setup
        .ports
        .clock
        .expect_now()
        .returning(move || *now.lock().unwrap());
    let ports = setup.ports.into_ports();
    let service = SessionService::new(
        ports.clone(),
        Arc::new(setup.clients),
        Arc::new(setup.sessions),
        Arc::new(setup.tokens),
        RateLimiter::off(ports.digester.clone()),
        SessionSettings {
            recheck,
            ..SessionSettings::default()
        },
    );
    (service, reads)
}

#[tokio::test]
async fn a_client_tokens_session_is_read_again_only_after_the_recheck_interval() {
    let now = Arc::new(Mutex::new(t0()));
    let claims = access_claims(Some(SessionId::new_at(t0())), None);
    let (service, reads) = token_setup(
        claims,
        SessionStatus::Live,
        TimeDelta::seconds(1),
        now.clone(),
    );
    for _ in 0..3 {
        service.authenticate_token("tok").await.unwrap();
    }
    assert_eq!(*reads.lock().unwrap(), 1);
    *now.lock().unwrap() = t0() + TimeDelta::milliseconds(999);
    service.authenticate_token("tok").await.unwrap();
    assert_eq!(*reads.lock().unwrap(), 1, "still within the interval");
    *now.lock().unwrap() = t0() + TimeDelta::seconds(1);
    service.authenticate_token("tok").await.unwrap();
    assert_eq!(*reads.lock().unwrap(), 2, "read again once it is over");
}

#[tokio::test]
async fn a_customer_tokens_session_is_read_on_every_request() {
    let now = Arc::new(Mutex::new(t0()));
    let claims = access_claims(Some(SessionId::new_at(t0())), Some(testing::customer().id));
    let (service, reads) = token_setup(claims, SessionStatus::Live, TimeDelta::seconds(5), now);
    for _ in 0..3 {
        service.authenticate_token("tok").await.unwrap();
    }
    assert_eq!(*reads.lock().unwrap(), 3);
}

#[tokio::test]
async fn ended_sessions_and_expired_tokens_are_invalid() {
    let now = Arc::new(Mutex::new(t0()));
    let claims = access_claims(Some(SessionId::new_at(t0())), None);
    let (service, _) = token_setup(
        claims.clone(),
        SessionStatus::Ended,
        TimeDelta::seconds(1),
        now.clone(),
    );
    assert!(matches!(
        service.authenticate_token("tok").await,
        Err(TokenError::Invalid)
    ));
    let (service, _) = token_setup(
        claims,
        SessionStatus::Live,
        TimeDelta::seconds(1),
        now.clone(),
    );
    service.authenticate_token("tok").await.unwrap();
    *now.lock().unwrap() = t0() + TimeDelta::seconds(7199);
    service.authenticate_token("tok").await.unwrap();
    *now.lock().unwrap() = t0() + TimeDelta::seconds(7200);
    assert!(
        matches!(
            service.authenticate_token("tok").await,
            Err(TokenError::Invalid)
        ),
        "a cached token expires at exp"
    );
}

#[tokio::test]
async fn revoking_a_client_forgets_its_cached_tokens_at_once() {
    let now = Arc::new(Mutex::new(t0()));
    let claims = access_claims(Some(SessionId::new_at(t0())), None);
    let (service, reads) = token_setup(claims, SessionStatus::Live, TimeDelta::seconds(5), now);
    service.authenticate_token("tok").await.unwrap();
    service.authenticate_token("tok").await.unwrap();
    assert_eq!(*reads.lock().unwrap(), 1);
    let other = ClientId::parse("another-client").unwrap();
    assert!(service.revoke_client(&other).await.unwrap());
    service.authenticate_token("tok").await.unwrap();
    assert_eq!(
        *reads.lock().unwrap(),
        1,
        "another client's revocation changes nothing"
    );
    let id = ClientId::parse(CLIENT_ID).unwrap();
    assert!(service.revoke_client(&id).await.unwrap());
    service.authenticate_token("tok").await.unwrap();
    assert_eq!(
        *reads.lock().unwrap(),
        2,
        "read again after being forgotten"
    );
}

#[test]
fn generated_client_ids_never_start_with_a_dash() {
    assert_eq!(generated_client_id("-abc"), "xabc");
    assert_eq!(generated_client_id("_abc"), "_abc");
    assert_eq!(generated_client_id("abc-"), "abc-");
}

#[tokio::test]
async fn a_secret_matching_under_two_keys_still_authenticates() {
    // Two configured keys that happen to give one digest: the match is an OR, never a
    // parity of matches.
    let mut setup = Setup::with_client(Some(client(ClientKind::Integration)));
    setup.ports.digester.checkpoint();
    setup
        .ports
        .digester
        .expect_digests()
        .returning(|t| vec![digest_of(t.expose_secret()); 2]);
    let result = setup
        .service()
        .authenticate_client(auth(Some(SECRET)))
        .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn passwords_up_to_4096_bytes_are_verified_and_longer_or_empty_ones_are_not() {
    for (password, verified) in [
        ("p".repeat(4096), true),
        ("p".repeat(4097), false),
        (String::new(), false),
    ] {
        let (setup, seen) = signin_setup(true, "right password");
        let result = setup
            .service()
            .password(None, auth(None), "jane@example.com", &password)
            .await;
        assert!(
            matches!(result, Err(OAuthError::InvalidGrant)),
            "{result:?}"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            usize::from(verified),
            "{} bytes",
            password.len()
        );
    }
}

/// Every claim the service signed, through a tokens mock that records them.
fn recording_tokens(setup: &mut Setup) -> Arc<Mutex<Vec<AccessClaims>>> {
    let signed = Arc::new(Mutex::new(Vec::new()));
    let seen = signed.clone();
    setup.tokens.checkpoint();
    setup.tokens.expect_sign().returning(move |c| {
        seen.lock().unwrap().push(c.clone());
        Ok("signed".into())
    });
    signed
}

#[tokio::test]
async fn tokens_live_for_the_access_ttl_and_client_sessions_end_with_them() {
    let mut setup = Setup::with_client(Some(client(ClientKind::Integration)));
    let signed = recording_tokens(&mut setup);
    let opened = Arc::new(Mutex::new(None));
    let seen = opened.clone();
    setup.sessions.expect_open().returning(move |n| {
        *seen.lock().unwrap() = Some(n.clone());
        Ok(())
    });
    let service = setup.service();
    service
        .client_credentials(None, auth(Some(SECRET)))
        .await
        .unwrap();
    let claims = signed.lock().unwrap()[0].clone();
    assert_eq!(claims.issued_at, t0().timestamp());
    assert_eq!(claims.expires_at, t0().timestamp() + 7200);
    assert_eq!(claims.customer, None);
    let opened = opened.lock().unwrap().clone().unwrap();
    assert_eq!(opened.session.expires_at, t0() + TimeDelta::hours(2));
    assert_eq!(
        opened.refresh, None,
        "client credentials carry no refresh token"
    );

    service
        .operator_token(ClientKind::SalesChannel, Mode::Live, TimeDelta::minutes(5))
        .unwrap();
    let operator = signed.lock().unwrap()[1].clone();
    assert_eq!(
        (
            operator.client,
            operator.session,
            operator.kind,
            operator.mode
        ),
        (None, None, ClientKind::SalesChannel, Mode::Live)
    );
    assert_eq!(operator.expires_at, t0().timestamp() + 300);
}

#[tokio::test]
async fn client_changes_pass_the_store_through() {
    for revoked in [true, false] {
        let mut setup = Setup::with_client(None);
        setup
            .clients
            .expect_revoke()
            .times(1)
            .returning(move |_, _| Ok(revoked));
        setup.clients.expect_list().returning(|| {
            Ok(vec![
                client(ClientKind::Integration),
                client(ClientKind::SalesChannel),
            ])
        });
        let service = setup.service();
        let id = ClientId::parse(CLIENT_ID).unwrap();
        assert_eq!(service.revoke_client(&id).await.unwrap(), revoked);
        assert_eq!(service.list_clients().await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn the_decoy_is_made_once_at_start_up() {
    let (mut setup, _) = signin_setup(false, "right password");
    setup.ports.hasher.checkpoint();
    let hashed = Arc::new(Mutex::new(0));
    let seen = hashed.clone();
    setup
        .ports
        .hasher
        .expect_hash()
        .times(1)
        .returning(move |_| {
            *seen.lock().unwrap() += 1;
            Ok(PasswordHash::new("$argon2id$decoy"))
        });
    setup
        .ports
        .hasher
        .expect_verify()
        .returning(|_, _| Ok(false));
    let service = setup.service();
    service.prepare().await.unwrap();
    assert_eq!(*hashed.lock().unwrap(), 1, "made before any sign-in");
    for _ in 0..2 {
        let result = service
            .password(None, auth(None), "nobody@example.com", "pw")
            .await;
        assert!(matches!(result, Err(OAuthError::InvalidGrant)));
    }
}

#[tokio::test]
async fn revoking_or_reusing_forgets_only_that_sessions_cached_tokens() {
    // Two client tokens of two sessions, both cached; ending one session (a revoke, then a
    // reused refresh token) makes this instance read that one again at once, not the other.
    let (a, b) = (SessionId::new_at(t0()), SessionId::new_at(t0()));
    let mut setup = Setup::with_client(Some(client(ClientKind::SalesChannel)));
    setup.tokens.expect_verify().returning(move |token, _| {
        let id = if token.starts_with('a') { a } else { b };
        Some(access_claims(Some(id), None))
    });
    let reads = Arc::new(Mutex::new(Vec::new()));
    let seen = reads.clone();
    setup.sessions.expect_status().returning(move |id, _| {
        seen.lock().unwrap().push(id);
        Ok(SessionStatus::Live)
    });
    let session = |id| Session {
        id,
        client: client(ClientKind::SalesChannel).key,
        mode: Mode::Test,
        customer: None,
        password_version: 0,
        created_at: t0(),
        expires_at: t0() + TimeDelta::hours(2),
        revoked_at: None,
    };
    setup
        .sessions
        .expect_find()
        .returning(move |id| Ok(Some(session(id))));
    setup.sessions.expect_revoke().returning(|_, _| Ok(true));
    setup
        .sessions
        .expect_rotate()
        .returning(move |_, _, _, _| Ok(Rotation::Reused(b)));
    let service = setup.service();
    for token in ["a.token", "b.token", "a.token", "b.token"] {
        service.authenticate_token(token).await.unwrap();
    }
    assert_eq!(
        *reads.lock().unwrap(),
        [a, b],
        "each read once, then cached"
    );
    service.revoke(auth(None), "a.token").await.unwrap();
    service.authenticate_token("a.token").await.unwrap();
    service.authenticate_token("b.token").await.unwrap();
    assert_eq!(*reads.lock().unwrap(), [a, b, a], "only a was forgotten");
    let reused = service.refresh(None, auth(None), OTHER_TOKEN).await;
    assert!(matches!(reused, Err(OAuthError::InvalidGrant)));
    service.authenticate_token("a.token").await.unwrap();
    service.authenticate_token("b.token").await.unwrap();
    assert_eq!(*reads.lock().unwrap(), [a, b, a, b], "only b was forgotten");
}
