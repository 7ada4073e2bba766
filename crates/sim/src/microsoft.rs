//! Microsoft 365: the Entra ID v2.0 token and authorize endpoints and the Graph calls
//! datacap uses (`/users`, mail `messages/delta`, `calendarView/delta`).
//!
//! Login paths live under `/microsoft/{tenant}/oauth2/v2.0/…`, Graph under `/graph/v1.0`.
//! Delta links carry their whole state in an opaque token, so a link stays valid until the
//! user's delta epoch is bumped (by `expire` on the control endpoint or a cursor fault), at
//! which point it answers 410 `SyncStateNotFound`, as Graph does.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind, entra_error, graph_error};
use crate::google::{consent, pkce_ok, redirect_to};
use crate::json::{J, obj};
use crate::paging::{self, PageAt};
use crate::scenario::Provider;
use crate::server::{
    AppState, Fired, Params, Reply, Style, bearer, deliver, error_page, fire, request_ids,
};
use crate::state::{CodeGrant, Grant, Quirks, RefreshGrant, World};

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
/// OpenID scopes that never appear in `scp`.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/microsoft/{tenant}/oauth2/v2.0/token", post(token))
        .route("/microsoft/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/graph/v1.0/users", get(users))
        .route("/graph/v1.0/me", get(me))
        .route(
            "/graph/v1.0/users/{id}/mailFolders/{folder}/messages/delta",
            get(mail_delta),
        )
        .route(
            "/graph/v1.0/users/{id}/calendarView/delta",
            get(calendar_delta),
        )
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Resolves a tenant path segment: id, domain or name; `common` / `organizations` resolve
/// through the client id.
fn find_tenant(world: &World, segment: &str, client_id: &str) -> Option<usize> {
    let microsoft = |t: &crate::state::TenantState| t.cfg.provider == Provider::Microsoft;
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

fn scp_of(scopes: &[String]) -> Vec<String> {
    scopes
        .iter()
        .map(|s| {
            s.strip_prefix("https://graph.microsoft.com/")
                .unwrap_or(s)
                .to_owned()
        })
        .filter(|s| !OIDC_SCOPES.contains(&s.as_str()) && !s.is_empty())
        .collect()
}

/// Mints a Graph access token (an HS256 JWT) and records its grant.
fn mint(
    world: &mut World,
    key: &[u8],
    tenant: usize,
    user: Option<usize>,
    client_id: &str,
    scopes: &[String],
) -> (String, i64) {
    let lifetime = world.token_lifetime;
    let issued = now();
    let Some(tenant_state) = world.tenants.get(tenant) else {
        return (String::new(), lifetime);
    };
    let tid = tenant_state.cfg.tenant_id.clone();
    let roles = tenant_state
        .cfg
        .client
        .as_ref()
        .map(|c| c.roles.clone())
        .unwrap_or_default();
    let mut claims = obj! {
        "aud" => "https://graph.microsoft.com",
        "iss" => format!("https://sts.windows.net/{tid}/"),
        "iat" => issued,
        "nbf" => issued,
        "exp" => issued + lifetime,
        "app_displayname" => "datacap",
        "appid" => client_id,
        "idtyp" => if user.is_some() { "user" } else { "app" },
        "tid" => tid.as_str(),
        "uti" => uuid::Uuid::new_v4().simple().to_string(),
        "ver" => "1.0",
    };
    let (grant_roles, grant_scopes) = match user.and_then(|u| tenant_state.users.get(u)) {
        Some(user_state) => {
            let scp = scp_of(scopes);
            claims.push("name", user_state.cfg.name.as_str());
            claims.push("oid", user_state.id.as_str());
            claims.push("scp", scp.join(" "));
            claims.push("sub", user_state.id.as_str());
            claims.push("upn", user_state.cfg.email.as_str());
            (Vec::new(), scp)
        }
        None => {
            if !roles.is_empty() {
                claims.push("roles", roles.iter().map(J::from).collect::<Vec<J>>());
            }
            claims.push("oid", uuid::Uuid::new_v4().to_string());
            claims.push("sub", client_id);
            (roles, Vec::new())
        }
    };
    let token = crate::jwt::sign_hs256(&claims, key);
    world.issue(
        token.clone(),
        Grant {
            tenant,
            user,
            scopes: grant_scopes,
            roles: grant_roles,
            expires_at: issued + lifetime,
            app_only: user.is_none(),
        },
    );
    (token, lifetime)
}

async fn token(
    State(shared): State<AppState>,
    Path(tenant_segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::parse(&body);
    let (request_id, client_request_id) = request_ids(&headers);
    let client_id = params.get("client_id").unwrap_or_default().to_owned();
    let mut ctx = AnswerCtx {
        client_id: client_id.clone(),
        tenant: tenant_segment.clone(),
        request_id: request_id.clone(),
        client_request_id: headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        ..AnswerCtx::default()
    };
    let mut reply = Reply {
        style: Style::EntraToken,
        answer: Answer::new(200, J::Null),
        transport: None,
        request_id,
        client_request_id,
        in_flight: None,
    };
    reply.answer = {
        let mut world = shared.lock();
        world.count(Endpoint::Token);
        token_answer(
            &mut world,
            &shared.token_key,
            &tenant_segment,
            &client_id,
            &params,
            &mut ctx,
            &mut reply.transport,
        )
    };
    deliver(reply).await
}

fn token_answer(
    world: &mut World,
    key: &[u8],
    tenant_segment: &str,
    client_id: &str,
    params: &Params,
    ctx: &mut AnswerCtx,
    transport: &mut Option<crate::scenario::FaultSpec>,
) -> Answer {
    let answer =
        |kind: FaultKind, ctx: &AnswerCtx| crate::fault::answer(kind, Provider::Microsoft, ctx);
    let Some(tenant) = find_tenant(world, tenant_segment, client_id) else {
        return answer(FaultKind::InvalidTenant, ctx);
    };
    let Some(client) = world.tenants.get(tenant).and_then(|t| t.cfg.client.clone()) else {
        return answer(FaultKind::AppNotInTenant, ctx);
    };
    if client.client_id != client_id {
        return answer(FaultKind::AppNotInTenant, ctx);
    }
    let grant_type = params.get("grant_type").unwrap_or_default();
    let refresh = (grant_type == "refresh_token")
        .then(|| {
            params
                .get("refresh_token")
                .and_then(|t| world.refresh.get(t).cloned())
        })
        .flatten();
    let code = (grant_type == "authorization_code")
        .then(|| params.get("code").and_then(|c| world.codes.get(c).cloned()))
        .flatten();
    let user = refresh
        .as_ref()
        .map(|r| r.user)
        .or(code.as_ref().map(|c| c.user));
    if let Some(user) = user.and_then(|u| world.user(tenant, u)) {
        ctx.user = user.cfg.email.clone();
    }
    match fire(
        world,
        tenant,
        user,
        Endpoint::Token,
        false,
        Provider::Microsoft,
        ctx,
    ) {
        Fired::Answer(answer, spec) => {
            *transport = spec;
            return answer;
        }
        Fired::Transport(spec) => *transport = Some(spec),
        Fired::Nothing => {}
    }
    match params.get("client_secret") {
        None => {
            return entra_error(
                ctx,
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                None,
            );
        }
        Some(secret) if secret != client.client_secret => {
            return answer(FaultKind::InvalidClientSecret, ctx);
        }
        Some(_) => {}
    }
    let scopes: Vec<String> = params
        .get("scope")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    match grant_type {
        "client_credentials" => {
            if scopes.len() != 1 || !scopes.iter().all(|s| s.ends_with("/.default")) {
                let scope = scopes.join(" ");
                return entra_error(
                    ctx,
                    400,
                    "invalid_scope",
                    1002012,
                    &format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                    None,
                );
            }
            let (token, lifetime) = mint(world, key, tenant, None, client_id, &[]);
            Answer::new(
                200,
                obj! {
                    "token_type" => "Bearer",
                    "expires_in" => lifetime,
                    "ext_expires_in" => lifetime,
                    "access_token" => token,
                },
            )
        }
        "refresh_token" => {
            let Some(grant) = refresh else {
                return answer(FaultKind::InvalidRefreshToken, ctx);
            };
            if grant.tenant != tenant
                || grant.client_id != client_id
                || (grant.rotated && client.reject_reused_refresh_tokens)
            {
                return answer(FaultKind::InvalidRefreshToken, ctx);
            }
            if let Some(user) = world.user(tenant, grant.user) {
                if user.cfg.deleted {
                    return answer(FaultKind::UserNotFound, ctx);
                }
                if user.cfg.suspended {
                    return answer(FaultKind::UserDisabled, ctx);
                }
            }
            if let Some(token) = params
                .get("refresh_token")
                .and_then(|t| world.refresh.get_mut(t))
            {
                token.rotated = true;
            }
            delegated_success(world, key, tenant, grant.user, client_id, grant.scopes)
        }
        "authorization_code" => {
            let Some(grant) = code else {
                return answer(FaultKind::InvalidRefreshToken, ctx);
            };
            if grant.used {
                return entra_error(
                    ctx,
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                    None,
                );
            }
            if grant.tenant != tenant || grant.client_id != client_id {
                return answer(FaultKind::InvalidRefreshToken, ctx);
            }
            if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
                return entra_error(
                    ctx,
                    400,
                    "invalid_request",
                    50011,
                    &format!(
                        "The redirect URI '{}' specified in the request does not match the redirect URIs configured for the application '{client_id}'.",
                        params.get("redirect_uri").unwrap_or_default()
                    ),
                    None,
                );
            }
            if !pkce_ok(grant.challenge.as_ref(), params.get("code_verifier")) {
                return entra_error(
                    ctx,
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    None,
                );
            }
            if let Some(code) = params.get("code").and_then(|c| world.codes.get_mut(c)) {
                code.used = true;
            }
            delegated_success(world, key, tenant, grant.user, client_id, grant.scopes)
        }
        "" => entra_error(
            ctx,
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
            None,
        ),
        other => entra_error(
            ctx,
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
            None,
        ),
    }
}

fn delegated_success(
    world: &mut World,
    key: &[u8],
    tenant: usize,
    user: usize,
    client_id: &str,
    scopes: Vec<String>,
) -> Answer {
    let (token, lifetime) = mint(world, key, tenant, Some(user), client_id, &scopes);
    let scope = scopes
        .iter()
        .map(|s| {
            if OIDC_SCOPES.contains(&s.as_str()) || s.starts_with("https://") {
                s.clone()
            } else {
                format!("https://graph.microsoft.com/{s}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut body = obj! {
        "token_type" => "Bearer",
        "scope" => scope,
        "expires_in" => lifetime,
        "ext_expires_in" => lifetime,
        "access_token" => token,
    };
    if scopes.iter().any(|s| s == "offline_access") {
        let refresh_token = format!("1.sim-{}", uuid::Uuid::new_v4().simple());
        world.refresh.insert(
            refresh_token.clone(),
            RefreshGrant {
                tenant,
                user,
                client_id: client_id.to_owned(),
                scopes,
                rotated: false,
            },
        );
        body.push("refresh_token", refresh_token);
    }
    Answer::new(200, body)
}

async fn authorize(
    State(shared): State<AppState>,
    Path(tenant_segment): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let mut world = shared.lock();
    world.count(Endpoint::Authorize);
    let client_id = params.get("client_id").unwrap_or_default().to_owned();
    let Some(tenant) = find_tenant(&world, &tenant_segment, &client_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("AADSTS90002: Tenant '{tenant_segment}' not found."),
        );
    };
    let client = world.tenants.get(tenant).and_then(|t| t.cfg.client.clone());
    let Some(client) = client.filter(|c| c.client_id == client_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant_segment}'."
            ),
        );
    };
    let redirect_uri = params.get("redirect_uri").unwrap_or_default().to_owned();
    if redirect_uri.is_empty()
        || !(client.redirect_uris.is_empty() || client.redirect_uris.contains(&redirect_uri))
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!(
                "AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        );
    }
    let state = params.get("state").unwrap_or_default().to_owned();
    let Some(consent) = consent(&world, tenant, &params) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "AADSTS50034: no user in this tenant can sign in",
        );
    };
    let mut ctx = AnswerCtx {
        client_id: client_id.clone(),
        tenant: tenant_segment.clone(),
        ..AnswerCtx::default()
    };
    if let Fired::Answer(answer, _) = fire(
        &mut world,
        tenant,
        Some(consent.user),
        Endpoint::Authorize,
        false,
        Provider::Microsoft,
        &mut ctx,
    ) {
        let field = |name: &str| match answer.body.get(name) {
            Some(J::Str(value)) => value.clone(),
            _ => String::new(),
        };
        let error = field("error");
        let description = field("error_description");
        return redirect_to(
            &redirect_uri,
            &[
                ("error", &error),
                ("error_description", &description),
                ("state", &state),
            ],
        );
    }
    let code = format!("0.sim-{}", uuid::Uuid::new_v4().simple());
    let challenge = params.get("code_challenge").map(|c| {
        (
            c.to_owned(),
            params
                .get("code_challenge_method")
                .unwrap_or("plain")
                .to_owned(),
        )
    });
    world.codes.insert(
        code.clone(),
        CodeGrant {
            tenant,
            user: consent.user,
            client_id,
            redirect_uri: redirect_uri.clone(),
            scopes: consent.scopes,
            challenge,
            used: false,
        },
    );
    drop(world);
    let session_state = uuid::Uuid::new_v4().to_string();
    redirect_to(
        &redirect_uri,
        &[
            ("code", &code),
            ("state", &state),
            ("session_state", &session_state),
        ],
    )
}

