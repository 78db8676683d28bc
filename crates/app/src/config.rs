//! Configuration: command-line flags, each with a `PWRESET_*` environment variable.
//!
//! Every setting has a sensible default, so `pwreset` with nothing configured serves on
//! 127.0.0.1:8080 from an SQLite file under `./pwreset-data`, with secrets generated on
//! first start and reused after. An invalid value stops start-up with a message naming
//! the variable.

use std::net::IpAddr;
use std::path::PathBuf;

use chrono::TimeDelta;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// pwreset: a Commerce Layer compatible customer password reset service.
#[derive(Debug, Parser)]
#[command(
    name = "pwreset",
    version,
    about = "pwreset: a Commerce Layer compatible customer password reset service.\n\nEvery flag can also be set with the environment variable shown next to it.",
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a signed RS512 API access token (an operator token: no client, no session).
    Token(TokenArgs),
    /// Manage API clients (Commerce Layer "applications"): create, list, revoke.
    #[command(subcommand)]
    Client(ClientCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client; prints one JSON object with its id and secret (shown only now).
    Create(ClientCreateArgs),
    /// List every client as a JSON array, oldest first, revoked ones with revoked_at (no
    /// secrets).
    List,
    /// Revoke a client: its refresh tokens stop at once, its access tokens on every
    /// instance within PWRESET_TOKEN_RECHECK.
    Revoke(ClientRevokeArgs),
}

#[derive(Debug, Args)]
pub struct ClientCreateArgs {
    /// integration (a backend, confidential) or sales_channel (a storefront, public).
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// A name for people, 1 to 100 characters.
    #[arg(long)]
    pub name: String,
    /// Test or live data.
    #[arg(long, value_enum, default_value = "test")]
    pub mode: ModeArg,
}

#[derive(Debug, Args)]
pub struct ClientRevokeArgs {
    /// The client_id to revoke (generated ids may begin with `-`; they are taken as is).
    #[arg(allow_hyphen_values = true)]
    pub client_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Integration,
    #[value(name = "sales_channel", alias = "sales-channel")]
    SalesChannel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Test,
    Live,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The kind of application the token is for.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Test or live data.
    #[arg(long, value_enum, default_value = "test")]
    pub mode: ModeArg,
    /// How long the token is valid, e.g. 90m, 2h, 1d.
    #[arg(long, default_value = "2h", value_parser = parse_ttl)]
    pub ttl: TimeDelta,
}

/// The mode of the resets the forgot-password page requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PagesMode {
    Live,
    Test,
}

impl PagesMode {
    #[must_use]
    pub fn mode(self) -> pwreset_domain::Mode {
        match self {
            PagesMode::Live => pwreset_domain::Mode::Live,
            PagesMode::Test => pwreset_domain::Mode::Test,
        }
    }
}

/// How reset tokens reach the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Delivery {
    /// Commerce Layer behaviour: the create response carries the token; the merchant mails it.
    Token,
    /// pwreset mails the link itself; the token never leaves in a response.
    Mail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings shared by every command. `Debug` shows whether each secret is set, never its
/// value (see the impl below).
#[derive(Clone, Args)]
pub struct Settings {
    /// Where state lives when nothing else is configured: the SQLite database and the
    /// generated secrets.
    #[arg(
        long,
        env = "PWRESET_DATA_DIR",
        default_value = "./pwreset-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Database URL: postgres://user:pass@host/db or sqlite://path. Default: an SQLite file
    /// in the data dir.
    #[arg(
        long,
        env = "PWRESET_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,

    /// Set when PWRESET_DATABASE_URL leads to a transaction pooler (PgBouncer with
    /// pool_mode = transaction) rather than to Postgres: every statement then runs in a
    /// transaction of its own and no statement is kept prepared across them. Needs
    /// PWRESET_DATABASE_MIGRATION_URL.
    #[arg(long, env = "PWRESET_DB_TRANSACTION_POOLER", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub db_transaction_pooler: bool,

    /// Where migrations run, when not over PWRESET_DATABASE_URL: Postgres itself, for
    /// instances that reach it through a transaction pooler. Default: the database URL.
    #[arg(
        long,
        env = "PWRESET_DATABASE_MIGRATION_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_migration_url: Option<String>,

    /// Address to listen on.
    #[arg(
        long,
        env = "PWRESET_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: String,

    /// Serve `GET /metrics` (Prometheus) on this address instead of on PWRESET_BIND, e.g.
    /// to keep it off the public listener. Default: on the API's listener.
    #[arg(long, env = "PWRESET_METRICS_BIND", global = true)]
    pub metrics_bind: Option<String>,

