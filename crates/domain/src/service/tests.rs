//! Use-case tests against mockall mocks of every port: each branch of each operation.

use std::sync::Arc;

use chrono::TimeDelta;

use super::*;
use crate::models::*;
use crate::ports::*;
use crate::testing::{MockPorts, OTHER_TOKEN, TOKEN, clock_at, customer, digest_of, reset, t0};

/// The shared mocks, with shorthands for the services and common expectations.
struct Mocks(MockPorts);

impl std::ops::Deref for Mocks {
    type Target = MockPorts;
    fn deref(&self) -> &MockPorts {
        &self.0
    }
}

impl std::ops::DerefMut for Mocks {
    fn deref_mut(&mut self) -> &mut MockPorts {
        &mut self.0
    }
}

impl Mocks {
    fn new() -> Self {
        Self(MockPorts::new())
    }

    fn ports(self) -> Ports {
        self.0.into_ports()
    }

    fn resets(self) -> ResetService {
        ResetService::new(
            self.ports(),
            TokenPolicy::default(),
            PasswordPolicy::default(),
        )
    }

    fn customers(self) -> CustomerService {
        CustomerService::new(self.ports(), PasswordPolicy::default())
    }

    fn with_reset(mut self, r: PasswordReset) -> Self {
        self.0.expect_reset(r);
        self
    }

    fn expect_failure(mut self, reason: &'static str, counted: bool) -> Self {
        self.resets
            .expect_record_failure()
            .withf(move |_, _, count, e| {
                *count == counted
                    && e.kind == EventKind::CompletionFailed
                    && e.reason.as_deref() == Some(reason)
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        self
    }
}

fn caller() -> Caller {
    Caller::new(Mode::Test)
}

fn boom() -> StoreError {
    StoreError::unexpected("connection reset")
}

fn completion(token: Option<&str>, password: &str) -> CompleteReset {
    CompleteReset {
        token: token.map(str::to_owned),
        password: Password::new(password),
        details: DetailsPatch::default(),
    }
}

// ---- request ----

#[tokio::test]
async fn requesting_a_reset_for_a_known_email_stores_a_digest_and_returns_the_token() {
    let mut m = Mocks::new();
    m.customers.expect_find_by_email().never();
    m.resets.expect_create().never();
    m.resets
        .expect_create_for_email()
        .withf(|r| {
            let (email, d, e) = (&r.email, &r.draft, &r.event);
            r.composer.is_silent()
                && r.token.expose_secret() == TOKEN
                && email.normalized() == "jane@example.com"
                && d.mode == Mode::Test
                && d.token_digest == digest_of(TOKEN)
                && d.expires_at == t0() + TimeDelta::hours(1)
                && d.created_at == t0()
                && d.reference.as_ref().map(Reference::as_str) == Some("ref-1")
                && e.kind == EventKind::Requested
                && e.reset_id == d.id
        })
        .times(1)
        .returning(|r| Ok(Some(r.for_customer(customer().id, customer().email).0)));
    let issued = m
        .resets()
        .request(
            &caller(),
            NewReset {
                email: EmailAddress::parse("JANE@example.com").unwrap(),
                reference: Some(Reference::parse("ref-1").unwrap()),
                reference_origin: None,
                metadata: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(issued.token.expose_secret(), TOKEN);
    assert_eq!(issued.reset.customer_id, customer().id);
    assert_eq!(issued.reset.customer_email.as_str(), "jane@example.com");
    assert_eq!(issued.reset.reference.unwrap().as_str(), "ref-1");
    assert_eq!(issued.reset.updated_at, t0());
    assert!(issued.reset.reset_password_at.is_none() && issued.reset.invalidated_at.is_none());
}

fn new_reset() -> NewReset {
    NewReset {
        email: EmailAddress::parse("nobody@example.com").unwrap(),
        reference: None,
        reference_origin: None,
        metadata: None,
    }
}

#[tokio::test]
async fn requesting_a_reset_for_an_unknown_email_fails_without_writing() {
    let mut m = Mocks::new();
    m.resets
        .expect_create_for_email()
        .times(1)
        .returning(|_| Ok(None));
    m.resets.expect_create().never();
    let err = m
        .resets()
        .request(&caller(), new_reset())
        .await
        .unwrap_err();
    assert!(matches!(err, RequestResetError::UnknownCustomer));
}

#[tokio::test]
async fn storage_failures_while_requesting_are_unexpected() {
    let mut m = Mocks::new();
    m.resets
        .expect_create_for_email()
        .returning(|_| Err(boom()));
    let err = m
        .resets()
        .request(&caller(), new_reset())
        .await
        .unwrap_err();
    assert!(matches!(err, RequestResetError::Unexpected(_)));
}

// ---- complete ----

#[tokio::test]
async fn completing_with_the_right_token_hashes_then_writes_conditionally() {
    let mut m = Mocks::new().with_reset(reset());
    m.hasher
        .expect_hash()
        .withf(|p| p.expose_secret() == "a fine new password")
        .times(1)
        .returning(|_| Ok(PasswordHash::new("$argon2id$hash")));
    m.resets
        .expect_complete()
        .withf(|c| {
            c.token_digest == digest_of(TOKEN)
                && c.password_hash.as_str() == "$argon2id$hash"
                && c.now == t0()
                && c.max_failed_attempts == 5
                && c.event.kind == EventKind::Completed
        })
        .times(1)
        .returning(|_| {
            let mut r = reset();
            r.reset_password_at = Some(t0());
            Ok(CompletionOutcome::Completed(Box::new(r)))
        });
    m.resets.expect_record_failure().never();
    let done = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap();
    assert_eq!(done.reset_password_at, Some(t0()));
}

#[tokio::test]
async fn completing_an_unknown_reset_is_not_found() {
    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Ok(None));
    let err = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::NotFound));
}

async fn assert_rejected(
    r: PasswordReset,
    token: Option<&str>,
    now: Timestamp,
    reason: &'static str,
    counted: bool,
) {
    let mut m = Mocks::new().with_reset(r).expect_failure(reason, counted);
    m.clock = clock_at(now);
    m.hasher.expect_hash().never();
    m.resets.expect_complete().never();
    let err = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(token, "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CompleteResetError::InvalidToken(r) if r.as_str() == reason),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_token_is_rejected_and_counted() {
    assert_rejected(reset(), None, t0(), "missing", true).await;
}

#[tokio::test]
async fn a_malformed_token_is_rejected_and_counted() {
    assert_rejected(reset(), Some("not-a-token"), t0(), "malformed", true).await;
}

#[tokio::test]
async fn a_wrong_token_is_rejected_and_counted() {
    assert_rejected(reset(), Some(OTHER_TOKEN), t0(), "wrong", true).await;
}

/// Unpadded base64url, written out here rather than taken from the code under test.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut held = 0;
    let mut out = String::new();
    for &b in bytes {
        bits = (bits << 8) | u32::from(b);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(char::from(ALPHABET[((bits >> held) & 63) as usize]));
        }
    }
    if held > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - held)) & 63) as usize]));
    }
    out
}

