//! Access tokens: the RS256 JWT-bearer assertion of domain-wide delegation, the member's
//! refresh grant, the authorization-code exchange, the token endpoint's request and the
//! mapping of its refusals (`post_token`, `token_refused`), and the cache that keeps one token per
//! (company, subject, scope set) until shortly before it expires.
//!
//! The cache holds one async mutex per key, so concurrent attempts for the same member
//! wait for one token request instead of each sending their own ("one refresh in flight
//! per key"). Tokens and keys live in `secrecy` types and never reach a log or an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::atomic::AtomicU32;
use std::time::SystemTime;

use datacap_connector::{Failure, Gate, ServiceAccountKey, request_id, retry_after};
use datacap_core::{Channel, Outcome};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::connector::Inner;
use crate::errors::{self, Grant};
use crate::models::{TokenAnswer, TokenError};
use crate::session::{Answer, exchange, log_call, log_unmapped, parse_success};

/// `grant_type` of the JWT-bearer assertion.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Gmail: read metadata and list with `q=` (`gmail.metadata` forbids `q`).
pub const GMAIL_SCOPE: &str = "https://www.googleapis.com/auth/gmail.readonly";
/// Calendar: read events.
pub const CALENDAR_SCOPE: &str = "https://www.googleapis.com/auth/calendar.readonly";
/// Both mailbox scopes in one delegation token, so a mailbox's two channels share one
/// token exchange (issue 18). Google refuses the whole request (401 `unauthorized_client`,
/// "… or client not authorized for any of the scopes requested") when any scope is not on
/// the domain-wide delegation allow-list (google.md §2; a 12-scope request failing so with
/// one scope left out of the delegation: hashicorp/terraform-provider-googleworkspace#228);
/// the session then asks one scope at a time, so a missing scope shows on its own channel.
pub(crate) const MAILBOX_SCOPES: &str = "https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/calendar.readonly";
/// How long a company whose delegation refused [`MAILBOX_SCOPES`] is asked one scope at a
/// time before the shared token is tried again (an admin may add the missing scope).
pub(crate) const SHARED_REFUSED_FOR: std::time::Duration = std::time::Duration::from_secs(3600);
/// Directory: read users (`sub` must be an admin).
pub const DIRECTORY_SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly";

/// What a token is for; decides the scope and, under delegation, the `sub`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Mailbox(Channel),
    Directory,
}

impl Purpose {
    /// The one scope requested for this purpose (only the scopes we need).
    pub(crate) fn scope(self) -> &'static str {
        match self {
            Purpose::Mailbox(Channel::Email) => GMAIL_SCOPE,
            Purpose::Mailbox(Channel::Calendar) => CALENDAR_SCOPE,
            Purpose::Directory => DIRECTORY_SCOPE,
        }
    }

    /// Granted scopes that allow this purpose's calls (a broader grant also does).
    pub(crate) fn satisfied_by(self, granted: &str) -> bool {
        let accepted: &[&str] = match self {
            Purpose::Mailbox(Channel::Email) => &[
                GMAIL_SCOPE,
                "https://www.googleapis.com/auth/gmail.modify",
                "https://mail.google.com/",
            ],
            Purpose::Mailbox(Channel::Calendar) => &[
                CALENDAR_SCOPE,
                "https://www.googleapis.com/auth/calendar",
                "https://www.googleapis.com/auth/calendar.events",
                "https://www.googleapis.com/auth/calendar.events.readonly",
            ],
            Purpose::Directory => &[
                DIRECTORY_SCOPE,
                "https://www.googleapis.com/auth/admin.directory.user",
            ],
        };
        granted.split_whitespace().any(|s| accepted.contains(&s))
    }
}

/// One cached access token.
pub(crate) struct CachedToken {
    pub token: SecretString,
    pub expires_at: OffsetDateTime,
}

/// The cache key: company, whose token (subject or a fingerprint of the member's grant),
/// and the scope set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub company: String,
    pub subject: String,
    pub scopes: &'static str,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// The cache is pruned when it reaches this many keys (then at twice what is left).
const PRUNE_FLOOR: usize = 1024;

/// Access tokens per key, one async mutex per key. Keys whose token has expired and that
/// no attempt is using are dropped as the map grows, so members who left (or grants that
/// were replaced) do not stay in memory forever.
pub(crate) struct TokenCache {
    slots: Mutex<Slots>,
    floor: usize,
    /// Companies whose delegation refused the shared mailbox token, and since when.
    shared_refused: Mutex<HashMap<String, std::time::Instant>>,
}

struct Slots {
    map: HashMap<TokenKey, Slot>,
    prune_at: usize,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::with_floor(PRUNE_FLOOR)
    }
}