    /// Base URL used in links (`links.self`, mail links); never taken from Host headers.
    /// Default: http:// and the bind address.
    #[arg(long, env = "PWRESET_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// The `iss` of access tokens, e.g. `https://auth.example.com` (clients using
    /// @commercelayer/js-auth need `https://auth.<domain>` routed here). Default: the
    /// public URL, else `http://` and PWRESET_BIND as given.
    #[arg(long, env = "PWRESET_ISSUER", global = true)]
    pub issuer: Option<String>,

    /// RSA private keys (PEM, PKCS#8 or PKCS#1, at least 2048 bits, one or more blocks)
    /// that sign access tokens: the first signs, all verify, so keys can rotate. Default: a
    /// key generated into the data dir on first start (signing-key.pem).
    #[arg(
        long,
        env = "PWRESET_SIGNING_KEYS",
        hide_env_values = true,
        global = true
    )]
    pub signing_keys: Option<String>,

    /// Access token lifetime (`expires_in`), from 1m to 24h.
    #[arg(long, env = "PWRESET_ACCESS_TOKEN_TTL", default_value = "2h", value_parser = parse_access_ttl, global = true)]
    pub access_token_ttl: TimeDelta,

    /// Refresh token lifetime, from each use, from 1h to 90d (e.g. 2w, 14d).
    #[arg(long, env = "PWRESET_REFRESH_TOKEN_TTL", default_value = "2w", value_parser = parse_refresh_ttl, global = true)]
    pub refresh_token_ttl: TimeDelta,

    /// How long an instance trusts that a client token's session is live before reading
    /// it again (at most 5s): a revoked client or token is refused everywhere within this.
    /// Customer tokens are checked on every request.
    #[arg(long, env = "PWRESET_TOKEN_RECHECK", default_value = "1s", value_parser = parse_recheck, global = true)]
    pub token_recheck: TimeDelta,

    /// Comma-separated base64url keys (at least 32 bytes each) for reset token digests.
    /// The first signs new tokens; all are accepted, so keys can rotate. Default: a key
    /// generated into the data dir on first start.
    #[arg(
        long,
        env = "PWRESET_TOKEN_DIGEST_KEYS",
        hide_env_values = true,
        global = true
    )]
    pub token_digest_keys: Option<String>,

    /// Reset token lifetime, from 5m to 24h.
    #[arg(long, env = "PWRESET_TOKEN_LIFETIME", default_value = "1h", value_parser = parse_lifetime, global = true)]
    pub token_lifetime: TimeDelta,

    /// Minimum new-password length in code points (at least 8).
    #[arg(long, env = "PWRESET_PASSWORD_MIN_LENGTH", default_value_t = 8, value_parser = parse_min_length, global = true)]
    pub password_min_length: usize,

    /// Log format: text for people, json for log pipelines.
    #[arg(
        long,
        env = "PWRESET_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. info or pwreset=debug,info.
    #[arg(long, env = "PWRESET_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Largest number of database connections.
    #[arg(
        long,
        env = "PWRESET_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,

    /// How long sending one mail may take (connecting and the whole SMTP exchange) before
    /// the delivery attempt fails and is retried later (1s to 60s).
    #[arg(long, env = "PWRESET_SMTP_TIMEOUT", default_value = "10s", value_parser = parse_smtp_timeout, global = true)]
    pub smtp_timeout: TimeDelta,

    /// How long a webhook receiver may take to connect and answer before the attempt
    /// fails and is retried later (1s to 60s).
    #[arg(long, env = "PWRESET_WEBHOOK_TIMEOUT", default_value = "5s", value_parser = parse_webhook_timeout, global = true)]
    pub webhook_timeout: TimeDelta,

    /// How long a request waits for a database connection before it is answered 503
    /// (100ms to 30s).
    #[arg(long, env = "PWRESET_DB_ACQUIRE_TIMEOUT", default_value = "2s", value_parser = parse_acquire_timeout, global = true)]
    pub db_acquire_timeout: TimeDelta,

    /// How long one database statement may run before it is cancelled and the request is
    /// answered 503 (Postgres's statement_timeout; on SQLite, the wait for another
    /// process's lock), 100ms to 60s. Migrations have no deadline.
    #[arg(long, env = "PWRESET_DB_STATEMENT_TIMEOUT", default_value = "2s", value_parser = parse_statement_timeout, global = true)]
    pub db_statement_timeout: TimeDelta,

    /// HTTP worker threads. Default: one per core.
    #[arg(long, env = "PWRESET_WORKERS", global = true)]
    pub workers: Option<usize>,

    /// Password hashes computed at once. Default: one per core.
    #[arg(
        long,
        env = "PWRESET_HASH_CONCURRENCY",
        default_value_t = 0,
        global = true
    )]
    pub hash_concurrency: usize,

    /// Proxies (comma-separated IPs) whose X-Forwarded-For is believed.
    #[arg(
        long,
        env = "PWRESET_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<IpAddr>,

    /// Organization slug put in every access token (`organization.slug`).
    #[arg(
        long,
        env = "PWRESET_ORGANIZATION",
        default_value = "pwreset",
        global = true
    )]
    pub organization: String,

    /// Request body limit in bytes.
    #[arg(long, env = "PWRESET_BODY_LIMIT", default_value_t = 64 * 1024, global = true)]
    pub body_limit: usize,

    /// token: return the reset token to integration callers (Commerce Layer behaviour);
    /// mail: email the reset link and never return the token.
    #[arg(
        long,
        env = "PWRESET_DELIVERY",
        value_enum,
        default_value = "token",
        global = true
    )]
    pub delivery: Delivery,

    /// SMTP server, e.g. smtp://user:pass@host:587?tls=starttls (tls=implicit|starttls|none).
    /// Without it, mail goes to the development mailer (files in the data dir's mail/, each
    /// named in the log; the link is only in the file).
    #[arg(long, env = "PWRESET_SMTP_URL", hide_env_values = true, global = true)]
    pub smtp_url: Option<String>,

    /// Sender of every mail.
    #[arg(
        long,
        env = "PWRESET_MAIL_FROM",
        default_value = "pwreset <no-reply@localhost>",
        global = true
    )]
    pub mail_from: String,

    /// The reset link in mails; {id} and {token} are filled in. Default:
    /// PUBLIC_URL/reset-password?id={id}&token={token}.
    #[arg(long, env = "PWRESET_RESET_LINK", global = true)]
    pub reset_link: Option<String>,

    /// A directory with reset.txt, reset.html, changed.txt, changed.html overriding the
    /// built-in mail templates (any subset).
    #[arg(long, env = "PWRESET_MAIL_TEMPLATES", global = true)]
    pub mail_templates: Option<PathBuf>,

    /// In token mode without an SMTP server, also write a preview of each reset mail to the
    /// development mailer (a file in the data dir, named in the log), so the link can be tried
    /// locally.
    #[arg(long, env = "PWRESET_MAIL_PREVIEW", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub mail_preview: bool,

    /// Let sales channel (storefront) credentials request resets. Needs
    /// PWRESET_DELIVERY=mail. Every such request gets the same 202 whether or not the
    /// address belongs to a customer; the reset and its mail are made in the background.
    #[arg(long, env = "PWRESET_SELF_SERVICE", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub self_service: bool,

    /// Serve the customer pages: /forgot-password (with PWRESET_SELF_SERVICE=true),
    /// /reset-password (the mailed link) and /reset-password/done.
    #[arg(long, env = "PWRESET_PAGES", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub pages: bool,

    /// The mode the forgot-password page requests resets in (pages have no credentials).
    /// The reset page finds a reset in either mode.
    #[arg(
        long,
        env = "PWRESET_PAGES_MODE",
        value_enum,
        default_value = "live",
        global = true
    )]
    pub pages_mode: PagesMode,

    /// Where the "Password changed" page's sign-in button leads; no button without it.
    #[arg(long, env = "PWRESET_SIGNIN_URL", global = true)]
    pub signin_url: Option<String>,

    /// A directory whose files override the pages' built-in templates (`<name>.html`),
    /// texts (`<lang>.json`, a new file adds a language) and style sheet (`pages.css`).
    #[arg(long, env = "PWRESET_PAGE_TEMPLATES", global = true)]
    pub page_templates: Option<PathBuf>,

    /// Endpoint for Commerce Layer style webhooks (create, reset_password, destroy).
    #[arg(long, env = "PWRESET_WEBHOOK_URL", global = true)]
    pub webhook_url: Option<String>,

    /// Shared secret signing webhooks (X-CommerceLayer-Signature). Required with a URL.
    #[arg(
        long,
        env = "PWRESET_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub webhook_secret: Option<String>,

    /// How long used, revoked and expired resets (and their events) are kept.
    #[arg(long, env = "PWRESET_RETENTION", default_value = "7d", value_parser = parse_retention, global = true)]
    pub retention: TimeDelta,

    /// How often an idle outbox worker looks for due messages, in milliseconds.
    #[arg(
        long,
        env = "PWRESET_OUTBOX_POLL_MS",
        default_value_t = 500,
        global = true
    )]
    pub outbox_poll_ms: u64,

    /// How long a worker holds the outbox messages it claimed (10s to 1h). When an
    /// instance dies mid-delivery, its messages go out from another instance this long
    /// after the claim. Keep it well above PWRESET_SMTP_TIMEOUT and PWRESET_WEBHOOK_TIMEOUT,
    /// or a slow delivery can be claimed again while it is still running.
    #[arg(long, env = "PWRESET_OUTBOX_LEASE", default_value = "2m", value_parser = parse_outbox_lease, global = true)]
    pub outbox_lease: TimeDelta,

    /// Reset requests per target address, e.g. `3/15m,10/24h` (`off` to disable). Unknown
    /// addresses are counted exactly like known ones.
    #[arg(long, env = "PWRESET_LIMIT_EMAIL", default_value_t = LimitList::defaults().per_email, value_parser = parse_limits, global = true)]
    pub limit_email: LimitList,

    /// Reset requests per API credential (`off` to disable).
    #[arg(long, env = "PWRESET_LIMIT_CREDENTIAL", default_value_t = LimitList::defaults().per_credential, value_parser = parse_limits, global = true)]
    pub limit_credential: LimitList,

    /// Reset requests per client address (`off` to disable).
    #[arg(long, env = "PWRESET_LIMIT_CLIENT", default_value_t = LimitList::defaults().per_client, value_parser = parse_limits, global = true)]
    pub limit_client: LimitList,

    /// Failed completions per customer across all their resets (`off` to disable). Each
    /// reset also dies after 5 failed completions, whatever this says.
    #[arg(long, env = "PWRESET_LIMIT_CUSTOMER_FAILURES", default_value_t = LimitList::defaults().failures_per_customer, value_parser = parse_limits, global = true)]
    pub limit_customer_failures: LimitList,

    /// Sign-in attempts (password grants) per email address, counted before the password
    /// is checked (so concurrent guesses cannot overtake the count), unknown addresses counted
    /// alike (`off` to disable). While over it, even the right password gets 429.
    #[arg(long, env = "PWRESET_LIMIT_SIGNIN_EMAIL", default_value_t = LimitList::defaults().signin_attempts_per_email, value_parser = parse_limits, global = true)]
    pub limit_signin_email: LimitList,

    /// Token requests (/oauth/token, every grant) per client address (`off` to disable).
    #[arg(long, env = "PWRESET_LIMIT_SIGNIN_CLIENT", default_value_t = LimitList::defaults().token_requests_per_client, value_parser = parse_limits, global = true)]
    pub limit_signin_client: LimitList,

    /// Delay before the first retry of a failed delivery, in milliseconds; it doubles per
    /// attempt (with jitter) up to an hour, for 10 attempts.
    #[arg(
        long,
        env = "PWRESET_RETRY_BASE_MS",
        default_value_t = 5000,
        global = true
    )]
    pub retry_base_ms: u64,
}

