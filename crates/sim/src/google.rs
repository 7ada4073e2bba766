//! Google Workspace: the OAuth token and authorize endpoints, Gmail, Calendar and Directory.
//!
//! Paths mirror Google's under `/google` (see the crate docs). Every error comes from
//! [`crate::fault`], so a condition that arises on its own (no mailbox, stale cursor,
//! missing scope) answers exactly like the fault of the same name.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind, google_token_error};
use crate::json::{J, obj};
use crate::paging::{self, PageAt};
use crate::scenario::Provider;
use crate::server::{AppState, Fired, Params, Reply, Style, bearer, deliver, error_page, fire};
use crate::state::{CodeGrant, Grant, Quirks, RefreshGrant, World};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Audiences Google accepts besides the sim's own token URL (clients often hard-code them).
const REAL_TOKEN_URLS: &[&str] = &[
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
    "https://accounts.google.com/o/oauth2/token",
];
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
        .route("/google/token", post(token))
        .route("/google/tokeninfo", get(tokeninfo).post(tokeninfo_form))
        .route("/google/authorize", get(authorize))
        .route("/google/gmail/v1/users/{user_id}/profile", get(profile))
        .route(
            "/google/gmail/v1/users/{user_id}/messages",
            get(messages_list),
        )
        .route(
            "/google/gmail/v1/users/{user_id}/messages/{id}",
            get(message_get),
        )
        .route(
            "/google/gmail/v1/users/{user_id}/history",
            get(history_list),
        )
        .route(
            "/google/calendar/v3/calendars/{calendar_id}/events",
            get(events_list),
        )
        .route("/google/admin/directory/v1/users", get(directory_users))
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

