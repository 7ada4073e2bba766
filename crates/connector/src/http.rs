//! The HTTP plumbing every connector shares: one client configuration (rustls on ring,
//! timeouts, no redirects), bounded body reads, `Retry-After` parsing and the mapping of
//! transport failures to outcomes.
//!
//! Kept in one place so that "every provider call carries a timeout", "a body over the size
//! limit is a provider error" and "a connection reset mid-body is a network error" hold for
//! both providers without each connector remembering them.

use std::time::Duration;

use datacap_core::Outcome;
use reqwest::header::HeaderMap;

use crate::job::Failure;

/// Limits of every provider call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for a whole request, body included.
    pub request_timeout: Duration,
    /// Largest body read; a larger one is a `provider_error`.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The HTTP client cannot be built (a TLS configuration problem).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the provider http client: {0}")]
pub struct ClientError(String);

/// Builds the client connectors use: rustls with the workspace's one crypto provider
/// (ring), the limits' timeouts, no redirects (a provider redirect is an answer to record,
/// not to follow), and a datacap user agent.
pub fn build_client(limits: &HttpLimits) -> Result<reqwest::Client, ClientError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("datacap/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|error| ClientError(error.without_url().to_string()))
}

/// Makes ring the process's rustls provider, once; later calls (and a provider that the
/// binary installed first) are fine.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a body up to `limit` bytes. A transport error mid-body is a `network_error`; a
/// body over the limit is a `provider_error`.
pub async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Failure> {
    let status = response.status().as_u16();
    let request_id = request_id(response.headers());
    if let Some(length) = response.content_length()
        && length > limit as u64
    {
        return Err(Failure::new(
            Outcome::ProviderError,
            format!("answer body of {length} bytes is over the {limit}-byte limit"),
        )
        .with_answer(status, request_id));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Failure::new(
                        Outcome::ProviderError,
                        format!("answer body is over the {limit}-byte limit"),
                    )
                    .with_answer(status, request_id));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => {
                return Err(transport_failure(&error).with_answer(status, request_id));
            }
        }
    }
}

/// A request that got no (complete) answer: `network_error`, with what happened.
pub fn transport_failure(error: &reqwest::Error) -> Failure {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "connection failed while reading the answer"
    } else {
        "request failed"
    };
    // Without the URL: query strings carry page tokens and addresses, not secrets, but the
    // message stays short and stable for on-call.
    let mut detail = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty()
            && !detail.contains(&text)
            && !text.contains("http://")
            && !text.contains("https://")
        {
            if !detail.is_empty() {
                detail.push_str(": ");
            }
            detail.push_str(&text);
        }
        source = cause.source();
    }
    Failure::new(Outcome::NetworkError, format!("{kind}: {detail}"))
}

/// The longest body [`redacted_body`] keeps.
pub const LOGGED_BODY_MAX: usize = 2048;

/// An error answer's body for a log line, when no mapping row knew it (issue 21 §4: the
/// answer stays transient and is logged whole so that a row can be added): cut to
/// [`LOGGED_BODY_MAX`] bytes, every JSON value under a key that names a secret
/// (`access_token`, `refresh_token`, `id_token`, `client_secret`, `assertion`,
/// `password`) and every JWT-shaped word (`eyJ…`) replaced by `[redacted]`.
pub fn redacted_body(body: &[u8]) -> String {
    const SECRET_KEYS: &[&str] = &[
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "assertion",
        "password",
    ];
    fn scrub(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    let lower = key.to_ascii_lowercase();
                    if SECRET_KEYS.iter().any(|secret| lower.contains(secret)) {
                        *inner = serde_json::Value::String("[redacted]".to_owned());
                    } else {
                        scrub(inner);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(scrub),
            serde_json::Value::String(text) => *text = scrub_words(text),
            _ => {}
        }
    }
    fn scrub_words(text: &str) -> String {
        text.split_inclusive(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .map(|word| {
                if word.trim_start().starts_with("eyJ") {
                    let end =
                        word.trim_end_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
                    format!("[redacted]{}", &word[end.len()..])
                } else {
                    word.to_owned()
                }
            })
            .collect()
    }
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut value) => {
            scrub(&mut value);
            value.to_string()
        }
        Err(_) => scrub_words(&String::from_utf8_lossy(body)),
    };
    let mut cut = text.len().min(LOGGED_BODY_MAX);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

/// The provider's request id of an answer: Graph's `request-id`, else `x-request-id`,
/// else Google's `x-guploader-uploadid`-style ids are not request ids and are ignored.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    ["request-id", "x-request-id", "x-ms-request-id"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Parses `Retry-After`: whole seconds (`120`), fractional seconds (`2.128`, as Graph
/// sends) or an HTTP date (relative to `now`). Negative, absurd or unparsable values
/// give `None`; a date in the past gives zero.
pub fn retry_after(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let text = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() && (0.0..=86_400.0).contains(&seconds) {
            return Some(Duration::from_secs_f64(seconds));
        }
        return None;
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO)).filter(|wait| wait.as_secs() <= 86_400)
}

#[cfg(test)]
mod tests {

    #[test]
    fn logged_bodies_keep_the_answer_and_lose_the_secrets() {
        let body = br#"{"error":"weird","error_description":"AADSTS99999: new","refresh_token":"1//secret-r","nested":{"Access_Token":"ya29.secret"},"hint":"token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln was bad"}"#;
        let logged = redacted_body(body);
        assert!(
            logged.contains("AADSTS99999: new") && logged.contains("weird"),
            "{logged}"
        );
        for secret in ["1//secret-r", "ya29.secret", "eyJhbGci"] {
            assert!(!logged.contains(secret), "{secret} in {logged}");
        }
        let plain = redacted_body(b"<html>Bearer eyJabc.def.ghi denied</html>");
        assert_eq!(plain, "<html>Bearer [redacted] denied</html>");
        let long = redacted_body("\u{e9}".repeat(3000).as_bytes());
        assert!(long.len() <= LOGGED_BODY_MAX);
    }
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[track_caller]
    fn check_retry_after(value: &str, expected: Option<Duration>) {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_str(value).expect("header"));
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after(&headers, now), expected, "{value}");
    }

    #[test]
    fn retry_after_forms() {
        // PROVIDERS.md: "Retry-After may be an integer, a fraction (2.128) or an HTTP date".
        check_retry_after("120", Some(Duration::from_secs(120)));
        check_retry_after("0", Some(Duration::ZERO));
        check_retry_after("2.128", Some(Duration::from_secs_f64(2.128)));
        check_retry_after(
            "Sun, 06 Nov 1994 08:50:07 GMT",
            Some(Duration::from_secs(30)),
        );
        check_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO));
        check_retry_after("-5", None);
        check_retry_after("soon", None);
        check_retry_after("1e300", None);
        check_retry_after("NaN", None);
        assert_eq!(retry_after(&HeaderMap::new(), SystemTime::now()), None);
    }

    #[test]
    fn request_id_prefers_graphs_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("b"));
        assert_eq!(request_id(&headers).as_deref(), Some("b"));
        headers.insert("request-id", HeaderValue::from_static("a"));
        assert_eq!(request_id(&headers).as_deref(), Some("a"));
    }
}