/// Every field, with the ones that can hold a credential (a password in a URL, a key, a
/// secret, a webhook URL's token) shown only as set or unset: settings may end up in a log
/// line or an error message, and logs go to third parties.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn redacted(value: Option<&String>) -> &'static str {
            if value.is_some() {
                "<set, redacted>"
            } else {
                "<unset>"
            }
        }
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database_url", &redacted(self.database_url.as_ref()))
            .field("db_transaction_pooler", &self.db_transaction_pooler)
            .field(
                "database_migration_url",
                &redacted(self.database_migration_url.as_ref()),
            )
            .field("bind", &self.bind)
            .field("metrics_bind", &self.metrics_bind)
            .field("public_url", &self.public_url)
            .field("issuer", &self.issuer)
            .field("signing_keys", &redacted(self.signing_keys.as_ref()))
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("token_recheck", &self.token_recheck)
            .field(
                "token_digest_keys",
                &redacted(self.token_digest_keys.as_ref()),
            )
            .field("token_lifetime", &self.token_lifetime)
            .field("password_min_length", &self.password_min_length)
            .field("log_format", &self.log_format)
            .field("log", &self.log)
            .field("db_max_connections", &self.db_max_connections)
            .field("db_acquire_timeout", &self.db_acquire_timeout)
            .field("db_statement_timeout", &self.db_statement_timeout)
            .field("smtp_timeout", &self.smtp_timeout)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("workers", &self.workers)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("organization", &self.organization)
            .field("body_limit", &self.body_limit)
            .field("delivery", &self.delivery)
            .field("smtp_url", &redacted(self.smtp_url.as_ref()))
            .field("mail_from", &self.mail_from)
            .field("reset_link", &self.reset_link)
            .field("mail_templates", &self.mail_templates)
            .field("mail_preview", &self.mail_preview)
            .field("self_service", &self.self_service)
            .field("pages", &self.pages)
            .field("pages_mode", &self.pages_mode)
            .field("signin_url", &self.signin_url)
            .field("page_templates", &self.page_templates)
            .field("webhook_url", &redacted(self.webhook_url.as_ref()))
            .field("webhook_secret", &redacted(self.webhook_secret.as_ref()))
            .field("retention", &self.retention)
            .field("outbox_poll_ms", &self.outbox_poll_ms)
            .field("outbox_lease", &self.outbox_lease)
            .field("limit_email", &self.limit_email)
            .field("limit_credential", &self.limit_credential)
            .field("limit_client", &self.limit_client)
            .field("limit_customer_failures", &self.limit_customer_failures)
            .field("limit_signin_email", &self.limit_signin_email)
            .field("limit_signin_client", &self.limit_signin_client)
            .field("retry_base_ms", &self.retry_base_ms)
            .finish()
    }
}

