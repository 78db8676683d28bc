//! `/api/customer_password_resets`.

use std::collections::BTreeSet;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use pwreset_domain::service::{CompleteReset, NewReset};
use pwreset_domain::{
    CustomerId, DetailsPatch, EmailAddress, Page, Password, PasswordReset, Patch, ResetId,
};
use serde_json::{Value, json};

use super::{Incoming, document, incoming, path_id};
use crate::jsonapi::{Accepts, Params, RESETS, parse_params};
use crate::{ApiError, ApiState, AppKind, Credentials};

const ONE: Accepts = Accepts {
    list: false,
    includes: &["customer"],
};
const LIST: Accepts = Accepts {
    list: true,
    includes: &["customer"],
};
const CREATE_ATTRIBUTES: &[&str] = &[
    "customer_email",
    "reference",
    "reference_origin",
    "metadata",
];
const UPDATE_ATTRIBUTES: &[&str] = &[
    "customer_password",
    "_reset_password_token",
    "reference",
    "reference_origin",
    "metadata",
];
const SECRET_ATTRIBUTES: &[&str] = &["customer_password", "_reset_password_token"];
const DETAIL_ATTRIBUTES: &[&str] = &["reference", "reference_origin", "metadata"];

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/customer_password_resets")
            .default_service(super::method_not_allowed("GET, POST"))
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/customer_password_resets/{id}")
            .default_service(super::method_not_allowed("GET, PATCH, DELETE"))
            .route(web::get().to(retrieve))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(
        web::resource("/customer_password_resets/{id}/customer")
            .default_service(super::method_not_allowed("GET"))
            .route(web::get().to(customer)),
    )
    .service(
        web::resource("/customer_password_resets/{id}/events")
            .default_service(super::method_not_allowed("GET"))
            .route(web::get().to(events)),
    );
}

/// The resource document for one reset, with `included` when asked.
async fn one(
    state: &ApiState,
    creds: &Credentials,
    reset: &PasswordReset,
    token: Option<&pwreset_domain::ResetToken>,
    params: &Params,
) -> Result<Value, ApiError> {
    let mut doc = json!({ "data": state.renderer.reset(reset, token, &params.view) });
    if params.view.include_customer {
        doc["included"] = Value::Array(included(state, creds, [reset.customer_id], params).await?);
    }
    Ok(doc)
}

async fn included(
    state: &ApiState,
    creds: &Credentials,
    ids: impl IntoIterator<Item = CustomerId>,
    params: &Params,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for id in ids.into_iter().collect::<BTreeSet<_>>() {
        let c = state.customers.get(&creds.caller, id).await?;
        out.push(state.renderer.customer(&c, &params.view));
    }
    Ok(out)
}

async fn list(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    creds.require_integration()?;
    let params = parse_params(req.query_string(), LIST)?;
    let query = crate::query::parse(&params.list)?;
    let page = state.resets.list(&creds.caller, query).await?;
    let data: Vec<Value> = page
        .items
        .iter()
        .map(|r| state.renderer.reset(r, None, &params.view))
        .collect();
    let (meta, links) = crate::jsonapi::page_meta(&state.renderer, RESETS, &page, &params);
    let mut doc = json!({ "data": data, "meta": meta, "links": links });
    if params.view.include_customer {
        let ids = page.items.iter().map(|r| r.customer_id);
        doc["included"] = Value::Array(included(&state, &creds, ids, &params).await?);
    }
    Ok(document(StatusCode::OK, &doc))
}

fn reference_value(patch: Patch<pwreset_domain::Reference>) -> Option<pwreset_domain::Reference> {
    match patch {
        Patch::Keep => None,
        Patch::Set(v) => v,
    }
}

/// The one answer to every self-service request.
const SELF_SERVICE_ACCEPTED: &str =
    "If the address belongs to an account, a message with a reset link is on its way.";

