//! `/oauth/token`, `/oauth/revoke` and `/.well-known/jwks.json`: Commerce Layer's
//! authentication API (RFC 6749 grants, RFC 7009 revocation), with its error shape
//! `{"errors":[{title, detail, code, status}]}` and a numeric `status`.
//!
//! Clients authenticate with `client_id` (and `client_secret`) in the body, or with HTTP
//! Basic (RFC 6749 2.3.1), not both. Bodies are JSON or `application/x-www-form-urlencoded`.
//! Every answer carries `Cache-Control: no-store`. Sign-in outcomes are logged without the
//! username or the password.

use std::collections::HashMap;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pwreset_domain::RateLimited;
use pwreset_domain::service::{ClientAuth, Grant, OAuthError};
use serde_json::{Value, json};

use crate::ApiState;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/token")
            .default_service(web::to(method_not_allowed))
            .route(web::post().to(token)),
    )
    .service(
        web::resource("/revoke")
            .default_service(web::to(method_not_allowed))
            .route(web::post().to(revoke)),
    )
    .default_service(web::to(not_found));
}

/// An OAuth error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthFailure {
    status: StatusCode,
    title: &'static str,
    code: &'static str,
    detail: String,
    retry_after: Option<u64>,
}

impl OAuthFailure {
    fn new(status: StatusCode, title: &'static str, code: &'static str, detail: &str) -> Self {
        Self {
            status,
            title,
            code,
            detail: detail.to_owned(),
            retry_after: None,
        }
    }

    fn invalid_request(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "BAD_REQUEST",
            detail,
        )
    }

    fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "UNAUTHORIZED",
            "Client authentication failed due to unknown client, no client authentication \
             included, or unsupported authentication method.",
        )
    }

    fn invalid_grant() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "BAD_REQUEST",
            "The provided authorization grant is invalid, expired, revoked, does not match \
             the redirection URI used in the authorization request, or was issued to another \
             client.",
        )
    }

    fn unsupported_grant_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "BAD_REQUEST",
            "The authorization grant type is not supported by the authorization server.",
        )
    }

    fn unauthorized_client() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            "FORBIDDEN",
            "The client is not authorized to perform this request using this method.",
        )
    }

    fn too_many_requests(limited: &RateLimited) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "TOO_MANY_REQUESTS",
            "Too many requests; retry later.",
        );
        e.retry_after = Some(crate::error::retry_after_secs(limited));
        e
    }

    fn internal(cause: &anyhow::Error) -> Self {
        if crate::error::store_unavailable(cause) {
            // RFC 6749 5.2 has no code for it; `temporarily_unavailable` is its code for
            // the same condition at the authorization endpoint.
            tracing::warn!(error = format!("{cause:#}"), "store unavailable");
            let mut e = Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "SERVICE_UNAVAILABLE",
                "The service cannot reach its database right now; try again shortly.",
            );
            e.retry_after = Some(1);
            return e;
        }
        tracing::error!(error = format!("{cause:#}"), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "INTERNAL_SERVER_ERROR",
            "Something went wrong; it has been logged.",
        )
    }

    /// The answer to `req`: a failed HTTP Basic authentication also gets
    /// `WWW-Authenticate` (RFC 6749 5.2).
    fn response_to(&self, req: &HttpRequest) -> HttpResponse {
        let mut res = self.response();
        let basic = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.get(..6))
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic "));
        if basic && self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"pwreset\""),
            );
        }
        res
    }

    fn response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.json(json!({ "errors": [{
            "title": self.title,
            "detail": self.detail,
            "code": self.code,
            "status": self.status.as_u16(),
        }]}))
    }
}

impl From<OAuthError> for OAuthFailure {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::InvalidClient => Self::invalid_client(),
            OAuthError::InvalidGrant => Self::invalid_grant(),
            OAuthError::UnauthorizedClient => Self::unauthorized_client(),
            OAuthError::RateLimited(r) => Self::too_many_requests(&r),
            OAuthError::Unexpected(e) => Self::internal(&e),
        }
    }
}

/// `Cache-Control: no-store` (and `Pragma: no-cache`, RFC 6749 5.1) on every answer,
/// refusals included.
pub(crate) async fn no_store(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    Ok(res)
}

/// Both OAuth paths take `POST` only; a 405 says so (RFC 9110 `Allow`).
async fn method_not_allowed() -> HttpResponse {
    let mut res = OAuthFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "METHOD_NOT_ALLOWED",
        "This method is not supported on this path.",
    )
    .response();
    res.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    res
}

async fn not_found() -> HttpResponse {
    OAuthFailure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "NOT_FOUND",
        "No route matches this path.",
    )
    .response()
}

/// The request's parameters, from a JSON object or a form, each at most once.
async fn parameters(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<HashMap<String, String>, OAuthFailure> {
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let body = super::read_body(req, payload, limit)
        .await
        .map_err(|e| OAuthFailure::invalid_request(&e.detail))?;
    let pairs: Vec<(String, String)> = match media.as_str() {
        "application/json" => {
            let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) else {
                return Err(OAuthFailure::invalid_request(
                    "The body must be a JSON object.",
                ));
            };
            let mut pairs = Vec::with_capacity(map.len());
            for (k, v) in map {
                match v {
                    Value::String(s) => pairs.push((k, s)),
                    Value::Null => {}
                    _ => {
                        return Err(OAuthFailure::invalid_request(&format!(
                            "{k} must be a string."
                        )));
                    }
                }
            }
            pairs
        }
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(&body)
            .map_err(|_| OAuthFailure::invalid_request("The form body is malformed."))?,
        _ => {
            return Err(OAuthFailure::invalid_request(
                "Content-Type must be application/json or application/x-www-form-urlencoded.",
            ));
        }
    };
    let mut params = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if params.insert(k.clone(), v).is_some() {
            return Err(OAuthFailure::invalid_request(&format!(
                "{k} must not be repeated."
            )));
        }
    }
    Ok(params)
}

