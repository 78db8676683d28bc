//! pwreset's application crate: the only place that knows every adapter.
//!
//! - [`config`]: flags and `PWRESET_*` variables;
//! - [`commands`]: `pwreset token` and `pwreset client create|list|revoke`;
//! - [`secrets`]: the access token signing keys and token digest keys, from configuration
//!   or generated into the data dir on first start;
//! - [`telemetry`]: tracing to stderr, text or JSON;
//! - [`Application`]: opens the store, wires the services, binds the listener (port 0
//!   works) and runs the actix server with graceful shutdown on SIGTERM/SIGINT.

pub mod commands;
pub mod config;
pub mod delivery;
pub mod metrics;
pub mod secrets;
pub mod telemetry;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use pwreset_adapter_crypto::{
    Argon2Hasher, CommonPasswordList, HmacDigester, Organization, RsaAccessTokens,
};
use pwreset_adapter_http::pages::{Pages, PagesConfig};
use pwreset_adapter_http::{ApiState, Readiness, Renderer};
use pwreset_adapter_sql::SqlStore;
use pwreset_domain::ports::SystemClock;
use pwreset_domain::service::{NotificationPlan, Ports, RateLimiter, SessionService};
use pwreset_domain::{CustomerService, PasswordPolicy, ResetService, TokenPolicy};

pub use config::Settings;

/// Opens the configured database (SQLite in the data dir by default) and migrates it.
///
/// # Errors
/// When the URL is not understood, the database cannot be reached, or a migration fails.
pub async fn open_store(settings: &Settings) -> anyhow::Result<SqlStore> {
    let pool = settings.pool();
    match settings.database_url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let route = if settings.db_transaction_pooler {
                pwreset_adapter_postgres::Route::TransactionPooler
            } else {
                pwreset_adapter_postgres::Route::Direct
            };
            pwreset_adapter_postgres::connect_routed(
                url,
                &pool,
                route,
                settings.database_migration_url.as_deref(),
            )
            .await
        }
        Some(url) if url.starts_with("sqlite:") => {
            pwreset_adapter_sqlite::connect_with(url, &pool).await
        }
        Some(other) => anyhow::bail!(
            "PWRESET_DATABASE_URL must start with postgres://, postgresql:// or sqlite:, got {}",
            pwreset_adapter_postgres::redact_url(other)
        ),
        None => {
            std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                format!(
                    "cannot create PWRESET_DATA_DIR {}",
                    settings.data_dir.display()
                )
            })?;
            let path = settings.data_dir.join("pwreset.db");
            pwreset_adapter_sqlite::connect_with(&format!("sqlite://{}", path.display()), &pool)
                .await
        }
    }
}

struct StoreReadiness(SqlStore);

#[async_trait::async_trait]
impl Readiness for StoreReadiness {
    async fn check(&self) -> anyhow::Result<()> {
        self.0.ping().await
    }
}

/// The wired services, before any HTTP.
#[derive(Debug, Clone)]
pub struct Services {
    pub resets: ResetService,
    pub customers: CustomerService,
    pub sessions: SessionService,
    /// The public halves of the signing keys, for `/.well-known/jwks.json`.
    pub jwks: serde_json::Value,
    pub store: SqlStore,
}

/// Wires the domain services over `store` with the configured policies and keys,
/// enqueueing the notifications in `plan`.
///
/// # Errors
/// When a key or policy setting is invalid.
pub fn services(
    settings: &Settings,
    store: SqlStore,
    plan: NotificationPlan,
) -> anyhow::Result<Services> {
    let keys = secrets::digest_keys(settings)?;
    let digester = HmacDigester::new(keys).context("PWRESET_TOKEN_DIGEST_KEYS")?;
    let hasher = Argon2Hasher::new(
        Argon2Hasher::MIN_M_KIB,
        Argon2Hasher::MIN_T,
        1,
        settings.hash_concurrency,
    )?;
    let tokens = RsaAccessTokens::from_pem(
        &secrets::signing_keys(settings)?,
        settings.issuer(),
        Organization::from_slug(&settings.organization),
    )
    .context("PWRESET_SIGNING_KEYS")?;
    let jwks = tokens.jwks();
    let shared = Arc::new(store.clone());
    let digester: Arc<dyn pwreset_domain::ports::TokenDigester> = Arc::new(digester);
    let ports = Ports::new(
        shared.clone(),
        shared.clone(),
        Arc::new(hasher),
        digester.clone(),
        Arc::new(SystemClock),
    );
    let sessions = SessionService::new(
        ports.clone(),
        shared.clone(),
        shared.clone(),
        Arc::new(tokens),
        RateLimiter::new(shared, settings.rate_limits(), digester),
        settings.session_settings(),
    );
    let passwords = PasswordPolicy::new(settings.password_min_length)
        .context("PWRESET_PASSWORD_MIN_LENGTH")?
        .with_common_passwords(Arc::new(CommonPasswordList::embedded()));
    let tokens = TokenPolicy::new(settings.token_lifetime).context("PWRESET_TOKEN_LIFETIME")?;
    Ok(Services {
        resets: ResetService::new(ports.clone(), tokens, passwords.clone())
            .with_notifications(plan)
            .with_rate_limits(Arc::new(store.clone()), settings.rate_limits()),
        customers: CustomerService::new(ports, passwords),
        sessions,
        jwks,
        store,
    })
}

/// A built, bound, not yet running server.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    /// `/metrics` on a listener of its own (PWRESET_METRICS_BIND), running on its task.
    metrics_server: Option<(SocketAddr, actix_web::dev::ServerHandle)>,
    jobs: delivery::Jobs,
    stop: StopHandle,
}

