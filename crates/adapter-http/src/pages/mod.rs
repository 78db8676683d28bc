//! The hosted customer pages: "forgot password" (the self-service request), the reset
//! link's new-password form (a completion), and "password changed". Server-rendered HTML
//! from the same use cases as the API, no JavaScript, no external resource.
//!
//! - `render.rs`: the templates (minijinja, HTML autoescaped) and one text file per
//!   language, chosen by `Accept-Language`;
//! - `routes.rs`: the handlers;
//! - here: the configuration, the headers every page response carries and the `Origin`
//!   check of the forms.
//!
//! The token's path: the mailed link `GET /reset-password?id=..&token=..` is answered with
//! a 303 to `/reset-password?id=..` that moves the token into a short-lived `HttpOnly`,
//! `SameSite=Lax` cookie scoped to `/reset-password`; from then on no URL, page or
//! `Referer` holds it, and the request log never records a query string.

mod render;
mod routes;

use std::path::PathBuf;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{Error, web};
use pwreset_domain::Mode;

use render::Renderer;

/// The `Content-Security-Policy` of every page: nothing but our own style sheet, images
/// and form targets; no framing, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The cookie holding a reset link's token between the redirect and the completion.
pub const TOKEN_COOKIE: &str = "pwreset_reset";

/// How long the token cookie lives, in seconds.
pub const TOKEN_COOKIE_MAX_AGE: u32 = 900;

/// The cookie holding this browser's anti-forgery key, which every form also carries in
/// its `csrf` field (double submit): a form posted from another site cannot know it.
/// Over https it is [`FORM_COOKIE_HOST`] instead.
pub const FORM_COOKIE: &str = "pwreset_form";

/// [`FORM_COOKIE`] over https: the `__Host-` prefix makes browsers refuse it unless it is
/// `Secure`, `Path=/` and set by this host itself, so a sibling subdomain cannot plant a
/// key it knows.
pub const FORM_COOKIE_HOST: &str = "__Host-pwreset_form";

/// How the pages are served.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PagesConfig {
    /// The mode the forgot-password page requests resets in (pages have no credentials).
    pub mode: Mode,
    /// The service's public base URL: its origin is the only one forms are accepted from;
    /// `https` adds `Secure` to the cookie and HSTS to every page.
    pub public_url: String,
    /// Where the "Password changed" page sends the customer to sign in.
    pub signin_url: Option<String>,
    /// A directory whose templates, texts and style sheet override the built-in ones.
    pub templates: Option<PathBuf>,
}

impl PagesConfig {
    /// Pages in `mode` for a service at `public_url`, with the built-in templates and no
    /// sign-in link.
    #[must_use]
    pub fn new(mode: Mode, public_url: impl Into<String>) -> Self {
        Self {
            mode,
            public_url: public_url.into(),
            signin_url: None,
            templates: None,
        }
    }
}

/// The pages, ready to serve: their configuration and loaded templates.
#[derive(Debug)]
pub struct Pages {
    renderer: Renderer,
    mode: Mode,
    /// `scheme://host[:port]` of the public URL, as browsers send it in `Origin`.
    origin: String,
    https: bool,
    signin_url: Option<String>,
}

impl Pages {
    /// Loads the templates and texts (built-in, and the configured directory's).
    ///
    /// # Errors
    /// When the directory cannot be read, or a template or text file in it does not parse
    /// or render.
    pub fn new(config: PagesConfig) -> anyhow::Result<Self> {
        let renderer = Renderer::load(config.templates.as_deref())?;
        let (origin, https) = origin_of(&config.public_url);
        Ok(Self {
            renderer,
            mode: config.mode,
            origin,
            https,
            signin_url: config.signin_url,
        })
    }
}

/// The origin of `url` (lowercase, default port dropped) and whether it is https.
fn origin_of(url: &str) -> (String, bool) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority
        .strip_suffix(default_port)
        .unwrap_or(&authority)
        .to_owned();
    let https = scheme == "https";
    (format!("{scheme}://{authority}"), https)
}

/// Mounts the pages (`/forgot-password`, `/reset-password`, `/reset-password/done`,
/// `/assets/pages.css`) on an app that also has the [`crate::ApiState`] (see
/// [`crate::configure`]).
pub fn configure(pages: web::Data<Pages>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(pages)
            .service(
                web::resource("/forgot-password")
                    .wrap(from_fn(page_headers))
                    .route(web::get().to(routes::forgot_form))
                    .route(web::post().to(routes::forgot_submit))
                    .default_service(routes::method_not_allowed("GET, POST")),
            )
            .service(
                web::resource("/reset-password")
                    .wrap(from_fn(page_headers))
                    .route(web::get().to(routes::reset_form))
                    .route(web::post().to(routes::reset_submit))
                    .default_service(routes::method_not_allowed("GET, POST")),
            )
            .service(
                web::resource("/reset-password/done")
                    .wrap(from_fn(page_headers))
                    .route(web::get().to(routes::changed))
                    .default_service(routes::method_not_allowed("GET")),
            )
            .service(
                web::resource("/assets/pages.css")
                    .wrap(from_fn(page_headers))
                    .route(web::get().to(routes::style))
                    .default_service(routes::method_not_allowed("GET")),
            );
    }
}

/// The headers of every page response, errors included.
async fn page_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let https = req.app_data::<web::Data<Pages>>().is_some_and(|p| p.https);
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests;