/// An event's `start` / `end` `dateTime` in a UTC calendar: whole seconds, `Z`.
fn google_seconds(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

fn token_reply(answer: Answer, transport: Option<crate::scenario::FaultSpec>) -> Reply {
    Reply {
        style: Style::GoogleToken,
        answer,
        transport,
        request_id: String::new(),
        client_request_id: String::new(),
        in_flight: None,
    }
}

// ---- tokeninfo ------------------------------------------------------------------------

/// Sign-in scopes Google's consent screen never lets a user untick (and no client
/// restricts): with `email`, `tokeninfo` names the account.
pub(crate) const BASIC_SCOPES: &[&str] = &[
    "openid",
    "email",
    "profile",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
];

/// `GET /tokeninfo?access_token=…` (oauth2.googleapis.com): what an access token is,
/// including the account's `email` when the token carries the `email` scope. Faults do
/// not apply (it answers for a token, not for a mailbox).
async fn tokeninfo(State(shared): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let params = Params::from_query(query.as_deref());
    tokeninfo_answer(&shared, params.get("access_token").unwrap_or_default()).await
}

async fn tokeninfo_form(State(shared): State<AppState>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    tokeninfo_answer(&shared, params.get("access_token").unwrap_or_default()).await
}

async fn tokeninfo_answer(shared: &AppState, token: &str) -> Response {
    let answer = {
        let world = shared.lock();
        let invalid = || google_token_error(400, "invalid_token", "Invalid Value");
        match world.tokens.get(token) {
            Some(grant) if grant.expires_at > now() => {
                let tenant = world.tenants.get(grant.tenant);
                let client_id = tenant
                    .and_then(|t| t.cfg.client.as_ref())
                    .map(|c| c.client_id.clone())
                    .unwrap_or_default();
                let mut body = obj! {
                    "azp" => client_id.as_str(),
                    "aud" => client_id.as_str(),
                    "scope" => grant.scopes.join(" "),
                    "exp" => grant.expires_at.to_string(),
                    "expires_in" => (grant.expires_at - now()).to_string(),
                    "access_type" => "offline",
                };
                let with_email = grant
                    .scopes
                    .iter()
                    .any(|s| s == "email" || s == "https://www.googleapis.com/auth/userinfo.email");
                if let Some(user) = grant.user.and_then(|u| world.user(grant.tenant, u)) {
                    body.push("sub", user.id.as_str());
                    if with_email {
                        body.push("email", user.cfg.email.as_str());
                        body.push("email_verified", "true");
                    }
                }
                Answer::new(200, body)
            }
            _ => invalid(),
        }
    };
    deliver(token_reply(answer, None)).await
}

// ---- token endpoint -------------------------------------------------------------------

async fn token(State(shared): State<AppState>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    let oidc = Oidc {
        key: shared.id_key.as_deref(),
        issuer: crate::oidc::google_issuer(&shared),
    };
    let reply = {
        let mut world = shared.lock();
        world.count(Endpoint::Token);
        match params.get("grant_type") {
            Some(JWT_BEARER) => jwt_bearer(&mut world, &shared.urls.google_token_url, &params),
            Some("refresh_token") => refresh(&mut world, &params, &oidc),
            Some("authorization_code") => code(&mut world, &params, &oidc),
            Some(other) => token_reply(
                google_token_error(
                    400,
                    "unsupported_grant_type",
                    &format!("Invalid grant_type: {other}"),
                ),
                None,
            ),
            None => token_reply(
                google_token_error(
                    400,
                    "invalid_request",
                    "Missing required parameter: grant_type",
                ),
                None,
            ),
        }
    };
    deliver(reply).await
}

fn answer_of(kind: FaultKind) -> Answer {
    crate::fault::answer(kind, Provider::Google, &AnswerCtx::default())
}

fn issue_access(
    world: &mut World,
    tenant: usize,
    user: Option<usize>,
    scopes: Vec<String>,
) -> (String, i64) {
    let token = format!("ya29.sim-{}", uuid::Uuid::new_v4().simple());
    let lifetime = world.token_lifetime;
    world.issue(
        token.clone(),
        Grant {
            tenant,
            user,
            scopes,
            roles: Vec::new(),
            expires_at: now() + lifetime,
            app_only: user.is_none(),
        },
    );
    (token, lifetime)
}

fn jwt_bearer(world: &mut World, own_token_url: &str, params: &Params) -> Reply {
    let assertion = params.get("assertion").unwrap_or_default();
    let Ok(claims) = crate::jwt::claims(assertion) else {
        return token_reply(answer_of(FaultKind::InvalidJwtSignature), None);
    };
    let text = |key: &str| {
        claims
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let number = |key: &str| claims.get(key).and_then(serde_json::Value::as_i64);
    let issuer = text("iss").unwrap_or_default();
    let Some(tenant) = world.tenants.iter().position(|t| {
        t.cfg
            .service_account
            .as_ref()
            .is_some_and(|sa| sa.client_email == issuer)
    }) else {
        return token_reply(
            google_token_error(
                400,
                "invalid_grant",
                "Invalid JWT: No valid verifier found for issuer.",
            ),
            None,
        );
    };
    let subject = text("sub");
    let user = subject
        .as_deref()
        .and_then(|s| world.user_by_email(tenant, s));
    let mut ctx = AnswerCtx::default();
    let transport = match fire(
        world,
        tenant,
        user,
        Endpoint::Token,
        false,
        Provider::Google,
        &mut ctx,
    ) {
        Fired::Answer(answer, transport) => return token_reply(answer, transport),
        Fired::Transport(spec) => Some(spec),
        Fired::Nothing => None,
    };
    let Some(sa) = world
        .tenants
        .get(tenant)
        .and_then(|t| t.cfg.service_account.clone())
    else {
        return token_reply(answer_of(FaultKind::AccountNotFound), transport);
    };
    if crate::jwt::verify_rs256(assertion, &sa.public_key).is_err() {
        return token_reply(answer_of(FaultKind::InvalidJwtSignature), transport);
    }
    let audience = text("aud").unwrap_or_default();
    if audience != own_token_url && !REAL_TOKEN_URLS.contains(&audience.as_str()) {
        return token_reply(
            google_token_error(400, "invalid_grant", "Invalid JWT: Failed audience check."),
            transport,
        );
    }
    let (Some(iat), Some(exp)) = (number("iat"), number("exp")) else {
        return token_reply(answer_of(FaultKind::JwtNotShortLived), transport);
    };
    let now = now();
    // Google allows a little clock skew on `iat`; `exp` must be in the future and at most
    // an hour after `iat`.
    if exp <= now || iat > now.saturating_add(60) || exp.saturating_sub(iat) > 3600 || exp <= iat {
        return token_reply(answer_of(FaultKind::JwtNotShortLived), transport);
    }
    let scopes: Vec<String> = text("scope")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return token_reply(
            google_token_error(
                400,
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.",
            ),
            transport,
        );
    }
    if let Some(subject) = &subject {
        if !subject.contains('@') {
            return token_reply(answer_of(FaultKind::NotAValidEmail), transport);
        }
        let Some(user) = user else {
            return token_reply(answer_of(FaultKind::InvalidEmail), transport);
        };
        if world.user(tenant, user).is_some_and(|u| u.cfg.deleted) {
            return token_reply(answer_of(FaultKind::AccountDeleted), transport);
        }
        if !scopes.iter().all(|s| sa.delegated_scopes.contains(s)) {
            return token_reply(
                answer_of(FaultKind::DelegationUnauthorizedClient),
                transport,
            );
        }
    }
    let (token, lifetime) = issue_access(world, tenant, user, scopes);
    token_reply(
        Answer::new(
            200,
            obj! { "access_token" => token, "expires_in" => lifetime, "token_type" => "Bearer" },
        ),
        transport,
    )
}

/// Finds the tenant of an OAuth client and checks its secret.
fn client_auth(world: &World, params: &Params) -> Result<usize, Answer> {
    let client_id = params.get("client_id").unwrap_or_default();
    let Some(tenant) = world.tenants.iter().position(|t| {
        t.cfg.provider == Provider::Google
            && t.cfg
                .client
                .as_ref()
                .is_some_and(|c| c.client_id == client_id)
    }) else {
        return Err(answer_of(FaultKind::InvalidClient));
    };
    let secret_ok = world
        .tenants
        .get(tenant)
        .and_then(|t| t.cfg.client.as_ref())
        .is_some_and(|c| Some(c.client_secret.as_str()) == params.get("client_secret"));
    if !secret_ok {
        return Err(google_token_error(401, "invalid_client", "Unauthorized"));
    }
    Ok(tenant)
}

fn without_mail_and_calendar(scopes: &[String]) -> Vec<String> {
    scopes
        .iter()
        .filter(|s| !GMAIL_SCOPES.contains(&s.as_str()) && !CALENDAR_SCOPES.contains(&s.as_str()))
        .cloned()
        .collect()
}

/// The grant an `id_token` is minted for.
struct IdGrant<'a> {
    user: usize,
    client_id: &'a str,
    scopes: &'a [String],
    nonce: Option<&'a str>,
    access_token: &'a str,
}

/// What the token endpoint needs to add an `id_token` to a code or refresh answer.
struct Oidc<'a> {
    key: Option<&'a crate::oidc::IdKey>,
    issuer: String,
}

impl Oidc<'_> {
    /// The `id_token` of a grant whose scopes hold `openid` (providers/google.md §3: the
    /// refresh answer has one "if openid"), else `None`.
    fn id_token(&self, world: &World, tenant: usize, grant: IdGrant<'_>) -> Option<String> {
        let IdGrant {
            user,
            client_id,
            scopes,
            nonce,
            access_token,
        } = grant;
        if !scopes.iter().any(|s| s == "openid") {
            return None;
        }
        let user = world.user(tenant, user)?;
        // Google accepts both the short and the URL form of the profile scopes.
        let scopes: Vec<String> = scopes
            .iter()
            .map(|s| match s.as_str() {
                "https://www.googleapis.com/auth/userinfo.email" => "email".to_owned(),
                "https://www.googleapis.com/auth/userinfo.profile" => "profile".to_owned(),
                other => other.to_owned(),
            })
            .collect();
        crate::oidc::google_id_token(
            self.key?,
            &crate::oidc::IdTokenFor {
                issuer: &self.issuer,
                client_id,
                subject: &user.id,
                email: &user.cfg.email,
                name: &user.cfg.name,
                scopes: &scopes,
                nonce,
                lifetime: world.token_lifetime,
                access_token: Some(access_token),
            },
            now(),
        )
    }
}

