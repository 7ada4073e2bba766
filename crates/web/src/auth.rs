//! Who may read what: the operator token sees every company, a company token sees only its
//! own company. The API takes the token as `Authorization: Bearer …`; browsers send it once
//! to `POST /login`, which answers with an HMAC-signed session in an `HttpOnly`,
//! `SameSite=Strict` cookie, so a token never appears in a URL.
//!
//! Tokens are compared in constant time (their SHA-256 digests, so the length leaks
//! nothing either) and never logged or printed: [`Auth`]'s `Debug` shows only which
//! companies have a token.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "datacap_session";

/// Who a request speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Sees every company.
    Operator,
    /// Sees only this company.
    Company(String),
}

impl Principal {
    /// May this principal read `company_id`?
    pub fn may_read(&self, company_id: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Company(own) => own == company_id,
        }
    }

    fn encode(&self) -> String {
        match self {
            Principal::Operator => "operator".to_owned(),
            Principal::Company(id) => format!("company:{id}"),
        }
    }

    fn decode(text: &str) -> Option<Principal> {
        match text {
            "operator" => Some(Principal::Operator),
            other => other
                .strip_prefix("company:")
                .map(|id| Principal::Company(id.to_owned())),
        }
    }
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credential, or a wrong or expired one: 401.
    Unauthenticated,
    /// A valid credential for another company: 403.
    Forbidden,
}

/// The configured tokens and the session signing key.
pub struct Auth {
    operator: Option<[u8; 32]>,
    /// Company id → SHA-256 of its token.
    companies: BTreeMap<String, [u8; 32]>,
    session_key: SecretBox<[u8; 32]>,
    session_ttl: time::Duration,
    secure_cookie: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("operator_token", &self.operator.map(|_| "[redacted]"))
            .field("company_tokens", &self.companies.keys().collect::<Vec<_>>())
            .field("session_key", &"[redacted]")
            .field("session_ttl", &self.session_ttl)
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The operating system's random source failed (never seen on Linux once booted).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed")]
pub struct RandomError;

/// 32 bytes from the operating system's random source.
pub fn random_bytes() -> Result<[u8; 32], RandomError> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(bytes)
}

/// The 32-byte key behind a configured signing secret (SHA-256 of its text), which signs
/// both sessions and invites (each under its own purpose).
pub fn signing_key(secret: &SecretString) -> [u8; 32] {
    Sha256::digest(secret.expose_secret().trim().as_bytes()).into()
}

/// URL-safe base64 without padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// HMAC-SHA256 of `parts` joined by `\n` under `key`, with a `purpose` prefix so one key
/// signs sessions and invites without one ever passing for the other.
pub(crate) fn sign(key: &[u8; 32], purpose: &str, payload: &str) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(purpose.as_bytes());
    mac.update(b"\n");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Checks a signature made by [`sign`], in constant time.
pub(crate) fn verify(key: &[u8; 32], purpose: &str, payload: &str, signature: &[u8]) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(purpose.as_bytes());
    mac.update(b"\n");
    mac.update(payload.as_bytes());
    mac.verify_slice(signature).is_ok()
}

impl Auth {
    /// Tokens as configured: the operator's (if any) and company id → token. `session_key`
    /// signs session cookies; `secure_cookie` adds `Secure` (serve over HTTPS then).
    pub fn new(
        operator: Option<&SecretString>,
        companies: &BTreeMap<String, SecretString>,
        session_key: [u8; 32],
        session_ttl: time::Duration,
        secure_cookie: bool,
    ) -> Auth {
        Auth {
            operator: operator.map(|token| digest(token.expose_secret())),
            companies: companies
                .iter()
                .map(|(id, token)| (id.clone(), digest(token.expose_secret())))
                .collect(),
            session_key: SecretBox::new(Box::new(session_key)),
            session_ttl,
            secure_cookie,
        }
    }

    /// The principal a token stands for. Every configured token is compared, each in
    /// constant time.
    pub fn principal_of_token(&self, token: &str) -> Option<Principal> {
        let presented = digest(token.trim());
        let mut found = None;
        if let Some(operator) = &self.operator
            && bool::from(operator.ct_eq(&presented))
        {
            found = Some(Principal::Operator);
        }
        for (id, expected) in &self.companies {
            if bool::from(expected.ct_eq(&presented)) && found.is_none() {
                found = Some(Principal::Company(id.clone()));
            }
        }
        found
    }

    /// The digest of `principal`'s configured token, if it still has one.
    fn token_digest(&self, principal: &Principal) -> Option<&[u8; 32]> {
        match principal {
            Principal::Operator => self.operator.as_ref(),
            Principal::Company(id) => self.companies.get(id),
        }
    }