async fn create(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let self_service = match &state.self_service {
        Some(service) if creds.kind == AppKind::SalesChannel => Some(service),
        _ => None,
    };
    if self_service.is_none() {
        creds.require_integration()?;
    }
    let allowed: &[&str] = if self_service.is_some() {
        &["customer_email"]
    } else {
        CREATE_ATTRIBUTES
    };
    let Incoming { params, doc } =
        incoming(&req, payload, &state, ONE, RESETS, None, allowed).await?;
    let email = EmailAddress::parse(doc.required_string("customer_email")?)
        .map_err(|e| ApiError::validation("customer_email", &e.to_string()))?;
    if let Some(service) = self_service {
        if params.view.include_customer {
            return Err(ApiError::unauthorized());
        }
        service.request(&creds.caller, email).await?;
        return Ok(document(
            StatusCode::ACCEPTED,
            &json!({ "meta": { "detail": SELF_SERVICE_ACCEPTED } }),
        ));
    }
    let mut request = NewReset::for_email(email);
    request.reference = reference_value(doc.reference("reference")?);
    request.reference_origin = reference_value(doc.reference("reference_origin")?);
    request.metadata = match doc.metadata()? {
        Patch::Keep => None,
        Patch::Set(m) => m,
    };
    let issued = state.resets.request(&creds.caller, request).await?;
    tracing::info!(
        reset_id = %issued.reset.id,
        customer_id = %issued.reset.customer_id,
        mode = %creds.mode,
        "reset requested"
    );
    let token =
        (creds.kind == AppKind::Integration && state.reveal_tokens).then_some(&issued.token);
    let doc = one(&state, &creds, &issued.reset, token, &params).await?;
    let mut res = document(StatusCode::CREATED, &doc);
    if let Ok(v) = header::HeaderValue::from_str(&format!(
        "{}/api/{RESETS}/{}",
        state.renderer.base, issued.reset.id
    )) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

async fn retrieve(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    creds.require_integration()?;
    let params = parse_params(req.query_string(), ONE)?;
    let reset = state.resets.get(&creds.caller, path_id(&id)?).await?;
    Ok(document(
        StatusCode::OK,
        &one(&state, &creds, &reset, None, &params).await?,
    ))
}

async fn update(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Incoming { params, doc } = incoming(
        &req,
        payload,
        &state,
        ONE,
        RESETS,
        Some(id.as_str()),
        UPDATE_ATTRIBUTES,
    )
    .await?;
    let reset_id: ResetId = path_id(&id)?;
    let completing = doc.has_any(SECRET_ATTRIBUTES);
    if creds.kind == AppKind::SalesChannel {
        // A storefront may only complete a reset, and learns nothing else.
        if !completing || doc.has_any(DETAIL_ATTRIBUTES) || params.view.include_customer {
            return Err(ApiError::unauthorized());
        }
    }
    let details = DetailsPatch {
        reference: doc.reference("reference")?,
        reference_origin: doc.reference("reference_origin")?,
        metadata: doc.metadata()?,
    };
    let reset = if completing {
        let password = Password::new(doc.required_string("customer_password")?);
        // Anything but a string is a malformed token: same answer as every bad token.
        let token = match doc.attributes.get("_reset_password_token") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => Some(String::new()),
        };
        let done = state
            .resets
            .complete(&creds.caller, reset_id, {
                let mut attempt = CompleteReset::new(token, password);
                attempt.details = details;
                attempt
            })
            .await?;
        tracing::info!(reset_id = %done.id, customer_id = %done.customer_id, "reset completed");
        done
    } else {
        state
            .resets
            .update_details(&creds.caller, reset_id, details)
            .await?
    };
    Ok(document(
        StatusCode::OK,
        &one(&state, &creds, &reset, None, &params).await?,
    ))
}

async fn delete(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    creds.require_integration()?;
    parse_params(
        req.query_string(),
        Accepts {
            list: false,
            includes: &[],
        },
    )?;
    state.resets.delete(&creds.caller, path_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn customer(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    creds.require_integration()?;
    let params = parse_params(
        req.query_string(),
        Accepts {
            list: false,
            includes: &[],
        },
    )?;
    let reset = state.resets.get(&creds.caller, path_id(&id)?).await?;
    let customer = state
        .customers
        .get(&creds.caller, reset.customer_id)
        .await?;
    let doc = json!({ "data": state.renderer.customer(&customer, &params.view) });
    Ok(document(StatusCode::OK, &doc))
}

async fn events(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    creds.require_integration()?;
    let params = parse_params(req.query_string(), LIST)?;
    if !params.list.filters.is_empty() || params.list.sort.is_some() {
        return Err(ApiError::bad_request(
            "events can be paged but not filtered or sorted",
        ));
    }
    let request = crate::query::page_request(&params.list)?;
    let size = request.size();
    let reset_id: ResetId = path_id(&id)?;
    let all = state.resets.events(&creds.caller, reset_id).await?;
    let offset = usize::try_from(request.offset()).unwrap_or(usize::MAX);
    let page = Page {
        record_count: all.len() as u64,
        items: all.into_iter().skip(offset).take(size as usize).collect(),
        request,
    };
    let data: Vec<Value> = page
        .items
        .iter()
        .map(|e| state.renderer.event(e, &params.view))
        .collect();
    let (meta, links) = crate::jsonapi::page_meta(
        &state.renderer,
        &format!("{RESETS}/{reset_id}/events"),
        &page,
        &params,
    );
    Ok(document(
        StatusCode::OK,
        &json!({ "data": data, "meta": meta, "links": links }),
    ))
}
