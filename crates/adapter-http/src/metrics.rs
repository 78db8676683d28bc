//! `GET /metrics`: the Prometheus text exposition, and the request counters recorded for
//! it by [`crate::request_log`].
//!
//! What is recorded goes through the `metrics` facade where it happens (here, in the hash
//! pool, in the delivery worker); what is a state rather than an event (the outbox's
//! backlog, the database pool) is read when scraped. The application owns the recorder
//! and renders both, behind [`MetricsSource`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};

/// Renders every metric in the Prometheus text format (version 0.0.4).
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync {
    async fn render(&self) -> String;
}

/// Mounts `GET /metrics` on an actix app (the API's or a listener of its own).
pub fn configure(source: Arc<dyn MetricsSource>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(source)).service(
            web::resource("/metrics")
                .route(web::get().to(render))
                .default_service(crate::routes::method_not_allowed("GET")),
        );
    }
}

async fn render(source: web::Data<dyn MetricsSource>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(source.render().await)
}

/// Counts one answered request: by method, route pattern (never the path itself, which
/// holds ids) and status; rejections by a rate limit (429) also on their own.
pub(crate) fn record_request(method: &str, route: Option<&str>, status: u16, took: Duration) {
    let route = route.unwrap_or("unmatched").to_owned();
    let labels = [
        ("method", method.to_owned()),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    metrics::counter!("pwreset_http_requests_total", &labels).increment(1);
    metrics::histogram!("pwreset_http_request_duration_seconds", &labels)
        .record(took.as_secs_f64());
    if status == 429 {
        metrics::counter!("pwreset_rate_limit_rejections_total", "route" => route).increment(1);
    }
}

/// Counts one sign-in (a `password` grant) by its outcome.
pub(crate) fn record_signin(outcome: &'static str) {
    metrics::counter!("pwreset_signins_total", "outcome" => outcome).increment(1);
}