fn refresh(world: &mut World, params: &Params, oidc: &Oidc<'_>) -> Reply {
    let tenant = match client_auth(world, params) {
        Ok(tenant) => tenant,
        Err(answer) => return token_reply(answer, None),
    };
    let token = params.get("refresh_token").unwrap_or_default();
    let Some(grant) = world.refresh.get(token).cloned() else {
        return token_reply(answer_of(FaultKind::InvalidGrantRevoked), None);
    };
    if grant.tenant != tenant || Some(grant.client_id.as_str()) != params.get("client_id") {
        return token_reply(
            google_token_error(400, "unauthorized_client", "Unauthorized"),
            None,
        );
    }
    let mut ctx = AnswerCtx::default();
    let transport = match fire(
        world,
        tenant,
        Some(grant.user),
        Endpoint::Token,
        false,
        Provider::Google,
        &mut ctx,
    ) {
        Fired::Answer(answer, transport) => return token_reply(answer, transport),
        Fired::Transport(spec) => Some(spec),
        Fired::Nothing => None,
    };
    if world.user(tenant, grant.user).is_none_or(|u| u.cfg.deleted) {
        return token_reply(answer_of(FaultKind::InvalidGrantRevoked), transport);
    }
    let mut scopes = grant.scopes.clone();
    if world
        .quirks(tenant, Some(grant.user), Endpoint::Token)
        .refresh_scope_missing
    {
        scopes = without_mail_and_calendar(&scopes);
    }
    let scope = scopes.join(" ");
    let (access, lifetime) = issue_access(world, tenant, Some(grant.user), scopes);
    let id_token = oidc.id_token(
        world,
        tenant,
        IdGrant {
            user: grant.user,
            client_id: &grant.client_id,
            scopes: &grant.scopes,
            nonce: None,
            access_token: &access,
        },
    );
    let mut body = obj! {
        "access_token" => access,
        "expires_in" => lifetime,
        "scope" => scope,
        "token_type" => "Bearer",
    };
    if let Some(id_token) = id_token {
        body.push("id_token", id_token);
    }
    token_reply(Answer::new(200, body), transport)
}

/// Checks a PKCE verifier against the challenge stored with a code.
pub(crate) fn pkce_ok(challenge: Option<&(String, String)>, verifier: Option<&str>) -> bool {
    match (challenge, verifier) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((challenge, method)), Some(verifier)) => {
            if method.eq_ignore_ascii_case("S256") {
                crate::jwt::pkce_s256(verifier) == *challenge
            } else {
                verifier == challenge
            }
        }
    }
}

fn code(world: &mut World, params: &Params, oidc: &Oidc<'_>) -> Reply {
    let tenant = match client_auth(world, params) {
        Ok(tenant) => tenant,
        Err(answer) => return token_reply(answer, None),
    };
    let code = params.get("code").unwrap_or_default();
    let Some(grant) = world.codes.get(code).cloned() else {
        return token_reply(
            google_token_error(400, "invalid_grant", "Malformed auth code."),
            None,
        );
    };
    if grant.used {
        return token_reply(
            google_token_error(400, "invalid_grant", "Code was already redeemed."),
            None,
        );
    }
    if grant.tenant != tenant {
        return token_reply(
            google_token_error(400, "invalid_grant", "Bad Request"),
            None,
        );
    }
    if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return token_reply(
            google_token_error(400, "redirect_uri_mismatch", "Bad Request"),
            None,
        );
    }
    if !pkce_ok(grant.challenge.as_ref(), params.get("code_verifier")) {
        let text = if params.get("code_verifier").is_none() {
            "Missing code verifier."
        } else {
            "Invalid code verifier."
        };
        return token_reply(google_token_error(400, "invalid_grant", text), None);
    }
    let mut ctx = AnswerCtx::default();
    let transport = match fire(
        world,
        tenant,
        Some(grant.user),
        Endpoint::Token,
        false,
        Provider::Google,
        &mut ctx,
    ) {
        Fired::Answer(answer, transport) => return token_reply(answer, transport),
        Fired::Transport(spec) => Some(spec),
        Fired::Nothing => None,
    };
    if let Some(stored) = world.codes.get_mut(code) {
        stored.used = true;
    }
    let mut scopes = grant.scopes.clone();
    if world
        .quirks(tenant, Some(grant.user), Endpoint::Token)
        .refresh_scope_missing
    {
        scopes = without_mail_and_calendar(&scopes);
    }
    let refresh_token = format!("1//sim-{}", uuid::Uuid::new_v4().simple());
    world.refresh.insert(
        refresh_token.clone(),
        RefreshGrant {
            tenant,
            user: grant.user,
            client_id: grant.client_id.clone(),
            scopes: grant.scopes.clone(),
            rotated: false,
        },
    );
    let scope = scopes.join(" ");
    let (access, lifetime) = issue_access(world, tenant, Some(grant.user), scopes);
    let id_token = oidc.id_token(
        world,
        tenant,
        IdGrant {
            user: grant.user,
            client_id: &grant.client_id,
            scopes: &grant.scopes,
            nonce: grant.nonce.as_deref(),
            access_token: &access,
        },
    );
    let mut body = obj! {
        "access_token" => access,
        "expires_in" => lifetime,
        "refresh_token" => refresh_token,
        "scope" => scope,
        "token_type" => "Bearer",
    };
    if let Some(id_token) = id_token {
        body.push("id_token", id_token);
    }
    token_reply(Answer::new(200, body), transport)
}

// ---- authorize ------------------------------------------------------------------------

