//! Google Workspace: the OAuth token and authorize endpoints, Gmail, Calendar and Directory.
//!
//! Paths mirror Google's under `/google` (see the crate docs). Every error comes from
//! [`faults`], so a condition that arises on its own (no mailbox, stale cursor, missing
//! scope) answers exactly like the fault of the same name. This file holds the routes and
//! the gate every API call passes ([`api`]: the token, its scopes, the path's user, the
//! faults, the user's own state); each API and each OAuth endpoint has a file of its own.

mod authorize;
mod calendar;
pub(crate) mod catalogue;
mod directory;
pub(crate) mod faults;
mod gmail;
mod oidc;
mod search;
mod token;

use axum::Router;
use axum::routing::{get, post};
use time::OffsetDateTime;

use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind, Quirks, fire};
use crate::json::{J, obj};
use crate::scenario::Provider;
use crate::server::{ApiRequest, AppState, Params, Reply, Style, bearer};
use crate::state::{TenantState, UserState, World};

const GMAIL_SCOPES: &[&str] = &[
    "https://mail.google.com/",
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.metadata",
    "https://www.googleapis.com/auth/gmail.modify",
];
const CALENDAR_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.events.readonly",
];
const DIRECTORY_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.user",
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/google/token", post(token::token))
        .route(
            "/google/tokeninfo",
            get(token::tokeninfo).post(token::tokeninfo_form),
        )
        .route("/google/authorize", get(authorize::authorize))
        .route(
            "/google/gmail/v1/users/{user_id}/profile",
            get(gmail::profile),
        )
        .route(
            "/google/gmail/v1/users/{user_id}/messages",
            get(gmail::messages_list),
        )
        .route(
            "/google/gmail/v1/users/{user_id}/messages/{id}",
            get(gmail::message_get),
        )
        .route(
            "/google/gmail/v1/users/{user_id}/history",
            get(gmail::history_list),
        )
        .route(
            "/google/calendar/v3/calendars/{calendar_id}/events",
            get(calendar::events_list),
        )
        .route(
            "/google/admin/directory/v1/users",
            get(directory::directory_users),
        )
        .route(
            "/google/.well-known/openid-configuration",
            get(oidc::configuration),
        )
        .route("/google/oauth2/v3/certs", get(oidc::certs))
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Google's resource timestamps: UTC with milliseconds (`2024-01-18T14:52:12.409Z`), as
/// Calendar's `created` / `updated` and Directory's `creationTime` are written.
pub(crate) fn google_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}

/// The Google tenant whose OAuth client is `client_id`.
fn tenant_of_client(world: &World, client_id: &str) -> Option<usize> {
    world.tenants.iter().position(|t| {
        t.cfg.provider == Provider::Google
            && t.cfg
                .client
                .as_ref()
                .is_some_and(|c| c.client_id == client_id)
    })
}

// ---- API calls ------------------------------------------------------------------------

/// What an authorised API call may touch.
struct Call<'w> {
    tenant: &'w TenantState,
    /// The user the call is about: the token's own (the Directory's caller, an admin).
    user: &'w UserState,
    quirks: Quirks,
}