#[test]
fn the_test_encoder_matches_rfc_4648() {
    // RFC 4648 section 10 vectors ("f" .. "foobar"), in the URL alphabet without padding.
    for (plain, encoded) in [
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg"),
        ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64url(plain.as_bytes()), encoded);
    }
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
}

#[tokio::test]
async fn the_stored_digest_presented_as_a_token_is_wrong() {
    // Someone who read the resets table holds the stored digest's 32 bytes. Spelled as a
    // token (canonical base64url of 32 bytes is well formed by construction), they are a
    // wrong token; spelled as the 64 hex digits the table may show, a malformed one.
    let r = reset();
    let as_token = base64url(r.token_digest.as_bytes());
    assert_eq!(as_token.len(), 43);
    assert_rejected(r.clone(), Some(&as_token), t0(), "wrong", true).await;
    let as_hex: String = r
        .token_digest
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_rejected(r, Some(&as_hex), t0(), "malformed", true).await;
}

#[tokio::test]
async fn a_used_reset_rejects_its_own_token() {
    let mut r = reset();
    r.reset_password_at = Some(t0());
    assert_rejected(r, Some(TOKEN), t0(), "used", false).await;
}

#[tokio::test]
async fn a_revoked_reset_rejects_its_own_token() {
    let mut r = reset();
    r.invalidated_at = Some(t0());
    assert_rejected(r, Some(TOKEN), t0(), "revoked", false).await;
}

#[tokio::test]
async fn a_token_is_valid_at_the_expiry_instant_and_expired_one_second_later() {
    let r = reset();
    assert_rejected(
        r.clone(),
        Some(TOKEN),
        r.expires_at + TimeDelta::seconds(1),
        "expired",
        false,
    )
    .await;

    let mut m = Mocks::new().with_reset(r.clone());
    m.clock = clock_at(r.expires_at);
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$hash")));
    m.resets
        .expect_complete()
        .returning(|_| Ok(CompletionOutcome::Completed(Box::new(reset()))));
    assert!(
        m.resets()
            .complete(
                &caller(),
                r.id,
                completion(Some(TOKEN), "a fine new password")
            )
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn after_five_failures_even_the_right_token_is_refused() {
    let mut r = reset();
    r.failed_attempts = 5;
    assert_rejected(r, Some(TOKEN), t0(), "exhausted", false).await;
}

#[tokio::test]
async fn a_rejected_password_does_not_use_up_the_token() {
    let mut m = Mocks::new().with_reset(reset());
    m.resets.expect_record_failure().never();
    m.resets.expect_complete().never();
    m.hasher.expect_hash().never();
    let err = m
        .resets()
        .complete(&caller(), reset().id, completion(Some(TOKEN), "short"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CompleteResetError::PasswordRejected(PasswordRejection::TooShort { min: 8 })
    ));
}

#[tokio::test]
async fn losing_the_race_for_the_conditional_update_is_an_invalid_token() {
    let mut m = Mocks::new()
        .with_reset(reset())
        .expect_failure("lost_race", false);
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$hash")));
    m.resets
        .expect_complete()
        .returning(|_| Ok(CompletionOutcome::NotApplied));
    let err = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CompleteResetError::InvalidToken(TokenRejection::LostRace)
    ));
}