/// Client credentials from `Authorization: Basic` (form-encoded id and secret, RFC 6749
/// 2.3.1), if the request uses that scheme; other schemes (a bearer token) are not client
/// authentication and are ignored here.
fn basic_auth(req: &HttpRequest) -> Option<Result<(String, String), OAuthFailure>> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let parsed = std::str::from_utf8(&value[6..])
        .ok()
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| {
            let (id, secret) = text.split_once(':')?;
            let decode = |s: &str| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
                    .ok()
                    .and_then(|mut v| v.pop())
                    .map(|(_, v)| v)
            };
            Some((decode(id)?, decode(secret)?))
        });
    Some(parsed.ok_or_else(OAuthFailure::invalid_client))
}

/// The client id and secret, from Basic or the body (not both).
fn client_credentials(
    req: &HttpRequest,
    params: &mut HashMap<String, String>,
) -> Result<(String, Option<String>), OAuthFailure> {
    let in_body = (params.remove("client_id"), params.remove("client_secret"));
    match (basic_auth(req), in_body) {
        (Some(_), (Some(_), _) | (_, Some(_))) => Err(OAuthFailure::invalid_request(
            "Use one client authentication method: HTTP Basic or the body, not both.",
        )),
        (Some(basic), _) => {
            let (id, secret) = basic?;
            Ok((id, Some(secret).filter(|s| !s.is_empty())))
        }
        (None, (Some(id), secret)) => Ok((id, secret.filter(|s| !s.is_empty()))),
        (None, (None, _)) => Err(OAuthFailure::invalid_client()),
    }
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthFailure> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthFailure::invalid_request(&format!("{name} is required.")))
}

fn grant_body(grant: &Grant) -> Value {
    let mut body = json!({
        "access_token": grant.access_token,
        "token_type": "bearer",
        "expires_in": grant.expires_in.num_seconds(),
        "scope": "market:all",
        "created_at": grant.created_at.timestamp(),
    });
    if let Some(refresh) = &grant.refresh_token {
        body["refresh_token"] = json!(refresh.expose_secret());
    }
    if let Some(customer) = grant.customer {
        body["owner_id"] = json!(customer.to_string());
        body["owner_type"] = json!("customer");
    }
    body
}

/// `POST /oauth/token`.
async fn token(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    match grant(&state, &req, payload).await {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => e.response_to(&req),
    }
}

async fn grant(
    state: &ApiState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Value, OAuthFailure> {
    let mut params = parameters(req, payload, state.body_limit).await?;
    let grant_type = required(&params, "grant_type")?.to_owned();
    if !matches!(
        grant_type.as_str(),
        "client_credentials" | "password" | "refresh_token"
    ) {
        return Err(OAuthFailure::unsupported_grant_type());
    }
    let (client_id, secret) = client_credentials(req, &mut params)?;
    let auth = ClientAuth {
        client_id: &client_id,
        secret: secret.as_deref(),
    };
    let ip = crate::client_ip(req, &state.trusted_proxies);
    let sessions = &state.sessions;
    let result = match grant_type.as_str() {
        "password" => {
            let username = required(&params, "username")?;
            let password = required(&params, "password")?;
            sessions.password(ip, auth, username, password).await
        }
        "refresh_token" => {
            let refresh = required(&params, "refresh_token")?;
            sessions.refresh(ip, auth, refresh).await
        }
        _ => sessions.client_credentials(ip, auth).await,
    };
    if grant_type == "password" {
        crate::metrics::record_signin(result.as_ref().map_or_else(refusal, |_| "success"));
    }
    match result {
        Ok(grant) => {
            tracing::info!(
                grant_type,
                client = %grant.client.key,
                session = %grant.session,
                customer = grant.customer.map(|c| c.to_string()),
                "token granted"
            );
            if let Some(error) = &grant.hash_upgrade_error {
                tracing::warn!(error, "could not store a stronger hash after a sign-in");
            }
            Ok(grant_body(&grant))
        }
        Err(e) => {
            let outcome = refusal(&e);
            tracing::info!(grant_type, outcome, "token refused");
            Err(e.into())
        }
    }
}

/// A refused grant's outcome, as logged and counted.
fn refusal(e: &OAuthError) -> &'static str {
    match e {
        OAuthError::InvalidClient => "invalid_client",
        OAuthError::InvalidGrant => "invalid_grant",
        OAuthError::UnauthorizedClient => "unauthorized_client",
        OAuthError::RateLimited(_) => "rate_limited",
        OAuthError::Unexpected(_) => "error",
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 `{}` whether or not the token was known.
async fn revoke(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let result = async {
        let mut params = parameters(&req, payload, state.body_limit).await?;
        let (client_id, secret) = client_credentials(&req, &mut params)?;
        let token = required(&params, "token")?;
        let auth = ClientAuth {
            client_id: &client_id,
            secret: secret.as_deref(),
        };
        state
            .sessions
            .revoke(auth, token)
            .await
            .map_err(OAuthFailure::from)
    }
    .await;
    match result {
        Ok(()) => HttpResponse::Ok().json(json!({})),
        Err(e) => e.response_to(&req),
    }
}

/// `GET /.well-known/jwks.json`: the public halves of the signing keys.
pub(crate) async fn jwks(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(&state.jwks)
}
