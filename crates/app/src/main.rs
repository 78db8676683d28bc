//! The `pwreset` binary: `serve` (default), `migrate`, `token`, `client create|list|revoke`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pwreset_app::config::{Cli, ClientCommand, Command, Kind, ModeArg};
use pwreset_app::{Application, Services, Settings, open_store, services, telemetry};
use pwreset_domain::service::NotificationPlan;
use pwreset_domain::{Client, ClientId, ClientKind, ClientName, Mode};
use serde_json::json;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(cli.settings.log_format, &cli.settings.log) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "pwreset stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(&settings).await?;
            tracing::info!(
                addr = %app.addr(),
                public_url = %settings.public_base(app.addr()),
                "pwreset is serving; stop with Ctrl-C"
            );
            app.run_until_stopped().await?;
            tracing::info!("pwreset stopped gracefully");
            Ok(())
        }
        Command::Migrate => {
            open_store(&settings).await?;
            tracing::info!("migrations are up to date");
            Ok(())
        }
        Command::Token(args) => {
            let services = offline_services(&settings).await?;
            let token = services
                .sessions
                .operator_token(kind(args.kind), mode(args.mode), args.ttl)
                .context("signing the token")?;
            println!("{token}");
            Ok(())
        }
        Command::Client(command) => client(&settings, command).await,
    }
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
async fn offline_services(settings: &Settings) -> anyhow::Result<Services> {
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

async fn client(settings: &Settings, command: ClientCommand) -> anyhow::Result<()> {
    let sessions = offline_services(settings).await?.sessions;
    match command {
        ClientCommand::Create(args) => {
            let name = ClientName::parse(&args.name).context("--name")?;
            let created = sessions
                .create_client(kind(args.kind), mode(args.mode), name)
                .await?;
            let c = &created.client;
            tracing::info!(client = %c.key, kind = c.kind.as_str(), mode = %c.mode, "client created");
            println!(
                "{}",
                json!({
                    "client_id": c.client_id.as_str(),
                    "client_secret": created.secret.expose_secret(),
                    "kind": c.kind.as_str(),
                    "mode": c.mode.as_str(),
                    "name": c.name.as_str(),
                })
            );
            Ok(())
        }
        ClientCommand::List => {
            let all: Vec<serde_json::Value> = sessions
                .list_clients()
                .await?
                .iter()
                .map(client_json)
                .collect();
            println!("{}", serde_json::Value::Array(all));
            Ok(())
        }
        ClientCommand::Revoke(args) => {
            let id = ClientId::parse(&args.client_id).context("CLIENT_ID")?;
            if sessions.revoke_client(&id).await? {
                tracing::info!(client_id = ?id, "client revoked");
                println!("{}", json!({ "client_id": id.as_str(), "revoked": true }));
                Ok(())
            } else {
                anyhow::bail!("no client {id} to revoke (unknown, or revoked already)")
            }
        }
    }
}
