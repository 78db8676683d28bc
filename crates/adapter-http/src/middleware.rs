//! Middleware: the JSON:API edge (media types, security headers) and the request log.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use tracing::Instrument;

use crate::{ApiError, JSONAPI};

fn accepts_jsonapi(req: &ServiceRequest) -> bool {
    let Some(accept) = req.headers().get(header::ACCEPT) else {
        return true;
    };
    let Ok(accept) = accept.to_str() else {
        return false;
    };
    accept.split(',').any(|item| {
        let media = item.split(';').next().unwrap_or_default().trim();
        media.is_empty() || media == "*/*" || media == "application/*" || media == JSONAPI
    })
}

/// Checks `Accept` (406); adds `Cache-Control: no-store` and `Referrer-Policy: no-referrer`
/// to every answer. `Content-Type` (415) is checked where a body is read
/// ([`crate::routes::incoming`]), after routing, so that a method a path does not take is a
/// 405 whatever its body.
pub(crate) async fn jsonapi_edge(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let refusal = if accepts_jsonapi(&req) {
        None
    } else {
        Some(ApiError::not_acceptable())
    };
    let mut res = match refusal {
        Some(e) => req.into_response(e.error_response()).map_into_right_body(),
        None => next.call(req).await?.map_into_left_body(),
    };
    let headers = res.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    Ok(res)
}

/// One span per request with a request id (taken from a sane `X-Request-Id` or made up),
/// and one log line when it ends. The query string is never logged: it can hold a token
/// in a `reset_password_token` filter.
///
/// # Errors
/// Whatever the wrapped service returns, unchanged.
pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    let method = req.method().clone();
    let result = next.call(req).instrument(span.clone()).await;
    let _entered = span.enter();
    let took = started.elapsed();
    let elapsed_ms = took.as_secs_f64() * 1000.0;
    match &result {
        Ok(res) => {
            let status = res.status().as_u16();
            crate::metrics::record_request(
                method.as_str(),
                res.request().match_pattern().as_deref(),
                status,
                took,
            );
            if status >= 500 {
                tracing::error!(status, elapsed_ms, "request failed");
            } else {
                tracing::info!(status, elapsed_ms, "request done");
            }
        }
        Err(e) => tracing::error!(error = %e, elapsed_ms, "request errored"),
    }
    let mut res = result?;
    if let Ok(v) = header::HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), v);
    }
    Ok(res)
}
