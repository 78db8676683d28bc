//! Handlers. Each one parses at the edge, calls one use case and renders the result.

pub(crate) mod customers;
pub(crate) mod oauth;
pub(crate) mod resets;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{ApiError, ApiState, JSONAPI};

/// `GET /health`: the process is up.
pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /openapi.json`: the API description.
pub(crate) async fn openapi() -> HttpResponse {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HttpResponse::Ok().content_type("application/json").body(
        DOC.get_or_init(|| crate::openapi::document().to_string())
            .clone(),
    )
}

/// `GET /ready`: the database answers.
pub(crate) async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    match state.readiness.check().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "readiness check failed");
            HttpResponse::ServiceUnavailable().json(json!({ "status": "unavailable" }))
        }
    }
}

/// Anything no route matches.
pub(crate) async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::route_not_found())
}

/// The answer of a known path to a method it does not support: a 405 whose `Allow` header
/// names the methods it does (RFC 9110 section 15.5.6 requires it).
pub(crate) fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move {
        let mut res = actix_web::ResponseError::error_response(&ApiError::method_not_allowed());
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        res
    })
}

/// Reads the body, refusing more than the configured limit with a JSON:API 413.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A request with a JSON:API body: its checked query parameters and document.
pub(crate) struct Incoming {
    pub params: crate::jsonapi::Params,
    pub doc: crate::jsonapi::Incoming,
}

/// Whether the request says its body is `application/vnd.api+json` (parameters aside).
fn content_type_ok(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|media| media.eq_ignore_ascii_case(JSONAPI))
}

/// Checks the media type (415), parses the query (`accepts`) and reads and checks the body
/// as a `kind` document.
pub(crate) async fn incoming(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ApiState,
    accepts: crate::jsonapi::Accepts,
    kind: &str,
    url_id: Option<&str>,
    allowed: &[&str],
) -> Result<Incoming, ApiError> {
    if !content_type_ok(req) {
        return Err(ApiError::unsupported_media_type());
    }
    let params = crate::jsonapi::parse_params(req.query_string(), accepts)?;
    let body = read_body(req, payload, state.body_limit).await?;
    let doc = crate::jsonapi::parse_document(&body, kind, url_id, allowed)?;
    Ok(Incoming { params, doc })
}

/// A JSON:API document response.
pub(crate) fn document(status: actix_web::http::StatusCode, doc: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, JSONAPI))
        .body(doc.to_string())
}

/// A path id, or 404 when it is not one of ours.
pub(crate) fn path_id<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}