impl TokenCache {
    fn with_floor(floor: usize) -> TokenCache {
        TokenCache {
            slots: Mutex::new(Slots {
                map: HashMap::new(),
                prune_at: floor,
            }),
            floor,
            shared_refused: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `company`'s mailboxes may ask for the shared mailbox token.
    pub(crate) fn shared_allowed(&self, company: &str) -> bool {
        let refused = self
            .shared_refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        refused
            .get(company)
            .is_none_or(|since| since.elapsed() >= SHARED_REFUSED_FOR)
    }

    /// `company`'s delegation refused the shared mailbox token.
    pub(crate) fn shared_refused(&self, company: &str) {
        self.shared_refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(company.to_owned(), std::time::Instant::now());
    }

    /// The slot of `key`, created empty on first use.
    pub(crate) fn slot(&self, key: TokenKey) -> Slot {
        let mut slots = match self.slots.lock() {
            Ok(slots) => slots,
            // A panic elsewhere while holding this lock cannot leave the map inconsistent.
            Err(poisoned) => poisoned.into_inner(),
        };
        if !slots.map.contains_key(&key) && slots.map.len() >= slots.prune_at {
            let now = OffsetDateTime::now_utc();
            slots.map.retain(|_, slot| {
                // In use by an attempt, or (when nobody holds it) a token still valid.
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(true, |cached| {
                        cached.as_ref().is_some_and(|token| token.expires_at > now)
                    })
            });
            slots.prune_at = (slots.map.len() * 2).max(self.floor);
        }
        slots.map.entry(key).or_default().clone()
    }

    /// Keys held, for the pruning test.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().map_or(0, |slots| slots.map.len())
    }
}

/// A member grant's cache identity: a short hash of the refresh token, so a reconnect
/// (new refresh token) never reuses the old grant's access token. Not reversible.
pub(crate) fn grant_fingerprint(refresh_token: &SecretString) -> String {
    let digest = Sha256::digest(refresh_token.expose_secret().as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// The signed JWT-bearer assertion (providers/google.md §2): RS256, `iss` = the service
/// account, `sub` = the subject, `aud` = the token URL, one hour at most.
pub(crate) fn assertion(
    key: &ServiceAccountKey,
    subject: &str,
    scope: &str,
    audience: &str,
    now: OffsetDateTime,
) -> Result<String, Failure> {
    let private_key = parse_private_key(&key.private_key_pem)?;
    let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
    if let Some(kid) = &key.private_key_id {
        header["kid"] = serde_json::Value::from(kid.as_str());
    }
    let iat = now.unix_timestamp();
    let claims = serde_json::json!({
        "iss": key.client_email,
        "sub": subject,
        "scope": scope,
        "aud": audience,
        "iat": iat,
        "exp": iat + 3600,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    // ring signs RS256 several times faster than the pure-Rust `rsa` crate, which made
    // the token exchange of a first import cost milliseconds of CPU per mailbox and scope
    // (docs/performance.md, "Profile"); `rsa` still reads the PEM (PKCS#8 or PKCS#1).
    let mut signature = vec![0; private_key.public().modulus_len()];
    private_key
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| unusable_key())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

fn unusable_key() -> Failure {
    // Never the parser's detail: it may quote key material.
    Failure::new(
        Outcome::CredentialRejected,
        "the service account private key is not an RSA PEM key",
    )
}

fn parse_private_key(pem: &SecretString) -> Result<RsaKeyPair, Failure> {
    // The key file's PEM section: PKCS#8 (`BEGIN PRIVATE KEY`, what Google issues) or
    // PKCS#1 (`BEGIN RSA PRIVATE KEY`); ring reads either DER.
    let key = PrivateKeyDer::from_pem_slice(pem.expose_secret().as_bytes())
        .map_err(|_| unusable_key())?;
    match &key {
        PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
        _ => return Err(unusable_key()),
    }
    .map_err(|_| unusable_key())
}

/// A successful token answer, secrets wrapped.
pub(crate) struct Minted {
    pub access_token: SecretString,
    pub expires_in: u64,
    pub scope: Option<String>,
}

/// Sends a token request (delegation or refresh) and maps its answer.
pub(crate) async fn post_token(
    inner: &Inner,
    grant: Grant,
    form: &[(&str, &str)],
    requests: &AtomicU32,
    gate: &Gate,
) -> Result<Minted, Failure> {
    let request = inner.http.post(&inner.config.token_url).form(form);
    let max_body_bytes = inner.config.http.max_body_bytes;
    let scope = Some(errors::token_throttle_scope());
    let answer = exchange(request, "token", gate, requests, max_body_bytes, scope).await?;
    if (200..300).contains(&answer.status) {
        // Not serde's message: it can quote a value of the answer, i.e. a token.
        let token: TokenAnswer = parse_success(&answer, "token", |error| {
            format!(
                "token answer does not parse (line {}, column {})",
                error.line(),
                error.column()
            )
        })?;
        return Ok(Minted {
            access_token: SecretString::from(token.access_token),
            expires_in: token.expires_in.unwrap_or(3600),
            scope: token.scope,
        });
    }
    let parsed = serde_json::from_slice::<TokenError>(&answer.body).ok();
    let Answer {
        status,
        headers,
        body,
        ..
    } = answer;
    Err(token_refused(grant, status, &headers, &body, parsed))
}

/// The failure of a token answer that is not a token: the mapping of its envelope
/// (`parsed`), its status, request id and `Retry-After`, logged (shared by the token
/// requests above and the connect flow's code redemption on the `oauth2` crate).
pub(crate) fn token_refused(
    grant: Grant,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    parsed: Option<TokenError>,
) -> Failure {
    let outcome = match &parsed {
        Some(error) => errors::token_outcome(grant, status, error),
        None if status == 429 => Outcome::RateLimited,
        None => Outcome::ProviderError,
    };
    log_unmapped(outcome, status, body);
    let mut failure = Failure {
        outcome,
        http_status: Some(status),
        error_code: parsed.as_ref().map(|e| e.error.clone()),
        error_message: parsed
            .as_ref()
            .and_then(|e| e.error_description.clone())
            .or_else(|| Some(format!("token endpoint answered {status}"))),
        request_id: request_id(headers),
        retry_after: None,
    };
    if outcome == Outcome::RateLimited {
        failure.retry_after = retry_after(headers, SystemTime::now());
    }
    log_call(
        "token",
        Some(status),
        failure.error_code.as_deref(),
        outcome,
    );
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_accepted() {
        let email = Purpose::Mailbox(Channel::Email);
        let calendar = Purpose::Mailbox(Channel::Calendar);
        assert!(email.satisfied_by("openid https://mail.google.com/"));
        assert!(email.satisfied_by(GMAIL_SCOPE));
        assert!(!email.satisfied_by("https://www.googleapis.com/auth/gmail.metadata"));
        assert!(!email.satisfied_by(CALENDAR_SCOPE));
        assert!(calendar.satisfied_by("https://www.googleapis.com/auth/calendar.events.readonly"));
        assert!(!calendar.satisfied_by(""));
    }

    /// Google issues PKCS#8 keys; older tools write PKCS#1 (`BEGIN RSA PRIVATE KEY`). Both
    /// sign, and the same key gives the same RS256 signature either way (ring, no `rsa`).
    #[test]
    fn pkcs8_and_pkcs1_keys_sign_alike() {
        let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/sim/keys");
        let read = |name: &str| {
            SecretString::from(std::fs::read_to_string(keys.join(name)).expect("test key"))
        };
        let pkcs8 = parse_private_key(&read("FAKE-TEST-ONLY-google-service-account.key.pem"))
            .expect("pkcs8");
        let pkcs1 = parse_private_key(&read("FAKE-TEST-ONLY-google-service-account.pkcs1.key.pem"))
            .expect("pkcs1");
        let sign = |pair: &RsaKeyPair| {
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                b"input",
                &mut signature,
            )
            .expect("signs");
            signature
        };
        assert_eq!(
            sign(&pkcs8),
            sign(&pkcs1),
            "PKCS#1 v1.5 signatures are deterministic"
        );
    }

    #[test]
    fn broken_key_is_credential_rejected_without_detail() {
        let key = ServiceAccountKey {
            client_email: "sa@example.iam.gserviceaccount.com".to_owned(),
            private_key_pem: SecretString::from(
                "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
            ),
            private_key_id: None,
            directory_admin: None,
        };
        let failure = assertion(
            &key,
            "a@b.example",
            GMAIL_SCOPE,
            "http://t",
            OffsetDateTime::UNIX_EPOCH,
        )
        .expect_err("not a key");
        assert_eq!(failure.outcome, Outcome::CredentialRejected);
        assert!(!format!("{failure:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn idle_expired_tokens_are_pruned_as_the_cache_grows() {
        let cache = TokenCache::with_floor(4);
        let key = |subject: &str| TokenKey {
            company: "acme".to_owned(),
            subject: subject.to_owned(),
            scopes: GMAIL_SCOPE,
        };
        let fill = |subject: &str, minutes: i64| {
            let slot = cache.slot(key(subject));
            *slot.try_lock().expect("free") = Some(CachedToken {
                token: SecretString::from("t"),
                expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(minutes),
            });
        };
        fill("valid", 30);
        fill("expired", -1);
        let _held = cache.slot(key("held"));
        drop(cache.slot(key("never-filled")));
        assert_eq!(cache.len(), 4);
        // The fifth key prunes the expired and the empty idle slots, keeps the rest.
        let _new = cache.slot(key("new"));
        assert_eq!(cache.len(), 3);
        for kept in ["valid", "held", "new"] {
            assert!(
                cache
                    .slots
                    .lock()
                    .expect("lock")
                    .map
                    .contains_key(&key(kept))
            );
        }
    }

    #[test]
    fn fingerprint_hides_the_token() {
        let token = SecretString::from("1//refresh-secret");
        let print = grant_fingerprint(&token);
        assert_eq!(print.len(), 24);
        assert!(!print.contains("refresh"));
    }
}
