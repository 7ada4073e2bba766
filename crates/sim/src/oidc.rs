//! OpenID Connect: the discovery documents, the JWKS that verifies the sim's `id_token`s,
//! and the `id_token`s themselves.
//!
//! The connect flow (issue 17) verifies an `id_token` the way it would against Google or
//! Entra: discovery document → `jwks_uri` → RS256 signature → `iss`, `aud`, `exp`, `nonce`.
//! So the sim publishes both providers' documents (mirrored under its prefixes, as every
//! other host is), signs with one fake, test-only RSA key (config/sim/keys/) through
//! `ring` (the workspace's crypto; no new use of the `rsa` crate), and writes the claims
//! the real providers write. `msal` also reads the Microsoft document before any token
//! request and refuses an authority without one.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use sha2::{Digest, Sha256};

use crate::fault::{Answer, AnswerCtx, FaultKind};
use crate::json::{J, obj};
use crate::scenario::Provider;
use crate::server::{AppState, Reply, Style, deliver, request_ids};

/// The fake, test-only signing key (generated once with `openssl genpkey -algorithm RSA
/// -pkeyopt rsa_keygen_bits:2048`; never use it for anything else).
const KEY_PEM: &str = include_str!("../../../config/sim/keys/FAKE-TEST-ONLY-sim-id-token.key.pem");

/// The sim's `id_token` signing key and its JWK.
pub(crate) struct IdKey {
    pair: RsaKeyPair,
    rng: ring::rand::SystemRandom,
    /// `kid` of the header and the JWK: hex of the first 20 bytes of SHA-256(n).
    pub kid: String,
    n: String,
    e: String,
}

impl IdKey {
    /// Loads the shipped key; `None` only if the file in the binary is broken.
    pub(crate) fn load() -> Option<Arc<IdKey>> {
        let body: String = KEY_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).ok()?;
        let pair = RsaKeyPair::from_pkcs8(&der).ok()?;
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
        let kid = hex_prefix(&Sha256::digest(&public.n));
        Some(Arc::new(IdKey {
            pair,
            rng: ring::rand::SystemRandom::new(),
            kid,
            n: URL_SAFE_NO_PAD.encode(&public.n),
            e: URL_SAFE_NO_PAD.encode(&public.e),
        }))
    }

    /// `header.claims.signature`, RS256 (RSASSA-PKCS1-v1_5 with SHA-256).
    pub(crate) fn sign(&self, claims: &J) -> Option<String> {
        let header = obj! { "alg" => "RS256", "kid" => self.kid.as_str(), "typ" => "JWT" };
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_bytes()),
            URL_SAFE_NO_PAD.encode(claims.to_bytes())
        );
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                input.as_bytes(),
                &mut signature,
            )
            .ok()?;
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The JWK set. Google's (`oauth2/v3/certs`) carries `alg`; Entra's (`discovery/v2.0/
    /// keys`) carries `issuer` per key. Neither `x5t` nor `x5c` is sent: the sim has no
    /// certificate for its key.
    fn jwks(&self, issuer: Option<&str>) -> J {
        let mut key = obj! {
            "kty" => "RSA",
            "use" => "sig",
            "kid" => self.kid.as_str(),
        };
        if issuer.is_none() {
            key.push("alg", "RS256");
        }
        key.push("n", self.n.as_str());
        key.push("e", self.e.as_str());
        if let Some(issuer) = issuer {
            key.push("issuer", issuer);
        }
        obj! { "keys" => vec![key] }
    }
}

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/google/.well-known/openid-configuration",
            get(google_configuration),
        )
        .route("/google/oauth2/v3/certs", get(google_certs))
        .route(
            "/microsoft/{tenant}/v2.0/.well-known/openid-configuration",
            get(microsoft_configuration),
        )
        .route(
            "/microsoft/{tenant}/discovery/v2.0/keys",
            get(microsoft_keys),
        )
}

fn plain(style: Style, answer: Answer, ids: (String, String)) -> Reply {
    Reply {
        style,
        answer,
        transport: None,
        request_id: ids.0,
        client_request_id: ids.1,
        in_flight: None,
    }
}

/// The Google issuer as the sim mirrors it: `accounts.google.com` lives at `{base}/google`.
pub(crate) fn google_issuer(shared: &AppState) -> String {
    format!("{}/google", shared.urls.base)
}

/// Google's discovery document
/// (<https://accounts.google.com/.well-known/openid-configuration>), every URL pointing at
/// the sim's mirror of its host.
async fn google_configuration(State(shared): State<AppState>) -> Response {
    let urls = &shared.urls;
    let issuer = google_issuer(&shared);
    let list = |items: &[&str]| J::Arr(items.iter().map(|s| J::from(*s)).collect());
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
    deliver(plain(
        Style::GoogleApi,
        Answer::new(200, body),
        (String::new(), String::new()),
    ))
    .await
}

