//! Entra ID's v2.0 token endpoint (`/microsoft/{tenant}/oauth2/v2.0/token`): client
//! credentials, refresh with rotation, and the authorization code of user-by-user consent,
//! minting Graph access tokens (HS256 JWTs carrying `roles` or `scp`) and `id_token`s.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::faults::entra_error;
use super::{find_tenant, now, sent_client_request_id};
use crate::Endpoints;
use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind, Fired};
use crate::json::{J, obj};
use crate::oauth::code::{self, Refused};
use crate::oauth::grants::{Grant, RefreshGrant};
use crate::oauth::oauth_faults;
use crate::scenario::Provider;
use crate::server::{AppState, Params, Reply, Style, deliver, request_ids};
use crate::state::World;

/// OpenID scopes that never appear in `scp`.
pub(super) const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

pub(super) fn scp_of(scopes: &[String]) -> Vec<String> {
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
pub(super) fn mint(
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
    let token = crate::oauth::jwt::sign_hs256(&claims, key);
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

pub(super) async fn token(
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
        client_request_id: sent_client_request_id(&headers),
        ..AnswerCtx::default()
    };
    let mut reply = Reply::plain(
        Style::EntraToken,
        Answer::new(200, J::Null),
        (request_id, client_request_id),
    );
    reply.answer = {
        let mut world = shared.lock();
        world.count(Endpoint::Token);
        let keys = Keys {
            access: &shared.token_key,
            id: shared.id_key.as_deref(),
            urls: &shared.urls,
        };
        token_answer(
            &mut world,
            &keys,
            &tenant_segment,
            &client_id,
            &params,
            &mut ctx,
            &mut reply.transport,
        )
    };
    deliver(reply).await
}

/// The keys a token answer is signed with.
pub(super) struct Keys<'a> {
    /// HS256 key of the access tokens.
    access: &'a [u8],
    /// RS256 key of the `id_token`s.
    id: Option<&'a crate::oauth::oidc::IdKey>,
    /// The sim's URLs, where the `iss` of an `id_token` lives.
    urls: &'a Endpoints,
}

pub(super) fn token_answer(
    world: &mut World,
    keys: &Keys<'_>,
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
    let code_grant = (grant_type == "authorization_code")
        .then(|| params.get("code").and_then(|c| world.codes.get(c).cloned()))
        .flatten();
    let user = refresh
        .as_ref()
        .map(|r| r.user)
        .or(code_grant.as_ref().map(|c| c.user));
    if let Some(user) = user.and_then(|u| world.user(tenant, u)) {
        ctx.user = user.cfg.email.clone();
    }
    match oauth_faults(
        world,
        Endpoint::Token,
        Provider::Microsoft,
        tenant,
        user,
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
    let (user, granted, nonce) = match grant_type {
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
            let (token, lifetime) = mint(world, keys.access, tenant, None, client_id, &[]);
            return Answer::new(
                200,
                obj! {
                    "token_type" => "Bearer",
                    "expires_in" => lifetime,
                    "ext_expires_in" => lifetime,
                    "access_token" => token,
                },
            );
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
            (grant.user, grant.scopes, None)
        }
        "authorization_code" => {
            let grant = match code::check(world, params, tenant, client_id) {
                Ok(grant) => grant,
                Err(Refused::Unknown | Refused::OtherClient) => {
                    return answer(FaultKind::InvalidRefreshToken, ctx);
                }
                Err(Refused::Used) => {
                    return entra_error(
                        ctx,
                        400,
                        "invalid_grant",
                        54005,
                        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                        None,
                    );
                }
                Err(Refused::RedirectMismatch) => {
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
                Err(Refused::NoVerifier | Refused::WrongVerifier) => {
                    return entra_error(
                        ctx,
                        400,
                        "invalid_grant",
                        501481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                        None,
                    );
                }
            };
            code::mark_used(world, params);
            (grant.user, grant.scopes, grant.nonce)
        }
        "" => {
            return entra_error(
                ctx,
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
                None,
            );
        }
        other => {
            return entra_error(
                ctx,
                400,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
                None,
            );
        }
    };
    delegated_success(
        world,
        keys,
        tenant,
        user,
        client_id,
        granted,
        nonce.as_deref(),
    )
}

/// The Entra v2.0 `id_token` of a delegated grant whose scopes hold `openid`.
pub(super) fn id_token_of(
    world: &World,
    keys: &Keys<'_>,
    tenant: usize,
    user: usize,
    client_id: &str,
    scopes: &[String],
    nonce: Option<&str>,
) -> Option<String> {
    if !scopes.iter().any(|s| s == "openid") {
        return None;
    }
    let tid = world.tenants.get(tenant)?.cfg.tenant_id.clone();
    let user = world.user(tenant, user)?;
    let issuer = keys.urls.microsoft_issuer(&tid);
    super::oidc::microsoft_id_token(
        keys.id?,
        &crate::oauth::oidc::IdTokenFor {
            issuer: &issuer,
            client_id,
            subject: &user.id,
            email: &user.cfg.email,
            name: &user.cfg.name,
            scopes,
            nonce,
            lifetime: world.token_lifetime,
            access_token: None,
        },
        &tid,
        &user.id,
        now(),
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) fn delegated_success(
    world: &mut World,
    keys: &Keys<'_>,
    tenant: usize,
    user: usize,
    client_id: &str,
    scopes: Vec<String>,
    nonce: Option<&str>,
) -> Answer {
    let id_token = id_token_of(world, keys, tenant, user, client_id, &scopes, nonce);
    let (token, lifetime) = mint(world, keys.access, tenant, Some(user), client_id, &scopes);
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
    if let Some(id_token) = id_token {
        body.push("id_token", id_token);
    }
    Answer::new(200, body)
}