#[tokio::test]
async fn a_token_issued_under_an_older_key_still_completes() {
    let mut m = Mocks::new().with_reset(reset());
    m.digester = MockTokenDigester::new();
    m.digester.expect_digests().returning(|t| {
        vec![
            TokenDigest::from_bytes([9; 32]),
            digest_of(t.expose_secret()),
        ]
    });
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$hash")));
    m.resets
        .expect_complete()
        .returning(|_| Ok(CompletionOutcome::Completed(Box::new(reset()))));
    assert!(
        m.resets()
            .complete(
                &caller(),
                reset().id,
                completion(Some(TOKEN), "a fine new password")
            )
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_key_listed_twice_still_completes() {
    // Both digests match: whichever way they are combined, a match is a match.
    let mut m = Mocks::new().with_reset(reset());
    m.digester = MockTokenDigester::new();
    m.digester
        .expect_digests()
        .returning(|t| vec![digest_of(t.expose_secret()), digest_of(t.expose_secret())]);
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$hash")));
    m.resets
        .expect_complete()
        .returning(|_| Ok(CompletionOutcome::Completed(Box::new(reset()))));
    let done = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await;
    assert!(done.is_ok(), "{done:?}");
}

#[tokio::test]
async fn a_reset_that_expires_while_the_password_hashes_is_refused_as_expired() {
    // Valid when checked; one millisecond past its expiry when the write finds it gone.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let later = reset().expires_at + TimeDelta::milliseconds(1);
    let mut m = Mocks::new()
        .with_reset(reset())
        .expect_failure("expired", false);
    m.clock = MockClock::new();
    m.clock.expect_now().returning(move || {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            t0()
        } else {
            later
        }
    });
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$hash")));
    m.resets
        .expect_complete()
        .returning(|_| Ok(CompletionOutcome::NotApplied));
    let err = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CompleteResetError::InvalidToken(TokenRejection::Expired)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn failures_of_hashing_or_storage_while_completing_are_unexpected() {
    let mut m = Mocks::new().with_reset(reset());
    m.hasher
        .expect_hash()
        .returning(|_| Err(HashError::new("pool closed")));
    let err = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::Unexpected(_)));

    let mut m = Mocks::new().with_reset(reset());
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$hash")));
    m.resets.expect_complete().returning(|_| Err(boom()));
    let err = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::Unexpected(_)));

    let mut m = Mocks::new().with_reset(reset());
    m.resets
        .expect_record_failure()
        .returning(|_, _, _, _| Err(boom()));
    let err = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(None, "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::Unexpected(_)));

    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Err(boom()));
    let err = m
        .resets()
        .complete(
            &caller(),
            reset().id,
            completion(None, "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::Unexpected(_)));
}

// ---- get / list / update / delete / events ----

#[tokio::test]
async fn get_returns_the_reset_or_not_found() {
    let m = Mocks::new().with_reset(reset());
    assert_eq!(
        m.resets().get(&caller(), reset().id).await.unwrap(),
        reset()
    );
    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Ok(None));
    assert!(matches!(
        m.resets().get(&caller(), reset().id).await,
        Err(GetResetError::NotFound)
    ));
    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Err(boom()));
    assert!(matches!(
        m.resets().get(&caller(), reset().id).await,
        Err(GetResetError::Unexpected(_))
    ));
}

#[tokio::test]
async fn list_digests_token_filters_before_the_store_sees_them() {
    let mut m = Mocks::new();
    m.resets
        .expect_list()
        .withf(|mode, q| {
            *mode == Mode::Test
                && q.filters[0].value == FilterValue::Digests(vec![digest_of(TOKEN)])
                && q.page.size() == 5
        })
        .returning(|_, q| {
            Ok(Page {
                items: vec![reset()],
                record_count: 1,
                request: q.page,
            })
        });
    let query = ListQuery {
        filters: vec![
            Filter::new(
                ResetField::ResetPasswordToken,
                Predicate::Eq,
                FilterValue::Tokens(vec![ResetToken::parse(TOKEN).unwrap()]),
            )
            .unwrap(),
        ],
        sort: Vec::new(),
        page: PageRequest::new(1, 5).unwrap(),
    };
    let page = m.resets().list(&caller(), query).await.unwrap();
    assert_eq!(page.items.len(), 1);

    let mut m = Mocks::new();
    m.resets.expect_list().returning(|_, _| Err(boom()));
    assert!(matches!(
        m.resets().list(&caller(), ListQuery::default()).await,
        Err(ListResetsError::Unexpected(_))
    ));
}

#[tokio::test]
async fn update_details_changes_only_what_is_patched() {
    let patch = DetailsPatch {
        reference: Patch::Set(Some(Reference::parse("r2").unwrap())),
        ..DetailsPatch::default()
    };
    let mut m = Mocks::new();
    let expected = patch.clone();
    m.resets
        .expect_update_details()
        .withf(move |_, _, p, now| *p == expected && *now == t0())
        .returning(|_, _, _, _| Ok(Some(reset())));
    assert!(
        m.resets()
            .update_details(&caller(), reset().id, patch.clone())
            .await
            .is_ok()
    );
    let mut m = Mocks::new();
    m.resets
        .expect_update_details()
        .returning(|_, _, _, _| Ok(None));
    assert!(matches!(
        m.resets()
            .update_details(&caller(), reset().id, patch.clone())
            .await,
        Err(UpdateResetError::NotFound)
    ));
    let mut m = Mocks::new();
    m.resets
        .expect_update_details()
        .returning(|_, _, _, _| Err(boom()));
    assert!(matches!(
        m.resets()
            .update_details(&caller(), reset().id, patch)
            .await,
        Err(UpdateResetError::Unexpected(_))
    ));
}

#[tokio::test]
async fn delete_reports_not_found() {
    for (stored, ok) in [(true, true), (false, false)] {
        let mut m = Mocks::new();
        m.resets
            .expect_delete()
            .withf(|_, _, e, outbox| e.kind == EventKind::Deleted && outbox.is_empty())
            .returning(move |_, _, _, _| Ok(stored));
        assert_eq!(m.resets().delete(&caller(), reset().id).await.is_ok(), ok);
    }
    let mut m = Mocks::new();
    m.resets.expect_delete().returning(|_, _, _, _| Err(boom()));
    assert!(matches!(
        m.resets().delete(&caller(), reset().id).await,
        Err(DeleteResetError::Unexpected(_))
    ));
}

#[tokio::test]
async fn events_of_an_unknown_reset_are_not_found() {
    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Ok(None));
    m.resets.expect_events().never();
    assert!(matches!(
        m.resets().events(&caller(), reset().id).await,
        Err(GetResetError::NotFound)
    ));
    let mut m = Mocks::new().with_reset(reset());
    m.resets
        .expect_events()
        .returning(|_, id| Ok(vec![caller().event(id, EventKind::Requested, None, t0())]));
    assert_eq!(
        m.resets()
            .events(&caller(), reset().id)
            .await
            .unwrap()
            .len(),
        1
    );
}

// ---- customers ----

fn new_customer(password: Option<&str>) -> NewCustomer {
    NewCustomer {
        email: EmailAddress::parse("jane@example.com").unwrap(),
        password: password.map(Password::new),
        reference: None,
        reference_origin: None,
        metadata: None,
    }
}

