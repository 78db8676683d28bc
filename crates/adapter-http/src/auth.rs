//! Bearer-token authentication: the RS512 access tokens `/oauth/token` hands out (or
//! `pwreset token` mints), checked by [`SessionService::authenticate_token`].
//!
//! A missing, malformed, badly signed or expired token, or one whose session has ended
//! (revoked, rotated out by reuse, its client revoked, its customer's password changed), is
//! `INVALID_TOKEN`. A valid token without the needed permission is `UNAUTHORIZED` (checked
//! by the handlers). A customer token (password grant) may only read its own customer:
//! the extractor refuses it everywhere else, so no handler can forget to.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use pwreset_domain::service::{SessionService, TokenError};
pub use pwreset_domain::{Caller, ClientKind as AppKind, CustomerId, Mode};

use crate::{ApiError, ApiState};

/// The one route a customer token may use.
const CUSTOMER_ROUTE: &str = "/api/customers/{id}";

/// The verified identity behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub kind: AppKind,
    pub mode: Mode,
    /// The signed-in customer, for a customer token.
    pub customer: Option<CustomerId>,
    pub caller: Caller,
}

impl Credentials {
    /// `UNAUTHORIZED` unless an integration token.
    ///
    /// # Errors
    /// For sales channel and customer tokens.
    pub fn require_integration(&self) -> Result<(), ApiError> {
        if self.kind == AppKind::Integration && self.customer.is_none() {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// The bearer token of `req`, if it has one.
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

async fn credentials(req: HttpRequest) -> Result<Credentials, ApiError> {
    let state = req
        .app_data::<web::Data<ApiState>>()
        .ok_or_else(|| ApiError::internal(&anyhow::anyhow!("ApiState is not registered")))?;
    let token = bearer(&req).ok_or_else(ApiError::invalid_token)?;
    let claims = match state.sessions.authenticate_token(token).await {
        Ok(claims) => claims,
        Err(TokenError::Invalid) => return Err(ApiError::invalid_token()),
        Err(TokenError::Unexpected(e)) => return Err(ApiError::internal(&e)),
    };
    if claims.customer.is_some()
        && !(req.method() == Method::GET && req.match_pattern().as_deref() == Some(CUSTOMER_ROUTE))
    {
        return Err(ApiError::unauthorized());
    }
    let caller = SessionService::caller(&claims, crate::client_ip(&req, &state.trusted_proxies));
    Ok(Credentials {
        kind: claims.kind,
        mode: claims.mode,
        customer: claims.customer,
        caller,
    })
}

impl FromRequest for Credentials {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(credentials(req.clone()))
    }
}