/// Stops a running [`Application`] the way SIGTERM does: background jobs first, then
/// in-flight requests. Cloneable; stopping twice is harmless.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<tokio::sync::Notify>);

impl StopHandle {
    /// Asks the application to stop; `run_until_stopped` returns once it has.
    pub fn stop(&self) {
        self.0.notify_one();
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Application {
    /// Opens the store, wires everything and binds `settings.bind` (port 0 picks a free
    /// port; see [`Application::addr`]).
    ///
    /// # Errors
    /// On any configuration, database or bind failure, with a message naming the cause.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        metrics::install();
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("cannot listen on PWRESET_BIND={}", settings.bind))?;
        let metrics_listener = settings
            .metrics_bind
            .as_deref()
            .map(|bind| {
                TcpListener::bind(bind)
                    .with_context(|| format!("cannot listen on PWRESET_METRICS_BIND={bind}"))
            })
            .transpose()?;
        let addr = listener.local_addr()?;
        let public_base = settings.public_base(addr);
        let notifications = delivery::notifications(settings, &public_base)?;
        let store = open_store(settings).await?;
        let services = services(settings, store, notifications.plan)?;
        // One hash now, so the first sign-in for an unknown address is not slower than
        // the rest (sign-in answers must not tell addresses apart by time).
        services
            .sessions
            .prepare()
            .await
            .context("preparing sign-in (the password hasher failed)")?;
        let self_service = if settings.self_service {
            // `notifications` refused self-service without mail, so this is always `Some`.
            let service = services
                .resets
                .self_service(Arc::new(services.store.clone()))
                .context("PWRESET_SELF_SERVICE=true needs PWRESET_DELIVERY=mail")?;
            tracing::info!("self-service reset requests are on for sales channel credentials");
            Some(service)
        } else {
            None
        };
        let jobs = delivery::Jobs::start(
            settings,
            &services.store,
            notifications.router,
            self_service.clone(),
        );
        let pages = if settings.pages {
            let mut config = PagesConfig::new(settings.pages_mode.mode(), public_base.clone());
            config.signin_url.clone_from(&settings.signin_url);
            config.templates.clone_from(&settings.page_templates);
            let pages = Pages::new(config).context("PWRESET_PAGE_TEMPLATES")?;
            Some(web::Data::new(pages))
        } else {
            None
        };
        let state = web::Data::new(ApiState {
            resets: services.resets,
            self_service,
            customers: services.customers,
            sessions: services.sessions,
            jwks: services.jwks,
            renderer: Renderer { base: public_base },
            reveal_tokens: notifications.reveal_tokens,
            body_limit: settings.body_limit,
            trusted_proxies: settings.trusted_proxies.clone(),
            readiness: Arc::new(StoreReadiness(services.store.clone())),
        });
        let scrape = metrics::Scrape::source(services.store);
        let (api_metrics, metrics_server) = match metrics_listener {
            None => (Some(scrape), None),
            Some(listener) => {
                let metrics_addr = listener.local_addr()?;
                let server = HttpServer::new(move || {
                    App::new().configure(pwreset_adapter_http::metrics::configure(scrape.clone()))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)?
                .run();
                let handle = server.handle();
                tokio::spawn(server);
                tracing::info!(addr = %metrics_addr, "metrics are served on their own listener");
                (None, Some((metrics_addr, handle)))
            }
        };
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    pwreset_adapter_http::request_log,
                ))
                .configure(|cfg| {
                    if let Some(pages) = &pages {
                        pwreset_adapter_http::pages::configure(pages.clone())(cfg);
                    }
                    if let Some(source) = &api_metrics {
                        pwreset_adapter_http::metrics::configure(source.clone())(cfg);
                    }
                })
                .configure(pwreset_adapter_http::configure(state.clone()))
        })
        .shutdown_timeout(30)
        // Signals are handled in `run_until_stopped`, which stops the background jobs
        // before the HTTP workers (see there).
        .disable_signals()
        .listen(listener)?;
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        Ok(Self {
            addr,
            server: server.run(),
            metrics_server,
            jobs,
            stop: StopHandle::default(),
        })
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to stop the application as a signal would.
    #[must_use]
    pub fn handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Where `/metrics` is served when PWRESET_METRICS_BIND gave it a listener of its own.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|(addr, _)| *addr)
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until SIGTERM, SIGINT or [`StopHandle::stop`], then lets the background jobs
    /// finish their pass, then finishes in-flight requests, and returns.
    ///
    /// The jobs stop first because the database pool is shared: a connection opened on an
    /// HTTP worker's runtime stops working when that worker shuts down, and a job still
    /// using it would fail its pass and log a spurious error on every stop.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = self.server;
        // `/metrics` on its own listener ends with the API, whichever way the API ends.
        let metrics = self.metrics_server.map(|(_, handle)| handle);
        let stop_metrics = || async {
            if let Some(metrics) = &metrics {
                metrics.stop(true).await;
            }
        };
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => {
                self.jobs.stop().await;
                stop_metrics().await;
                return result;
            }
            signal = shutdown_signal() => {
                tracing::info!(signal, "stopping: background jobs first, then in-flight requests");
            }
            () = self.stop.0.notified() => {
                tracing::info!("stop requested: background jobs first, then in-flight requests");
            }
        }
        self.jobs.stop().await;
        // The server future processes the stop command, so both are awaited together.
        let ((), result) = tokio::join!(handle.stop(true), server);
        stop_metrics().await;
        result
    }
}

/// The first of SIGTERM and SIGINT (Ctrl-C), by name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops pwreset");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
