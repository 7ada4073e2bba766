//! The Entra ID v2.0 token endpoint: client credentials (app-only) and the refresh grant
//! (user-by-user, with rotation), and the mapping of a refused token answer that the
//! connect flow's authorization-code redemption (on the `oauth2` crate,
//! `datacap_connector::code_flow`) shares.
//!
//! The two grants of every import are written directly on reqwest because the answer's
//! `error_codes`, `suberror`, `trace_id`, `correlation_id`, HTTP status and headers all
//! decide or document the outcome, and an OAuth crate's error type drops the status and
//! headers (PROVIDERS.md, "Crates named in the brief"; ARCHITECTURE.md). Secrets travel
//! as `SecretString` and are exposed only while the form body is encoded.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datacap_connector::{Failure, Gate, read_body, transport_failure};
use datacap_core::Outcome;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::errors::{TokenErrorBody, classify_token_error};

/// A successful token answer.
#[derive(Clone)]
pub struct TokenGrant {
    /// The Graph access token.
    pub access_token: SecretString,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// A new refresh token (user grants only); Entra rotates them, so persist it.
    pub refresh_token: Option<SecretString>,
    /// Granted scopes, space-separated, as Entra returned them.
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawGrant {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Posts one form to `{login_base}/{tenant}/oauth2/v2.0/token`.
pub(crate) async fn request_token(
    http: &reqwest::Client,
    login_base: &str,
    max_body_bytes: usize,
    tenant: &str,
    form: &[(&str, &str)],
    attempt_id: Uuid,
    gate: &Gate,
) -> Result<TokenGrant, Failure> {
    let Some(url) = token_url(login_base, tenant) else {
        return Err(Failure::new(
            Outcome::ProviderError,
            format!("cannot build the token url for tenant `{tenant}`"),
        ));
    };
    let grant_type = form
        .iter()
        .find(|(name, _)| *name == "grant_type")
        .map_or("", |(_, value)| *value);
    gate.ready().await;
    let response = http
        .post(url)
        .header("client-request-id", attempt_id.to_string())
        .header("return-client-request-id", "true")
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .send()
        .await
        .map_err(|error| transport_failure(&error))?;
    let status = response.status().as_u16();
    gate.answered(
        status,
        response.headers(),
        crate::errors::token_throttle_scope(),
    );
    let headers = response.headers().clone();
    let body = read_body(response, max_body_bytes).await?;
    if (200..300).contains(&status) {
        let grant = parse_grant(&body).ok_or_else(|| not_a_token(status, &headers))?;
        debug!(
            http_status = status,
            grant_type,
            tenant,
            request_id = datacap_connector::request_id(&headers)
                .as_deref()
                .unwrap_or(""),
            "entra token issued"
        );
        return Ok(grant);
    }
    Err(token_refused(
        status,
        &headers,
        &body,
        TokenErrorBody::parse(&body),
        grant_type,
        tenant,
    ))
}

/// A 2xx answer whose body is not a token.
pub(crate) fn not_a_token(status: u16, headers: &reqwest::header::HeaderMap) -> Failure {
    Failure::new(
        Outcome::ProviderError,
        "the token endpoint answered 2xx with a body that is not a token",
    )
    .with_answer(status, datacap_connector::request_id(headers))
}

/// The failure of a token answer that is not a token: the outcome of its envelope
/// (`parsed`: `error_codes` first, then `suberror`, then `error`), the message with the
/// suberror, trace and correlation ids, the request id and `Retry-After`, logged. Shared
/// by the requests above and the connect flow's code redemption on the `oauth2` crate.
pub(crate) fn token_refused(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    parsed: Option<TokenErrorBody>,
    grant_type: &str,
    tenant: &str,
) -> Failure {
    let header_request_id = datacap_connector::request_id(headers);
    let retry_after = datacap_connector::retry_after(headers, std::time::SystemTime::now());
    let outcome = classify_token_error(status, parsed.as_ref());
    if (400..500).contains(&status)
        && status != 429
        && !parsed
            .as_ref()
            .is_some_and(crate::errors::token_error_known)
    {
        // No row of the catalogue knew it: kept as provider_error, logged whole (secrets
        // cut) so that a row can be added (issue 21 §4).
        warn!(
            http_status = status,
            body = %datacap_connector::redacted_body(body),
            "entra answer no mapping row knows: kept as provider_error"
        );
    }
    let mut failure = match &parsed {
        Some(error) => {
            let mut message = error.summary().to_owned();
            if message.is_empty() {
                message = format!("token endpoint refused the {grant_type} grant");
            }
            if let Some(suberror) = &error.suberror {
                message.push_str(&format!(" (suberror {suberror})"));
            }
            if let Some(trace_id) = &error.trace_id {
                message.push_str(&format!("; trace_id {trace_id}"));
            }
            if let Some(correlation_id) = &error.correlation_id {
                message.push_str(&format!("; correlation_id {correlation_id}"));
            }
            // Entra's trace id is what Microsoft support asks for; the header's request id
            // is the same value on the real service.
            Failure::new(outcome, message)
                .with_answer(status, error.trace_id.clone().or(header_request_id.clone()))
                .with_code(error.error.clone())
        }
        None => Failure::new(
            outcome,
            format!("token endpoint answered http {status} without an error body"),
        )
        .with_answer(status, header_request_id.clone()),
    };
    failure.retry_after = retry_after;
    tracing::warn!(
        http_status = status,
        grant_type,
        tenant,
        error_code = failure.error_code.as_deref().unwrap_or(""),
        aadsts = parsed
            .as_ref()
            .and_then(|e| e.error_codes.first().copied())
            .unwrap_or(0),
        request_id = failure.request_id.as_deref().unwrap_or(""),
        correlation_id = parsed
            .as_ref()
            .and_then(|e| e.correlation_id.as_deref())
            .unwrap_or(""),
        outcome = %outcome,
        "entra token refused"
    );
    failure
}

fn parse_grant(body: &[u8]) -> Option<TokenGrant> {
    let raw: RawGrant = serde_json::from_slice(body).ok()?;
    if raw.access_token.is_empty() {
        return None;
    }
    // Entra sends a number; some older endpoints sent a string.
    let expires_in = match raw.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64()?,
        Some(serde_json::Value::String(s)) => s.parse().ok()?,
        None => 3600,
        Some(_) => return None,
    };
    Some(TokenGrant {
        access_token: SecretString::from(raw.access_token),
        expires_in,
        refresh_token: raw
            .refresh_token
            .filter(|t| !t.is_empty())
            .map(SecretString::from),
        scope: raw.scope,
    })
}

pub(crate) fn token_url(login_base: &str, tenant: &str) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse(login_base).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend([tenant, "oauth2", "v2.0", "token"]);
    Some(url)
}