#[tokio::test]
async fn creating_a_customer_hashes_its_password() {
    let mut m = Mocks::new();
    m.hasher
        .expect_hash()
        .times(1)
        .returning(|_| Ok(PasswordHash::new("$argon2id$h")));
    m.customers
        .expect_create()
        .withf(|c| c.password_hash.as_ref().map(PasswordHash::as_str) == Some("$argon2id$h"))
        .returning(|_| Ok(()));
    let c = m
        .customers()
        .create(&caller(), new_customer(Some("long enough pw")))
        .await
        .unwrap();
    assert!(c.has_password());

    let mut m = Mocks::new();
    m.hasher.expect_hash().never();
    m.customers.expect_create().returning(|_| Ok(()));
    let c = m
        .customers()
        .create(&caller(), new_customer(None))
        .await
        .unwrap();
    assert!(!c.has_password());
}

#[tokio::test]
async fn creating_a_customer_reports_taken_emails_and_weak_passwords() {
    let mut m = Mocks::new();
    m.customers
        .expect_create()
        .returning(|_| Err(StoreError::DuplicateEmail));
    assert!(matches!(
        m.customers().create(&caller(), new_customer(None)).await,
        Err(CreateCustomerError::EmailTaken)
    ));
    let mut m = Mocks::new();
    m.customers.expect_create().never();
    assert!(matches!(
        m.customers()
            .create(&caller(), new_customer(Some("jane1234567")))
            .await,
        Err(CreateCustomerError::PasswordRejected(
            PasswordRejection::ContainsEmail
        ))
    ));
    let mut m = Mocks::new();
    m.customers.expect_create().returning(|_| Err(boom()));
    assert!(matches!(
        m.customers().create(&caller(), new_customer(None)).await,
        Err(CreateCustomerError::Unexpected(_))
    ));
}

#[tokio::test]
async fn changing_email_or_password_revokes_resets_but_respelling_does_not() {
    let cases: [(Option<&str>, Option<&str>, CredentialChange); 4] = [
        (Some("JANE@example.com"), None, CredentialChange::None),
        (Some("jane2@example.com"), None, CredentialChange::Email),
        (
            None,
            Some("a new long password"),
            CredentialChange::Password,
        ),
        (None, None, CredentialChange::None),
    ];
    for (email, password, expected) in cases {
        let mut m = Mocks::new();
        m.customers
            .expect_find()
            .returning(|_, _| Ok(Some(customer())));
        m.hasher
            .expect_hash()
            .returning(|_| Ok(PasswordHash::new("$argon2id$h")));
        m.customers
            .expect_update()
            .withf(move |_, change| *change == expected)
            .times(1)
            .returning(|_, _| Ok(true));
        let patch = CustomerPatch {
            email: email.map(|e| EmailAddress::parse(e).unwrap()),
            password: password.map(Password::new),
            details: DetailsPatch::default(),
        };
        let updated = m
            .customers()
            .update(&caller(), customer().id, patch)
            .await
            .unwrap();
        if let Some(e) = email {
            assert_eq!(updated.email.as_str(), e);
        }
    }
}

#[tokio::test]
async fn updating_a_customer_reports_each_failure() {
    let mut m = Mocks::new();
    m.customers.expect_find().returning(|_, _| Ok(None));
    assert!(matches!(
        m.customers()
            .update(&caller(), customer().id, CustomerPatch::default())
            .await,
        Err(UpdateCustomerError::NotFound)
    ));

    let mut m = Mocks::new();
    m.customers
        .expect_find()
        .returning(|_, _| Ok(Some(customer())));
    m.customers
        .expect_update()
        .returning(|_, _| Err(StoreError::DuplicateEmail));
    let patch = CustomerPatch {
        email: Some(EmailAddress::parse("taken@example.com").unwrap()),
        ..CustomerPatch::default()
    };
    assert!(matches!(
        m.customers().update(&caller(), customer().id, patch).await,
        Err(UpdateCustomerError::EmailTaken)
    ));

    let mut m = Mocks::new();
    m.customers
        .expect_find()
        .returning(|_, _| Ok(Some(customer())));
    m.customers.expect_update().never();
    let patch = CustomerPatch {
        password: Some(Password::new("tiny")),
        ..CustomerPatch::default()
    };
    assert!(matches!(
        m.customers().update(&caller(), customer().id, patch).await,
        Err(UpdateCustomerError::PasswordRejected(_))
    ));

    let mut m = Mocks::new();
    m.customers
        .expect_find()
        .returning(|_, _| Ok(Some(customer())));
    m.customers.expect_update().returning(|_, _| Ok(false));
    assert!(matches!(
        m.customers()
            .update(&caller(), customer().id, CustomerPatch::default())
            .await,
        Err(UpdateCustomerError::NotFound)
    ));
}

