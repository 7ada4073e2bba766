//! The control endpoint under `/_sim`: change faults, add or remove mail and events, expire
//! cursors or tokens, and read request counters while the sim runs.
//!
//! Tests and `datacap demo` drive the sim through it over plain HTTP, so a test exercises
//! the same code path as an operator poking a running `datacap sim` with curl.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;

use crate::fault::{EndpointSel, FaultKind};
use crate::scenario::{FaultSpec, RetryAfter};
use crate::server::AppState;
use crate::state::World;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/stats/reset", post(reset_stats))
        .route("/_sim/users", get(users))
        .route("/_sim/faults", post(add_fault).get(list_faults))
        .route("/_sim/faults/clear", post(clear_faults))
        .route("/_sim/faults/{id}", delete(delete_fault))
        .route("/_sim/mail", post(mail))
        .route("/_sim/events", post(events))
        .route("/_sim/expire", post(expire))
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A control call's answer, or the problem that stopped it.
type Outcome = Result<Response, Box<Response>>;

fn settle(outcome: Outcome) -> Response {
    outcome.unwrap_or_else(|problem| *problem)
}

/// A request body read as JSON; `Err` is the 400 saying why it is not a `what` request.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|error| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            format!("invalid {what} request: {error}"),
        ))
    })
}

/// Resolves `tenant` and optional `user` names.
fn locate(
    world: &World,
    tenant: &str,
    user: Option<&str>,
) -> Result<(usize, Option<usize>), Box<Response>> {
    let Some(t) = world.tenant_by_name(tenant) else {
        return Err(Box::new(problem(
            StatusCode::NOT_FOUND,
            format!("no tenant named `{tenant}`"),
        )));
    };
    match user {
        None => Ok((t, None)),
        Some(email) => match world.user_by_email(t, email) {
            Some(u) => Ok((t, Some(u))),
            None => Err(Box::new(problem(
                StatusCode::NOT_FOUND,
                format!("no user `{email}` in tenant `{tenant}`"),
            ))),
        },
    }
}

async fn stats(State(shared): State<AppState>) -> Response {
    let world = shared.lock();
    Json(json!({
        "requests_total": world.requests_total,
        "by_endpoint": world.by_endpoint,
        "faults_fired": world.faults_fired,
        "quota_users": world.quota_users,
    }))
    .into_response()
}

async fn reset_stats(State(shared): State<AppState>) -> Response {
    let mut world = shared.lock();
    world.requests_total = 0;
    world.by_endpoint.clear();
    world.faults_fired.clear();
    world.quota_users.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn users(State(shared): State<AppState>) -> Response {
    let world = shared.lock();
    let list: Vec<_> = world
        .tenants
        .iter()
        .flat_map(|t| {
            t.users.iter().map(move |u| {
                json!({
                    "tenant": t.cfg.name,
                    "provider": t.cfg.provider,
                    "tenant_id": t.cfg.tenant_id,
                    "email": u.cfg.email,
                    "id": u.id,
                    "messages": u.mail.messages.iter().filter(|m| !m.deleted).count(),
                    "history_id": u.mail.history_id.to_string(),
                    "events": u.cal.events.iter().filter(|e| !e.cancelled).count(),
                })
            })
        })
        .collect();
    Json(list).into_response()
}

/// `POST /_sim/faults` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    tenant: String,
    #[serde(default)]
    user: Option<String>,
    fault: FaultKind,
    #[serde(default)]
    endpoint: Option<EndpointSel>,
    #[serde(default)]
    times: Option<u32>,
    #[serde(default)]
    retry_after: Option<RetryAfter>,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    bytes: Option<u64>,
}

async fn add_fault(State(shared): State<AppState>, body: axum::body::Bytes) -> Response {
    settle(add_fault_from(&shared, &body))
}

