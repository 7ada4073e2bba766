//! Microsoft 365: the Entra ID v2.0 token and authorize endpoints and the Graph calls
//! datacap uses (`/users`, `/me`, mail `messages/delta`, `calendarView/delta`).
//!
//! Login paths live under `/microsoft/{tenant}/oauth2/v2.0/…`, Graph under `/graph/v1.0`.
//! This file holds the routes and the gate every Graph call passes ([`graph`]: the token,
//! its roles or scopes, the path's user, the mailbox's concurrency, the faults, the user's
//! own state); each API and each OAuth endpoint has a file of its own.

mod authorize;
mod calendar;
pub(crate) mod catalogue;
mod delta;
pub(crate) mod faults;
mod mail;
mod oidc;
mod search;
mod token;
mod users;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind, Quirks, fire};
use crate::json::J;
use crate::scenario::Provider;
use crate::server::{ApiRequest, AppState, Reply, Style, bearer, request_ids};
use crate::state::{TenantState, UserState, World};
use faults::graph_error;

const MAIL_PERMISSIONS: &[&str] = &[
    "Mail.Read",
    "Mail.ReadBasic",
    "Mail.ReadBasic.All",
    "Mail.ReadWrite",
];
const CALENDAR_PERMISSIONS: &[&str] = &[
    "Calendars.Read",
    "Calendars.ReadBasic",
    "Calendars.ReadWrite",
];
const USER_PERMISSIONS: &[&str] = &[
    "User.Read.All",
    "User.ReadBasic.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// What `/me` accepts (learn.microsoft.com/graph/api/user-get: User.Read and up).
const ME_PERMISSIONS: &[&str] = &[
    "User.Read",
    "User.ReadWrite",
    "User.ReadBasic.All",
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/microsoft/{tenant}/oauth2/v2.0/token", post(token::token))
        .route(
            "/microsoft/{tenant}/oauth2/v2.0/authorize",
            get(authorize::authorize),
        )
        .route(
            "/microsoft/{tenant}/v2.0/.well-known/openid-configuration",
            get(oidc::configuration),
        )
        .route("/microsoft/{tenant}/discovery/v2.0/keys", get(oidc::keys))
        .route("/graph/v1.0/users", get(users::users))
        .route("/graph/v1.0/me", get(users::me))
        // Graph serves each delta function both as `…/delta` and in OData function form
        // `…/delta()`, which is what msgraph-sdk's URL templates send.
        .route("/graph/v1.0/users/delta", get(users::users_delta))
        .route("/graph/v1.0/users/delta()", get(users::users_delta))
        .route(
            "/graph/v1.0/users/{id}/mailFolders/{folder}/messages/delta",
            get(mail::mail_delta),
        )
        .route(
            "/graph/v1.0/users/{id}/mailFolders/{folder}/messages/delta()",
            get(mail::mail_delta),
        )
        .route(
            "/graph/v1.0/users/{id}/calendarView/delta",
            get(calendar::calendar_delta),
        )
        .route(
            "/graph/v1.0/users/{id}/calendarView/delta()",
            get(calendar::calendar_delta),
        )
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The caller's `client-request-id` as sent (empty without one): the correlation id Entra's
/// error bodies name.
fn sent_client_request_id(headers: &HeaderMap) -> String {
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Resolves a tenant path segment: id, domain or name; `common` / `organizations` resolve
/// through the client id.
fn find_tenant(world: &World, segment: &str, client_id: &str) -> Option<usize> {
    let microsoft = |t: &TenantState| t.cfg.provider == Provider::Microsoft;
    if matches!(segment, "common" | "organizations") {
        return world.tenants.iter().position(|t| {
            microsoft(t)
                && t.cfg
                    .client
                    .as_ref()
                    .is_some_and(|c| c.client_id == client_id)
        });
    }
    world.tenants.iter().position(|t| {
        microsoft(t)
            && (t.cfg.tenant_id.eq_ignore_ascii_case(segment)
                || t.cfg.domain.eq_ignore_ascii_case(segment)
                || t.cfg.name == segment)
    })
}

struct Call<'w> {
    tenant: &'w TenantState,
    /// The user the path names, if it names one.
    user: Option<&'w UserState>,
    quirks: Quirks,
    page_size: Option<usize>,
    /// The token's own user (delegated tokens) and whether it is app-only.
    token_user: Option<usize>,
    app_only: bool,
}

/// `Prefer: odata.maxpagesize=N`, if sent.
fn max_page_size(headers: &HeaderMap) -> Option<usize> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix("odata.maxpagesize=")?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map(|n| n.clamp(1, 1000))
}

fn graph(
    request: &ApiRequest,
    endpoint: Endpoint,
    path_user: Option<&str>,
    incremental: bool,
    body: impl FnOnce(&Call<'_>, &AnswerCtx) -> Answer,
) -> Reply {
    let headers = &request.headers;
    let (request_id, client_request_id) = request_ids(headers);
    let mut ctx = AnswerCtx {
        endpoint: Some(endpoint),
        request_id: request_id.clone(),
        client_request_id: client_request_id.clone(),
        user: path_user.unwrap_or_default().to_owned(),
        ..AnswerCtx::default()
    };
    let mut reply = Reply::plain(
        Style::Graph,
        Answer::new(200, J::Null),
        (request_id, client_request_id),
    );
    let answer =
        |kind: FaultKind, ctx: &AnswerCtx| crate::fault::answer(kind, Provider::Microsoft, ctx);
    let mut world = request.shared.lock();
    world.count(endpoint);
    let Some(token) = bearer(headers) else {
        reply.answer = graph_error(
            &ctx,
            401,
            "InvalidAuthenticationToken",
            "Access token is empty.",
            true,
        );
        reply.answer.headers.push((
            "www-authenticate",
            faults::GRAPH_WWW_AUTHENTICATE.to_owned(),
        ));
        return reply;
    };
    let grant = match world.tokens.get(token) {
        None => {
            reply.answer = answer(FaultKind::InvalidAuthenticationToken, &ctx);
            return reply;
        }
        Some(grant) if grant.expires_at <= now() => {
            reply.answer = answer(FaultKind::TokenExpired, &ctx);
            return reply;
        }
        Some(grant) => grant.clone(),
    };
    let tenant = grant.tenant;
    if world
        .tenants
        .get(tenant)
        .is_none_or(|t| t.cfg.provider != Provider::Microsoft)
    {
        reply.answer = answer(FaultKind::InvalidAuthenticationToken, &ctx);
        return reply;
    }
    let user = match path_user {
        None => None,
        Some(key) => match world
            .user_by_key(tenant, key)
            .filter(|u| world.user(tenant, *u).is_some_and(|s| !s.cfg.deleted))
        {
            Some(user) => Some(user),
            None => {
                reply.answer = answer(FaultKind::InvalidUser, &ctx);
                return reply;
            }
        },
    };
    let needed = match endpoint {
        Endpoint::GraphMail => MAIL_PERMISSIONS,
        Endpoint::GraphCalendar => CALENDAR_PERMISSIONS,
        Endpoint::GraphMe => ME_PERMISSIONS,
        _ => USER_PERMISSIONS,
    };
    let held = if grant.app_only {
        &grant.roles
    } else {
        &grant.scopes
    };
    let permitted = held
        .iter()
        .any(|p| needed.iter().any(|n| n.eq_ignore_ascii_case(p)));
    let own_mailbox = grant.app_only || user.is_none() || grant.user == user;
    if !permitted || !own_mailbox {
        let kind = if matches!(endpoint, Endpoint::GraphUsers | Endpoint::GraphMe) {
            FaultKind::AuthorizationRequestDenied
        } else {
            FaultKind::AccessDenied
        };
        reply.answer = answer(kind, &ctx);
        return reply;
    }
    // Outlook: at most `mailbox_concurrency` requests in flight per app and mailbox
    // (microsoft.md §4); the slot is held until the answer is written.
    if let Some(user_state) = user.and_then(|u| world.user(tenant, u)) {
        let limit = world
            .tenants
            .get(tenant)
            .and_then(|t| t.cfg.client.as_ref())
            .map_or(0, |c| c.mailbox_concurrency);
        match crate::state::InFlight::acquire(&user_state.in_flight, limit) {
            Some(slot) => reply.in_flight = Some(slot),
            None => {
                ctx.retry_after = Some("1".to_owned());
                reply.answer = answer(FaultKind::ApplicationThrottled, &ctx);
                return reply;
            }
        }
    }
    let fired = fire(
        &mut world,
        tenant,
        user,
        endpoint,
        incremental,
        Provider::Microsoft,
        &mut ctx,
    );
    if reply.take_fault(fired) {
        return reply;
    }
    if let Some(user_state) = user.and_then(|u| world.user(tenant, u)) {
        let cfg = &user_state.cfg;
        if cfg.guest || !cfg.mailbox || !cfg.licensed {
            reply.answer = answer(FaultKind::MailboxNotEnabled, &ctx);
            return reply;
        }
    }
    let Some(tenant_state) = world.tenants.get(tenant) else {
        reply.answer = answer(FaultKind::InvalidAuthenticationToken, &ctx);
        return reply;
    };
    let call = Call {
        tenant: tenant_state,
        user: user.and_then(|u| tenant_state.users.get(u)),
        quirks: world.quirks(tenant, user, endpoint),
        page_size: max_page_size(headers),
        token_user: grant.user,
        app_only: grant.app_only,
    };
    reply.answer = body(&call, &ctx);
    if let Some(size) = call.page_size {
        reply
            .answer
            .headers
            .push(("preference-applied", format!("odata.maxpagesize={size}")));
    }
    reply
}

fn graph_time(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}
