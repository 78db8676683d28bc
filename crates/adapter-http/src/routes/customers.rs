//! `/api/customers`: the minimum a reset needs (integration callers only; a customer
//! token may read its own customer).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use pwreset_domain::service::{CustomerPatch, NewCustomer};
use pwreset_domain::{EmailAddress, Password, Patch};
use serde_json::{Value, json};

use super::{Incoming, document, incoming, path_id};
use crate::jsonapi::{Accepts, CUSTOMERS, Params, parse_params};
use crate::{ApiError, ApiState, Credentials};

const ONE: Accepts = Accepts {
    list: false,
    includes: &[],
};
const LIST: Accepts = Accepts {
    list: true,
    includes: &[],
};
const ATTRIBUTES: &[&str] = &[
    "email",
    "password",
    "reference",
    "reference_origin",
    "metadata",
];

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/customers")
            .default_service(super::method_not_allowed("GET, POST"))
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/customers/{id}")
            .default_service(super::method_not_allowed("GET, PATCH, DELETE"))
            .route(web::get().to(retrieve))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}

fn customer_document(
    state: &ApiState,
    status: StatusCode,
    customer: &pwreset_domain::Customer,
    params: &Params,
) -> HttpResponse {
    document(
        status,
        &json!({ "data": state.renderer.customer(customer, &params.view) }),
    )
}

fn email(raw: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(raw).map_err(|e| ApiError::validation("email", &e.to_string()))
}

async fn list(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    creds.require_integration()?;
    let params = parse_params(req.query_string(), LIST)?;
    let query = crate::query::parse(&params.list)?;
    let page = state.customers.list(&creds.caller, query).await?;
    let data: Vec<Value> = page
        .items
        .iter()
        .map(|c| state.renderer.customer(c, &params.view))
        .collect();
    let (meta, links) = crate::jsonapi::page_meta(&state.renderer, CUSTOMERS, &page, &params);
    Ok(document(
        StatusCode::OK,
        &json!({ "data": data, "meta": meta, "links": links }),
    ))
}

async fn create(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    creds.require_integration()?;
    let Incoming { params, doc } =
        incoming(&req, payload, &state, ONE, CUSTOMERS, None, ATTRIBUTES).await?;
    let set = |p: Patch<_>| match p {
        Patch::Keep => None,
        Patch::Set(v) => v,
    };
    let request = NewCustomer {
        email: email(doc.required_string("email")?)?,
        password: doc.optional_string("password")?.map(Password::new),
        reference: set(doc.reference("reference")?),
        reference_origin: set(doc.reference("reference_origin")?),
        metadata: match doc.metadata()? {
            Patch::Keep => None,
            Patch::Set(m) => m,
        },
    };
    let customer = state.customers.create(&creds.caller, request).await?;
    Ok(customer_document(
        &state,
        StatusCode::CREATED,
        &customer,
        &params,
    ))
}

async fn retrieve(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = match (creds.customer, path_id(&id)) {
        // A customer token reads its own customer and nothing else, not even a 404.
        (Some(own), Ok(id)) if own == id => id,
        (Some(_), _) => return Err(ApiError::unauthorized()),
        (None, id) => {
            creds.require_integration()?;
            id?
        }
    };
    let params = parse_params(req.query_string(), ONE)?;
    let customer = state.customers.get(&creds.caller, id).await?;
    Ok(customer_document(
        &state,
        StatusCode::OK,
        &customer,
        &params,
    ))
}

async fn update(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    creds.require_integration()?;
    let Incoming { params, doc } = incoming(
        &req,
        payload,
        &state,
        ONE,
        CUSTOMERS,
        Some(id.as_str()),
        ATTRIBUTES,
    )
    .await?;
    let patch = CustomerPatch {
        email: doc.optional_string("email")?.map(email).transpose()?,
        password: doc.optional_string("password")?.map(Password::new),
        details: pwreset_domain::DetailsPatch {
            reference: doc.reference("reference")?,
            reference_origin: doc.reference("reference_origin")?,
            metadata: doc.metadata()?,
        },
    };
    let customer = state
        .customers
        .update(&creds.caller, path_id(&id)?, patch)
        .await?;
    Ok(customer_document(
        &state,
        StatusCode::OK,
        &customer,
        &params,
    ))
}

async fn delete(
    state: web::Data<ApiState>,
    creds: Credentials,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    creds.require_integration()?;
    parse_params(req.query_string(), ONE)?;
    state.customers.delete(&creds.caller, path_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}
