//! The `pwreset` binary: `serve` (default), `migrate`, `token`, `client create|list|revoke`.

use std::process::ExitCode;

use clap::Parser;
use pwreset_app::config::{Cli, Command};
use pwreset_app::{Application, commands, open_store, telemetry};

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
    if std::env::var_os("PWRESET_JWT_SECRET").is_some() {
        // Left over from a release before sign-in: say so rather than ignore it silently.
        tracing::warn!(
            "PWRESET_JWT_SECRET is no longer used and is ignored: access tokens are RS512 JWTs \
             signed with PWRESET_SIGNING_KEYS (see docs/operations.md); remove it"
        );
    }
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
            println!("{}", commands::token(&settings, &args).await?);
            Ok(())
        }
        Command::Client(command) => {
            println!("{}", commands::client(&settings, command).await?);
            Ok(())
        }
    }
}