/// Parses `250ms`, `300s`, `90m`, `2h`, `1d`, `2w` (or plain seconds).
///
/// # Errors
/// When the text is not a number with one of those units.
pub fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90m, 2h or 3600s"))?;
    if unit == "ms" {
        return Ok(TimeDelta::milliseconds(n));
    }
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        "w" => n.saturating_mul(7 * 86_400),
        _ => return Err(format!("`{s}` has an unknown unit (use s, m, h, d or w)")),
    };
    TimeDelta::try_seconds(secs).ok_or_else(|| format!("`{s}` is too long"))
}

fn parse_lifetime(s: &str) -> Result<TimeDelta, String> {
    let d = parse_duration(s).map_err(|e| format!("PWRESET_TOKEN_LIFETIME: {e}"))?;
    pwreset_domain::TokenPolicy::new(d)
        .map(|p| p.lifetime())
        .map_err(|_| format!("PWRESET_TOKEN_LIFETIME must be between 5m and 24h, got {s}"))
}

fn bounded(
    name: &str,
    s: &str,
    min: TimeDelta,
    max: TimeDelta,
    range: &str,
) -> Result<TimeDelta, String> {
    let d = parse_duration(s).map_err(|e| format!("{name}: {e}"))?;
    if d < min || d > max {
        return Err(format!("{name} must be between {range}, got {s}"));
    }
    Ok(d)
}

