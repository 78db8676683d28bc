//! The `pwreset` binary: `serve` (default), `migrate`, `token`.

use std::process::ExitCode;

use clap::Parser;
use pwreset_adapter_http::{AppKind, JwtKey};
use pwreset_app::config::{Cli, Command, Kind, ModeArg};
use pwreset_app::{Application, open_store, secrets, telemetry};
use pwreset_domain::Mode;

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
            let key = JwtKey::new(secrets::jwt_secret(&settings)?)?;
            let kind = match args.kind {
                Kind::Integration => AppKind::Integration,
                Kind::SalesChannel => AppKind::SalesChannel,
            };
            let mode = match args.mode {
                ModeArg::Test => Mode::Test,
                ModeArg::Live => Mode::Live,
            };
            let now = chrono::Utc::now().timestamp();
            println!(
                "{}",
                key.sign(
                    kind,
                    mode,
                    &settings.organization,
                    now,
                    args.ttl.num_seconds()
                )
            );
            Ok(())
        }
    }
}
