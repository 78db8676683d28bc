//! Another service embedding pwreset's core: it brings its own adapters (here the
//! in-memory store, argon2id hashing and HMAC token digests from the workspace), builds the
//! use cases, issues a reset for a customer and completes it with the token, then shows that
//! the token cannot be used twice.
//!
//! Run it with `cargo run -p pwreset-domain --example embedded_reset`.

use std::sync::Arc;

use pwreset_adapter_crypto::{Argon2Hasher, HmacDigester};
use pwreset_adapter_memory::MemoryStore;
use pwreset_domain::ports::SystemClock;
use pwreset_domain::service::{
    CompleteReset, CompleteResetError, CustomerService, NewCustomer, NewReset, Ports, ResetService,
};
use pwreset_domain::{
    Caller, EmailAddress, Mode, Password, PasswordPolicy, ResetState, TokenPolicy,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The adapters: one store serves every storage port.
    let store = Arc::new(MemoryStore::new());
    let ports = Ports::new(
        store.clone(),
        store,
        Arc::new(Argon2Hasher::owasp_minimum()),
        // In a real service the key comes from a secret store; 32 random bytes at least.
        Arc::new(HmacDigester::new(vec![
            b"an example key of 32 bytes or more".to_vec(),
        ])?),
        Arc::new(SystemClock),
    );
    let resets = ResetService::new(
        ports.clone(),
        TokenPolicy::default(),
        PasswordPolicy::default(),
    );
    let customers = CustomerService::new(ports, PasswordPolicy::default());

    // A customer of the calling service, in test mode.
    let caller = Caller::new(Mode::Test);
    let email = EmailAddress::parse("Jane@Example.com")?;
    let jane = customers
        .create(
            &caller,
            NewCustomer {
                email: email.clone(),
                password: Some(Password::new("correct horse battery staple")),
                reference: None,
                reference_origin: None,
                metadata: None,
            },
        )
        .await?;
    println!("customer {} ({})", jane.id, jane.email.masked());

    // The reset: the raw token exists only in this value; the store keeps its digest.
    let issued = resets.request(&caller, NewReset::for_email(email)).await?;
    println!(
        "reset {} issued, expires at {}",
        issued.reset.id, issued.reset.expires_at
    );

    // The customer follows the link and chooses a new password.
    let attempt = CompleteReset::new(
        Some(issued.token.expose_secret().to_owned()),
        Password::new("a brand new passphrase"),
    );
    let done = resets
        .complete(&caller, issued.reset.id, attempt.clone())
        .await?;
    assert_eq!(
        done.state(done.updated_at, resets.token_policy()),
        ResetState::Used
    );
    println!("reset completed at {:?}", done.reset_password_at);

    // The same token again: refused, with the one answer every bad token gets.
    match resets.complete(&caller, issued.reset.id, attempt).await {
        Err(CompleteResetError::InvalidToken(reason)) => {
            println!(
                "second use refused (reason for the logs: {})",
                reason.as_str()
            );
        }
        other => return Err(format!("a used token was accepted: {other:?}").into()),
    }
    for event in resets.events(&caller, issued.reset.id).await? {
        println!("event: {} at {}", event.kind.as_str(), event.created_at);
    }
    Ok(())
}