/// The claims of a Graph access token that decide between `not_authorized` and
/// `access_denied`: app roles (`roles`) and delegated scopes (`scp`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenClaims {
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// The tenant that issued the token (`tid`).
    pub tenant_id: Option<String>,
}

impl TokenClaims {
    /// Reads the payload of a JWT without checking its signature (Graph checks it; we only
    /// want to know what was granted). `None` when the token is not a readable JWT.
    pub fn decode(access_token: &str) -> Option<TokenClaims> {
        #[derive(Deserialize)]
        struct Payload {
            #[serde(default)]
            roles: Vec<String>,
            #[serde(default)]
            scp: Option<String>,
            #[serde(default)]
            tid: Option<String>,
        }
        let mut parts = access_token.split('.');
        let (_header, payload) = (parts.next()?, parts.next()?);
        parts.next()?;
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let payload: Payload = serde_json::from_slice(&bytes).ok()?;
        Some(TokenClaims {
            roles: payload.roles,
            scopes: payload
                .scp
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            tenant_id: payload.tid,
        })
    }

    /// Every permission the token carries (roles and scopes).
    pub fn permissions(&self) -> impl Iterator<Item = &str> {
        self.roles.iter().chain(&self.scopes).map(String::as_str)
    }
}

/// Exposes a secret for a form field; the only place tokens leave their wrapper.
pub(crate) fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn claims() {
        let app = TokenClaims::decode(&jwt(r#"{"roles":["Mail.Read","User.Read.All"],"tid":"t"}"#));
        assert_eq!(app.as_ref().map(|c| c.roles.len()), Some(2));
        let user =
            TokenClaims::decode(&jwt(r#"{"scp":"Mail.Read Calendars.Read"}"#)).expect("decodes");
        assert_eq!(user.scopes, ["Mail.Read", "Calendars.Read"]);
        let none = TokenClaims::decode(&jwt(r#"{"aud":"x"}"#)).expect("decodes");
        assert_eq!(none, TokenClaims::default());
        for bad in [
            "",
            "opaque",
            "a.b",
            "a.!!!.c",
            &jwt("not json"),
            &jwt(r#"{"roles":"x"}"#),
        ] {
            assert_eq!(TokenClaims::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn grants() {
        let grant = parse_grant(br#"{"token_type":"Bearer","expires_in":3599,"access_token":"a"}"#)
            .expect("grant");
        assert_eq!(grant.expires_in, 3599);
        assert!(grant.refresh_token.is_none());
        let grant = parse_grant(
            br#"{"expires_in":"60","access_token":"a","refresh_token":"r","scope":"Mail.Read"}"#,
        )
        .expect("grant");
        assert_eq!(grant.expires_in, 60);
        assert!(grant.refresh_token.is_some());
        let shown = format!("{grant:?}");
        assert!(
            shown.contains("[redacted]") && !shown.contains("\"r\"") && !shown.contains("\"a\""),
            "{shown}"
        );
        for bad in [
            &b""[..],
            b"{}",
            br#"{"access_token":""}"#,
            br#"{"access_token":"a","expires_in":[]}"#,
            b"{\"access_token\":\"a",
        ] {
            assert!(parse_grant(bad).is_none());
        }
    }

    #[test]
    fn token_url_keeps_the_base_path() {
        let url = token_url("http://127.0.0.1:9/microsoft", "contoso.example").expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/microsoft/contoso.example/oauth2/v2.0/token"
        );
        let url = token_url("https://login.microsoftonline.com", "a/b").expect("url");
        assert_eq!(
            url.as_str(),
            "https://login.microsoftonline.com/a%2Fb/oauth2/v2.0/token"
        );
    }
}
