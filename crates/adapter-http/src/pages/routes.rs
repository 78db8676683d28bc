//! The page handlers: parse the form or link, call one use case, render a page.

use std::collections::BTreeMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use minijinja::Value;
use pwreset_domain::service::{
    CompleteReset, CompleteResetError, GetResetError, RequestResetError,
};
use pwreset_domain::{Caller, EmailAddress, Password, PasswordRejection, RateLimited, ResetId};

use super::{FORM_COOKIE, FORM_COOKIE_HOST, Pages, TOKEN_COOKIE, TOKEN_COOKIE_MAX_AGE};
use crate::ApiState;

/// What a handler answers with: a page, or a redirect.
type Values = BTreeMap<&'static str, Value>;

/// A page and the language it is in.
struct View<'a> {
    pages: &'a Pages,
    lang: &'a str,
}

impl<'a> View<'a> {
    fn new(pages: &'a Pages, req: &HttpRequest) -> Self {
        let accept = req
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        Self {
            lang: pages.renderer.language(accept),
            pages,
        }
    }

    fn text(&self, key: &str) -> String {
        self.pages
            .renderer
            .texts(self.lang)
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Template `name` with `values`, as a `status` HTML response.
    fn page(&self, status: StatusCode, name: &str, values: Values) -> HttpResponse {
        match self.pages.renderer.render(name, self.lang, values) {
            Ok(html) => HttpResponse::build(status)
                .content_type("text/html; charset=utf-8")
                .body(html),
            Err(e) => {
                tracing::error!(error = %e, template = name, "page template failed");
                HttpResponse::InternalServerError()
                    .content_type("text/plain; charset=utf-8")
                    .body("Something went wrong.")
            }
        }
    }

    /// The generic message page, `id` naming its heading, texts `<key>_title/_body`.
    fn message(&self, status: StatusCode, id: &'static str, key: &str) -> HttpResponse {
        let values = BTreeMap::from([
            ("id", Value::from(id)),
            ("title", Value::from(self.text(&format!("{key}_title")))),
            ("body", Value::from(self.text(&format!("{key}_body")))),
        ]);
        self.page(status, "message.html", values)
    }

    fn not_found(&self) -> HttpResponse {
        self.message(StatusCode::NOT_FOUND, "not-found", "not_found")
    }

    fn forbidden(&self) -> HttpResponse {
        self.message(StatusCode::FORBIDDEN, "forbidden", "forbidden")
    }

    fn unexpected(&self, error: &dyn std::fmt::Display) -> HttpResponse {
        tracing::error!(error = %error, "page request failed");
        self.message(StatusCode::INTERNAL_SERVER_ERROR, "error", "error")
    }

    /// A use case's unexpected failure: 503 with `Retry-After` when the store could not
    /// answer in time (the same "try again" page), otherwise [`View::unexpected`].
    fn failed(&self, cause: &anyhow::Error) -> HttpResponse {
        if !crate::error::store_unavailable(cause) {
            return self.unexpected(&format!("{cause:#}"));
        }
        tracing::warn!(error = format!("{cause:#}"), "store unavailable");
        let mut res = self.message(StatusCode::SERVICE_UNAVAILABLE, "error", "error");
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        res
    }

    fn throttled(&self, limited: &RateLimited) -> HttpResponse {
        let seconds = crate::error::retry_after_secs(limited);
        let mut res = self.message(StatusCode::TOO_MANY_REQUESTS, "throttled", "throttled");
        if let Ok(v) = header::HeaderValue::from_str(&seconds.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }

    /// "This link is no longer valid": one page, the same bytes for every cause; it also
    /// drops the token cookie.
    fn invalid(&self) -> HttpResponse {
        let mut res = self.page(StatusCode::GONE, "invalid.html", Values::new());
        set_cookie(&mut res, &token_cookie(self.pages, "", 0));
        res
    }
}

/// The values of every cookie called `name` the request carries.
fn cookies<'r>(req: &'r HttpRequest, name: &'r str) -> impl Iterator<Item = String> + 'r {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// The value of cookie `name`, if any.
fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    cookies(req, name).next().filter(|v| !v.is_empty())
}

/// The form cookie's name for these pages.
fn form_cookie_name(pages: &Pages) -> &'static str {
    if pages.https {
        FORM_COOKIE_HOST
    } else {
        FORM_COOKIE
    }
}

/// This browser's anti-forgery key for the forms a page shows: the form cookie's when it
/// is well formed (so several tabs agree), a fresh random one otherwise (`fresh`: the
/// response must set the cookie).
struct FormKey {
    value: String,
    fresh: bool,
}

impl FormKey {
    fn of(pages: &Pages, req: &HttpRequest) -> Self {
        match cookie(req, form_cookie_name(pages)).filter(|v| form_key_shape(v)) {
            Some(value) => Self {
                value,
                fresh: false,
            },
            None => Self {
                value: uuid::Uuid::new_v4().simple().to_string(),
                fresh: true,
            },
        }
    }