async fn google_certs(State(shared): State<AppState>) -> Response {
    let answer = match &shared.id_key {
        Some(key) => Answer::new(200, key.jwks(None)),
        None => crate::fault::answer(
            FaultKind::ServerError,
            Provider::Google,
            &AnswerCtx::default(),
        ),
    };
    deliver(plain(
        Style::GoogleApi,
        answer,
        (String::new(), String::new()),
    ))
    .await
}

/// The tenant a discovery path names: `Ok(Some(guid))` for a tenant of the scenario,
/// `Ok(None)` for `common` / `organizations` (Entra then writes the `{tenantid}`
/// placeholder), `Err` (AADSTS90002) for anything else.
fn discovery_tenant(shared: &AppState, segment: &str) -> Result<Option<String>, ()> {
    if matches!(segment, "common" | "organizations") {
        return Ok(None);
    }
    let world = shared.lock();
    world
        .tenants
        .iter()
        .find(|t| {
            t.cfg.provider == Provider::Microsoft
                && (t.cfg.tenant_id.eq_ignore_ascii_case(segment)
                    || t.cfg.domain.eq_ignore_ascii_case(segment)
                    || t.cfg.name == segment)
        })
        .map(|t| Some(t.cfg.tenant_id.clone()))
        .ok_or(())
}

/// Entra's 400 for a tenant it does not know, as MSAL and the Azure CLI print it
/// (Azure/azure-cli#22145, microsoftgraph/windowsupdates-webapplication-sample#6):
/// `error` is `invalid_tenant` on the discovery endpoint (the token endpoint says
/// `invalid_request`).
fn unknown_tenant(segment: &str, headers: &HeaderMap) -> Reply {
    let ids = request_ids(headers);
    let ctx = AnswerCtx {
        tenant: segment.to_owned(),
        request_id: ids.0.clone(),
        client_request_id: headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        ..AnswerCtx::default()
    };
    let answer = crate::fault::entra_error(
        &ctx,
        400,
        "invalid_tenant",
        90002,
        &format!(
            "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
        None,
    );
    plain(Style::EntraToken, answer, ids)
}

/// The v2.0 issuer of a tenant, mirrored: `https://login.microsoftonline.com/{tid}/v2.0`.
pub(crate) fn microsoft_issuer(shared: &AppState, tid: &str) -> String {
    format!("{}/{tid}/v2.0", shared.urls.microsoft_login_base)
}

/// Entra's v2.0 discovery document (`{authority}/v2.0/.well-known/openid-configuration`).
async fn microsoft_configuration(
    State(shared): State<AppState>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let tid = match discovery_tenant(&shared, &segment) {
        Ok(tid) => tid,
        Err(()) => return deliver(unknown_tenant(&segment, &headers)).await,
    };
    // Endpoints name the tenant GUID when one was resolved, else the path's own segment;
    // the issuer of `common` keeps Entra's literal placeholder.
    let login = &shared.urls.microsoft_login_base;
    let path_tenant = tid.clone().unwrap_or_else(|| segment.clone());
    let issuer = microsoft_issuer(&shared, tid.as_deref().unwrap_or("{tenantid}"));
    let list = |items: &[&str]| J::Arr(items.iter().map(|s| J::from(*s)).collect());
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
    deliver(plain(Style::EntraToken, Answer::new(200, body), ids)).await
}

async fn microsoft_keys(
    State(shared): State<AppState>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let tid = match discovery_tenant(&shared, &segment) {
        Ok(tid) => tid,
        Err(()) => return deliver(unknown_tenant(&segment, &headers)).await,
    };
    let issuer = microsoft_issuer(&shared, tid.as_deref().unwrap_or("{tenantid}"));
    let answer = match &shared.id_key {
        Some(key) => Answer::new(200, key.jwks(Some(&issuer))),
        None => crate::fault::answer(
            FaultKind::TemporarilyUnavailable,
            Provider::Microsoft,
            &AnswerCtx::default(),
        ),
    };
    deliver(plain(Style::EntraToken, answer, request_ids(&headers))).await
}

/// Who an `id_token` is about and for whom it is minted.
pub(crate) struct IdTokenFor<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub scopes: &'a [String],
    pub nonce: Option<&'a str>,
    pub lifetime: i64,
    /// The access token issued beside it, for Google's `at_hash`.
    pub access_token: Option<&'a str>,
}

fn has(scopes: &[String], scope: &str) -> bool {
    scopes.iter().any(|s| s == scope)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_key_signs_and_verifies() {
        let key = IdKey::load().expect("the shipped key parses");
        let token = key.sign(&obj! { "sub" => "1" }).expect("signs");
        let (input, signature) = token.rsplit_once('.').unwrap();
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = key.pair.public().into();
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .expect("verifies with the JWK's n and e");
        assert_eq!(key.kid.len(), 40);
    }
}
