//! One attempt's conversation with Google: getting (and caching) access tokens (the token
//! endpoint's request itself is in `token`), calling an API with `quotaUser`, reading
//! bounded bodies, and turning every answer into either a typed value or a
//! [`CallFailure`] with its evidence.
//!
//! This is the single path every provider call takes, so "401 → refresh once, then
//! decide", "record status, reason, message and request id" and "log each call's outcome"
//! are written once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use datacap_connector::{
    Auth, Failure, Gate, GrantType, ImportJob, OAuthClient, TokenRequest, read_body,
    refused_after_renewal, request_id, retry_after, transport_failure,
};
use datacap_core::Outcome;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::connector::Inner;
use crate::errors::{self, Api, Grant, Verdict};
use crate::models::{ApiError, ApiErrorEnvelope};
use crate::token::{self, CachedToken, Minted, Purpose, TokenKey, post_token};

/// An API call that did not give a usable answer.
#[derive(Debug)]
pub(crate) struct CallFailure {
    pub verdict: Verdict,
    pub failure: Failure,
    /// The pause the tenant's gate took for this answer's `Retry-After` (its next
    /// `ready` waits it out).
    pub gate_pause: Option<Duration>,
}

impl From<Failure> for CallFailure {
    fn from(failure: Failure) -> Self {
        CallFailure {
            verdict: Verdict::Outcome(failure.outcome),
            failure,
            gate_pause: None,
        }
    }
}

/// An answer read whole: status, headers, request id and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) id: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// Sends `request` once the tenant's `gate` is ready (counted in `requests`) and reads its
/// body, at most `max_body_bytes`; a transport failure or an unreadable body is logged as
/// `call`'s. With `scope`, the gate hears of the answer before its body is read (token
/// answers); without, the caller tells it once the body says what to hold back.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    call: &str,
    gate: &Gate,
    requests: &AtomicU32,
    max_body_bytes: usize,
    scope: Option<datacap_connector::ThrottleScope>,
) -> Result<Answer, Failure> {
    gate.ready().await;
    requests.fetch_add(1, Ordering::Relaxed);
    let response = request.send().await.map_err(|error| {
        let failure = transport_failure(&error);
        log_call(call, None, None, failure.outcome);
        failure
    })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if let Some(scope) = scope {
        gate.answered(status, &headers, scope);
    }
    let id = request_id(&headers);
    let body = read_body(response, max_body_bytes)
        .await
        .inspect_err(|f| log_call(call, Some(status), None, f.outcome))?;
    Ok(Answer {
        status,
        headers,
        id,
        body,
    })
}

/// A 2xx answer's body as a `T`, its call logged; `unparsable` words the failure when the
/// body is not one.
pub(crate) fn parse_success<T: DeserializeOwned>(
    answer: &Answer,
    call: &str,
    unparsable: impl FnOnce(serde_json::Error) -> String,
) -> Result<T, Failure> {
    match serde_json::from_slice::<T>(&answer.body) {
        Ok(value) => {
            log_call(call, Some(answer.status), None, Outcome::Success);
            Ok(value)
        }
        Err(error) => {
            log_call(call, Some(answer.status), None, Outcome::ProviderError);
            Err(Failure::new(Outcome::ProviderError, unparsable(error))
                .with_answer(answer.status, answer.id.clone()))
        }
    }
}

/// A 4xx that no mapping row knows ends as `provider_error` (transient) and is logged
/// whole, secrets cut, so that a row can be added (issue 21 §4).
pub(crate) fn log_unmapped(outcome: Outcome, http_status: u16, body: &[u8]) {
    if outcome == Outcome::ProviderError && (400..500).contains(&http_status) {
        tracing::warn!(
            http_status,
            body = %datacap_connector::redacted_body(body),
            "google answer no mapping row knows: kept as provider_error"
        );
    }
}