fn parse_access_ttl(s: &str) -> Result<TimeDelta, String> {
    bounded(
        "PWRESET_ACCESS_TOKEN_TTL",
        s,
        TimeDelta::minutes(1),
        TimeDelta::hours(24),
        "1m and 24h",
    )
}

fn parse_refresh_ttl(s: &str) -> Result<TimeDelta, String> {
    bounded(
        "PWRESET_REFRESH_TOKEN_TTL",
        s,
        TimeDelta::hours(1),
        TimeDelta::days(90),
        "1h and 90d",
    )
}

fn parse_outbox_lease(s: &str) -> Result<TimeDelta, String> {
    bounded(
        "PWRESET_OUTBOX_LEASE",
        s,
        TimeDelta::seconds(10),
        TimeDelta::hours(1),
        "10s and 1h",
    )
}

fn parse_smtp_timeout(s: &str) -> Result<TimeDelta, String> {
    bounded(
        "PWRESET_SMTP_TIMEOUT",
        s,
        TimeDelta::seconds(1),
        TimeDelta::seconds(60),
        "1s and 60s",
    )
}

fn parse_webhook_timeout(s: &str) -> Result<TimeDelta, String> {
    bounded(
        "PWRESET_WEBHOOK_TIMEOUT",
        s,
        TimeDelta::seconds(1),
        TimeDelta::seconds(60),
        "1s and 60s",
    )
}

