//! Google's OpenID Connect side: its discovery document and JWKS (mirrored under
//! `/google`) and the `id_token`s its token endpoint issues.

use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::fault::{Answer, AnswerCtx, FaultKind};
use crate::json::{J, obj};
use crate::oauth::oidc::{IdKey, IdTokenFor, has};
use crate::scenario::Provider;
use crate::server::{AppState, Reply, Style, deliver};

/// Google's discovery document
/// (<https://accounts.google.com/.well-known/openid-configuration>), every URL pointing at
/// the sim's mirror of its host.
pub(super) async fn configuration(State(shared): State<AppState>) -> Response {
    let urls = &shared.urls;
    let issuer = shared.urls.google_issuer();
    let list = J::strings;
    let body = obj! {
        "issuer" => issuer.as_str(),
        "authorization_endpoint" => urls.google_authorize_url.as_str(),
        "token_endpoint" => urls.google_token_url.as_str(),
        "jwks_uri" => format!("{issuer}/oauth2/v3/certs"),
        "response_types_supported" => list(&["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"]),
        "subject_types_supported" => list(&["public"]),
        "id_token_signing_alg_values_supported" => list(&["RS256"]),
        "scopes_supported" => list(&["openid", "email", "profile"]),
        "token_endpoint_auth_methods_supported" => list(&["client_secret_post", "client_secret_basic"]),
        "claims_supported" => list(&["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss", "name", "picture", "sub"]),
        "code_challenge_methods_supported" => list(&["plain", "S256"]),
        "grant_types_supported" => list(&["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]),
    };
    deliver(Reply::plain(
        Style::GoogleApi,
        Answer::new(200, body),
        (String::new(), String::new()),
    ))
    .await
}

pub(super) async fn certs(State(shared): State<AppState>) -> Response {
    let answer = match &shared.id_key {
        Some(key) => Answer::new(200, key.jwks(None)),
        None => crate::fault::answer(
            FaultKind::ServerError,
            Provider::Google,
            &AnswerCtx::default(),
        ),
    };
    deliver(Reply::plain(
        Style::GoogleApi,
        answer,
        (String::new(), String::new()),
    ))
    .await
}

/// A Google `id_token` (developers.google.com/identity/openid-connect/openid-connect
/// "An ID token's payload"): `iss`, `azp`, `aud`, `sub`, `hd` (Workspace domain),
/// `email` + `email_verified` with the `email` scope, `at_hash` of the access token, `name` / `given_name` /
/// `family_name` with `profile`, `nonce` if the authorization request had one, `iat`,
/// `exp`.
pub(crate) fn google_id_token(key: &IdKey, who: &IdTokenFor<'_>, now: i64) -> Option<String> {
    let mut claims = obj! {
        "iss" => who.issuer,
        "azp" => who.client_id,
        "aud" => who.client_id,
        "sub" => who.subject,
    };
    if let Some((_, domain)) = who.email.split_once('@') {
        claims.push("hd", domain);
    }
    if has(who.scopes, "email") {
        claims.push("email", who.email);
        claims.push("email_verified", true);
    }
    if let Some(access) = who.access_token {
        // OpenID Connect Core §3.1.3.6: base64url of the left half of SHA-256(token).
        let digest = Sha256::digest(access.as_bytes());
        claims.push("at_hash", URL_SAFE_NO_PAD.encode(&digest[..16]));
    }
    if has(who.scopes, "profile") {
        claims.push("name", who.name);
        let (given, family) = who.name.split_once(' ').unwrap_or((who.name, ""));
        claims.push("given_name", given);
        claims.push("family_name", family);
    }
    if let Some(nonce) = who.nonce {
        claims.push("nonce", nonce);
    }
    claims.push("iat", now);
    claims.push("exp", now + who.lifetime);
    key.sign(&claims)
}