/// Appends query parameters to a redirect URI.
pub(crate) fn redirect_to(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    let location = format!("{uri}{separator}{}", serializer.finish());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// Who signs in and what they grant, shared by both providers' authorize endpoints.
pub(crate) struct Consent {
    pub user: usize,
    pub scopes: Vec<String>,
}

/// Picks the scripted user and intersects the requested scopes with what may be granted.
pub(crate) fn consent(world: &World, tenant: usize, params: &Params) -> Option<Consent> {
    let tenant_state = world.tenants.get(tenant)?;
    let hint = params.get("login_hint");
    // The test knob `sim_sign_in_as=ADDRESS` (added to the authorize URL by a test, never
    // by datacap) signs in that user of the tenant whatever the hint says: someone other
    // than the member consenting on the member's link (docs/sim.md).
    let by_override = params
        .get("sim_sign_in_as")
        .and_then(|address| world.user_by_email(tenant, address));
    let by_hint = by_override.or_else(|| hint.and_then(|h| world.user_by_email(tenant, h)));
    let by_config = tenant_state
        .cfg
        .client
        .as_ref()
        .and_then(|c| c.consent_user.as_deref())
        .and_then(|u| world.user_by_email(tenant, u));
    let first = tenant_state.users.iter().position(|u| !u.cfg.deleted);
    let user = by_hint.or(by_config).or(first)?;
    let user_state = tenant_state.users.get(user)?;
    let allowed = tenant_state
        .cfg
        .client
        .as_ref()
        .map(|c| c.consent_scopes.clone())
        .unwrap_or_default();
    let scopes = params
        .get("scope")
        .unwrap_or_default()
        .split_whitespace()
        .filter(|s| {
            allowed.is_empty() || allowed.iter().any(|a| a == s) || BASIC_SCOPES.contains(s)
        })
        .filter(|s| {
            BASIC_SCOPES.contains(s)
                || user_state
                    .cfg
                    .granted_scopes
                    .as_ref()
                    .is_none_or(|granted| granted.iter().any(|g| g == s))
        })
        .map(str::to_owned)
        .collect();
    Some(Consent { user, scopes })
}

async fn authorize(State(shared): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let params = Params::from_query(query.as_deref());
    let mut world = shared.lock();
    world.count(Endpoint::Authorize);
    let client_id = params.get("client_id").unwrap_or_default();
    let Some(tenant) = world.tenants.iter().position(|t| {
        t.cfg.provider == Provider::Google
            && t.cfg
                .client
                .as_ref()
                .is_some_and(|c| c.client_id == client_id)
    }) else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Error 401: invalid_client\nThe OAuth client was not found.",
        );
    };
    let redirect_uri = params.get("redirect_uri").unwrap_or_default().to_owned();
    let allowed = world
        .tenants
        .get(tenant)
        .and_then(|t| t.cfg.client.as_ref())
        .is_some_and(|c| c.redirect_uris.is_empty() || c.redirect_uris.contains(&redirect_uri));
    if redirect_uri.is_empty() || !allowed {
        return error_page(StatusCode::BAD_REQUEST, "Error 400: redirect_uri_mismatch");
    }
    if params.get("response_type") != Some("code") {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request\nresponse_type must be code",
        );
    }
    let state = params.get("state").unwrap_or_default().to_owned();
    let Some(consent) = consent(&world, tenant, &params) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: no user in this tenant can sign in",
        );
    };
    let mut ctx = AnswerCtx::default();
    if let Fired::Answer(answer, _) = fire(
        &mut world,
        tenant,
        Some(consent.user),
        Endpoint::Authorize,
        false,
        Provider::Google,
        &mut ctx,
    ) {
        let error = match answer.body.get("error") {
            Some(J::Str(error)) => error.clone(),
            _ => "server_error".to_owned(),
        };
        return redirect_to(&redirect_uri, &[("error", &error), ("state", &state)]);
    }
    let code = format!("4/sim-{}", uuid::Uuid::new_v4().simple());
    let challenge = params.get("code_challenge").map(|c| {
        (
            c.to_owned(),
            params
                .get("code_challenge_method")
                .unwrap_or("plain")
                .to_owned(),
        )
    });
    let scope = consent.scopes.join(" ");
    world.codes.insert(
        code.clone(),
        CodeGrant {
            tenant,
            user: consent.user,
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.clone(),
            scopes: consent.scopes,
            challenge,
            nonce: params.get("nonce").map(str::to_owned),
            used: false,
        },
    );
    drop(world);
    redirect_to(
        &redirect_uri,
        &[("state", &state), ("code", &code), ("scope", &scope)],
    )
}

// ---- API calls ------------------------------------------------------------------------

/// What an authorised API call may touch.
struct Call {
    tenant: usize,
    user: usize,
    quirks: Quirks,
}