fn parse_acquire_timeout(s: &str) -> Result<TimeDelta, String> {
    bounded(
        "PWRESET_DB_ACQUIRE_TIMEOUT",
        s,
        TimeDelta::milliseconds(100),
        TimeDelta::seconds(30),
        "100ms and 30s",
    )
}

fn parse_statement_timeout(s: &str) -> Result<TimeDelta, String> {
    bounded(
        "PWRESET_DB_STATEMENT_TIMEOUT",
        s,
        TimeDelta::milliseconds(100),
        TimeDelta::seconds(60),
        "100ms and 60s",
    )
}

fn parse_recheck(s: &str) -> Result<TimeDelta, String> {
    bounded(
        "PWRESET_TOKEN_RECHECK",
        s,
        TimeDelta::zero(),
        TimeDelta::seconds(5),
        "0s and 5s",
    )
}

/// A list of `max/window` limits (empty when `off`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitList(pub Vec<pwreset_domain::Limit>);

/// The domain's default limits as the settings spell them, so `--help` and the defaults
/// come from one place (`pwreset_domain::RateLimits::default`).
#[derive(Debug)]
pub struct DefaultLimits {
    pub per_email: LimitList,
    pub per_credential: LimitList,
    pub per_client: LimitList,
    pub failures_per_customer: LimitList,
    pub signin_attempts_per_email: LimitList,
    pub token_requests_per_client: LimitList,
}

impl LimitList {
    /// The defaults of every limit setting.
    #[must_use]
    pub fn defaults() -> DefaultLimits {
        let d = pwreset_domain::RateLimits::default();
        DefaultLimits {
            per_email: LimitList(d.per_email),
            per_credential: LimitList(d.per_credential.into_iter().collect()),
            per_client: LimitList(d.per_client.into_iter().collect()),
            failures_per_customer: LimitList(d.failures_per_customer.into_iter().collect()),
            signin_attempts_per_email: LimitList(d.signin_attempts_per_email.into_iter().collect()),
            token_requests_per_client: LimitList(d.token_requests_per_client.into_iter().collect()),
        }
    }
}

/// `3/15m,10/24h` (the largest whole unit of each window), or `off`: what `parse_limits`
/// reads back.
impl std::fmt::Display for LimitList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("off");
        }
        for (i, l) in self.0.iter().enumerate() {
            let secs = l.window.num_seconds();
            let (n, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
                .into_iter()
                .find(|(u, _)| secs % u == 0)
                .map_or((secs, "s"), |(u, name)| (secs / u, name));
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}/{n}{unit}", l.max)?;
        }
        Ok(())
    }
}

