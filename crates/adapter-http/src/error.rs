//! The one HTTP error type and the one table from domain errors to JSON:API error objects.
//!
//! Every failure leaves as `{"errors": [{"title", "detail", "code", "status", "source"?}]}`
//! with `Content-Type: application/vnd.api+json`. 5xx bodies are generic; the cause chain
//! goes to the log. Every failure to complete a reset with a token produces the same bytes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use pwreset_domain::service::{
    CompleteResetError, CreateCustomerError, DeleteCustomerError, DeleteResetError,
    GetCustomerError, GetResetError, ListCustomersError, ListResetsError, RequestResetError,
    UpdateCustomerError, UpdateResetError,
};
use pwreset_domain::{PasswordRejection, QueryError, RateLimited};
use serde_json::json;

use crate::JSONAPI;

/// Where in the request the fault is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A JSON pointer into the body, e.g. `/data/attributes/customer_email`.
    Pointer(String),
    /// A query parameter, e.g. `filter[q][foo_eq]`.
    Parameter(String),
}

/// A JSON:API error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: String,
    pub detail: String,
    pub source: Option<Source>,
    /// For 429 answers (boxed: rare, and it keeps every `Result<_, ApiError>` small).
    pub throttle: Option<Box<Throttle>>,
}

/// The headers of a 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// `Retry-After`, in seconds.
    pub retry_after: u64,
    /// `X-Ratelimit-Limit`.
    pub limit: u32,
    /// `X-Ratelimit-Interval`, in seconds.
    pub interval: i64,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

fn attr_pointer(attribute: &str) -> Option<Source> {
    Some(Source::Pointer(format!("/data/attributes/{attribute}")))
}

/// Whether a use case's failure is the store saying "not now" (`StoreUnavailable`): a
/// 503 with `Retry-After`, wherever the answer is made (API, OAuth, pages).
pub(crate) fn store_unavailable(cause: &anyhow::Error) -> bool {
    cause
        .downcast_ref::<pwreset_domain::ports::StoreUnavailable>()
        .is_some()
}