// ---- Graph ----------------------------------------------------------------------------

struct Call {
    tenant: usize,
    user: Option<usize>,
    quirks: Quirks,
    page_size: Option<usize>,
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
    shared: &AppState,
    headers: &HeaderMap,
    endpoint: Endpoint,
    path_user: Option<&str>,
    incremental: bool,
    body: impl FnOnce(&mut World, &Call, &AnswerCtx) -> Answer,
) -> Reply {
    let (request_id, client_request_id) = request_ids(headers);
    let mut ctx = AnswerCtx {
        endpoint: Some(endpoint),
        request_id: request_id.clone(),
        client_request_id: client_request_id.clone(),
        user: path_user.unwrap_or_default().to_owned(),
        ..AnswerCtx::default()
    };
    let mut reply = Reply {
        style: Style::Graph,
        answer: Answer::new(200, J::Null),
        transport: None,
        request_id,
        client_request_id,
        in_flight: None,
    };
    let answer =
        |kind: FaultKind, ctx: &AnswerCtx| crate::fault::answer(kind, Provider::Microsoft, ctx);
    let mut world = shared.lock();
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
            crate::fault::GRAPH_WWW_AUTHENTICATE.to_owned(),
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
        let kind = if endpoint == Endpoint::GraphUsers {
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
    let call = Call {
        tenant,
        user,
        quirks: world.quirks(tenant, user, endpoint),
        page_size: max_page_size(headers),
    };
    reply.answer = body(&mut world, &call, &ctx);
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

fn graph_user(user: &crate::state::UserState, domain: &str) -> J {
    let cfg = &user.cfg;
    let mut names = cfg.name.splitn(2, ' ');
    let given = names.next().unwrap_or_default().to_owned();
    let family = names.next().unwrap_or_default().to_owned();
    let upn = if cfg.guest {
        format!("{}#EXT#@{domain}", cfg.email.replace('@', "_"))
    } else {
        cfg.email.clone()
    };
    let licences: Vec<J> = if cfg.licensed && !cfg.guest {
        vec![
            obj! { "disabledPlans" => Vec::<J>::new(), "skuId" => "c7df2760-2c81-4ef7-b578-5b5392b571df" },
        ]
    } else {
        Vec::new()
    };
    obj! {
        "businessPhones" => Vec::<J>::new(),
        "displayName" => cfg.name.as_str(),
        "givenName" => given,
        "jobTitle" => J::Null,
        "mail" => if cfg.mailbox || cfg.guest { J::from(cfg.email.as_str()) } else { J::Null },
        "mobilePhone" => J::Null,
        "officeLocation" => J::Null,
        "preferredLanguage" => J::Null,
        "surname" => family,
        "userPrincipalName" => upn,
        "id" => user.id.as_str(),
        "accountEnabled" => !cfg.suspended,
        "userType" => if cfg.guest { "Guest" } else { "Member" },
        "createdDateTime" => graph_time(cfg.created_at),
        "assignedLicenses" => licences,
    }
}

const DEFAULT_USER_FIELDS: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// `GET /me`: the signed-in user of a delegated token (what the connect flow reads to learn
/// whose mailbox it was given). Needs `User.Read` (or a broader user permission); an
/// app-only token has no "me" (Graph answers 400 `BadRequest`).
async fn me(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let (request_id, client_request_id) = request_ids(&headers);
    let ctx = AnswerCtx {
        request_id: request_id.clone(),
        client_request_id: client_request_id.clone(),
        ..AnswerCtx::default()
    };
    let answer = {
        let world = shared.lock();
        let grant = bearer(&headers).and_then(|token| world.tokens.get(token));
        match grant {
            None => crate::fault::answer(
                FaultKind::InvalidAuthenticationToken,
                Provider::Microsoft,
                &ctx,
            ),
            Some(grant) if grant.expires_at <= now() => {
                crate::fault::answer(FaultKind::TokenExpired, Provider::Microsoft, &ctx)
            }
            Some(grant) => match grant.user.and_then(|u| world.user(grant.tenant, u)) {
                None => graph_error(
                    &ctx,
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                    true,
                ),
                Some(_)
                    if !grant.scopes.iter().any(|scope| {
                        scope.eq_ignore_ascii_case("User.Read")
                            || USER_PERMISSIONS
                                .iter()
                                .any(|p| p.eq_ignore_ascii_case(scope))
                    }) =>
                {
                    crate::fault::answer(FaultKind::AccessDenied, Provider::Microsoft, &ctx)
                }
                Some(user) => {
                    let domain = world
                        .tenants
                        .get(grant.tenant)
                        .map(|t| t.cfg.domain.clone())
                        .unwrap_or_default();
                    Answer::new(200, graph_user(user, &domain))
                }
            },
        }
    };
    deliver(Reply {
        style: Style::Graph,
        answer,
        transport: None,
        request_id,
        client_request_id,
        in_flight: None,
    })
    .await
}

async fn users(
    State(shared): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let base = shared.urls.graph_base.clone();
    let reply = graph(
        &shared,
        &headers,
        Endpoint::GraphUsers,
        None,
        false,
        |world, call, ctx| {
            let Some(tenant) = world.tenants.get(call.tenant) else {
                return Answer::new(200, J::Null);
            };
            let select: Vec<String> = params
                .get("$select")
                .map(|s| {
                    s.split(',')
                        .map(|f| f.trim().to_owned())
                        .filter(|f| !f.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let select_refs: Vec<&str> = if select.is_empty() {
                DEFAULT_USER_FIELDS.to_vec()
            } else {
                select.iter().map(String::as_str).collect()
            };
            let at = match params.get("$skiptoken") {
                None => PageAt::default(),
                Some(token) => match paging::decode(token, "u")
                    .and_then(|f| PageAt::parse(f.get(1), f.get(2)))
                {
                    Some(at) => at,
                    None => {
                        return graph_error(
                            ctx,
                            400,
                            "Request_BadRequest",
                            "Invalid paging token.",
                            true,
                        );
                    }
                },
            };
            let size = params
                .get("$top")
                .and_then(|v| v.parse::<usize>().ok())
                .or(call.page_size)
                .unwrap_or(100)
                .clamp(1, 999);
            let listed: Vec<&crate::state::UserState> =
                tenant.users.iter().filter(|u| !u.cfg.deleted).collect();
            let (range, next) = paging::cut(listed.len(), size, at, call.quirks);
            let value: Vec<J> = listed
                .get(range)
                .unwrap_or_default()
                .iter()
                .map(|u| graph_user(u, &tenant.cfg.domain).select(&select_refs, &[]))
                .collect();
            let context = if select.is_empty() {
                "https://graph.microsoft.com/v1.0/$metadata#users".to_owned()
            } else {
                format!(
                    "https://graph.microsoft.com/v1.0/$metadata#users({})",
                    select.join(",")
                )
            };
            let mut body = obj! { "@odata.context" => context };
            if let Some(next) = next {
                let [offset, empty] = next.fields();
                let mut link = form_urlencoded::Serializer::new(String::new());
                if !select.is_empty() {
                    link.append_pair("$select", &select.join(","));
                }
                link.append_pair("$top", &size.to_string());
                link.append_pair("$skiptoken", &paging::encode(&["u", &offset, &empty]));
                body.push("@odata.nextLink", format!("{base}/users?{}", link.finish()));
            }
            body.push("value", value);
            Answer::new(200, body)
        },
    );
    deliver(reply).await
}

/// The state a delta link carries.
struct DeltaState {
    epoch: u32,
    since: u64,
    snapshot: u64,
    at: PageAt,
    size: Option<usize>,
    window: Option<(i64, i64)>,
}

/// Reads `$deltatoken` / `$skiptoken`; `Err` is the answer for a stale or broken link.
fn read_delta(
    params: &Params,
    tag: &str,
    epoch: u32,
    current: u64,
    ctx: &AnswerCtx,
) -> Result<Option<DeltaState>, Answer> {
    let stale = || crate::fault::answer(FaultKind::SyncStateNotFound, Provider::Microsoft, ctx);
    let (token, is_skip) = match (params.get("$skiptoken"), params.get("$deltatoken")) {
        (Some(token), _) => (token, true),
        (None, Some(token)) => (token, false),
        (None, None) => return Ok(None),
    };
    let Some(fields) = paging::decode(token, tag) else {
        return Err(stale());
    };
    let number = |i: usize| fields.get(i).and_then(|v| v.parse::<i64>().ok());
    let Some(token_epoch) = number(1) else {
        return Err(stale());
    };
    if token_epoch != i64::from(epoch) {
        return Err(stale());
    }
    let window = match (number(2), number(3)) {
        (Some(start), Some(end)) if start < end => Some((start, end)),
        _ => None,
    };
    let since = u64::try_from(number(4).unwrap_or(0)).unwrap_or(0);
    if is_skip {
        let snapshot = u64::try_from(number(5).unwrap_or(0)).unwrap_or(0);
        let at = PageAt::parse(fields.get(6), fields.get(7)).ok_or_else(stale)?;
        let size = number(8)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0);
        Ok(Some(DeltaState {
            epoch,
            since,
            snapshot,
            at,
            size,
            window,
        }))
    } else {
        Ok(Some(DeltaState {
            epoch,
            since,
            snapshot: current,
            at: PageAt::default(),
            size: None,
            window,
        }))
    }
}

/// Builds one delta page: `items` are (sequence, removed?, body) in sequence order.
fn delta_page(
    link_base: &str,
    tag: &str,
    context: &str,
    state: &DeltaState,
    items: Vec<J>,
    call: &Call,
) -> Answer {
    let size = call.page_size.or(state.size).unwrap_or(10);
    let (range, next) = paging::cut(items.len(), size, state.at, call.quirks);
    let (start, end) = state.window.unwrap_or((0, 0));
    let common = [
        tag.to_owned(),
        state.epoch.to_string(),
        start.to_string(),
        end.to_string(),
    ];
    let value: Vec<J> = items
        .into_iter()
        .skip(range.start)
        .take(range.len())
        .collect();
    let mut body = obj! { "@odata.context" => context };
    match next {
        Some(next) => {
            let [offset, empty] = next.fields();
            let mut fields: Vec<&str> = common.iter().map(String::as_str).collect();
            let since = state.since.to_string();
            let snapshot = state.snapshot.to_string();
            let size = size.to_string();
            fields.extend([
                since.as_str(),
                snapshot.as_str(),
                offset.as_str(),
                empty.as_str(),
                size.as_str(),
            ]);
            body.push(
                "@odata.nextLink",
                format!("{link_base}?$skiptoken={}", paging::encode(&fields)),
            );
        }
        None => {
            let mut fields: Vec<&str> = common.iter().map(String::as_str).collect();
            let snapshot = state.snapshot.to_string();
            fields.push(&snapshot);
            body.push(
                "@odata.deltaLink",
                format!("{link_base}?$deltatoken={}", paging::encode(&fields)),
            );
        }
    }
    body.push("value", value);
    Answer::new(200, body)
}

fn removed(kind: &str, id: &str) -> J {
    obj! { "@odata.type" => kind, "id" => id, "@removed" => obj! { "reason" => "deleted" } }
}

fn graph_message(message: &crate::state::MailMessage, owner: &str, owner_name: &str) -> J {
    let received = graph_time(message.received);
    let address = |name: &str, address: &str| obj! { "emailAddress" => obj! { "name" => name, "address" => address } };
    obj! {
        "@odata.type" => "#microsoft.graph.message",
        "@odata.etag" => format!("W/\"CQAAABYAAAD{}\"", message.changed),
        "createdDateTime" => received.as_str(),
        "lastModifiedDateTime" => received.as_str(),
        "changeKey" => format!("CQAAABYAAAD{}", message.changed),
        "categories" => Vec::<J>::new(),
        "receivedDateTime" => received.as_str(),
        "sentDateTime" => received.as_str(),
        "hasAttachments" => false,
        "internetMessageId" => format!("<{}@sim.datacap.example>", message.id),
        "subject" => message.subject.as_str(),
        "bodyPreview" => format!("{} — generated by datacap-sim", message.subject),
        "importance" => "normal",
        "parentFolderId" => "AQMkADAwATNiZmYAZC1pbmJveAAuAAAD",
        "conversationId" => format!("AAQkAD{}", message.thread_id),
        "isReadReceiptRequested" => false,
        "isRead" => false,
        "isDraft" => false,
        "webLink" => format!("https://outlook.office365.com/owa/?ItemID={}&viewmodel=ReadMessageItem", message.graph_id),
        "inferenceClassification" => "focused",
        "sender" => address(&message.from_name, &message.from_address),
        "from" => address(&message.from_name, &message.from_address),
        "toRecipients" => vec![address(owner_name, owner)],
        "ccRecipients" => Vec::<J>::new(),
        "bccRecipients" => Vec::<J>::new(),
        "replyTo" => Vec::<J>::new(),
        "id" => message.graph_id.as_str(),
    }
}

async fn mail_delta(
    State(shared): State<AppState>,
    Path((id, folder)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let incremental = params.get("$deltatoken").is_some() || params.get("$skiptoken").is_some();
    let link_base = format!(
        "{}/users/{id}/mailFolders/{folder}/messages/delta",
        shared.urls.graph_base
    );
    let reply = graph(
        &shared,
        &headers,
        Endpoint::GraphMail,
        Some(&id),
        incremental,
        |world, call, ctx| {
            if !folder.eq_ignore_ascii_case("inbox") {
                return graph_error(
                    ctx,
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                    true,
                );
            }
            let Some(user) = call.user.and_then(|u| world.user(call.tenant, u)) else {
                return Answer::new(200, J::Null);
            };
            let mail = &user.mail;
            let state = match read_delta(&params, "m", mail.epoch, mail.history_id, ctx) {
                Ok(Some(state)) => state,
                Ok(None) => DeltaState {
                    epoch: mail.epoch,
                    since: 0,
                    snapshot: mail.history_id,
                    at: PageAt::default(),
                    size: None,
                    window: None,
                },
                Err(answer) => return answer,
            };
            let select: Vec<&str> = params
                .get("$select")
                .map(|s| s.split(',').map(str::trim).collect())
                .unwrap_or_default();
            let mut changed: Vec<&crate::state::MailMessage> = mail
                .messages
                .iter()
                .filter(|m| m.changed > state.since && m.changed <= state.snapshot)
                .filter(|m| state.since > 0 || !m.deleted)
                .collect();
            changed.sort_by_key(|m| m.changed);
            let items: Vec<J> = changed
                .iter()
                .map(|m| {
                    if m.deleted {
                        removed("#microsoft.graph.message", &m.graph_id)
                    } else {
                        let body = graph_message(m, &user.cfg.email, &user.cfg.name);
                        if select.is_empty() {
                            body
                        } else {
                            body.select(&select, &["@odata.type", "@odata.etag", "id"])
                        }
                    }
                })
                .collect();
            delta_page(
                &link_base,
                "m",
                "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
                &state,
                items,
                call,
            )
        },
    );
    deliver(reply).await
}

fn parse_graph_time(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{value}Z"), &Rfc3339))
        .ok()
}

fn graph_event(event: &crate::state::CalEvent, owner: &str, owner_name: &str) -> J {
    let when = |t: OffsetDateTime| {
        let text = t
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].0000000"
            ))
            .unwrap_or_default();
        obj! { "dateTime" => text, "timeZone" => "UTC" }
    };
    obj! {
        "@odata.type" => "#microsoft.graph.event",
        "@odata.etag" => format!("W/\"DwAAABYAAAD{}\"", event.seq),
        "createdDateTime" => graph_time(event.created),
        "lastModifiedDateTime" => graph_time(event.updated),
        "changeKey" => format!("DwAAABYAAAD{}", event.seq),
        "categories" => Vec::<J>::new(),
        "originalStartTimeZone" => "UTC",
        "originalEndTimeZone" => "UTC",
        "iCalUId" => format!("040000008200E00074C5B7101A82E008{}", event.id),
        "reminderMinutesBeforeStart" => 15i64,
        "isReminderOn" => true,
        "hasAttachments" => false,
        "subject" => event.summary.as_str(),
        "bodyPreview" => "",
        "importance" => "normal",
        "sensitivity" => "normal",
        "isAllDay" => false,
        "isCancelled" => false,
        "isOrganizer" => true,
        "responseRequested" => true,
        "seriesMasterId" => J::Null,
        "showAs" => "busy",
        "type" => "singleInstance",
        "webLink" => format!("https://outlook.office365.com/owa/?itemid={}&exvsurl=1&path=/calendar/item", event.graph_id),
        "isOnlineMeeting" => false,
        "responseStatus" => obj! { "response" => "organizer", "time" => "0001-01-01T00:00:00Z" },
        "start" => when(event.start),
        "end" => when(event.end),
        "location" => obj! { "displayName" => "", "locationType" => "default", "uniqueIdType" => "unknown" },
        "locations" => Vec::<J>::new(),
        "attendees" => Vec::<J>::new(),
        "organizer" => obj! { "emailAddress" => obj! { "name" => owner_name, "address" => owner } },
        "id" => event.graph_id.as_str(),
    }
}

async fn calendar_delta(
    State(shared): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let incremental = params.get("$deltatoken").is_some() || params.get("$skiptoken").is_some();
    let link_base = format!("{}/users/{id}/calendarView/delta", shared.urls.graph_base);
    let reply = graph(
        &shared,
        &headers,
        Endpoint::GraphCalendar,
        Some(&id),
        incremental,
        |world, call, ctx| {
            let Some(user) = call.user.and_then(|u| world.user(call.tenant, u)) else {
                return Answer::new(200, J::Null);
            };
            let cal = &user.cal;
            let state = match read_delta(&params, "c", cal.epoch, cal.seq, ctx) {
                Ok(Some(state)) => state,
                Ok(None) => {
                    let start = params.get("startDateTime").and_then(parse_graph_time);
                    let end = params.get("endDateTime").and_then(parse_graph_time);
                    let (Some(start), Some(end)) = (start, end) else {
                        return graph_error(
                            ctx,
                            400,
                            "ErrorInvalidParameter",
                            "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
                            true,
                        );
                    };
                    DeltaState {
                        epoch: cal.epoch,
                        since: 0,
                        snapshot: cal.seq,
                        at: PageAt::default(),
                        size: None,
                        window: Some((start.unix_timestamp(), end.unix_timestamp())),
                    }
                }
                Err(answer) => return answer,
            };
            let (start, end) = state.window.unwrap_or((i64::MIN, i64::MAX));
            let inside = |e: &crate::state::CalEvent| {
                e.end.unix_timestamp() > start && e.start.unix_timestamp() < end
            };
            let mut changed: Vec<&crate::state::CalEvent> = cal
                .events
                .iter()
                .filter(|e| e.seq > state.since && e.seq <= state.snapshot)
                .filter(|e| state.since > 0 || (!e.cancelled && inside(e)))
                .collect();
            changed.sort_by_key(|e| e.seq);
            let items: Vec<J> = changed
                .iter()
                .map(|e| {
                    if e.cancelled || !inside(e) {
                        removed("#microsoft.graph.event", &e.graph_id)
                    } else {
                        graph_event(e, &user.cfg.email, &user.cfg.name)
                    }
                })
                .collect();
            delta_page(
                &link_base,
                "c",
                "https://graph.microsoft.com/v1.0/$metadata#Collection(event)",
                &state,
                items,
                call,
            )
        },
    );
    deliver(reply).await
}