#[tokio::test]
async fn customer_get_list_and_delete_map_their_outcomes() {
    let mut m = Mocks::new();
    m.customers.expect_find().returning(|_, _| Ok(None));
    assert!(matches!(
        m.customers().get(&caller(), customer().id).await,
        Err(GetCustomerError::NotFound)
    ));

    let mut m = Mocks::new();
    m.customers.expect_list().returning(|_, q| {
        Ok(Page {
            items: vec![customer()],
            record_count: 1,
            request: q.page,
        })
    });
    assert_eq!(
        m.customers()
            .list(&caller(), ListQuery::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    for (stored, ok) in [(true, true), (false, false)] {
        let mut m = Mocks::new();
        m.customers
            .expect_delete()
            .returning(move |_, _| Ok(stored));
        assert_eq!(
            m.customers().delete(&caller(), customer().id).await.is_ok(),
            ok
        );
    }
}

// ---- notifications and delivery ----

fn plan() -> NotificationPlan {
    NotificationPlan {
        mail: true,
        webhooks: true,
    }
}

#[tokio::test]
async fn with_mail_and_webhooks_a_request_has_the_store_compose_for_the_customer_it_finds() {
    // The store binds the reset to the customer it finds and enqueues what the composer
    // makes for that reset (the link to the stored address, the create webhook); the
    // contract suite checks stores do, and compose.rs what the composer makes.
    let mut m = Mocks::new();
    m.customers.expect_find_by_email().never();
    m.resets.expect_create().never();
    m.resets
        .expect_create_for_email()
        .withf(|r| {
            r.email.normalized() == "jane@example.com"
                && r.composer.plan() == plan()
                && r.token.expose_secret() == TOKEN
        })
        .times(1)
        .returning(|r| Ok(Some(r.for_customer(customer().id, customer().email).0)));
    let service = ResetService::new(m.ports(), TokenPolicy::default(), PasswordPolicy::default())
        .with_notifications(plan());
    let issued = service
        .request(
            &caller(),
            NewReset::for_email(EmailAddress::parse("JANE@example.com").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(issued.reset.customer_email.as_str(), "jane@example.com");

    let mut m = Mocks::new();
    m.resets.expect_create_for_email().returning(|_| Ok(None));
    let err = ResetService::new(m.ports(), TokenPolicy::default(), PasswordPolicy::default())
        .with_notifications(plan())
        .request(&caller(), new_reset())
        .await
        .unwrap_err();
    assert!(matches!(err, RequestResetError::UnknownCustomer));
}

#[tokio::test]
async fn with_mail_and_webhooks_a_completion_enqueues_the_notice_and_a_webhook() {
    let mut m = Mocks::new().with_reset(reset());
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$hash")));
    m.resets
        .expect_complete()
        .withf(|c| {
            c.outbox.len() == 2
                && matches!(c.outbox[0].notification().unwrap(), Notification::PasswordChanged { at, .. } if *at == t0())
                && matches!(
                    c.outbox[1].notification().unwrap(),
                    Notification::Webhook { topic: WebhookTopic::ResetPassword, reset } if reset.reset_password_at == Some(t0())
                )
        })
        .times(1)
        .returning(|_| Ok(CompletionOutcome::Completed(Box::new(reset()))));
    let service = ResetService::new(m.ports(), TokenPolicy::default(), PasswordPolicy::default())
        .with_notifications(plan());
    service
        .complete(
            &caller(),
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn with_webhooks_a_delete_enqueues_a_destroy_webhook_or_reports_not_found() {
    let mut m = Mocks::new().with_reset(reset());
    m.resets
        .expect_delete()
        .withf(|_, _, _, outbox| {
            matches!(
                outbox,
                [OutboxMessage {
                    payload: Payload::Notification(Notification::Webhook {
                        topic: WebhookTopic::Destroy,
                        ..
                    }),
                    ..
                }]
            )
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let service = ResetService::new(m.ports(), TokenPolicy::default(), PasswordPolicy::default())
        .with_notifications(plan());
    service.delete(&caller(), reset().id).await.unwrap();

    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Ok(None));
    m.resets.expect_delete().never();
    let service = ResetService::new(m.ports(), TokenPolicy::default(), PasswordPolicy::default())
        .with_notifications(plan());
    assert!(matches!(
        service.delete(&caller(), reset().id).await,
        Err(DeleteResetError::NotFound)
    ));
}

fn message(attempts: u32) -> OutboxMessage {
    OutboxMessage {
        attempts,
        ..OutboxMessage::new(
            Notification::PasswordChanged {
                reset_id: reset().id,
                mode: Mode::Test,
                to: customer().email,
                at: t0(),
            },
            t0(),
        )
    }
}

fn delivery(outbox: MockOutboxStore, notifier: MockNotifier) -> DeliveryService {
    DeliveryService::new(
        Arc::new(outbox),
        Arc::new(notifier),
        Arc::new(clock_at(t0())),
        RetryPolicy::default(),
        TimeDelta::minutes(1),
        16,
    )
}

#[tokio::test]
async fn delivered_messages_are_acknowledged_with_their_idempotency_key() {
    let msg = message(1);
    let key = msg.idempotency_key();
    let id = msg.id;
    let mut outbox = MockOutboxStore::new();
    outbox
        .expect_claim()
        .withf(|now, lease, limit| *now == t0() && *lease == TimeDelta::minutes(1) && *limit == 16)
        .returning(move |_, _, _| Ok(vec![msg.clone()]));
    outbox
        .expect_delivered()
        .withf(move |i, _| *i == id)
        .times(1)
        .returning(|_, _| Ok(()));
    outbox.expect_failed().never();
    let mut notifier = MockNotifier::new();
    notifier
        .expect_deliver()
        .withf(move |_, k| k == key)
        .times(1)
        .returning(|_, _| Ok(()));
    let report = delivery(outbox, notifier).run_once().await.unwrap();
    assert_eq!((report.claimed, report.delivered), (1, 1));
}

#[tokio::test]
async fn failed_deliveries_retry_with_backoff_then_die() {
    for (attempts, dead) in [(1, false), (9, false), (10, true)] {
        let mut outbox = MockOutboxStore::new();
        let msg = message(attempts);
        outbox
            .expect_claim()
            .returning(move |_, _, _| Ok(vec![msg.clone()]));
        outbox.expect_delivered().never();
        outbox
            .expect_failed()
            .withf(move |_, error, retry_at, _| {
                error.contains("connection refused")
                    && retry_at.is_none() == dead
                    && retry_at.is_none_or(|at| at > t0())
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let mut notifier = MockNotifier::new();
        notifier
            .expect_deliver()
            .returning(|_, _| Err(DeliveryError::new("connection refused")));
        let report = delivery(outbox, notifier).run_once().await.unwrap();
        assert_eq!(
            (report.retrying, report.dead),
            if dead { (0, 1) } else { (1, 0) }
        );
    }
}

#[tokio::test]
async fn outbox_failures_stop_the_pass() {
    let mut outbox = MockOutboxStore::new();
    outbox.expect_claim().returning(|_, _, _| Err(boom()));
    let notifier = MockNotifier::new();
    assert!(delivery(outbox, notifier).run_once().await.is_err());
}

#[tokio::test]
async fn a_reset_mail_whose_link_expired_while_waiting_is_parked_not_sent() {
    let stale = OutboxMessage::new(
        Notification::ResetRequested {
            reset_id: reset().id,
            mode: Mode::Test,
            to: customer().email,
            token: ResetToken::parse(TOKEN).unwrap(),
            expires_at: t0() - TimeDelta::seconds(1),
        },
        t0() - TimeDelta::hours(1),
    );
    let mut outbox = MockOutboxStore::new();
    outbox
        .expect_claim()
        .returning(move |_, _, _| Ok(vec![stale.clone()]));
    outbox
        .expect_failed()
        .withf(|_, error, retry_at, _| retry_at.is_none() && error.contains("expired"))
        .times(1)
        .returning(|_, _, _, _| Ok(()));
    let mut notifier = MockNotifier::new();
    notifier.expect_deliver().never();
    let report = delivery(outbox, notifier).run_once().await.unwrap();
    assert_eq!(report.dead, 1);
}

#[tokio::test]
async fn a_reset_mail_whose_link_expires_this_very_millisecond_is_still_sent() {
    // A token is valid at its expiry instant (see the completion's expiry tests), so its
    // mail is too: only a link already past its expiry is parked.
    let due = OutboxMessage::new(
        Notification::ResetRequested {
            reset_id: reset().id,
            mode: Mode::Test,
            to: customer().email,
            token: ResetToken::parse(TOKEN).unwrap(),
            expires_at: t0(),
        },
        t0() - TimeDelta::hours(1),
    );
    let mut outbox = MockOutboxStore::new();
    outbox
        .expect_claim()
        .returning(move |_, _, _| Ok(vec![due.clone()]));
    outbox.expect_failed().never();
    outbox.expect_delivered().times(1).returning(|_, _| Ok(()));
    let mut notifier = MockNotifier::new();
    notifier.expect_deliver().times(1).returning(|_, _| Ok(()));
    let report = delivery(outbox, notifier).run_once().await.unwrap();
    assert_eq!((report.delivered, report.dead), (1, 0));
}

// ---- rate limits ----

fn limited(m: Mocks, store: MockRateLimitStore) -> ResetService {
    ResetService::new(m.ports(), TokenPolicy::default(), PasswordPolicy::default())
        .with_rate_limits(Arc::new(store), RateLimits::default())
}

#[tokio::test]
async fn requests_over_a_limit_are_refused_before_any_lookup() {
    let mut m = Mocks::new();
    m.digester
        .expect_fingerprint()
        .returning(|_| TokenDigest::from_bytes([5; 32]));
    m.customers.expect_find_by_email().never();
    m.resets.expect_create_for_email().never();
    let mut store = MockRateLimitStore::new();
    store
        .expect_hit()
        .withf(|buckets, now| {
            *now == t0()
                && buckets.len() == 4
                && buckets[0].key.starts_with("request:email:900:0505")
                && buckets[0].limit.max == 3
                && buckets[1].limit.max == 10
                && buckets[3].key == "request:client:198.51.100.7"
                && !buckets.iter().any(|b| b.key.contains("example"))
        })
        .returning(|_, _| Ok(vec![4, 4, 4, 4]));
    let caller = caller()
        .with_ip("198.51.100.7".parse().unwrap())
        .with_credential(42);
    let err = limited(m, store)
        .request(&caller, new_reset())
        .await
        .unwrap_err();
    let RequestResetError::RateLimited(r) = err else {
        panic!("{err:?}")
    };
    assert_eq!(r.limit.max, 3);
    assert_eq!(r.retry_after, TimeDelta::minutes(15), "t0 starts a window");
}

#[tokio::test]
async fn requests_under_every_limit_go_ahead() {
    let mut m = Mocks::new();
    m.digester
        .expect_fingerprint()
        .returning(|_| TokenDigest::from_bytes([5; 32]));
    m.resets.expect_create_for_email().returning(|_| Ok(None));
    let mut store = MockRateLimitStore::new();
    store.expect_hit().returning(|b, _| Ok(vec![1; b.len()]));
    let err = limited(m, store)
        .request(&caller(), new_reset())
        .await
        .unwrap_err();
    assert!(matches!(err, RequestResetError::UnknownCustomer));
}

#[tokio::test]
async fn with_every_request_limit_off_the_limit_store_is_not_touched() {
    let mut m = Mocks::new();
    m.resets
        .expect_create_for_email()
        .times(1)
        .returning(|_| Ok(None));
    let mut store = MockRateLimitStore::new();
    store.expect_hit().never();
    let off = RateLimits {
        per_email: Vec::new(),
        per_credential: None,
        per_client: None,
        failures_per_customer: None,
        signin_attempts_per_email: None,
        token_requests_per_client: None,
    };
    let service = ResetService::new(m.ports(), TokenPolicy::default(), PasswordPolicy::default())
        .with_rate_limits(Arc::new(store), off);
    let caller = caller()
        .with_ip("198.51.100.7".parse().unwrap())
        .with_credential(42);
    let err = service.request(&caller, new_reset()).await.unwrap_err();
    assert!(matches!(err, RequestResetError::UnknownCustomer));
}

#[tokio::test]
async fn a_customer_with_too_many_failures_cannot_complete_and_failures_are_counted() {
    let mut m = Mocks::new()
        .with_reset(reset())
        .expect_failure("throttled", false);
    m.resets.expect_complete().never();
    let mut store = MockRateLimitStore::new();
    store.expect_peek().returning(|_, _| Ok(vec![100]));
    let err = limited(m, store)
        .complete(
            &caller(),
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::RateLimited(_)), "{err:?}");

    let m = Mocks::new()
        .with_reset(reset())
        .expect_failure("wrong", true);
    let mut store = MockRateLimitStore::new();
    store.expect_peek().returning(|_, _| Ok(vec![3]));
    store
        .expect_hit()
        .withf(|b, _| b[0].key == format!("complete:failures:{}", customer().id))
        .times(1)
        .returning(|_, _| Ok(vec![4]));
    let err = limited(m, store)
        .complete(
            &caller(),
            reset().id,
            completion(Some(OTHER_TOKEN), "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CompleteResetError::InvalidToken(TokenRejection::Wrong)
    ));
}

// ---- links opened in a browser ----

/// Mocks whose store holds `r` in its own mode only, and writes nothing unless told.
fn stored_in_its_mode(r: PasswordReset) -> Mocks {
    let mut m = Mocks::new();
    m.resets
        .expect_find()
        .returning(move |mode, id| Ok((mode == r.mode && id == r.id).then(|| r.clone())));
    m
}

#[tokio::test]
async fn checking_a_link_with_its_token_finds_the_reset_in_any_mode_and_writes_nothing() {
    for mode in [Mode::Test, Mode::Live] {
        let mut r = reset();
        r.mode = mode;
        let mut m = stored_in_its_mode(r);
        m.resets.expect_record_failure().never();
        m.resets.expect_complete().never();
        m.hasher.expect_hash().never();
        let mut store = MockRateLimitStore::new();
        store.expect_peek().returning(|_, _| Ok(vec![0]));
        store.expect_hit().never();
        let found = limited(m, store)
            .check_link(None, reset().id, Some(TOKEN))
            .await
            .unwrap();
        assert_eq!(found.mode, mode);
        assert_eq!(found.customer_email.as_str(), "jane@example.com");
    }
}

#[tokio::test]
async fn checking_a_link_with_a_bad_token_counts_a_failure_like_a_completion() {
    let ip: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    for (token, reason) in [
        (Some("not-a-token"), "malformed"),
        (Some(OTHER_TOKEN), "wrong"),
    ] {
        let mut m = stored_in_its_mode(reset());
        m.resets
            .expect_record_failure()
            .withf(move |mode, _, count, e| {
                *mode == Mode::Test
                    && *count
                    && e.kind == EventKind::CompletionFailed
                    && e.reason.as_deref() == Some(reason)
                    && e.client_ip == Some(ip)
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let mut store = MockRateLimitStore::new();
        store.expect_peek().returning(|_, _| Ok(vec![0]));
        store
            .expect_hit()
            .withf(|b, _| b[0].key == format!("complete:failures:{}", customer().id))
            .times(1)
            .returning(|_, _| Ok(vec![1]));
        let err = limited(m, store)
            .check_link(Some(ip), reset().id, token)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CompleteResetError::InvalidToken(r) if r.as_str() == reason),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_link_used_without_its_token_is_recorded_but_never_counted() {
    // Knowing a reset's id is not a guess: a link scanner without cookies, or anyone with
    // the id, must not use up the reset or the customer's failure limit.
    for complete in [false, true] {
        let mut m = stored_in_its_mode(reset());
        m.resets
            .expect_record_failure()
            .withf(|_, _, count, e| {
                !*count
                    && e.kind == EventKind::CompletionFailed
                    && e.reason.as_deref() == Some("missing")
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        m.resets.expect_complete().never();
        m.hasher.expect_hash().never();
        let mut store = MockRateLimitStore::new();
        store.expect_peek().returning(|_, _| Ok(vec![0]));
        store.expect_hit().never();
        let service = limited(m, store);
        let err = if complete {
            service
                .complete_link(None, reset().id, completion(None, "a fine new password"))
                .await
        } else {
            service.check_link(None, reset().id, None).await
        }
        .unwrap_err();
        assert!(
            matches!(
                err,
                CompleteResetError::InvalidToken(TokenRejection::Missing)
            ),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn checking_a_used_revoked_or_unknown_link_fails_as_a_completion_would() {
    let mut used = reset();
    used.reset_password_at = Some(t0());
    let m = stored_in_its_mode(used).expect_failure("used", false);
    let err = m
        .resets()
        .check_link(None, reset().id, Some(TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CompleteResetError::InvalidToken(TokenRejection::Used)
    ));

    let mut exhausted = reset();
    exhausted.failed_attempts = 5;
    let m = stored_in_its_mode(exhausted).expect_failure("exhausted", false);
    let err = m
        .resets()
        .check_link(None, reset().id, Some(TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CompleteResetError::InvalidToken(TokenRejection::Exhausted)
    ));

    let mut m = Mocks::new();
    m.resets.expect_find().times(2).returning(|_, _| Ok(None));
    m.resets.expect_record_failure().never();
    let err = m
        .resets()
        .check_link(None, reset().id, Some(TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::NotFound));

    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Err(boom()));
    let err = m
        .resets()
        .check_link(None, reset().id, Some(TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::Unexpected(_)));
}

#[tokio::test]
async fn checking_a_link_of_a_throttled_customer_leaves_a_trace_and_is_refused() {
    let m = stored_in_its_mode(reset()).expect_failure("throttled", false);
    let mut store = MockRateLimitStore::new();
    store.expect_peek().returning(|_, _| Ok(vec![100]));
    store.expect_hit().never();
    let err = limited(m, store)
        .check_link(None, reset().id, Some(TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::RateLimited(_)), "{err:?}");
}

#[tokio::test]
async fn completing_a_link_completes_in_the_mode_of_its_reset() {
    let mut r = reset();
    r.mode = Mode::Live;
    // Read once (live is looked in first): the completion reuses what the link's lookup read.
    let mut m = Mocks::new();
    m.resets
        .expect_find()
        .withf(|mode, _| *mode == Mode::Live)
        .times(1)
        .returning(move |_, _| Ok(Some(r.clone())));
    m.hasher
        .expect_hash()
        .times(1)
        .returning(|_| Ok(PasswordHash::new("$argon2id$hash")));
    m.resets
        .expect_complete()
        .withf(|c| c.mode == Mode::Live && c.token_digest == digest_of(TOKEN))
        .times(1)
        .returning(|_| {
            let mut r = reset();
            r.mode = Mode::Live;
            r.reset_password_at = Some(t0());
            Ok(CompletionOutcome::Completed(Box::new(r)))
        });
    let done = m
        .resets()
        .complete_link(
            None,
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap();
    assert_eq!(done.reset_password_at, Some(t0()));

    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Ok(None));
    m.resets.expect_complete().never();
    let err = m
        .resets()
        .complete_link(
            None,
            reset().id,
            completion(Some(TOKEN), "a fine new password"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CompleteResetError::NotFound));
}

// ---- self-service ----

fn self_service(m: Mocks, outbox: MockOutboxStore) -> SelfService {
    ResetService::new(m.ports(), TokenPolicy::default(), PasswordPolicy::default())
        .with_notifications(plan())
        .self_service(Arc::new(outbox))
        .expect("self-service with mail")
}

#[tokio::test]
async fn a_self_service_request_only_queues_work_whoever_the_address_belongs_to() {
    let mut m = Mocks::new();
    m.customers.expect_find_by_email().never();
    m.resets.expect_create().never();
    m.resets.expect_create_for_email().never();
    let mut outbox = MockOutboxStore::new();
    outbox
        .expect_enqueue()
        .withf(|msgs| {
            matches!(msgs, [OutboxMessage { payload: Payload::Job(Job::SelfServiceReset { email, .. }), .. }]
                if email.normalized() == "nobody@example.com")
        })
        .times(1)
        .returning(|_| Ok(()));
    self_service(m, outbox)
        .request(
            &caller(),
            EmailAddress::parse("Nobody@example.com").unwrap(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn fulfilling_creates_a_reset_with_its_mail_only_for_a_customer() {
    let mut m = Mocks::new();
    m.resets
        .expect_create_for_email()
        .withf(|r| {
            r.draft.reference_origin.as_ref().map(Reference::as_str) == Some("self_service")
                && r.composer.plan().mail
        })
        .times(2)
        .returning(|r| {
            Ok((r.email.normalized() == "jane@example.com")
                .then(|| r.for_customer(customer().id, customer().email).0))
        });
    let service = self_service(m, MockOutboxStore::new());
    let known = service
        .fulfil(
            Mode::Test,
            &EmailAddress::parse("jane@example.com").unwrap(),
            None,
        )
        .await
        .unwrap();
    assert!(known.is_some());
    let unknown = service
        .fulfil(
            Mode::Test,
            &EmailAddress::parse("ghost@example.com").unwrap(),
            None,
        )
        .await
        .unwrap();
    assert!(unknown.is_none());
}

#[test]
fn self_service_exists_only_when_the_service_mails_resets() {
    let without_mail = ResetService::new(
        Mocks::new().ports(),
        TokenPolicy::default(),
        PasswordPolicy::default(),
    );
    assert!(
        without_mail
            .self_service(Arc::new(MockOutboxStore::new()))
            .is_none()
    );
    let webhooks_only = ResetService::new(
        Mocks::new().ports(),
        TokenPolicy::default(),
        PasswordPolicy::default(),
    )
    .with_notifications(NotificationPlan::new(false, true));
    assert!(
        webhooks_only
            .self_service(Arc::new(MockOutboxStore::new()))
            .is_none()
    );
    let with_mail = ResetService::new(
        Mocks::new().ports(),
        TokenPolicy::default(),
        PasswordPolicy::default(),
    )
    .with_notifications(NotificationPlan::new(true, false));
    assert!(
        with_mail
            .self_service(Arc::new(MockOutboxStore::new()))
            .is_some()
    );
}

#[tokio::test]
async fn the_worker_runs_self_service_jobs_with_the_service_it_was_built_with() {
    let job = OutboxMessage::job(
        Job::SelfServiceReset {
            reset_id: ResetId::new_at(t0()),
            mode: Mode::Test,
            email: EmailAddress::parse("jane@example.com").unwrap(),
            client_ip: None,
        },
        t0(),
    );
    let claimed = job.clone();
    let outbox = || {
        let mut o = MockOutboxStore::new();
        let claimed = claimed.clone();
        o.expect_claim()
            .times(1)
            .returning(move |_, _, _| Ok(vec![claimed.clone()]));
        o
    };
    // With the self-service use case: the job issues a reset and is acknowledged.
    let mut m = Mocks::new();
    m.resets
        .expect_create_for_email()
        .times(1)
        .returning(|r| Ok(Some(r.for_customer(customer().id, customer().email).0)));
    let mut with = outbox();
    let id = job.id;
    with.expect_delivered()
        .withf(move |i, _| *i == id)
        .times(1)
        .returning(|_, _| Ok(()));
    let mut notifier = MockNotifier::new();
    notifier.expect_deliver().never();
    let worker = DeliveryService::new(
        Arc::new(with),
        Arc::new(notifier),
        Arc::new(clock_at(t0())),
        RetryPolicy::default(),
        TimeDelta::minutes(2),
        16,
    )
    .with_self_service(self_service(m, MockOutboxStore::new()));
    let report = worker.run_once().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (1, 0));

    // Without it (self-service switched off after requests were queued): retried, not lost.
    let mut without = outbox();
    without
        .expect_failed()
        .withf(|_, error, retry_at, _| error.contains("switched off") && retry_at.is_some())
        .times(1)
        .returning(|_, _, _, _| Ok(()));
    let mut notifier = MockNotifier::new();
    notifier.expect_deliver().never();
    let worker = DeliveryService::new(
        Arc::new(without),
        Arc::new(notifier),
        Arc::new(clock_at(t0())),
        RetryPolicy::default(),
        TimeDelta::minutes(2),
        16,
    );
    let report = worker.run_once().await.unwrap();
    assert_eq!((report.delivered, report.retrying), (0, 1));
}