fn parse_limits(s: &str) -> Result<LimitList, String> {
    if s.trim() == "off" {
        return Ok(LimitList(Vec::new()));
    }
    s.split(',')
        .map(|part| {
            let (max, window) = part
                .trim()
                .split_once('/')
                .ok_or_else(|| format!("`{part}` is not a limit like 3/15m"))?;
            let max: u32 = max
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the count must be a whole number"))?;
            let window = parse_duration(window)?;
            if max == 0 || window <= TimeDelta::zero() {
                return Err(format!(
                    "`{part}`: use a positive count and window, or `off`"
                ));
            }
            Ok(pwreset_domain::Limit::new(max, window))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(LimitList)
}

impl Settings {
    /// The rate limits these settings describe.
    #[must_use]
    pub fn rate_limits(&self) -> pwreset_domain::RateLimits {
        pwreset_domain::RateLimits {
            per_email: self.limit_email.0.clone(),
            per_credential: self.limit_credential.0.first().copied(),
            per_client: self.limit_client.0.first().copied(),
            failures_per_customer: self.limit_customer_failures.0.first().copied(),
            signin_attempts_per_email: self.limit_signin_email.0.first().copied(),
            token_requests_per_client: self.limit_signin_client.0.first().copied(),
        }
    }

    /// No rate limits at all (benchmarks, tests that hammer one address).
    pub fn disable_rate_limits(&mut self) {
        for l in [
            &mut self.limit_email,
            &mut self.limit_credential,
            &mut self.limit_client,
            &mut self.limit_customer_failures,
            &mut self.limit_signin_email,
            &mut self.limit_signin_client,
        ] {
            l.0.clear();
        }
    }
}

fn parse_retention(s: &str) -> Result<TimeDelta, String> {
    let d = parse_duration(s).map_err(|e| format!("PWRESET_RETENTION: {e}"))?;
    if d < TimeDelta::hours(1) {
        return Err(format!("PWRESET_RETENTION must be at least 1h, got {s}"));
    }
    Ok(d)
}

fn parse_ttl(s: &str) -> Result<TimeDelta, String> {
    let d = parse_duration(s)?;
    if d <= TimeDelta::zero() || d > TimeDelta::days(366) {
        return Err("--ttl must be between 1s and 366d".into());
    }
    Ok(d)
}

fn parse_min_length(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("PWRESET_PASSWORD_MIN_LENGTH must be a number, got {s}"))?;
    pwreset_domain::PasswordPolicy::new(n)
        .map(|_| n)
        .map_err(|_| format!("PWRESET_PASSWORD_MIN_LENGTH must be between 8 and 256, got {s}"))
}

impl Settings {
    /// Settings with every default, for tests and embedding.
    #[must_use]
    pub fn defaults() -> Self {
        Cli::parse_from(["pwreset"]).settings
    }

    /// The database pool's size and deadlines.
    #[must_use]
    pub fn pool(&self) -> pwreset_adapter_sql::PoolSettings {
        let duration = |d: TimeDelta| d.to_std().unwrap_or_default();
        pwreset_adapter_sql::PoolSettings {
            max_connections: self.db_max_connections,
            acquire_timeout: duration(self.db_acquire_timeout),
            statement_timeout: duration(self.db_statement_timeout),
        }
    }

    /// The `iss` of access tokens: `PWRESET_ISSUER`, else the public URL, else `http://`
    /// and the bind address as configured (not the bound one, so `pwreset token` and the
    /// server agree even with port 0).
    #[must_use]
    pub fn issuer(&self) -> String {
        self.issuer
            .clone()
            .or_else(|| self.public_url.clone())
            .unwrap_or_else(|| format!("http://{}", self.bind))
            .trim_end_matches('/')
            .to_owned()
    }

    /// Lifetimes and the recheck interval of sessions.
    #[must_use]
    pub fn session_settings(&self) -> pwreset_domain::service::SessionSettings {
        pwreset_domain::service::SessionSettings {
            access_ttl: self.access_token_ttl,
            refresh_ttl: self.refresh_token_ttl,
            recheck: self.token_recheck,
        }
    }

    /// The base URL for links.
    #[must_use]
    pub fn public_base(&self, bound: std::net::SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_says_which_secrets_are_set_never_their_values() {
        let mut s = Settings::defaults();
        let secrets = [
            "postgres://pwreset:db-pass-1234@db.example/pwreset",
            "-----BEGIN PRIVATE KEY-----\nsigning-key-1234\n-----END PRIVATE KEY-----",
            "ZGlnZXN0LWtleS1kaWdlc3Qta2V5LWRpZ2VzdC1rZXk",
            "smtp://mailer:smtp-pass-1234@mail.example:587",
            "https://hooks.example/T000/B000/hook-token-1234",
            "whsec-webhook-secret-1234",
        ];
        s.database_url = Some(secrets[0].into());
        s.database_migration_url = Some(secrets[0].replace("db.example", "db-direct.example"));
        s.signing_keys = Some(secrets[1].into());
        s.token_digest_keys = Some(secrets[2].into());
        s.smtp_url = Some(secrets[3].into());
        s.webhook_url = Some(secrets[4].into());
        s.webhook_secret = Some(secrets[5].into());
        s.bind = "127.0.0.1:4321".into();
        let debug = format!("{s:?}");
        assert!(debug.contains("127.0.0.1:4321"), "{debug}");
        assert_eq!(debug.matches("<set, redacted>").count(), 7, "{debug}");
        for secret in secrets {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        for part in ["db-pass", "smtp-pass", "hook-token"] {
            assert!(!debug.contains(part), "{part} in {debug}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90m"), Ok(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("2h"), Ok(TimeDelta::hours(2)));
        assert_eq!(parse_duration("3600"), Ok(TimeDelta::hours(1)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn lifetimes_outside_the_policy_name_the_variable() {
        let e = parse_lifetime("4m").unwrap_err();
        assert!(e.contains("PWRESET_TOKEN_LIFETIME"), "{e}");
        assert!(parse_lifetime("25h").is_err());
        assert_eq!(parse_lifetime("5m"), Ok(TimeDelta::minutes(5)));
        assert!(
            parse_min_length("7")
                .unwrap_err()
                .contains("PWRESET_PASSWORD_MIN_LENGTH")
        );
    }

    #[test]
    fn limits_parse_and_can_be_switched_off() {
        let l = parse_limits("3/15m, 10/24h").unwrap();
        assert_eq!(l.0.len(), 2);
        assert_eq!(l.0[1].window, TimeDelta::hours(24));
        assert!(parse_limits("off").unwrap().0.is_empty());
        assert!(parse_limits("0/1m").is_err());
        assert!(parse_limits("many/1h").is_err());
        assert_eq!(
            Settings::defaults().rate_limits(),
            pwreset_domain::RateLimits::default()
        );
        // What --help shows is what the parser reads back.
        let d = LimitList::defaults();
        assert_eq!(d.per_email.to_string(), "3/15m,10/1d");
        for l in [
            d.per_email,
            d.per_credential,
            d.per_client,
            d.failures_per_customer,
            d.signin_attempts_per_email,
            d.token_requests_per_client,
        ] {
            assert_eq!(parse_limits(&l.to_string()), Ok(l));
        }
        assert_eq!(LimitList(Vec::new()).to_string(), "off");
    }

    #[test]
    fn every_setting_has_a_default() {
        let s = Settings::defaults();
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert_eq!(s.token_lifetime, TimeDelta::hours(1));
        assert_eq!(
            s.session_settings(),
            pwreset_domain::service::SessionSettings::default()
        );
        assert_eq!(s.limit_signin_email.to_string(), "10/15m");
        assert_eq!(s.limit_signin_client.to_string(), "30/1m");
        assert_eq!(s.issuer(), "http://127.0.0.1:8080");
    }

    #[test]
    fn a_client_id_beginning_with_a_dash_is_a_value() {
        let cli = Cli::try_parse_from(["pwreset", "client", "revoke", "-2GKImL84wp5d-XG"]).unwrap();
        let Some(Command::Client(ClientCommand::Revoke(args))) = cli.command else {
            panic!("not a revoke: {cli:?}");
        };
        assert_eq!(args.client_id, "-2GKImL84wp5d-XG");
    }

    #[test]
    fn the_issuer_is_configured_or_the_public_url() {
        let mut s = Settings::defaults();
        s.public_url = Some("https://shop.example.com/".into());
        assert_eq!(s.issuer(), "https://shop.example.com");
        s.issuer = Some("https://auth.example.com".into());
        assert_eq!(s.issuer(), "https://auth.example.com");
    }

    #[test]
    fn session_lifetimes_are_bounded_and_name_their_variable() {
        assert_eq!(parse_refresh_ttl("2w"), Ok(TimeDelta::weeks(2)));
        assert_eq!(parse_recheck("5s"), Ok(TimeDelta::seconds(5)));
        for (result, name) in [
            (parse_recheck("6s"), "PWRESET_TOKEN_RECHECK"),
            (parse_access_ttl("25h"), "PWRESET_ACCESS_TOKEN_TTL"),
            (parse_access_ttl("30s"), "PWRESET_ACCESS_TOKEN_TTL"),
            (parse_refresh_ttl("91d"), "PWRESET_REFRESH_TOKEN_TTL"),
        ] {
            assert!(result.as_ref().unwrap_err().contains(name), "{result:?}");
        }
    }

    #[test]
    fn deadlines_take_milliseconds_are_bounded_and_reach_the_pool() {
        assert_eq!(
            parse_statement_timeout("250ms"),
            Ok(TimeDelta::milliseconds(250))
        );
        assert_eq!(parse_acquire_timeout("2s"), Ok(TimeDelta::seconds(2)));
        assert_eq!(parse_smtp_timeout("1m"), Ok(TimeDelta::minutes(1)));
        for (result, name) in [
            (
                parse_statement_timeout("50ms"),
                "PWRESET_DB_STATEMENT_TIMEOUT",
            ),
            (
                parse_statement_timeout("61s"),
                "PWRESET_DB_STATEMENT_TIMEOUT",
            ),
            (parse_acquire_timeout("31s"), "PWRESET_DB_ACQUIRE_TIMEOUT"),
            (parse_smtp_timeout("500ms"), "PWRESET_SMTP_TIMEOUT"),
            (parse_webhook_timeout("2m"), "PWRESET_WEBHOOK_TIMEOUT"),
        ] {
            assert!(result.as_ref().unwrap_err().contains(name), "{result:?}");
        }
        let mut s = Settings::defaults();
        assert_eq!(s.pool(), pwreset_adapter_sql::PoolSettings::new(16));
        s.db_statement_timeout = TimeDelta::milliseconds(300);
        assert_eq!(
            s.pool().statement_timeout,
            std::time::Duration::from_millis(300)
        );
    }
}
