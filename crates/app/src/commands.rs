//! The commands that do not serve: `pwreset token` and `pwreset client ...`, each returning
//! what the binary prints, so tests drive them in-process through the same parser.

use anyhow::Context;
use pwreset_domain::service::NotificationPlan;
use pwreset_domain::{Client, ClientId, ClientKind, ClientName, Mode};
use serde_json::json;

use crate::config::{ClientCommand, Kind, ModeArg, TokenArgs};
use crate::{Services, Settings, open_store, services};

/// Runs `pwreset token`: an RS512 operator token.
///
/// # Errors
/// When the store or the signing keys cannot be used.
pub async fn token(settings: &Settings, args: &TokenArgs) -> anyhow::Result<String> {
    offline_services(settings)
        .await?
        .sessions
        .operator_token(kind(args.kind), mode(args.mode), args.ttl)
        .context("signing the token")
}

fn kind(k: Kind) -> ClientKind {
    match k {
        Kind::Integration => ClientKind::Integration,
        Kind::SalesChannel => ClientKind::SalesChannel,
    }
}

fn mode(m: ModeArg) -> Mode {
    match m {
        ModeArg::Test => Mode::Test,
        ModeArg::Live => Mode::Live,
    }
}

/// The services over the configured database, for a command that serves nothing.
///
/// # Errors
/// When the store cannot be opened or a setting is invalid.
pub async fn offline_services(settings: &Settings) -> anyhow::Result<Services> {
    let store = open_store(settings).await?;
    services(settings, store, NotificationPlan::new(false, false))
}

fn client_json(c: &Client) -> serde_json::Value {
    json!({
        "client_id": c.client_id.as_str(),
        "kind": c.kind.as_str(),
        "mode": c.mode.as_str(),
        "name": c.name.as_str(),
        "created_at": c.created_at.to_rfc3339(),
        "revoked_at": c.revoked_at.map(|t| t.to_rfc3339()),
    })
}

/// Runs `pwreset client ...`: the text to print (one JSON value).
///
/// # Errors
/// When the store cannot be opened, a value is invalid, or the client to revoke is not
/// there (unknown or revoked already).
pub async fn client(settings: &Settings, command: ClientCommand) -> anyhow::Result<String> {
    let sessions = offline_services(settings).await?.sessions;
    match command {
        ClientCommand::Create(args) => {
            let name = ClientName::parse(&args.name).context("--name")?;
            let created = sessions
                .create_client(kind(args.kind), mode(args.mode), name)
                .await?;
            let c = &created.client;
            tracing::info!(client = %c.key, kind = c.kind.as_str(), mode = %c.mode, "client created");
            Ok(json!({
                "client_id": c.client_id.as_str(),
                "client_secret": created.secret.expose_secret(),
                "kind": c.kind.as_str(),
                "mode": c.mode.as_str(),
                "name": c.name.as_str(),
            })
            .to_string())
        }
        ClientCommand::List => {
            let all: Vec<serde_json::Value> = sessions
                .list_clients()
                .await?
                .iter()
                .map(client_json)
                .collect();
            Ok(serde_json::Value::Array(all).to_string())
        }
        ClientCommand::Revoke(args) => {
            let id = ClientId::parse(&args.client_id).context("CLIENT_ID")?;
            if sessions.revoke_client(&id).await? {
                tracing::info!(client_id = ?id, "client revoked");
                Ok(json!({ "client_id": id.as_str(), "revoked": true }).to_string())
            } else {
                anyhow::bail!("no client {id} to revoke (unknown, or revoked already)")
            }
        }
    }
}