/// `Retry-After` for a refusal: the seconds until its window ends, rounded up, at least 1
/// (so a client never retries into the same window). Shared by the API, the OAuth
/// endpoints and the pages.
pub(crate) fn retry_after_secs(limited: &RateLimited) -> u64 {
    let millis = limited.retry_after.num_milliseconds().max(0);
    u64::try_from((millis + 999) / 1000).unwrap_or(1).max(1)
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            title: title.to_owned(),
            detail: detail.into(),
            source: None,
            throttle: None,
        }
    }

    #[must_use]
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "Bad request",
            detail,
        )
    }

    /// Malformed or wrongly shaped document.
    pub fn invalid_resource(detail: impl Into<String>, pointer: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_RESOURCE",
            "Invalid resource",
            detail,
        )
        .with_source(Source::Pointer(pointer.to_owned()))
    }

    /// An attribute, relationship or query parameter that this endpoint does not take.
    pub fn param_not_allowed(name: &str, source: Source) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "PARAM_NOT_ALLOWED",
            "Param not allowed",
            format!("{name} is not allowed"),
        )
        .with_source(source)
    }

    pub fn key_not_in_url(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "KEY_NOT_INCLUDED_IN_URL",
            "Key not included in URL",
            detail,
        )
        .with_source(Source::Pointer("/data/id".into()))
    }

    /// A value that is present but unacceptable (422).
    pub fn validation(attribute: &str, title: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            title,
            format!("{attribute} - {title}"),
        )
        .with_source(attr_pointer(attribute).unwrap_or(Source::Pointer("/data".into())))
    }

    /// The single answer for every bad reset token (missing, malformed, wrong, used,
    /// expired, revoked, foreign, exhausted, lost race).
    #[must_use]
    pub fn invalid_reset_token() -> Self {
        Self::validation("_reset_password_token", "is invalid")
    }

    /// A new password refused by the policy (its own code; the token is not used up).
    #[must_use]
    pub fn password_rejected(r: &PasswordRejection) -> Self {
        let mut e = Self::validation("customer_password", &r.to_string());
        e.code = "PASSWORD_REJECTED";
        e
    }

    #[must_use]
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "Invalid token",
            "The access token you passed is invalid or has expired",
        )
    }

    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Unauthorized",
            "You are not authorized to perform this action on the requested resource",
        )
    }

    #[must_use]
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "RECORD_NOT_FOUND",
            "Record not found",
            "The requested resource was not found",
        )
    }

    #[must_use]
    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Not found",
            "No route matches this path",
        )
    }

    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "Method not allowed",
            "This method is not supported on this path",
        )
    }

    #[must_use]
    pub fn not_acceptable() -> Self {
        Self::new(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "Not acceptable",
            "Accept must allow application/vnd.api+json",
        )
    }

    #[must_use]
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Unsupported media type",
            "Content-Type must be application/vnd.api+json",
        )
    }

    #[must_use]
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "Payload too large",
            format!("The request body must be at most {limit} bytes"),
        )
    }

    /// 429 with `Retry-After` and Commerce Layer's `X-Ratelimit-*` headers.
    #[must_use]
    pub fn too_many_requests(limited: &RateLimited) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Too many requests",
            "Too many requests; retry later",
        );
        e.throttle = Some(Box::new(Throttle {
            retry_after: retry_after_secs(limited),
            limit: limited.limit.max,
            interval: limited.limit.window.num_seconds(),
        }));
        e
    }

    /// A 500 whose cause goes to the log only.
    pub fn internal(cause: &anyhow::Error) -> Self {
        if store_unavailable(cause) {
            return Self::unavailable(cause);
        }
        tracing::error!(error = format!("{cause:#}"), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "Internal server error",
            "Something went wrong; it has been logged",
        )
    }

    /// 503 with `Retry-After: 1`: the store could not answer within its deadline (the
    /// database is unreachable, restarting or overloaded).
    #[must_use]
    pub fn unavailable(cause: &anyhow::Error) -> Self {
        tracing::warn!(error = format!("{cause:#}"), "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "Service unavailable",
            "The service cannot reach its database right now. Try again shortly",
        )
    }

    /// The JSON:API error document.
    #[must_use]
    pub fn document(&self) -> serde_json::Value {
        let mut error = json!({
            "title": self.title,
            "detail": self.detail,
            "code": self.code,
            "status": self.status.as_u16().to_string(),
        });
        match &self.source {
            Some(Source::Pointer(p)) => error["source"] = json!({ "pointer": p }),
            Some(Source::Parameter(p)) => error["source"] = json!({ "parameter": p }),
            None => {}
        }
        json!({ "errors": [error] })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(JSONAPI)));
        if let Some(t) = &self.throttle {
            res.insert_header((header::RETRY_AFTER, t.retry_after.to_string()));
            res.insert_header(("X-Ratelimit-Limit", t.limit.to_string()));
            res.insert_header(("X-Ratelimit-Interval", t.interval.to_string()));
            res.insert_header(("X-Ratelimit-Remaining", "0"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        res.body(self.document().to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let parameter = match &e {
            QueryError::UnknownFilter(k) | QueryError::InvalidValue { filter: k, .. } => {
                format!("filter[q][{k}]")
            }
            QueryError::PredicateNotAllowed {
                attribute,
                predicate,
            } => format!("filter[q][{attribute}_{predicate}]"),
            QueryError::TooManyFilters { .. } => "filter[q]".to_owned(),
            QueryError::UnknownSortKey(_) => "sort".to_owned(),
            QueryError::InvalidPage { parameter, .. } => (*parameter).to_owned(),
        };
        Self::bad_request(e.to_string()).with_source(Source::Parameter(parameter))
    }
}

// ---- the table: domain errors to HTTP ----

impl From<RequestResetError> for ApiError {
    fn from(e: RequestResetError) -> Self {
        match e {
            RequestResetError::UnknownCustomer => Self::validation("customer_email", "not found"),
            RequestResetError::RateLimited(r) => {
                tracing::warn!(
                    limit = r.limit.max,
                    window_s = r.limit.window.num_seconds(),
                    "reset request refused by a rate limit"
                );
                Self::too_many_requests(&r)
            }
            RequestResetError::Unexpected(e) => Self::internal(&e),
        }
    }
}

impl From<CompleteResetError> for ApiError {
    fn from(e: CompleteResetError) -> Self {
        match e {
            CompleteResetError::NotFound => Self::not_found(),
            CompleteResetError::InvalidToken(reason) => {
                tracing::info!(reason = reason.as_str(), "reset completion refused");
                Self::invalid_reset_token()
            }
            CompleteResetError::PasswordRejected(r) => Self::password_rejected(&r),
            CompleteResetError::RateLimited(r) => {
                tracing::warn!("reset completion refused: too many failures for the customer");
                Self::too_many_requests(&r)
            }
            CompleteResetError::Unexpected(e) => Self::internal(&e),
        }
    }
}

macro_rules! not_found_or_internal {
    ($($ty:ident),+) => {
        $(impl From<$ty> for ApiError {
            fn from(e: $ty) -> Self {
                match e {
                    $ty::NotFound => Self::not_found(),
                    $ty::Unexpected(e) => Self::internal(&e),
                }
            }
        })+
    };
}

not_found_or_internal!(
    GetResetError,
    UpdateResetError,
    DeleteResetError,
    GetCustomerError,
    DeleteCustomerError
);

impl From<ListResetsError> for ApiError {
    fn from(e: ListResetsError) -> Self {
        match e {
            ListResetsError::Unexpected(e) => Self::internal(&e),
        }
    }
}

impl From<ListCustomersError> for ApiError {
    fn from(e: ListCustomersError) -> Self {
        match e {
            ListCustomersError::Unexpected(e) => Self::internal(&e),
        }
    }
}

impl From<CreateCustomerError> for ApiError {
    fn from(e: CreateCustomerError) -> Self {
        match e {
            CreateCustomerError::EmailTaken => Self::validation("email", "has already been taken"),
            CreateCustomerError::PasswordRejected(r) => {
                let mut e = Self::password_rejected(&r);
                e.source = attr_pointer("password");
                e.detail = format!("password - {r}");
                e
            }
            CreateCustomerError::Unexpected(e) => Self::internal(&e),
        }
    }
}

impl From<UpdateCustomerError> for ApiError {
    fn from(e: UpdateCustomerError) -> Self {
        match e {
            UpdateCustomerError::NotFound => Self::not_found(),
            UpdateCustomerError::EmailTaken => Self::validation("email", "has already been taken"),
            UpdateCustomerError::PasswordRejected(r) => {
                CreateCustomerError::PasswordRejected(r).into()
            }
            UpdateCustomerError::Unexpected(e) => Self::internal(&e),
        }
    }
}