pub(crate) fn log_call(
    endpoint: &str,
    http_status: Option<u16>,
    error_code: Option<&str>,
    outcome: Outcome,
) {
    if outcome == Outcome::Success {
        tracing::debug!(
            endpoint,
            http_status,
            error_code,
            outcome = outcome.as_str(),
            "google call"
        );
    } else {
        tracing::warn!(
            endpoint,
            http_status,
            error_code,
            outcome = outcome.as_str(),
            "google call failed"
        );
    }
}

/// One attempt.
pub(crate) struct Session<'a> {
    pub inner: &'a Inner,
    pub job: &'a ImportJob,
    /// HTTP requests made so far (calls may run concurrently).
    requests: AtomicU32,
    /// The token requests sent so far and how each ended.
    token_requests: std::sync::Mutex<Vec<TokenRequest>>,
    quota_user: String,
}

impl<'a> Session<'a> {
    pub(crate) fn new(inner: &'a Inner, job: &'a ImportJob) -> Session<'a> {
        Session {
            inner,
            job,
            requests: AtomicU32::new(0),
            token_requests: std::sync::Mutex::new(Vec::new()),
            quota_user: quota_user(&job.member_id),
        }
    }

    /// HTTP requests made so far.
    pub(crate) fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The token requests sent so far, in order.
    pub(crate) fn token_requests(&self) -> Vec<TokenRequest> {
        self.token_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Notes a token request that was sent and how it ended.
    fn token_request(&self, grant: GrantType, result: &Result<Minted, Failure>) {
        let outcome = match result {
            Ok(_) => Outcome::Success,
            Err(failure) => failure.outcome,
        };
        self.token_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(TokenRequest { grant, outcome });
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.job.now
    }

    pub(crate) fn is_member_grant(&self) -> bool {
        matches!(self.job.auth, Auth::OAuthClient(_))
    }

    /// An access token for `purpose`, from the cache unless it is missing, close to expiry
    /// or was just `refused` by the API. Under delegation a mailbox's channels share one
    /// token for both scopes, unless the company's delegation refuses that request: then
    /// each channel asks for its own scope, so a scope the admin did not delegate shows on
    /// its own channel only.
    async fn access_token(
        &self,
        purpose: Purpose,
        refused: Option<&SecretString>,
    ) -> Result<SecretString, Failure> {
        let tokens = &self.inner.tokens;
        if matches!(
            (&self.job.auth, purpose),
            (Auth::GoogleServiceAccount(_), Purpose::Mailbox(_))
        ) && tokens.shared_allowed(&self.job.company_id)
        {
            match self
                .token_for(purpose, token::MAILBOX_SCOPES, refused)
                .await
            {
                Err(failure) if failure.error_code.as_deref() == Some("unauthorized_client") => {
                    tracing::info!(
                        company = %self.job.company_id,
                        "the delegation refused one token for both mailbox scopes: asking one scope at a time"
                    );
                    tokens.shared_refused(&self.job.company_id);
                }
                other => return other,
            }
        }
        self.token_for(purpose, purpose.scope(), refused).await
    }

    /// [`Session::access_token`] for one scope set.
    async fn token_for(
        &self,
        purpose: Purpose,
        scopes: &'static str,
        refused: Option<&SecretString>,
    ) -> Result<SecretString, Failure> {
        let subject = self.subject(purpose)?;
        let key = TokenKey {
            company: self.job.company_id.clone(),
            subject,
            scopes,
        };
        let slot = self.inner.tokens.slot(key);
        let mut cached = slot.lock().await;
        let margin = self.inner.config.token_refresh_margin;
        if let Some(token) = cached.as_ref() {
            let fresh = self.now() + margin < token.expires_at;
            let was_refused =
                refused.is_some_and(|r| r.expose_secret() == token.token.expose_secret());
            if fresh && !was_refused {
                return Ok(token.token.clone());
            }
        }
        *cached = None;
        let minted = self.mint(purpose, scopes).await?;
        let expires_in = i64::try_from(minted.expires_in).unwrap_or(3600);
        *cached = Some(CachedToken {
            token: minted.access_token.clone(),
            expires_at: self.now() + time::Duration::seconds(expires_in),
        });
        Ok(minted.access_token)
    }

    /// Whose token this is, for the cache key.
    fn subject(&self, purpose: Purpose) -> Result<String, Failure> {
        match (&self.job.auth, purpose) {
            (Auth::GoogleServiceAccount(key), Purpose::Directory) => {
                key.directory_admin.clone().ok_or_else(|| {
                    Failure::new(Outcome::ProviderError, "no directory admin configured")
                })
            }
            (Auth::GoogleServiceAccount(_), Purpose::Mailbox(_)) => {
                Ok(self.job.member_address.to_ascii_lowercase())
            }
            (Auth::OAuthClient(_), _) => Ok(format!(
                "member:{}:{}",
                self.job.member_id,
                token::grant_fingerprint(self.job.member_refresh_token()?)
            )),
            (Auth::MicrosoftApp(_), _) => Err(wrong_auth()),
        }
    }

    async fn mint(&self, purpose: Purpose, scopes: &str) -> Result<Minted, Failure> {
        match &self.job.auth {
            Auth::GoogleServiceAccount(key) => {
                let subject = self.subject(purpose)?;
                let assertion = token::assertion(
                    key,
                    &subject,
                    scopes,
                    &self.inner.config.token_url,
                    self.now(),
                )?;
                let minted = post_token(
                    self.inner,
                    Grant::Delegation,
                    &[("grant_type", token::JWT_BEARER), ("assertion", &assertion)],
                    &self.requests,
                    &self.job.gate,
                )
                .await;
                self.token_request(GrantType::JwtBearer, &minted);
                minted
            }
            Auth::OAuthClient(client) => {
                let minted = refresh(
                    self.inner,
                    client,
                    self.job.member_refresh_token()?,
                    &self.requests,
                    &self.job.gate,
                )
                .await
                .and_then(|minted| Self::check_scope(purpose, minted));
                self.token_request(GrantType::RefreshToken, &minted);
                minted
            }
            Auth::MicrosoftApp(_) => Err(wrong_auth()),
        }
    }

    /// providers/google.md §3: users can untick scopes; check what was granted.
    fn check_scope(purpose: Purpose, minted: Minted) -> Result<Minted, Failure> {
        let granted = minted.scope.as_deref().unwrap_or_default();
        if !purpose.satisfied_by(granted) {
            return Err(Failure::new(
                Outcome::NotAuthorized,
                format!(
                    "the member's grant does not include {} (granted: {})",
                    purpose.scope(),
                    if granted.is_empty() {
                        "nothing"
                    } else {
                        granted
                    }
                ),
            )
            .with_code("scope_missing"));
        }
        Ok(minted)
    }

    /// GET an API, refreshing the token once on a 401 (a second 401 is `grant_invalid`
    /// for a member's own grant, PROVIDERS.md, and `provider_error` under delegation), and
    /// waiting out a throttled answer's `Retry-After` up to [`GoogleConfig::throttle_retries`]
    /// times when it is at most [`GoogleConfig::max_retry_wait`] (google.md: rate limits are
    /// transient, "honour `Retry-After`"); a longer or repeated one ends the call
    /// `rate_limited` with the wait for the schedule.
    ///
    /// [`GoogleConfig::throttle_retries`]: crate::GoogleConfig::throttle_retries
    /// [`GoogleConfig::max_retry_wait`]: crate::GoogleConfig::max_retry_wait
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        purpose: Purpose,
        api: Api,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<T, CallFailure> {
        let mut waits = self.inner.config.throttle().waits();
        loop {
            // One call, and once more with a new token after a 401.
            let authorized = async {
                let token = self.access_token(purpose, None).await?;
                match self.get_once(api, url, query, &token).await {
                    Err(first) if first.verdict == Verdict::Unauthenticated => {
                        let token = self.access_token(purpose, Some(&token)).await?;
                        match self.get_once(api, url, query, &token).await {
                            Err(mut again) if again.verdict == Verdict::Unauthenticated => {
                                let outcome = refused_after_renewal(self.is_member_grant());
                                again.failure.outcome = outcome;
                                again.verdict = Verdict::Outcome(outcome);
                                Err(again)
                            }
                            other => other,
                        }
                    }
                    other => other,
                }
            };
            match authorized.await {
                Err(failure)
                    if failure.failure.outcome == Outcome::RateLimited
                        && waits
                            .wait_out(failure.failure.retry_after, failure.gate_pause)
                            .await => {}
                other => return other,
            }
        }
    }

    async fn get_once<T: DeserializeOwned>(
        &self,
        api: Api,
        url: &str,
        query: &[(&str, String)],
        token: &SecretString,
    ) -> Result<T, CallFailure> {
        let request = self
            .inner
            .http
            .get(url)
            .bearer_auth(token.expose_secret())
            .query(query)
            .query(&[("quotaUser", self.quota_user.as_str())]);
        let (gate, requests) = (&self.job.gate, &self.requests);
        let max_body_bytes = self.inner.config.http.max_body_bytes;
        let answer = exchange(request, api.name(), gate, requests, max_body_bytes, None).await?;
        if (200..300).contains(&answer.status) {
            return parse_success(&answer, api.name(), |error| {
                format!("{} answer does not parse: {error}", api.name())
            })
            .map_err(CallFailure::from);
        }
        let Answer {
            status,
            headers,
            id,
            body,
        } = answer;
        let parsed = serde_json::from_slice::<ApiErrorEnvelope>(&body)
            .ok()
            .map(|envelope| envelope.error);
        // The pause holds back what the answer names (a member's quota, the project's),
        // read from its body: the gate is told only now.
        let scope = errors::throttle_scope(api, status, parsed.as_ref());
        let gate_pause = self.job.gate.answered(status, &headers, scope);
        let verdict = errors::api_verdict(api, status, parsed.as_ref());
        let outcome = match verdict {
            Verdict::Outcome(outcome) => outcome,
            _ => Outcome::ProviderError,
        };
        if !parsed
            .as_ref()
            .and_then(ApiError::reason)
            .is_some_and(errors::is_known_reason)
        {
            log_unmapped(outcome, status, &body);
        }
        let failure = Failure {
            outcome,
            http_status: Some(status),
            error_code: parsed.as_ref().and_then(|e| e.reason()).map(str::to_owned),
            error_message: parsed
                .as_ref()
                .and_then(|e| e.best_message())
                .map(str::to_owned)
                .or_else(|| Some(format!("{} answered {status}", api.name()))),
            request_id: id,
            retry_after: (outcome == Outcome::RateLimited)
                .then(|| retry_after(&headers, SystemTime::now()))
                .flatten(),
        };
        log_call(
            api.name(),
            Some(status),
            failure.error_code.as_deref(),
            outcome,
        );
        Err(CallFailure {
            verdict,
            failure,
            gate_pause,
        })
    }
}

/// The refresh grant with our OAuth client (providers/google.md §3).
pub(crate) async fn refresh(
    inner: &Inner,
    client: &OAuthClient,
    refresh_token: &SecretString,
    requests: &AtomicU32,
    gate: &Gate,
) -> Result<Minted, Failure> {
    post_token(
        inner,
        Grant::Refresh,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", &client.client_id),
            ("client_secret", client.client_secret.expose_secret()),
        ],
        requests,
        gate,
    )
    .await
}

fn wrong_auth() -> Failure {
    Failure::new(
        Outcome::ProviderError,
        "a Microsoft credential was handed to the Google connector",
    )
}

/// `quotaUser` must be at most 40 characters (providers/google.md §9): the member id, or
/// a hash of it when longer.
pub(crate) fn quota_user(member_id: &str) -> String {
    if member_id.len() <= 40 && member_id.bytes().all(|b| b.is_ascii_graphic()) {
        return member_id.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(member_id.as_bytes());
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_user_is_bounded() {
        assert_eq!(quota_user("m1"), "m1");
        let long = "x".repeat(41);
        assert_eq!(quota_user(&long).len(), 40);
        assert_ne!(quota_user(&long), long[..40]);
    }
}
