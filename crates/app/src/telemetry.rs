//! Logging: `tracing` to stderr (stdout stays clean for `pwreset token`), as text for
//! people or JSON for pipelines. Secrets never reach a log line, at any level: tokens and
//! passwords are redacting types, emails are logged masked, query strings and bodies are
//! never logged, the development mailer names the file it wrote, not the link, and the
//! configuration's `Debug` shows whether a secret is set, not its value.
//!
//! sqlx logs every statement at DEBUG (and slow ones at WARN) and is left that way on
//! purpose: it logs the SQL text and row counts, never the bound values (sqlx-core's
//! `QueryLogger` holds only the statement), and every value pwreset sends is bound, so a
//! statement holds no token, digest, hash or address. Only `tracing` events are logged;
//! crates that use the `log` facade are not bridged. The black-box suite runs at TRACE and
//! fails if any token, password or key it used shows up (`delivery.rs`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber.
///
/// # Errors
/// When the filter does not parse (message names `PWRESET_LOG`) or a subscriber is
/// already installed.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("PWRESET_LOG is not a valid filter ({filter}): {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
