//! OAuth as both providers' endpoints share it: who signs in on the consent screen and
//! what they grant, the redirect back, authorization codes with PKCE ([`code`]), the
//! access and refresh tokens issued ([`grants`]), and the JWTs and `id_token`s signed and
//! verified on the way ([`jwt`], [`oidc`]). What differs (token formats, error bodies, grant
//! types) stays in each provider's `token.rs` and `authorize.rs`.

pub(crate) mod code;
pub(crate) mod grants;
pub(crate) mod jwt;
pub(crate) mod oidc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::fault::{AnswerCtx, Endpoint, Fired, fire};
use crate::scenario::Provider;
use crate::server::Params;
use crate::state::World;

/// Sign-in scopes the consent screen never lets a user untick and no client restricts
/// (Google's list; the sim's consent screen keeps them at both providers): with `email`,
/// Google's `tokeninfo` names the account.
const BASIC_SCOPES: &[&str] = &[
    "openid",
    "email",
    "profile",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
];

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

/// The faults that fire at an OAuth endpoint (`Endpoint::Token` or `Endpoint::Authorize`;
/// OAuth calls are never incremental) for `user` of `tenant`.
pub(crate) fn oauth_faults(
    world: &mut World,
    endpoint: Endpoint,
    provider: Provider,
    tenant: usize,
    user: Option<usize>,
    ctx: &mut AnswerCtx,
) -> Fired {
    fire(world, tenant, user, endpoint, false, provider, ctx)
}
