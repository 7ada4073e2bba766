//! Google's token endpoint (`/google/token`): the service account's JWT bearer grant
//! (domain-wide delegation), refresh, and the authorization code of user-by-user consent;
//! and `tokeninfo`, which says what an access token is.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::faults::google_token_error;
use super::{CALENDAR_SCOPES, GMAIL_SCOPES, now};
use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind, Fired};
use crate::json::obj;
use crate::oauth::code::{self, Refused};
use crate::oauth::grants::{Grant, RefreshGrant};
use crate::oauth::oauth_faults;
use crate::scenario::{FaultSpec, Provider};
use crate::server::{AppState, Params, Reply, Style, deliver};
use crate::state::World;

pub(super) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Audiences Google accepts besides the sim's own token URL (clients often hard-code them).
pub(super) const REAL_TOKEN_URLS: &[&str] = &[
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
    "https://accounts.google.com/o/oauth2/token",
];

pub(super) fn token_reply(answer: Answer, transport: Option<FaultSpec>) -> Reply {
    Reply {
        transport,
        ..Reply::plain(Style::GoogleToken, answer, (String::new(), String::new()))
    }
}

/// `GET /tokeninfo?access_token=…` (oauth2.googleapis.com): what an access token is,
/// including the account's `email` when the token carries the `email` scope. Faults do
/// not apply (it answers for a token, not for a mailbox).
pub(super) async fn tokeninfo(
    State(shared): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::from_query(query.as_deref());
    tokeninfo_answer(&shared, params.get("access_token").unwrap_or_default()).await
}

pub(super) async fn tokeninfo_form(State(shared): State<AppState>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    tokeninfo_answer(&shared, params.get("access_token").unwrap_or_default()).await
}

