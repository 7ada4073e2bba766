//! The JSON API (docs/openapi.yaml): a company's status, in exactly the shape of
//! `datacap status --format json` (both serialize the store's [`StatusReport`]), and a
//! member's recent import attempts and status history for on-call, and the company's
//! webhook endpoints with their delivery health. Bearer tokens only; errors are
//! `{"error": "…"}` with 400, 401, 403, 404 or 500.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use datacap_store::{AttemptReport, EndpointReport, StatusChangeReport, StatusReport, StoreError};

use crate::auth::Denied;
use crate::{App, WebState};

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

fn store_error(failure: StoreError) -> Response {
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

/// A call's reader: the path's `{company}` (and `{member}`, on the member calls), once the
/// bearer token is checked to read that company. Every call takes it first, so no call
/// reads anything for a caller who may not.
pub(crate) struct Reader {
    app: Arc<App>,
    company: String,
    /// Empty on the company calls.
    member: String,
}

impl FromRequestParts<WebState> for Reader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Reader, Response> {
        let Path(mut segments) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let company = segments.remove("company").unwrap_or_default();
        let member = segments.remove("member").unwrap_or_default();
        let Some(app) = state.app.clone() else {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this server only answers health, readiness and metrics",
            ));
        };
        match app.auth.api(&parts.headers) {
            Err(Denied::Unauthenticated) | Err(Denied::Forbidden) => Err(error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required",
            )),
            Ok(principal) if !principal.may_read(&company) => Err(error(
                StatusCode::FORBIDDEN,
                "this token does not give access to that company",
            )),
            Ok(_) => Ok(Reader {
                app,
                company,
                member,
            }),
        }
    }
}

/// `GET /api/v1/companies/{company}/status`.
pub(crate) async fn status(reader: Reader) -> Result<Response, Response> {
    let report = reader.app.store.status(Some(&reader.company)).await;
    Ok(Json::<StatusReport>(report.map_err(store_error)?).into_response())
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

/// A member call's rows, under their own key in the answer.
#[derive(serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Rows {
    Attempts(Vec<AttemptReport>),
    Changes(Vec<StatusChangeReport>),
}

/// A member call's answer.
#[derive(serde::Serialize)]
struct MemberAnswer {
    company_id: String,
    member_id: String,
    #[serde(flatten)]
    rows: Rows,
}

/// What a member call reads: [`Attempts`] or [`History`].
pub(crate) trait MemberCall {
    /// The newest `limit` rows of the reader's member.
    fn read(of: &Reader, limit: u32) -> impl Future<Output = Result<Rows, StoreError>> + Send;
}

/// `GET /api/v1/companies/{company}/members/{member}/attempts?limit=N`: the member's
/// recent import attempts, newest first.
pub(crate) struct Attempts;

impl MemberCall for Attempts {
    async fn read(of: &Reader, limit: u32) -> Result<Rows, StoreError> {
        let rows = of.app.store.member_attempts(&of.company, &of.member, limit);
        rows.await.map(Rows::Attempts)
    }
}

/// `GET /api/v1/companies/{company}/members/{member}/history?limit=N`: the member's
/// status changes (`status_changes`), newest first.
pub(crate) struct History;

impl MemberCall for History {
    async fn read(of: &Reader, limit: u32) -> Result<Rows, StoreError> {
        let rows = of.app.store.member_history(&of.company, &of.member, limit);
        rows.await.map(Rows::Changes)
    }
}

/// The member calls (`Call`: [`Attempts`], [`History`]): the token may read the company,
/// `limit` is good, then the rows are read; any failure is the answer to send.
pub(crate) async fn member_rows<Call: MemberCall>(
    reader: Reader,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Response> {
    let limit =
        attempts_limit(&query).map_err(|problem| error(StatusCode::BAD_REQUEST, &problem))?;
    let rows = Call::read(&reader, limit).await.map_err(store_error)?;
    let answer = MemberAnswer {
        company_id: reader.company,
        member_id: reader.member,
        rows,
    };
    Ok(Json(answer).into_response())
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
pub(crate) async fn webhooks(reader: Reader) -> Result<Response, Response> {
    let (store, company_id) = (&reader.app.store, reader.company);
    // An unknown company answers 404, as the other calls do.
    store.status(Some(&company_id)).await.map_err(store_error)?;
    let endpoints = store
        .webhook_endpoints(Some(&company_id))
        .await
        .map_err(store_error)?;
    let answer = WebhooksAnswer {
        company_id,
        endpoints,
    };
    Ok(Json(answer).into_response())
}
