//! The JSON API (docs/openapi.yaml): a company's status, in exactly the shape of
//! `datacap status --format json` (both serialize the store's [`StatusReport`]), and a
//! member's recent import attempts and status history for on-call, and the company's
//! webhook endpoints with their delivery health. Bearer tokens only; errors are
//! `{"error": "…"}` with 400, 401, 403, 404 or 500.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datacap_store::{AttemptReport, EndpointReport, StatusChangeReport, StatusReport, StoreError};

use crate::WebState;
use crate::auth::Denied;

/// Attempts returned when `limit` is not given.
pub const DEFAULT_ATTEMPTS_LIMIT: u32 = 20;
/// The largest `limit` accepted.
pub const MAX_ATTEMPTS_LIMIT: u32 = 200;

fn error(status: StatusCode, text: &str) -> Response {
    let mut response = (status, Json(serde_json::json!({ "error": text }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"datacap\""),
        );
    }
    response
}

fn store_error(failure: &StoreError) -> Response {
    match failure {
        StoreError::UnknownCompany { .. } | StoreError::UnknownMember { .. } => {
            error(StatusCode::NOT_FOUND, &failure.to_string())
        }
        other => {
            tracing::error!(error = %other, "the store failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the database could not be read; see the daemon's logs",
            )
        }
    }
}

/// Checks the bearer token may read `company`.
fn authorize(state: &WebState, headers: &HeaderMap, company: &str) -> Result<(), Response> {
    let Some(app) = &state.app else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server only answers health, readiness and metrics",
        ));
    };
    match app.auth.api(headers) {
        Err(Denied::Unauthenticated) | Err(Denied::Forbidden) => Err(error(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
        )),
        Ok(principal) if !principal.may_read(company) => Err(error(
            StatusCode::FORBIDDEN,
            "this token does not give access to that company",
        )),
        Ok(_) => Ok(()),
    }
}

/// `GET /api/v1/companies/{company}/status`.
pub(crate) async fn status(
    State(state): State<WebState>,
    Path(company): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&state, &headers, &company) {
        return response;
    }
    let Some(app) = &state.app else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no app");
    };
    match app.store.status(Some(&company)).await {
        Ok(report) => Json::<StatusReport>(report).into_response(),
        Err(failure) => store_error(&failure),
    }
}

/// `limit` of the attempts call: 1 to [`MAX_ATTEMPTS_LIMIT`], default
/// [`DEFAULT_ATTEMPTS_LIMIT`]; no other parameter.
fn attempts_limit(query: &HashMap<String, String>) -> Result<u32, String> {
    if let Some(other) = query.keys().find(|key| key.as_str() != "limit") {
        return Err(format!("unknown query parameter {other:?} (only limit)"));
    }
    match query.get("limit") {
        None => Ok(DEFAULT_ATTEMPTS_LIMIT),
        Some(text) => match text.parse::<u32>() {
            Ok(limit) if (1..=MAX_ATTEMPTS_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(format!(
                "limit {text:?} must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}"
            )),
        },
    }
}

/// The attempts call's answer.
#[derive(serde::Serialize)]
struct AttemptsAnswer {
    company_id: String,
    member_id: String,
    attempts: Vec<AttemptReport>,
}

/// The member calls' shared steps: the token may read `company`, `limit` is good, then
/// `fetch` reads the rows; any failure is the answer to send.
async fn member_rows<T>(
    state: &WebState,
    headers: &HeaderMap,
    company: &str,
    query: &HashMap<String, String>,
    fetch: impl AsyncFnOnce(&datacap_store::Store, u32) -> Result<T, StoreError>,
) -> Result<T, Response> {
    authorize(state, headers, company)?;
    let limit =
        attempts_limit(query).map_err(|problem| error(StatusCode::BAD_REQUEST, &problem))?;
    let Some(app) = &state.app else {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "no app"));
    };
    fetch(&app.store, limit)
        .await
        .map_err(|failure| store_error(&failure))
}

/// `GET /api/v1/companies/{company}/members/{member}/attempts?limit=N`.
pub(crate) async fn attempts(
    State(state): State<WebState>,
    Path((company, member)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let rows = member_rows(&state, &headers, &company, &query, async |store, limit| {
        store.member_attempts(&company, &member, limit).await
    })
    .await;
    match rows {
        Ok(attempts) => Json(AttemptsAnswer {
            company_id: company,
            member_id: member,
            attempts,
        })
        .into_response(),
        Err(response) => response,
    }
}

/// The history call's answer.
#[derive(serde::Serialize)]
struct HistoryAnswer {
    company_id: String,
    member_id: String,
    changes: Vec<StatusChangeReport>,
}

/// `GET /api/v1/companies/{company}/members/{member}/history?limit=N`: the member's
/// status changes (`status_changes`), newest first.
pub(crate) async fn history(
    State(state): State<WebState>,
    Path((company, member)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let rows = member_rows(&state, &headers, &company, &query, async |store, limit| {
        store.member_history(&company, &member, limit).await
    })
    .await;
    match rows {
        Ok(changes) => Json(HistoryAnswer {
            company_id: company,
            member_id: member,
            changes,
        })
        .into_response(),
        Err(response) => response,
    }
}

/// The webhooks call's answer.
#[derive(serde::Serialize)]
struct WebhooksAnswer {
    company_id: String,
    endpoints: Vec<EndpointReport>,
}

/// `GET /api/v1/companies/{company}/webhooks`: the company's endpoints with their backlog,
/// dead events, last success and last failure (never a secret: only its reference stays
/// in the database, and this shows not even that).
pub(crate) async fn webhooks(
    State(state): State<WebState>,
    Path(company): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&state, &headers, &company) {
        return response;
    }
    let Some(app) = &state.app else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no app");
    };
    // An unknown company answers 404, as the other calls do.
    if let Err(failure) = app.store.status(Some(&company)).await {
        return store_error(&failure);
    }
    match app.store.webhook_endpoints(Some(&company)).await {
        Ok(endpoints) => Json(WebhooksAnswer {
            company_id: company,
            endpoints,
        })
        .into_response(),
        Err(failure) => store_error(&failure),
    }
}