    /// Sets the cookie on `res` when the key is new.
    fn set_on(&self, pages: &Pages, res: &mut HttpResponse) {
        if self.fresh {
            let secure = if pages.https { "; Secure" } else { "" };
            set_cookie(
                res,
                &format!(
                    "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=86400{secure}",
                    form_cookie_name(pages),
                    self.value
                ),
            );
        }
    }
}

/// 32 lowercase hex digits, as [`FormKey::of`] makes them.
fn form_key_shape(v: &str) -> bool {
    v.len() == 32
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a posted form did not come from one of our pages: an `Origin` of another site,
/// or a `csrf` field that is missing or differs from the form cookie. Browsers send
/// `Origin: null` for a form on a page with `Referrer-Policy: no-referrer` (ours), so
/// `null` alone proves nothing either way; the key decides.
fn forged(pages: &Pages, req: &HttpRequest, fields: &BTreeMap<String, String>) -> bool {
    let foreign_origin = req.headers().get(header::ORIGIN).is_some_and(|o| {
        !o.to_str()
            .is_ok_and(|o| o == "null" || o.eq_ignore_ascii_case(&pages.origin))
    });
    // Exactly one form cookie: two would mean one was planted (by a sibling host, say),
    // and which one a browser sends first is not ours to rely on.
    let mut keys = cookies(req, form_cookie_name(pages));
    let key_matches = match (keys.next(), keys.next(), fields.get("csrf")) {
        (Some(c), None, Some(f)) if form_key_shape(&c) => {
            bool::from(subtle::ConstantTimeEq::ct_eq(c.as_bytes(), f.as_bytes()))
        }
        _ => false,
    };
    foreign_origin || !key_matches
}

/// The fields of a form body; `None` when it is not a form or too large.
async fn form(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Option<BTreeMap<String, String>> {
    let body = crate::routes::read_body(req, payload, limit).await.ok()?;
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .ok()
        .map(|pairs| pairs.into_iter().rev().collect())
}

fn query(req: &HttpRequest) -> BTreeMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .map(|pairs| pairs.into_iter().rev().collect())
        .unwrap_or_default()
}

fn client(state: &ApiState, req: &HttpRequest) -> Option<std::net::IpAddr> {
    crate::client_ip(req, &state.trusted_proxies)
}

/// `GET /forgot-password`: the email form (404 unless self-service is on).
pub(crate) async fn forgot_form(
    state: web::Data<ApiState>,
    pages: web::Data<Pages>,
    req: HttpRequest,
) -> HttpResponse {
    let view = View::new(&pages, &req);
    if state.self_service.is_none() {
        return view.not_found();
    }
    forgot_page(&view, &FormKey::of(&pages, &req), StatusCode::OK, "", false)
}

fn forgot_page(
    view: &View<'_>,
    key: &FormKey,
    status: StatusCode,
    email: &str,
    invalid: bool,
) -> HttpResponse {
    let error = if invalid {
        view.text("email_invalid")
    } else {
        String::new()
    };
    let values = BTreeMap::from([
        ("email", Value::from(email)),
        ("email_error", Value::from(error)),
        ("csrf", Value::from(key.value.as_str())),
    ]);
    let mut res = view.page(status, "forgot.html", values);
    key.set_on(view.pages, &mut res);
    res
}

/// `POST /forgot-password`: the self-service request; one answer for every address.
pub(crate) async fn forgot_submit(
    state: web::Data<ApiState>,
    pages: web::Data<Pages>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let view = View::new(&pages, &req);
    let Some(service) = &state.self_service else {
        return view.not_found();
    };
    let mut fields = form(&req, payload, state.body_limit)
        .await
        .unwrap_or_default();
    if forged(&pages, &req, &fields) {
        return view.forbidden();
    }
    let raw = fields.remove("email").unwrap_or_default();
    let Ok(email) = EmailAddress::parse(raw.trim()) else {
        return forgot_page(
            &view,
            &FormKey::of(&pages, &req),
            StatusCode::OK,
            raw.trim(),
            true,
        );
    };
    let mut caller = Caller::new(pages.mode);
    caller.client_ip = client(&state, &req);
    match service.request(&caller, email).await {
        Ok(()) => view.page(StatusCode::OK, "sent.html", Values::new()),
        Err(RequestResetError::RateLimited(r)) => view.throttled(&r),
        // Self-service requests never look the customer up; kept for the match.
        Err(RequestResetError::UnknownCustomer) => {
            view.page(StatusCode::OK, "sent.html", Values::new())
        }
        Err(RequestResetError::Unexpected(e)) => view.failed(&e),
    }
}

/// Whether `token` can travel in a cookie unchanged: what a token looks like (base64url),
/// so nothing else can be smuggled into the header.
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The token cookie. `SameSite=Lax`, not `Strict`: the mailed link is opened from another
/// site (a webmail page, a mail client), and browsers treat the redirect chain of such a
/// navigation as cross-site, so a `Strict` cookie set by the 303 would not come back on the
/// redirected `GET` and no link opened from webmail would work. `Lax` cookies travel on
/// top-level `GET` navigations only; a cross-site `POST` never carries it, and every form
/// also needs the anti-forgery key.
fn token_cookie(pages: &Pages, token: &str, max_age: u32) -> String {
    let secure = if pages.https { "; Secure" } else { "" };
    format!(
        "{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/reset-password; Max-Age={max_age}{secure}"
    )
}

fn set_cookie(res: &mut HttpResponse, cookie: &str) {
    if let Ok(v) = header::HeaderValue::from_str(cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The token from the cookie, if any.
fn cookie_token(req: &HttpRequest) -> Option<String> {
    cookie(req, TOKEN_COOKIE)
}

/// `GET /reset-password`: with a token (the mailed link), move it into the cookie and
/// redirect to the URL without it; without one, show the form if the cookie's token is
/// valid, the invalid-link page otherwise.
pub(crate) async fn reset_form(
    state: web::Data<ApiState>,
    pages: web::Data<Pages>,
    req: HttpRequest,
) -> HttpResponse {
    let view = View::new(&pages, &req);
    let mut params = query(&req);
    let id = params.get("id").and_then(|raw| raw.parse::<ResetId>().ok());
    if let Some(token) = params.remove("token") {
        let location = id.map_or_else(
            || "/reset-password".to_owned(),
            |id| format!("/reset-password?id={id}"),
        );
        let mut res = HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .finish();
        if cookie_safe(&token) {
            set_cookie(
                &mut res,
                &token_cookie(&pages, &token, TOKEN_COOKIE_MAX_AGE),
            );
        }
        return res;
    }
    let Some(id) = id else {
        return view.invalid();
    };
    let token = cookie_token(&req);
    match state
        .resets
        .check_link(client(&state, &req), id, token.as_deref())
        .await
    {
        Ok(reset) => reset_page(
            &view,
            &state,
            &FormKey::of(&pages, &req),
            StatusCode::OK,
            id,
            reset.customer_email.as_str(),
            None,
        ),
        Err(e) => completion_failure(&view, &e),
    }
}

/// The new-password form; `error` in words next to the field. The password is never
/// sent back.
fn reset_page(
    view: &View<'_>,
    state: &ApiState,
    key: &FormKey,
    status: StatusCode,
    id: ResetId,
    username: &str,
    error: Option<&PasswordRejection>,
) -> HttpResponse {
    let min = state.resets.password_policy().min_chars().to_string();
    let error = match error {
        None => String::new(),
        Some(PasswordRejection::TooShort { min }) => view
            .text("password_too_short")
            .replace("{min}", &min.to_string()),
        Some(PasswordRejection::TooLong { max }) => view
            .text("password_too_long")
            .replace("{max}", &max.to_string()),
        Some(PasswordRejection::ContainsEmail) => view.text("password_contains_email"),
        Some(PasswordRejection::Common) => view.text("password_common"),
    };
    let values = BTreeMap::from([
        ("reset_id", Value::from(id.to_string())),
        ("username", Value::from(username)),
        (
            "password_hint",
            Value::from(view.text("password_hint").replace("{min}", &min)),
        ),
        ("password_error", Value::from(error)),
        ("csrf", Value::from(key.value.as_str())),
    ]);
    let mut res = view.page(status, "reset.html", values);
    key.set_on(view.pages, &mut res);
    res
}

/// The page for a failed check or completion: every token failure is the one invalid
/// page.
fn completion_failure(view: &View<'_>, e: &CompleteResetError) -> HttpResponse {
    match e {
        CompleteResetError::NotFound | CompleteResetError::InvalidToken(_) => {
            if let CompleteResetError::InvalidToken(reason) = e {
                tracing::info!(reason = reason.as_str(), "reset link refused");
            }
            view.invalid()
        }
        CompleteResetError::RateLimited(r) => view.throttled(r),
        CompleteResetError::Unexpected(cause) => view.failed(cause),
        CompleteResetError::PasswordRejected(_) => view.unexpected(e),
    }
}

/// `POST /reset-password?id=..`: completes the reset with the cookie's token.
pub(crate) async fn reset_submit(
    state: web::Data<ApiState>,
    pages: web::Data<Pages>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let view = View::new(&pages, &req);
    let mut fields = form(&req, payload, state.body_limit)
        .await
        .unwrap_or_default();
    if forged(&pages, &req, &fields) {
        return view.forbidden();
    }
    let Some(id) = query(&req)
        .get("id")
        .and_then(|raw| raw.parse::<ResetId>().ok())
    else {
        return view.invalid();
    };
    let password = fields.remove("password").unwrap_or_default();
    let attempt = CompleteReset::new(cookie_token(&req), Password::new(password));
    let ip = client(&state, &req);
    match state.resets.complete_link(ip, id, attempt).await {
        Ok(_) => {
            let mut res = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/reset-password/done"))
                .finish();
            set_cookie(&mut res, &token_cookie(&pages, "", 0));
            res
        }
        Err(CompleteResetError::PasswordRejected(rejection)) => {
            match state.resets.find_link(id).await {
                Ok(Some(reset)) => reset_page(
                    &view,
                    &state,
                    &FormKey::of(&pages, &req),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    id,
                    reset.customer_email.as_str(),
                    Some(&rejection),
                ),
                Ok(None) => view.invalid(),
                Err(GetResetError::Unexpected(cause)) => view.failed(&cause),
                Err(e) => view.unexpected(&e),
            }
        }
        Err(e) => completion_failure(&view, &e),
    }
}

/// `GET /reset-password/done`: "Password changed", with a sign-in button when configured.
pub(crate) async fn changed(pages: web::Data<Pages>, req: HttpRequest) -> HttpResponse {
    let view = View::new(&pages, &req);
    let values = BTreeMap::from([(
        "signin_url",
        Value::from(pages.signin_url.clone().unwrap_or_default()),
    )]);
    view.page(StatusCode::OK, "changed.html", values)
}

/// `GET /assets/pages.css`.
pub(crate) async fn style(pages: web::Data<Pages>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(pages.renderer.style.clone())
}

/// A page path's answer to a method it does not support: a 405 page whose `Allow` header
/// names the methods it does (RFC 9110 section 15.5.6).
pub(crate) fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(
        move |pages: web::Data<Pages>, req: HttpRequest| async move {
            let mut res = View::new(&pages, &req).message(
                StatusCode::METHOD_NOT_ALLOWED,
                "not-found",
                "not_found",
            );
            res.headers_mut().insert(
                actix_web::http::header::ALLOW,
                actix_web::http::header::HeaderValue::from_static(allow),
            );
            res
        },
    )
}