/// Authenticates, authorises and applies faults, then lets `body` answer.
fn api(
    shared: &AppState,
    headers: &HeaderMap,
    endpoint: Endpoint,
    path_user: Option<&str>,
    incremental: bool,
    body: impl FnOnce(&mut World, &Call) -> Answer,
) -> Reply {
    let mut world = shared.lock();
    world.count(endpoint);
    let mut reply = Reply {
        style: Style::GoogleApi,
        answer: Answer::new(200, J::Null),
        transport: None,
        request_id: String::new(),
        client_request_id: String::new(),
        in_flight: None,
    };
    let mut ctx = AnswerCtx {
        endpoint: Some(endpoint),
        ..AnswerCtx::default()
    };
    let grant = match bearer(headers).and_then(|t| world.tokens.get(t)) {
        Some(grant) if grant.expires_at > now() => grant.clone(),
        _ => {
            reply.answer = crate::fault::google_unauthenticated();
            return reply;
        }
    };
    let tenant = grant.tenant;
    if world
        .tenants
        .get(tenant)
        .is_none_or(|t| t.cfg.provider != Provider::Google)
    {
        reply.answer = crate::fault::google_unauthenticated();
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
        reply.answer = crate::fault::google_insufficient_scope(&ctx, true);
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
    let Some(user_state) = world.user(tenant, user) else {
        reply.answer = crate::fault::google_unauthenticated();
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
        tenant,
        user,
        quirks: world.quirks(tenant, Some(user), endpoint),
    };
    reply.answer = body(&mut world, &call);
    reply
}

fn bad_request(reason: &str, message: &str, location: Option<&str>) -> Answer {
    let mut item = obj! { "message" => message, "domain" => "global", "reason" => reason };
    if let Some(location) = location {
        item.push("location", location);
        item.push("locationType", "parameter");
    }
    crate::fault::google_error(
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

async fn profile(
    State(shared): State<AppState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let reply = api(
        &shared,
        &headers,
        Endpoint::GmailProfile,
        Some(&user_id),
        false,
        |world, call| {
            let Some(user) = world.user(call.tenant, call.user) else {
                return Answer::new(200, J::Null);
            };
            let live: Vec<_> = user.mail.messages.iter().filter(|m| !m.deleted).collect();
            let mut threads: Vec<&str> = live.iter().map(|m| m.thread_id.as_str()).collect();
            threads.sort_unstable();
            threads.dedup();
            Answer::new(
                200,
                obj! {
                    "emailAddress" => user.cfg.email.as_str(),
                    "messagesTotal" => i64::try_from(live.len()).unwrap_or(0),
                    "threadsTotal" => i64::try_from(threads.len()).unwrap_or(0),
                    "historyId" => user.mail.history_id.to_string(),
                },
            )
        },
    );
    deliver(reply).await
}

async fn messages_list(
    State(shared): State<AppState>,
    Path(user_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let reply = api(
        &shared,
        &headers,
        Endpoint::GmailMessages,
        Some(&user_id),
        false,
        |world, call| {
            let Some(user) = world.user(call.tenant, call.user) else {
                return Answer::new(200, J::Null);
            };
            let at = match params.get("pageToken") {
                None => PageAt::default(),
                Some(token) => match paging::decode(token, "l")
                    .and_then(|f| PageAt::parse(f.get(1), f.get(2)))
                {
                    Some(at) => at,
                    None => return bad_request("invalid", "Invalid pageToken", Some("pageToken")),
                },
            };
            // `labelIds` must name labels the mailbox has (sim mailboxes have only the
            // system labels); each one must be on a listed message.
            let label_ids = params.all("labelIds");
            if let Some(unknown) = label_ids
                .iter()
                .find(|l| !crate::search::GMAIL_SYSTEM_LABELS.contains(l))
            {
                return invalid_label(unknown);
            }
            let query = crate::search::GmailQuery::parse(params.get("q").unwrap_or(""), now());
            // Newest first, as Gmail lists.
            let live: Vec<&crate::state::MailMessage> = user
                .mail
                .messages
                .iter()
                .rev()
                .filter(|m| !m.deleted)
                .filter(|m| {
                    label_ids.iter().all(|l| MESSAGE_LABELS.contains(l))
                        && query.matches(&crate::search::MailView {
                            received: m.received.unix_timestamp(),
                            labels: MESSAGE_LABELS,
                            from: &m.from_address,
                            to: &user.cfg.email,
                            subject: &m.subject,
                        })
                })
                .collect();
            let (range, next) =
                paging::cut(live.len(), page_size(&params, 100, 500), at, call.quirks);
            let items: Vec<J> = live
                .get(range)
                .unwrap_or_default()
                .iter()
                .map(|m| obj! { "id" => m.id.as_str(), "threadId" => m.thread_id.as_str() })
                .collect();
            let mut body = obj! {};
            if !items.is_empty() {
                body.push("messages", items);
            }
            if let Some(next) = next {
                let [offset, empty] = next.fields();
                body.push("nextPageToken", paging::encode(&["l", &offset, &empty]));
            }
            body.push("resultSizeEstimate", i64::try_from(live.len()).unwrap_or(0));
            Answer::new(200, body)
        },
    );
    deliver(reply).await
}

/// The labels every generated message carries.
const MESSAGE_LABELS: &[&str] = &["UNREAD", "INBOX"];

/// Gmail's 400 for a `labelIds` / `labelId` it does not know (GAM-team/GAM#365,
/// GAM-team/got-your-back#135: "Invalid label: …", reason `invalidArgument`).
fn invalid_label(label: &str) -> Answer {
    let message = format!("Invalid label: {label}");
    crate::fault::google_error(
        400,
        &message,
        Some(vec![
            obj! { "message" => message.as_str(), "domain" => "global", "reason" => "invalidArgument" },
        ]),
        Some("INVALID_ARGUMENT"),
        None,
    )
}

fn gmail_message(
    message: &crate::state::MailMessage,
    owner: &str,
    format: &str,
    wanted: &[&str],
) -> J {
    let labels = vec![J::from("UNREAD"), J::from("INBOX")];
    let mut body = obj! {
        "id" => message.id.as_str(),
        "threadId" => message.thread_id.as_str(),
        "labelIds" => labels,
        "snippet" => format!("{} — generated by datacap-sim", message.subject),
    };
    if format != "minimal" {
        let date = message.received.format(&Rfc2822).unwrap_or_default();
        let all = [
            (
                "From",
                format!("{} <{}>", message.from_name, message.from_address),
            ),
            ("To", owner.to_owned()),
            ("Subject", message.subject.clone()),
            ("Date", date),
            (
                "Message-ID",
                format!("<{}@sim.datacap.example>", message.id),
            ),
        ];
        let headers: Vec<J> = all
            .iter()
            .filter(|(name, _)| {
                wanted.is_empty() || wanted.iter().any(|w| w.eq_ignore_ascii_case(name))
            })
            .map(|(name, value)| obj! { "name" => *name, "value" => value.as_str() })
            .collect();
        body.push(
            "payload",
            obj! {
                "partId" => "",
                "mimeType" => "multipart/alternative",
                "filename" => "",
                "headers" => headers,
                "body" => obj! { "size" => 0i64 },
            },
        );
    }
    body.push("sizeEstimate", message.size);
    body.push("historyId", message.changed.to_string());
    body.push(
        "internalDate",
        (message.received.unix_timestamp() * 1000).to_string(),
    );
    body
}

async fn message_get(
    State(shared): State<AppState>,
    Path((user_id, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let reply = api(
        &shared,
        &headers,
        Endpoint::GmailMessage,
        Some(&user_id),
        false,
        |world, call| {
            let Some(user) = world.user(call.tenant, call.user) else {
                return Answer::new(200, J::Null);
            };
            match user.mail.messages.iter().find(|m| m.id == id && !m.deleted) {
                Some(message) => Answer::new(
                    200,
                    gmail_message(
                        message,
                        &user.cfg.email,
                        params.get("format").unwrap_or("full"),
                        &params.all("metadataHeaders"),
                    ),
                ),
                None => crate::fault::answer(
                    FaultKind::HistoryNotFound,
                    Provider::Google,
                    &AnswerCtx::default(),
                ),
            }
        },
    );
    deliver(reply).await
}

async fn history_list(
    State(shared): State<AppState>,
    Path(user_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let reply = api(
        &shared,
        &headers,
        Endpoint::GmailHistory,
        Some(&user_id),
        true,
        |world, call| {
            let Some(user) = world.user(call.tenant, call.user) else {
                return Answer::new(200, J::Null);
            };
            let Some(start) = params
                .get("startHistoryId")
                .and_then(|v| v.parse::<u64>().ok())
            else {
                return bad_request(
                    "invalidArgument",
                    "Missing/invalid parameter: startHistoryId",
                    None,
                );
            };
            if start < user.mail.floor {
                return crate::fault::answer(
                    FaultKind::HistoryNotFound,
                    Provider::Google,
                    &AnswerCtx::default(),
                );
            }
            let at = match params.get("pageToken") {
                None => PageAt::default(),
                Some(token) => match paging::decode(token, "h")
                    .filter(|f| f.get(1).map(String::as_str) == Some(start.to_string().as_str()))
                    .and_then(|f| PageAt::parse(f.get(2), f.get(3)))
                {
                    Some(at) => at,
                    None => return bad_request("invalid", "Invalid pageToken", Some("pageToken")),
                },
            };
            let label = params.get("labelId");
            if let Some(label) = label.filter(|l| !crate::search::GMAIL_SYSTEM_LABELS.contains(l)) {
                return invalid_label(label);
            }
            // Every generated message carries the same labels, deleted or not.
            let labelled = |_added: bool| label.is_none_or(|l| MESSAGE_LABELS.contains(&l));
            let types = params.all("historyTypes");
            let wants = |added: bool| {
                types.is_empty()
                    || types.iter().any(|t| {
                        if added {
                            t.eq_ignore_ascii_case("messageAdded")
                        } else {
                            t.eq_ignore_ascii_case("messageDeleted")
                        }
                    })
            };
            let records: Vec<_> = user
                .mail
                .history
                .iter()
                .filter(|r| r.id > start && wants(r.added) && labelled(r.added))
                .collect();
            let (range, next) =
                paging::cut(records.len(), page_size(&params, 100, 500), at, call.quirks);
            let history: Vec<J> = records
            .get(range)
            .unwrap_or_default()
            .iter()
            .filter_map(|record| {
                let message = user.mail.messages.get(record.message)?;
                let short = obj! { "id" => message.id.as_str(), "threadId" => message.thread_id.as_str() };
                let labels: Vec<J> = if record.added {
                    vec![J::from("UNREAD"), J::from("INBOX")]
                } else {
                    Vec::new()
                };
                let full = obj! {
                    "id" => message.id.as_str(),
                    "threadId" => message.thread_id.as_str(),
                    "labelIds" => labels,
                };
                let key = if record.added { "messagesAdded" } else { "messagesDeleted" };
                let mut item = obj! { "id" => record.id.to_string(), "messages" => vec![short] };
                item.push(key, vec![obj! { "message" => full }]);
                Some(item)
            })
            .collect();
            let mut body = obj! {};
            if !history.is_empty() {
                body.push("history", history);
            }
            if let Some(next) = next {
                let [offset, empty] = next.fields();
                body.push(
                    "nextPageToken",
                    paging::encode(&["h", &start.to_string(), &offset, &empty]),
                );
            }
            body.push("historyId", user.mail.history_id.to_string());
            Answer::new(200, body)
        },
    );
    deliver(reply).await
}

fn calendar_event(event: &crate::state::CalEvent, owner: &str) -> J {
    let etag = format!("\"{}\"", 3_000_000_000_000_000u64 + event.seq);
    if event.cancelled {
        return obj! {
            "kind" => "calendar#event",
            "etag" => etag,
            "id" => event.id.as_str(),
            "status" => "cancelled",
        };
    }
    obj! {
        "kind" => "calendar#event",
        "etag" => etag,
        "id" => event.id.as_str(),
        "status" => "confirmed",
        "htmlLink" => format!("https://www.google.com/calendar/event?eid={}", event.id),
        "created" => google_time(event.created),
        "updated" => google_time(event.updated),
        "summary" => event.summary.as_str(),
        "creator" => obj! { "email" => owner, "self" => true },
        "organizer" => obj! { "email" => owner, "self" => true },
        "start" => obj! { "dateTime" => google_seconds(event.start), "timeZone" => "UTC" },
        "end" => obj! { "dateTime" => google_seconds(event.end), "timeZone" => "UTC" },
        "iCalUID" => format!("{}@google.com", event.id),
        "sequence" => 0i64,
        "reminders" => obj! { "useDefault" => true },
        "eventType" => "default",
    }
}

async fn events_list(
    State(shared): State<AppState>,
    Path(calendar_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let incremental = params.get("syncToken").is_some();
    let reply = api(
        &shared,
        &headers,
        Endpoint::CalendarEvents,
        Some(&calendar_id),
        incremental,
        |world, call| {
            let Some(user) = world.user(call.tenant, call.user) else {
                return Answer::new(200, J::Null);
            };
            if let Err(answer) = calendar_params(&params) {
                return answer;
            }
            let cal = &user.cal;
            let epoch = cal.epoch.to_string();
            // Mode: full (since 0, no cancelled) or incremental (since the sync token).
            let (since, snapshot, at) = match (params.get("pageToken"), params.get("syncToken")) {
                (Some(token), _) => match paging::decode(token, "e") {
                    Some(f) if f.get(1) == Some(&epoch) => {
                        let since = f.get(2).and_then(|v| v.parse::<u64>().ok());
                        let snapshot = f.get(3).and_then(|v| v.parse::<u64>().ok());
                        match (since, snapshot, PageAt::parse(f.get(4), f.get(5))) {
                            (Some(since), Some(snapshot), Some(at)) => (since, snapshot, at),
                            _ => {
                                return bad_request(
                                    "invalid",
                                    "Invalid page token value.",
                                    Some("pageToken"),
                                );
                            }
                        }
                    }
                    Some(_) => {
                        return crate::fault::answer(
                            FaultKind::FullSyncRequired,
                            Provider::Google,
                            &AnswerCtx::default(),
                        );
                    }
                    None => {
                        return bad_request(
                            "invalid",
                            "Invalid page token value.",
                            Some("pageToken"),
                        );
                    }
                },
                (None, Some(token)) => match paging::decode(token, "s") {
                    Some(f) if f.get(1) == Some(&epoch) => {
                        match f.get(2).and_then(|v| v.parse::<u64>().ok()) {
                            Some(since) => (since, cal.seq, PageAt::default()),
                            None => {
                                return crate::fault::answer(
                                    FaultKind::FullSyncRequired,
                                    Provider::Google,
                                    &AnswerCtx::default(),
                                );
                            }
                        }
                    }
                    _ => {
                        return crate::fault::answer(
                            FaultKind::FullSyncRequired,
                            Provider::Google,
                            &AnswerCtx::default(),
                        );
                    }
                },
                (None, None) => (0, cal.seq, PageAt::default()),
            };
            let full = since == 0;
            let time = |key: &str| {
                params
                    .get(key)
                    .and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok())
            };
            let (time_min, time_max, updated_min) =
                (time("timeMin"), time("timeMax"), time("updatedMin"));
            // Entries deleted since `updatedMin` are always included (events.list reference).
            let show_deleted =
                !full || updated_min.is_some() || params.get("showDeleted") == Some("true");
            let text = params.get("q").map(str::to_lowercase);
            let mut items: Vec<&crate::state::CalEvent> = cal
                .events
                .iter()
                .filter(|e| e.seq > since && e.seq <= snapshot)
                .filter(|e| show_deleted || !e.cancelled)
                .filter(|e| {
                    time_min.is_none_or(|t| e.end > t) && time_max.is_none_or(|t| e.start < t)
                })
                .filter(|e| updated_min.is_none_or(|t| e.updated >= t))
                .filter(|e| {
                    text.as_deref()
                        .is_none_or(|q| e.summary.to_lowercase().contains(q))
                })
                .collect();
            match params.get("orderBy") {
                Some("updated") => items.sort_by_key(|e| (e.updated, e.seq)),
                Some(_) => items.sort_by_key(|e| (e.start, e.seq)),
                None if full => items.sort_by_key(|e| (e.start, e.seq)),
                None => {}
            }
            let (range, next) =
                paging::cut(items.len(), page_size(&params, 250, 2500), at, call.quirks);
            let listed: Vec<J> = items
                .get(range)
                .unwrap_or_default()
                .iter()
                .map(|e| calendar_event(e, &user.cfg.email))
                .collect();
            let updated = cal
                .events
                .iter()
                .map(|e| e.updated)
                .max()
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let mut body = obj! {
                "kind" => "calendar#events",
                "etag" => format!("\"{}\"", 3_000_000_000_000_000u64 + cal.seq),
                "summary" => user.cfg.email.as_str(),
                "description" => "",
                "updated" => google_time(updated),
                "timeZone" => "UTC",
                "accessRole" => "owner",
                "defaultReminders" => vec![obj! { "method" => "popup", "minutes" => 10i64 }],
            };
            match next {
                Some(next) => {
                    let [offset, empty] = next.fields();
                    body.push(
                        "nextPageToken",
                        paging::encode(&[
                            "e",
                            &epoch,
                            &since.to_string(),
                            &snapshot.to_string(),
                            &offset,
                            &empty,
                        ]),
                    );
                }
                None => body.push(
                    "nextSyncToken",
                    paging::encode(&["s", &epoch, &snapshot.to_string()]),
                ),
            }
            body.push("items", listed);
            Answer::new(200, body)
        },
    );
    deliver(reply).await
}

/// Parameters `syncToken` may not be combined with (events.list reference: "There are
/// several query parameters that cannot be specified together with nextSyncToken").
const NOT_WITH_SYNC_TOKEN: &[&str] = &[
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
];

/// The 400s `events.list` answers before looking at any event (docs/sim.md, "What the sim
/// refuses").
fn calendar_params(params: &Params) -> Result<(), Answer> {
    let with_token = params.get("syncToken").is_some();
    if with_token
        && (NOT_WITH_SYNC_TOKEN.iter().any(|k| params.get(k).is_some())
            || params.get("showDeleted") == Some("false"))
    {
        // Observed text and reason (qiita.com/shiraily/items/6762046f041551c269da).
        let message = "Sync token cannot be used with other request restrictions.";
        return Err(crate::fault::google_error(
            400,
            message,
            Some(vec![
                obj! { "domain" => "calendar", "reason" => "syncTokenWithRequestRestrictions", "message" => message },
            ]),
            None,
            None,
        ));
    }
    // RFC 3339 "with mandatory time zone offset" (events.list reference); without one
    // Google answers a bare "Bad Request" (google-api-python-client#779).
    let mut times = Vec::new();
    for key in ["timeMin", "timeMax", "updatedMin"] {
        if let Some(value) = params.get(key) {
            match OffsetDateTime::parse(value, &Rfc3339) {
                Ok(t) => times.push((key, t)),
                Err(_) => {
                    return Err(crate::fault::google_error(
                        400,
                        "Bad Request",
                        Some(vec![crate::fault::item(
                            "global",
                            "badRequest",
                            "Bad Request",
                        )]),
                        None,
                        None,
                    ));
                }
            }
        }
    }
    let find = |key: &str| times.iter().find(|(k, _)| *k == key).map(|(_, t)| *t);
    if let (Some(min), Some(max)) = (find("timeMin"), find("timeMax"))
        && max <= min
    {
        // The Calendar errors guide's example.
        let message = "The specified time range is empty.";
        return Err(crate::fault::google_error(
            400,
            message,
            Some(vec![obj! {
                "domain" => "calendar",
                "reason" => "timeRangeEmpty",
                "message" => message,
                "locationType" => "parameter",
                "location" => "timeMax",
            }]),
            None,
            None,
        ));
    }
    match params.get("orderBy") {
        None | Some("updated") => Ok(()),
        Some("startTime") if params.get("singleEvents") == Some("true") => Ok(()),
        Some(other) => {
            // googleworkspace/java-samples#52, google-api-nodejs-client#771.
            let message = if other == "startTime" {
                "The requested ordering is not available for the particular query.".to_owned()
            } else {
                format!(
                    "Invalid value '{other}'. Values must match the following regular expression: '(startTime|updated)'"
                )
            };
            Err(crate::fault::google_error(
                400,
                &message,
                Some(vec![obj! {
                    "domain" => "global",
                    "reason" => "invalid",
                    "message" => message.as_str(),
                    "locationType" => "parameter",
                    "location" => "orderBy",
                }]),
                None,
                None,
            ))
        }
    }
}

fn directory_user(user: &crate::state::UserState, customer: &str) -> J {
    let cfg = &user.cfg;
    let mut names = cfg.name.splitn(2, ' ');
    let given = names.next().unwrap_or_default().to_owned();
    let family = names.next().unwrap_or_default().to_owned();
    let mut body = obj! {
        "kind" => "admin#directory#user",
        "id" => user.id.as_str(),
        "etag" => format!("\"sim-{}\"", user.id),
        "primaryEmail" => cfg.email.as_str(),
        "name" => obj! { "givenName" => given, "familyName" => family, "fullName" => cfg.name.as_str() },
        "isAdmin" => cfg.admin,
        "isDelegatedAdmin" => false,
        "lastLoginTime" => "1970-01-01T00:00:00.000Z",
        "creationTime" => google_time(cfg.created_at),
        "agreedToTerms" => true,
        "suspended" => cfg.suspended,
    };
    if cfg.suspended {
        body.push("suspensionReason", "ADMIN");
    }
    for (key, value) in [
        ("archived", J::from(false)),
        ("changePasswordAtNextLogin", J::from(false)),
        ("ipWhitelisted", J::from(false)),
        (
            "emails",
            J::Arr(vec![
                obj! { "address" => cfg.email.as_str(), "primary" => true },
            ]),
        ),
        ("customerId", J::from(customer)),
        ("orgUnitPath", J::from("/")),
        ("isMailboxSetup", J::from(cfg.mailbox && cfg.licensed)),
        ("isEnrolledIn2Sv", J::from(false)),
        ("isEnforcedIn2Sv", J::from(false)),
        ("includeInGlobalAddressList", J::from(true)),
    ] {
        body.push(key, value);
    }
    body
}

async fn directory_users(
    State(shared): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let reply = api(
        &shared,
        &headers,
        Endpoint::Directory,
        None,
        false,
        |world, call| {
            let Some(tenant) = world.tenants.get(call.tenant) else {
                return Answer::new(200, J::Null);
            };
            let customer = tenant.cfg.tenant_id.as_str();
            match (params.get("customer"), params.get("domain")) {
                (None, None) => {
                    return crate::fault::google_error(
                        400,
                        "Bad Request",
                        Some(vec![
                            obj! { "message" => "Bad Request", "domain" => "global", "reason" => "badRequest" },
                        ]),
                        None,
                        None,
                    );
                }
                (Some(c), _) if c != "my_customer" && c != customer => {
                    return crate::fault::answer(
                        FaultKind::DirectoryNotAuthorized,
                        Provider::Google,
                        &AnswerCtx::default(),
                    );
                }
                (None, Some(d)) if !d.eq_ignore_ascii_case(&tenant.cfg.domain) => {
                    return crate::fault::answer(
                        FaultKind::DirectoryNotAuthorized,
                        Provider::Google,
                        &AnswerCtx::default(),
                    );
                }
                _ => {}
            }
            let Ok(query) = crate::search::DirectoryQuery::parse(params.get("query").unwrap_or(""))
            else {
                // google-api-java-client#1020: a query the Directory cannot read.
                return crate::fault::google_error(
                    400,
                    "Invalid Input: query",
                    Some(vec![
                        obj! { "message" => "Invalid Input: query", "domain" => "global", "reason" => "invalid" },
                    ]),
                    None,
                    None,
                );
            };
            let mut users: Vec<&crate::state::UserState> = tenant
                .users
                .iter()
                .filter(|u| !(u.cfg.deleted || u.cfg.guest))
                .filter(|u| {
                    let (given, family) = u.cfg.name.split_once(' ').unwrap_or((&u.cfg.name, ""));
                    query.matches(&crate::search::PersonView {
                        email: &u.cfg.email,
                        given_name: given,
                        family_name: family,
                        admin: u.cfg.admin,
                        suspended: u.cfg.suspended,
                    })
                })
                .collect();
            users.sort_by(|a, b| a.cfg.email.cmp(&b.cfg.email));
            let at = match params.get("pageToken") {
                None => PageAt::default(),
                Some(token) => match paging::decode(token, "d")
                    .and_then(|f| PageAt::parse(f.get(1), f.get(2)))
                {
                    Some(at) => at,
                    None => {
                        return bad_request(
                            "invalid",
                            "Invalid Input: pageToken",
                            Some("pageToken"),
                        );
                    }
                },
            };
            let (range, next) =
                paging::cut(users.len(), page_size(&params, 100, 500), at, call.quirks);
            let listed: Vec<J> = users
                .get(range)
                .unwrap_or_default()
                .iter()
                .map(|u| directory_user(u, customer))
                .collect();
            let mut body =
                obj! { "kind" => "admin#directory#users", "etag" => "\"sim-directory\"" };
            if !listed.is_empty() {
                body.push("users", listed);
            }
            if let Some(next) = next {
                let [offset, empty] = next.fields();
                body.push("nextPageToken", paging::encode(&["d", &offset, &empty]));
            }
            Answer::new(200, body)
        },
    );
    deliver(reply).await
}