fn add_fault_from(shared: &AppState, body: &[u8]) -> Outcome {
    let request: FaultRequest = parse(body, "fault")?;
    let mut world = shared.lock();
    let (tenant, user) = locate(&world, &request.tenant, request.user.as_deref())?;
    let provider = world.tenants.get(tenant).map(|t| t.cfg.provider);
    if provider.is_some_and(|p| !request.fault.valid_for(p)) {
        return Err(Box::new(problem(
            StatusCode::BAD_REQUEST,
            format!(
                "fault {:?} does not exist at this tenant's provider",
                request.fault
            ),
        )));
    }
    let spec = FaultSpec {
        fault: request.fault,
        endpoint: request.endpoint,
        times: request.times,
        retry_after: request.retry_after,
        latency_ms: request.latency_ms,
        bytes: request.bytes,
    };
    Ok(match world.add_fault(tenant, user, spec) {
        Some(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        None => problem(StatusCode::NOT_FOUND, "no such tenant or user"),
    })
}

async fn list_faults(State(shared): State<AppState>) -> Response {
    let world = shared.lock();
    let mut list = Vec::new();
    for tenant in &world.tenants {
        for fault in &tenant.faults {
            list.push(json!({ "id": fault.id, "tenant": tenant.cfg.name, "fault": format!("{:?}", fault.spec.fault), "remaining": fault.remaining }));
        }
        for user in &tenant.users {
            for fault in &user.faults {
                list.push(json!({ "id": fault.id, "tenant": tenant.cfg.name, "user": user.cfg.email, "fault": format!("{:?}", fault.spec.fault), "remaining": fault.remaining }));
            }
        }
    }
    Json(list).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Target {
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

async fn clear_faults(State(shared): State<AppState>, body: axum::body::Bytes) -> Response {
    settle(clear_faults_from(&shared, &body))
}

fn clear_faults_from(shared: &AppState, body: &[u8]) -> Outcome {
    let target: Target = if body.is_empty() {
        Target::default()
    } else {
        parse(body, "clear")?
    };
    let mut world = shared.lock();
    let (tenant, user) = match &target.tenant {
        None => (None, None),
        Some(name) => {
            let (t, u) = locate(&world, name, target.user.as_deref())?;
            (Some(t), u)
        }
    };
    let removed = world.clear_faults(tenant, user, None);
    Ok(Json(json!({ "removed": removed })).into_response())
}

async fn delete_fault(State(shared): State<AppState>, Path(id): Path<u64>) -> Response {
    let removed = shared.lock().clear_faults(None, None, Some(id));
    if removed == 0 {
        return problem(StatusCode::NOT_FOUND, format!("no fault with id {id}"));
    }
    Json(json!({ "removed": removed })).into_response()
}

/// `POST /_sim/mail` and `/_sim/events` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    tenant: String,
    user: String,
    #[serde(default)]
    add: u32,
    /// Mail: ids to delete; events: ids to cancel (Google or Graph ids).
    #[serde(default)]
    remove: Vec<String>,
}

/// Reads a change request and finds its user: (request, tenant, user).
fn change_of(world: &World, body: &[u8]) -> Result<(ChangeRequest, usize, usize), Box<Response>> {
    let request: ChangeRequest = parse(body, "change")?;
    match locate(world, &request.tenant, Some(&request.user))? {
        (tenant, Some(user)) => Ok((request, tenant, user)),
        (_, None) => Err(Box::new(problem(StatusCode::NOT_FOUND, "no such user"))),
    }
}

async fn mail(State(shared): State<AppState>, body: axum::body::Bytes) -> Response {
    let mut world = shared.lock();
    let (request, tenant, user) = match change_of(&world, &body) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let added = world.add_mail(tenant, user, request.add);
    let Some(state) = world.user_mut(tenant, user) else {
        return problem(StatusCode::NOT_FOUND, "no such user");
    };
    let removed: Vec<&String> = request
        .remove
        .iter()
        .filter(|id| state.mail.delete(id))
        .collect();
    let added: Vec<_> = added
        .iter()
        .filter_map(|i| state.mail.messages.get(*i))
        .map(|m| json!({ "id": m.id, "graph_id": m.graph_id, "thread_id": m.thread_id }))
        .collect();
    Json(json!({ "added": added, "removed": removed, "history_id": state.mail.history_id.to_string() })).into_response()
}

async fn events(State(shared): State<AppState>, body: axum::body::Bytes) -> Response {
    let mut world = shared.lock();
    let (request, tenant, user) = match change_of(&world, &body) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let added = world.add_events(tenant, user, request.add);
    let now = time::OffsetDateTime::now_utc();
    let Some(state) = world.user_mut(tenant, user) else {
        return problem(StatusCode::NOT_FOUND, "no such user");
    };
    let removed: Vec<&String> = request
        .remove
        .iter()
        .filter(|id| state.cal.cancel(id, now))
        .collect();
    let added: Vec<_> = added
        .iter()
        .filter_map(|i| state.cal.events.get(*i))
        .map(|e| json!({ "id": e.id, "graph_id": e.graph_id }))
        .collect();
    Json(json!({ "added": added, "removed": removed })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpireRequest {
    tenant: String,
    #[serde(default)]
    user: Option<String>,
    /// `cursors` (history ids, sync and delta tokens) or `tokens` (access tokens).
    what: String,
}

async fn expire(State(shared): State<AppState>, body: axum::body::Bytes) -> Response {
    settle(expire_from(&shared, &body))
}

fn expire_from(shared: &AppState, body: &[u8]) -> Outcome {
    let request: ExpireRequest = parse(body, "expire")?;
    let mut world = shared.lock();
    let (tenant, user) = locate(&world, &request.tenant, request.user.as_deref())?;
    Ok(match request.what.as_str() {
        "cursors" => {
            let users: Vec<usize> = match user {
                Some(u) => vec![u],
                None => (0..world.tenants.get(tenant).map_or(0, |t| t.users.len())).collect(),
            };
            for u in &users {
                world.expire_cursors(tenant, *u);
            }
            Json(json!({ "expired_users": users.len() })).into_response()
        }
        "tokens" => {
            let expired = world.expire_tokens(tenant, user);
            Json(json!({ "expired_tokens": expired })).into_response()
        }
        other => problem(
            StatusCode::BAD_REQUEST,
            format!("`what` must be `cursors` or `tokens`, not `{other}`"),
        ),
    })
}
