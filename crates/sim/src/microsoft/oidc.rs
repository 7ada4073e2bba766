//! Entra's OpenID Connect side: each tenant's v2.0 discovery document and JWKS (mirrored
//! under `/microsoft/{tenant}`) and the `id_token`s its token endpoint issues.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::{find_tenant, sent_client_request_id};
use crate::fault::{Answer, AnswerCtx, FaultKind};
use crate::json::{J, obj};
use crate::oauth::oidc::{IdKey, IdTokenFor, has};
use crate::scenario::Provider;
use crate::server::{AppState, Reply, Style, deliver, request_ids};

/// The tenant a discovery path names and its v2.0 issuer: `Some(guid)` for a tenant of the
/// scenario, `None` for `common` / `organizations` (whose issuer keeps Entra's literal
/// `{tenantid}` placeholder); `Err` is AADSTS90002 for anything else.
fn discovered(
    shared: &AppState,
    segment: &str,
    headers: &HeaderMap,
) -> Result<(Option<String>, String), Box<Reply>> {
    let tid = if matches!(segment, "common" | "organizations") {
        None
    } else {
        let world = shared.lock();
        let tenant = find_tenant(&world, segment, "").and_then(|t| world.tenants.get(t));
        match tenant {
            Some(tenant) => Some(tenant.cfg.tenant_id.clone()),
            None => return Err(Box::new(unknown_tenant(segment, headers))),
        }
    };
    let issuer = shared
        .urls
        .microsoft_issuer(tid.as_deref().unwrap_or("{tenantid}"));
    Ok((tid, issuer))
}

/// Entra's 400 for a tenant it does not know, as MSAL and the Azure CLI print it
/// (Azure/azure-cli#22145, microsoftgraph/windowsupdates-webapplication-sample#6):
/// `error` is `invalid_tenant` on the discovery endpoint (the token endpoint says
/// `invalid_request`).
pub(super) fn unknown_tenant(segment: &str, headers: &HeaderMap) -> Reply {
    let ids = request_ids(headers);
    let ctx = AnswerCtx {
        tenant: segment.to_owned(),
        request_id: ids.0.clone(),
        client_request_id: sent_client_request_id(headers),
        ..AnswerCtx::default()
    };
    let answer = crate::microsoft::faults::entra_error(
        &ctx,
        400,
        "invalid_tenant",
        90002,
        &format!(
            "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
        None,
    );
    Reply::plain(Style::EntraToken, answer, ids)
}

/// Entra's v2.0 discovery document (`{authority}/v2.0/.well-known/openid-configuration`).
pub(super) async fn configuration(
    State(shared): State<AppState>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (tid, issuer) = match discovered(&shared, &segment, &headers) {
        Ok(found) => found,
        Err(reply) => return deliver(*reply).await,
    };
    // Endpoints name the tenant GUID when one was resolved, else the path's own segment.
    let login = &shared.urls.microsoft_login_base;
    let path_tenant = tid.unwrap_or_else(|| segment.clone());
    let list = J::strings;
    let body = obj! {
        "token_endpoint" => format!("{login}/{path_tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported" => list(&["client_secret_post", "private_key_jwt", "client_secret_basic"]),
        "jwks_uri" => format!("{login}/{path_tenant}/discovery/v2.0/keys"),
        "response_modes_supported" => list(&["query", "fragment", "form_post"]),
        "subject_types_supported" => list(&["pairwise"]),
        "id_token_signing_alg_values_supported" => list(&["RS256"]),
        "response_types_supported" => list(&["code", "id_token", "code id_token", "id_token token"]),
        "scopes_supported" => list(&["openid", "profile", "email", "offline_access"]),
        "issuer" => issuer,
        "request_uri_parameter_supported" => false,
        "userinfo_endpoint" => format!("{}/oidc/userinfo", shared.urls.graph_base.trim_end_matches("/v1.0")),
        "authorization_endpoint" => format!("{login}/{path_tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint" => format!("{login}/{path_tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported" => true,
        "frontchannel_logout_supported" => true,
        "end_session_endpoint" => format!("{login}/{path_tenant}/oauth2/v2.0/logout"),
        "claims_supported" => list(&["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"]),
        "kerberos_endpoint" => format!("{login}/{path_tenant}/kerberos"),
        "tenant_region_scope" => "EU",
        "cloud_instance_name" => "microsoftonline.com",
        "cloud_graph_host_name" => "graph.windows.net",
        "msgraph_host" => "graph.microsoft.com",
        "rbac_url" => "https://pas.windows.net",
    };
    let ids = request_ids(&headers);
    deliver(Reply::plain(Style::EntraToken, Answer::new(200, body), ids)).await
}

pub(super) async fn keys(
    State(shared): State<AppState>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, issuer) = match discovered(&shared, &segment, &headers) {
        Ok(found) => found,
        Err(reply) => return deliver(*reply).await,
    };
    let answer = match &shared.id_key {
        Some(key) => Answer::new(200, key.jwks(Some(&issuer))),
        None => crate::fault::answer(
            FaultKind::TemporarilyUnavailable,
            Provider::Microsoft,
            &AnswerCtx::default(),
        ),
    };
    deliver(Reply::plain(
        Style::EntraToken,
        answer,
        request_ids(&headers),
    ))
    .await
}
/// An Entra v2.0 `id_token` (learn.microsoft.com/entra/identity-platform/id-token-claims-
/// reference): `aud` (the client id), `iss`, `iat`, `nbf`, `exp`, `name` (with
/// `profile`), `nonce`, `oid`, `preferred_username`, `email` (with the `email` scope),
/// `sub`, `tid`, `uti`, `ver` "2.0". `sub` is pairwise (per user and app), as Entra's.
pub(crate) fn microsoft_id_token(
    key: &IdKey,
    who: &IdTokenFor<'_>,
    tid: &str,
    oid: &str,
    now: i64,
) -> Option<String> {
    let pairwise = URL_SAFE_NO_PAD.encode(
        Sha256::digest(format!("{oid}|{}", who.client_id).as_bytes())
            .get(..32)
            .unwrap_or_default(),
    );
    let mut claims = obj! {
        "aud" => who.client_id,
        "iss" => who.issuer,
        "iat" => now,
        "nbf" => now,
        "exp" => now + who.lifetime,
    };
    if has(who.scopes, "email") {
        claims.push("email", who.email);
    }
    if has(who.scopes, "profile") {
        claims.push("name", who.name);
    }
    if let Some(nonce) = who.nonce {
        claims.push("nonce", nonce);
    }
    claims.push("oid", oid);
    claims.push("preferred_username", who.email);
    claims.push("sub", pairwise);
    claims.push("tid", tid);
    claims.push("uti", uuid::Uuid::new_v4().simple().to_string());
    claims.push("ver", "2.0");
    key.sign(&claims)
}