pub(super) async fn tokeninfo_answer(shared: &AppState, token: &str) -> Response {
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

pub(super) async fn token(State(shared): State<AppState>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    let oidc = Oidc {
        key: shared.id_key.as_deref(),
        issuer: shared.urls.google_issuer(),
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

pub(super) fn answer_of(kind: FaultKind) -> Answer {
    crate::fault::answer(kind, Provider::Google, &AnswerCtx::default())
}

pub(super) fn issue_access(
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

pub(super) fn jwt_bearer(world: &mut World, own_token_url: &str, params: &Params) -> Reply {
    let assertion = params.get("assertion").unwrap_or_default();
    let Ok(claims) = crate::oauth::jwt::claims(assertion) else {
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
    let transport = match token_faults(world, tenant, user) {
        Ok(transport) => transport,
        Err(reply) => return *reply,
    };
    let Some(sa) = world
        .tenants
        .get(tenant)
        .and_then(|t| t.cfg.service_account.clone())
    else {
        return token_reply(answer_of(FaultKind::AccountNotFound), transport);
    };
    if crate::oauth::jwt::verify_rs256(assertion, &sa.public_key).is_err() {
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
pub(super) fn client_auth(world: &World, params: &Params) -> Result<usize, Answer> {
    let client_id = params.get("client_id").unwrap_or_default();
    let Some(tenant) = super::tenant_of_client(world, client_id) else {
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

pub(super) fn without_mail_and_calendar(scopes: &[String]) -> Vec<String> {
    scopes
        .iter()
        .filter(|s| !GMAIL_SCOPES.contains(&s.as_str()) && !CALENDAR_SCOPES.contains(&s.as_str()))
        .cloned()
        .collect()
}

/// The grant an `id_token` is minted for.
pub(super) struct IdGrant<'a> {
    user: usize,
    client_id: &'a str,
    scopes: &'a [String],
    nonce: Option<&'a str>,
}

/// What the token endpoint needs to add an `id_token` to a code or refresh answer.
pub(super) struct Oidc<'a> {
    key: Option<&'a crate::oauth::oidc::IdKey>,
    issuer: String,
}

impl Oidc<'_> {
    /// The `id_token` of a grant whose scopes hold `openid` (providers/google.md §3: the
    /// refresh answer has one "if openid"), else `None`.
    fn id_token(
        &self,
        world: &World,
        tenant: usize,
        grant: &IdGrant<'_>,
        access_token: &str,
    ) -> Option<String> {
        let &IdGrant {
            user,
            client_id,
            scopes,
            nonce,
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
        super::oidc::google_id_token(
            self.key?,
            &crate::oauth::oidc::IdTokenFor {
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

pub(super) fn refresh(world: &mut World, params: &Params, oidc: &Oidc<'_>) -> Reply {
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
    let transport = match token_faults(world, tenant, Some(grant.user)) {
        Ok(transport) => transport,
        Err(reply) => return *reply,
    };
    if world.user(tenant, grant.user).is_none_or(|u| u.cfg.deleted) {
        return token_reply(answer_of(FaultKind::InvalidGrantRevoked), transport);
    }
    let granted = IdGrant {
        user: grant.user,
        client_id: &grant.client_id,
        scopes: &grant.scopes,
        nonce: None,
    };
    delegated(world, oidc, tenant, &granted, None, transport)
}

pub(super) fn code(world: &mut World, params: &Params, oidc: &Oidc<'_>) -> Reply {
    let tenant = match client_auth(world, params) {
        Ok(tenant) => tenant,
        Err(answer) => return token_reply(answer, None),
    };
    let client_id = params.get("client_id").unwrap_or_default();
    let grant = match code::check(world, params, tenant, client_id) {
        Ok(grant) => grant,
        Err(refused) => {
            let (error, text) = match refused {
                Refused::Unknown => ("invalid_grant", "Malformed auth code."),
                Refused::Used => ("invalid_grant", "Code was already redeemed."),
                Refused::OtherClient => ("invalid_grant", "Bad Request"),
                Refused::RedirectMismatch => ("redirect_uri_mismatch", "Bad Request"),
                Refused::NoVerifier => ("invalid_grant", "Missing code verifier."),
                Refused::WrongVerifier => ("invalid_grant", "Invalid code verifier."),
            };
            return token_reply(google_token_error(400, error, text), None);
        }
    };
    let transport = match token_faults(world, tenant, Some(grant.user)) {
        Ok(transport) => transport,
        Err(reply) => return *reply,
    };
    code::mark_used(world, params);
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
    let granted = IdGrant {
        user: grant.user,
        client_id: &grant.client_id,
        scopes: &grant.scopes,
        nonce: grant.nonce.as_deref(),
    };
    delegated(
        world,
        oidc,
        tenant,
        &granted,
        Some(refresh_token),
        transport,
    )
}

/// The faults the token endpoint answers for `user` of `tenant`: `Err` is a fault's reply,
/// `Ok` the transport fault (if any) to put on the endpoint's own answer.
fn token_faults(
    world: &mut World,
    tenant: usize,
    user: Option<usize>,
) -> Result<Option<FaultSpec>, Box<Reply>> {
    let mut ctx = AnswerCtx::default();
    match oauth_faults(
        world,
        Endpoint::Token,
        Provider::Google,
        tenant,
        user,
        &mut ctx,
    ) {
        Fired::Answer(answer, transport) => Err(Box::new(token_reply(answer, transport))),
        Fired::Transport(spec) => Ok(Some(spec)),
        Fired::Nothing => Ok(None),
    }
}

/// A refresh or code answer: a new access token (the Gmail and Calendar scopes left out of
/// `scope` under the `refresh_scope_missing` quirk), the refresh token if one was issued,
/// and an `id_token` when `openid` was granted.
fn delegated(
    world: &mut World,
    oidc: &Oidc<'_>,
    tenant: usize,
    grant: &IdGrant<'_>,
    refresh_token: Option<String>,
    transport: Option<FaultSpec>,
) -> Reply {
    let mut scopes = grant.scopes.to_vec();
    if world
        .quirks(tenant, Some(grant.user), Endpoint::Token)
        .refresh_scope_missing
    {
        scopes = without_mail_and_calendar(&scopes);
    }
    let scope = scopes.join(" ");
    let (access, lifetime) = issue_access(world, tenant, Some(grant.user), scopes);
    let id_token = oidc.id_token(world, tenant, grant, &access);
    let mut body = obj! { "access_token" => access, "expires_in" => lifetime };
    if let Some(refresh_token) = refresh_token {
        body.push("refresh_token", refresh_token);
    }
    body.push("scope", scope);
    body.push("token_type", "Bearer");
    if let Some(id_token) = id_token {
        body.push("id_token", id_token);
    }
    token_reply(Answer::new(200, body), transport)
}