    /// What a session remembers of the token it was opened with: 16 bytes of an HMAC of
    /// the token's digest (under the session key, so a cookie reveals nothing about the
    /// token). A removed or rotated token changes it, which ends the sessions it opened at
    /// their next request.
    fn fingerprint(&self, principal: &Principal) -> Option<String> {
        let digest = self.token_digest(principal)?;
        let mac = sign(
            self.session_key.expose_secret(),
            "token-fingerprint",
            &hex::encode(digest),
        );
        Some(b64(&mac[..16]))
    }

    /// The principal of an `Authorization: Bearer` header; `Err` when there is a header
    /// but it is not a valid token, `Ok(None)` when there is none.
    pub fn bearer(&self, headers: &HeaderMap) -> Result<Option<Principal>, Denied> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let text = value.to_str().map_err(|_| Denied::Unauthenticated)?;
        let (scheme, token) = text.split_once(' ').ok_or(Denied::Unauthenticated)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Denied::Unauthenticated);
        }
        self.principal_of_token(token)
            .map(Some)
            .ok_or(Denied::Unauthenticated)
    }

    /// The API's check: a bearer token only.
    pub fn api(&self, headers: &HeaderMap) -> Result<Principal, Denied> {
        self.bearer(headers)?.ok_or(Denied::Unauthenticated)
    }

    /// The page's check: a bearer token, else a valid session cookie.
    pub fn page(&self, headers: &HeaderMap, now: OffsetDateTime) -> Result<Principal, Denied> {
        if let Some(principal) = self.bearer(headers)? {
            return Ok(principal);
        }
        cookie(headers, SESSION_COOKIE)
            .and_then(|value| self.open_session(&value, now))
            .ok_or(Denied::Unauthenticated)
    }

    /// A signed session for `principal`, valid for the session lifetime from `now` and
    /// while `principal`'s token stays what it is now.
    pub fn session(&self, principal: &Principal, now: OffsetDateTime) -> String {
        let expires = (now + self.session_ttl).unix_timestamp();
        let fingerprint = self.fingerprint(principal).unwrap_or_default();
        let payload = format!("{}|{expires}|{fingerprint}", principal.encode());
        let signature = sign(self.session_key.expose_secret(), "session", &payload);
        format!("{}.{}", b64(payload.as_bytes()), b64(&signature))
    }

    /// The principal of a session cookie value, if its signature holds, it has not
    /// expired and the principal still has the token the session was opened with.
    pub fn open_session(&self, value: &str, now: OffsetDateTime) -> Option<Principal> {
        let (payload, signature) = value.split_once('.')?;
        let payload = String::from_utf8(unb64(payload)?).ok()?;
        let signature = unb64(signature)?;
        if !verify(
            self.session_key.expose_secret(),
            "session",
            &payload,
            &signature,
        ) {
            return None;
        }
        let (rest, fingerprint) = payload.rsplit_once('|')?;
        let (who, expires) = rest.rsplit_once('|')?;
        if expires.parse::<i64>().ok()? <= now.unix_timestamp() {
            return None;
        }
        let principal = Principal::decode(who)?;
        let current = self.fingerprint(&principal)?;
        bool::from(current.as_bytes().ct_eq(fingerprint.as_bytes())).then_some(principal)
    }

    /// The `Set-Cookie` value that starts a session.
    pub fn session_cookie(&self, principal: &Principal, now: OffsetDateTime) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.session(principal, now),
            self.session_ttl.whole_seconds(),
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }

    /// A token for a page's form that acts (`scope` names the form and its target, e.g.
    /// `reminders:acme`): signed for `principal` under the session key, valid for the
    /// session lifetime from `now`. The form sends it back and [`Auth::form_token_holds`]
    /// checks it, so a request forged elsewhere, which cannot read the page, is refused
    /// even where the browser's cross-site headers are missing.
    pub fn form_token(&self, principal: &Principal, scope: &str, now: OffsetDateTime) -> String {
        let expires = (now + self.session_ttl).unix_timestamp();
        let payload = format!("{}|{scope}|{expires}", principal.encode());
        let signature = sign(self.session_key.expose_secret(), "form", &payload);
        format!("{expires}.{}", b64(&signature))
    }

    /// Whether `token` is a [`Auth::form_token`] of `principal` for `scope`, unexpired.
    pub fn form_token_holds(
        &self,
        token: &str,
        principal: &Principal,
        scope: &str,
        now: OffsetDateTime,
    ) -> bool {
        let Some((expires, signature)) = token.split_once('.') else {
            return false;
        };
        let (Ok(at), Some(signature)) = (expires.parse::<i64>(), unb64(signature)) else {
            return false;
        };
        let payload = format!("{}|{scope}|{at}", principal.encode());
        at > now.unix_timestamp()
            && verify(
                self.session_key.expose_secret(),
                "form",
                &payload,
                &signature,
            )
    }

    /// The `Set-Cookie` value that ends a session.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

    fn auth() -> Auth {
        let operator = SecretString::from("operator-token");
        let companies = [("acme", "acme-token"), ("globex", "globex-token")];
        auth_of(Some(&operator), &companies, [7; 32])
    }

    /// Sessions of an hour, signed with `key`, for these (company, token) pairs.
    fn auth_of(operator: Option<&SecretString>, companies: &[(&str, &str)], key: [u8; 32]) -> Auth {
        let companies: BTreeMap<String, SecretString> = companies
            .iter()
            .map(|(company, token)| ((*company).to_owned(), SecretString::from(*token)))
            .collect();
        Auth::new(operator, &companies, key, time::Duration::hours(1), false)
    }

    #[test]
    fn tokens_map_to_principals() {
        let auth = auth();
        assert_eq!(
            auth.principal_of_token("operator-token"),
            Some(Principal::Operator)
        );
        assert_eq!(
            auth.principal_of_token("acme-token"),
            Some(Principal::Company("acme".to_owned()))
        );
        assert_eq!(auth.principal_of_token("acme-token-"), None);
        assert_eq!(auth.principal_of_token(""), None);
        let debug = format!("{auth:?}");
        assert!(!debug.contains("token\""), "{debug}");
        assert!(!debug.contains("acme-token") && !debug.contains("operator-token"));
    }

    #[test]
    fn form_tokens_are_bound_to_principal_scope_and_time() {
        let auth = auth();
        let acme = Principal::Company("acme".to_owned());
        let token = auth.form_token(&acme, "reminders:acme", NOW);
        assert!(auth.form_token_holds(&token, &acme, "reminders:acme", NOW));
        assert!(!auth.form_token_holds(&token, &Principal::Operator, "reminders:acme", NOW));
        assert!(!auth.form_token_holds(&token, &acme, "reminders:globex", NOW));
        assert!(!auth.form_token_holds(
            &token,
            &acme,
            "reminders:acme",
            NOW + time::Duration::hours(2)
        ));
        // A later expiry under the same signature does not hold.
        let (_, signature) = token.split_once('.').unwrap();
        let stretched = format!("{}.{signature}", NOW.unix_timestamp() + 99_999);
        assert!(!auth.form_token_holds(&stretched, &acme, "reminders:acme", NOW));
        for garbage in ["", ".", "x.y", "1.", "9999999999.!!"] {
            assert!(!auth.form_token_holds(garbage, &acme, "reminders:acme", NOW));
        }
        // A session is no form token, nor the other way round.
        let session = auth.session(&acme, NOW);
        assert!(!auth.form_token_holds(&session, &acme, "reminders:acme", NOW));
        assert_eq!(auth.open_session(&token, NOW), None);
    }

    #[test]
    fn sessions_are_signed_expire_and_follow_the_configuration() {
        let auth = auth();
        let acme = Principal::Company("acme".to_owned());
        let session = auth.session(&acme, NOW);
        assert_eq!(auth.open_session(&session, NOW), Some(acme.clone()));
        assert_eq!(
            auth.open_session(&session, NOW + time::Duration::hours(2)),
            None
        );
        // Another payload under the same signature does not open.
        let (_, signature) = session.split_once('.').unwrap();
        let forged = format!("{}.{signature}", b64(b"operator|9999999999"));
        assert_eq!(auth.open_session(&forged, NOW), None);
        // Another key does not open it.
        let other = auth_of(None, &[("acme", "acme-token")], [8; 32]);
        assert_eq!(other.open_session(&session, NOW), None);
        // A company whose token was removed loses its sessions.
        let removed = auth_of(None, &[], [7; 32]);
        assert_eq!(removed.open_session(&session, NOW), None);
        // So does one whose token was rotated (same session key, new token)...
        let rotated = auth_of(None, &[("acme", "acme-token-2")], [7; 32]);
        assert_eq!(rotated.open_session(&session, NOW), None);
        // ...while a session of the new token opens, and the old configuration's sessions
        // of other principals are untouched.
        let fresh = rotated.session(&acme, NOW);
        assert_eq!(rotated.open_session(&fresh, NOW), Some(acme.clone()));
        assert_eq!(auth.open_session(&fresh, NOW), None);
        // A session without a fingerprint (or a forged one) does not open.
        let payload = format!("company:acme|{}", NOW.unix_timestamp() + 60);
        let unfingerprinted = format!(
            "{}.{}",
            b64(payload.as_bytes()),
            b64(&sign(&[7; 32], "session", &payload))
        );
        assert_eq!(auth.open_session(&unfingerprinted, NOW), None);
        assert!(
            auth.session_cookie(&acme, NOW)
                .contains("HttpOnly; SameSite=Strict")
        );
    }
}