/// Authenticates, authorises and applies faults, then lets `body` answer.
fn api(
    request: &ApiRequest,
    endpoint: Endpoint,
    path_user: Option<&str>,
    incremental: bool,
    body: impl FnOnce(&Call<'_>) -> Answer,
) -> Reply {
    let mut world = request.shared.lock();
    world.count(endpoint);
    let mut reply = Reply::plain(
        Style::GoogleApi,
        Answer::new(200, J::Null),
        (String::new(), String::new()),
    );
    let mut ctx = AnswerCtx {
        endpoint: Some(endpoint),
        ..AnswerCtx::default()
    };
    let grant = match bearer(&request.headers).and_then(|t| world.tokens.get(t)) {
        Some(grant) if grant.expires_at > now() => grant.clone(),
        _ => {
            reply.answer = faults::google_unauthenticated();
            return reply;
        }
    };
    let tenant = grant.tenant;
    if world
        .tenants
        .get(tenant)
        .is_none_or(|t| t.cfg.provider != Provider::Google)
    {
        reply.answer = faults::google_unauthenticated();
        return reply;
    }
    let needed: &[&str] = match endpoint {
        Endpoint::CalendarEvents => CALENDAR_SCOPES,
        Endpoint::Directory => DIRECTORY_SCOPES,
        _ => GMAIL_SCOPES,
    };
    ctx.needed_scope = needed.join(" ");
    // The user the call is about: the path's, which must be the token's own.
    let user = match (endpoint, grant.user) {
        (Endpoint::Directory, Some(user)) => user,
        (Endpoint::Directory, None) => {
            reply.answer =
                crate::fault::answer(FaultKind::DirectoryNotAuthorized, Provider::Google, &ctx);
            return reply;
        }
        (_, None) => {
            let kind = if endpoint == Endpoint::CalendarEvents {
                FaultKind::CalendarNotFound
            } else {
                FaultKind::PreconditionFailed
            };
            reply.answer = crate::fault::answer(kind, Provider::Google, &ctx);
            return reply;
        }
        (_, Some(user)) => {
            let path = path_user.unwrap_or("me");
            let same = path == "me"
                || path == "primary"
                || world
                    .user(tenant, user)
                    .is_some_and(|u| u.cfg.email.eq_ignore_ascii_case(path));
            if !same {
                ctx.user = path.to_owned();
                let kind = if endpoint == Endpoint::CalendarEvents {
                    FaultKind::CalendarNotFound
                } else {
                    FaultKind::DelegationDenied
                };
                reply.answer = crate::fault::answer(kind, Provider::Google, &ctx);
                return reply;
            }
            user
        }
    };
    if let Some(user_state) = world.user(tenant, user) {
        ctx.user = user_state.cfg.email.clone();
    }
    if !grant.scopes.iter().any(|s| needed.contains(&s.as_str())) {
        reply.answer = faults::google_insufficient_scope(&ctx, true);
        return reply;
    }
    let fired = fire(
        &mut world,
        tenant,
        Some(user),
        endpoint,
        incremental,
        Provider::Google,
        &mut ctx,
    );
    if reply.take_fault(fired) {
        return reply;
    }
    let (Some(tenant_state), Some(user_state)) =
        (world.tenants.get(tenant), world.user(tenant, user))
    else {
        reply.answer = faults::google_unauthenticated();
        return reply;
    };
    let cfg = &user_state.cfg;
    let no_service = !cfg.mailbox || !cfg.licensed || cfg.suspended || cfg.deleted;
    let natural = match endpoint {
        Endpoint::Directory => (!user_state.cfg.admin).then_some(FaultKind::DirectoryNotAuthorized),
        Endpoint::CalendarEvents => no_service.then_some(FaultKind::NotACalendarUser),
        _ => no_service.then_some(FaultKind::MailboxNotEnabled),
    };
    if let Some(kind) = natural {
        reply.answer = crate::fault::answer(kind, Provider::Google, &ctx);
        return reply;
    }
    let call = Call {
        tenant: tenant_state,
        user: user_state,
        quirks: world.quirks(tenant, Some(user), endpoint),
    };
    reply.answer = body(&call);
    reply
}

fn bad_request(reason: &str, message: &str, location: Option<&str>) -> Answer {
    let mut item = obj! { "message" => message, "domain" => "global", "reason" => reason };
    if let Some(location) = location {
        item.push("location", location);
        item.push("locationType", "parameter");
    }
    faults::google_error(
        400,
        message,
        Some(vec![item]),
        Some("INVALID_ARGUMENT"),
        None,
    )
}

fn page_size(params: &Params, default: usize, max: usize) -> usize {
    params
        .get("maxResults")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default)
        .clamp(1, max)
}
