//! The HTTP adapter of pwreset: Commerce Layer's `customer_password_resets` JSON:API (and
//! the minimal `customers` API a reset needs) over actix-web.
//!
//! Layout:
//! - [`error`]: the one error type and the table from domain errors to JSON:API errors;
//! - [`auth`]: the `Credentials` extractor (RS512 access tokens checked by the
//!   `SessionService`, customer tokens confined to their own customer);
//! - `routes::oauth`: `/oauth/token`, `/oauth/revoke` and `/.well-known/jwks.json`;
//! - [`jsonapi`]: query parameters, request documents and resource rendering;
//! - `routes`: one handler per operation, thin: parse at the edge, call the use case,
//!   render;
//! - [`pages`]: the hosted customer pages (forgot password, reset link, password changed),
//!   mounted with [`pages::configure`];
//! - [`configure`]: mounts everything with the media-type and security-header middleware.

pub mod auth;
pub mod error;
pub mod jsonapi;
pub mod metrics;
mod middleware;
pub mod openapi;
pub mod pages;
pub mod query;
mod routes;

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::web;
use pwreset_domain::service::{CustomerService, ResetService, SelfService, SessionService};

pub use auth::{AppKind, Credentials};
pub use error::ApiError;
pub use middleware::request_log;
pub use pwreset_jsonapi::Renderer;

/// The JSON:API media type.
pub const JSONAPI: &str = "application/vnd.api+json";

/// The default request body limit.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Whether the service can serve (its database answers), for `GET /ready`.
#[async_trait::async_trait]
pub trait Readiness: Send + Sync {
    async fn check(&self) -> anyhow::Result<()>;
}

/// Everything the handlers need.
pub struct ApiState {
    pub resets: ResetService,
    /// Present when sales channel credentials may request resets for customers (the
    /// service mails them itself); decided when the application is built.
    pub self_service: Option<SelfService>,
    pub customers: CustomerService,
    /// Sign-in, sessions and the check of every access token.
    pub sessions: SessionService,
    /// The JSON Web Key Set published at `/.well-known/jwks.json`.
    pub jwks: serde_json::Value,
    pub renderer: Renderer,
    /// Whether create responses carry the reset token (token delivery) or not (mail).
    pub reveal_tokens: bool,
    pub body_limit: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    pub readiness: Arc<dyn Readiness>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("renderer", &self.renderer)
            .field("body_limit", &self.body_limit)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

/// The client's address: the socket peer, or the nearest untrusted hop of
/// `X-Forwarded-For` when the peer is a configured trusted proxy. A trusted peer that
/// forwards no (readable) untrusted hop is the client itself, so every request has an
/// address to count per-client limits against.
#[must_use]
pub fn client_ip(req: &actix_web::HttpRequest, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    req.headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .rsplit(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .or(Some(peer))
}

/// Mounts `/health`, `/ready`, `/openapi.json`, the OAuth endpoints, the JWKS and the
/// `/api` scope on an actix app.
pub fn configure(state: web::Data<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state)
            .service(
                web::resource("/health")
                    .route(web::get().to(routes::health))
                    .default_service(routes::method_not_allowed("GET")),
            )
            .service(
                web::resource("/ready")
                    .route(web::get().to(routes::ready))
                    .default_service(routes::method_not_allowed("GET")),
            )
            .service(
                web::resource("/openapi.json")
                    .route(web::get().to(routes::openapi))
                    .default_service(routes::method_not_allowed("GET")),
            )
            .service(
                web::resource("/.well-known/jwks.json")
                    .route(web::get().to(routes::oauth::jwks))
                    .default_service(routes::method_not_allowed("GET")),
            )
            .service(
                web::scope("/oauth")
                    .wrap(actix_web::middleware::from_fn(routes::oauth::no_store))
                    .configure(routes::oauth::configure),
            )
            .service(
                web::scope("/api")
                    .wrap(actix_web::middleware::from_fn(middleware::jsonapi_edge))
                    .configure(routes::resets::configure)
                    .configure(routes::customers::configure)
                    .default_service(web::to(routes::not_found)),
            )
            .default_service(web::to(routes::not_found));
    }
}

#[cfg(test)]
mod tests;
