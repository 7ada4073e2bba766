//! [`Session`]: one attempt's state against Entra ID and Graph, from token to cursor.
//!
//! Get a token (the tenant's cached app token, or a refresh grant for the member), then
//! follow a delta round from the saved cursor (or from the start) to its
//! `@odata.deltaLink`. Every Graph call goes through one function that holds the
//! mailbox's concurrency slot, sends our attempt id as `client-request-id`, records
//! `request-id`, follows the connector crate's throttle-wait and renew-once policies, and
//! asks [`crate::errors`] what any other answer means.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use datacap_connector::{
    Attempt, Auth, Failure, Gate, GrantType, ImportJob, MicrosoftAppCredential, OAuthClient,
    RenewOnce, RotatedToken, TokenRequest, read_body, refused_after_renewal, transport_failure,
};
use datacap_core::{Channel, Outcome};
use reqwest::Url;
use secrecy::SecretString;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::delta::{CalendarSink, DeltaSink, MAIL_SELECT, MailSink};
use crate::errors::{
    GraphErrorInfo, GraphVerdict, Need, classify_graph_error, graph_throttle_scope,
};
use crate::token::{TokenClaims, TokenGrant, expose, request_token};

use crate::connector::{APP_SCOPE, CachedToken, DEFAULT_MEMBER_TENANT, Inner};

/// What a Graph GET produced.
pub(crate) enum GraphBody {
    Page(Vec<u8>),
    /// The delta cursor is gone (410 / `SyncStateNotFound` …).
    Resync,
}

/// The token an attempt holds.
pub(crate) enum Held {
    None,
    App {
        credential: Arc<MicrosoftAppCredential>,
        token: SecretString,
        claims: Option<TokenClaims>,
    },
    Member {
        client: Arc<OAuthClient>,
        refresh_token: SecretString,
        token: SecretString,
        claims: Option<TokenClaims>,
    },
}

/// What a successful import brings back.
pub(crate) struct Imported {
    email_items: Vec<datacap_core::EmailItem>,
    calendar_items: Vec<datacap_core::CalendarItem>,
    cursor: String,
}

/// One attempt's state.
pub(crate) struct Session<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) attempt_id: Uuid,
    pub(crate) mailbox: Option<String>,
    /// (company, member) of an import, for the refresh token sink.
    pub(crate) member: Option<(String, String)>,
    pub(crate) held: Held,
    pub(crate) requests: u32,
    /// The token requests sent and how each ended.
    pub(crate) token_requests: Vec<TokenRequest>,
    pub(crate) rotated: Option<SecretString>,
    pub(crate) last_status: Option<u16>,
    pub(crate) last_request_id: Option<String>,
    /// The tenant's request gate (open outside the worker).
    pub(crate) gate: Gate,
}

/// An answer's parts the attempt reads.
pub(crate) struct GraphAnswer {
    status: u16,
    body: Vec<u8>,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    /// The pause the tenant's gate took for this answer (its next `ready` waits it out).
    gate_pause: Option<Duration>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(inner: &'a Inner, attempt_id: Uuid, mailbox: Option<String>) -> Session<'a> {
        Session {
            inner,
            attempt_id,
            mailbox,
            member: None,
            held: Held::None,
            requests: 0,
            token_requests: Vec::new(),
            rotated: None,
            last_status: None,
            last_request_id: None,
            gate: Gate::open(),
        }
    }

    pub(crate) fn provider_error(&self, message: &str) -> Failure {
        let mut failure = Failure::new(Outcome::ProviderError, message);
        failure.http_status = self.last_status;
        failure.request_id = self.last_request_id.clone();
        failure
    }

    pub(crate) async fn import(&mut self, job: &ImportJob) -> Result<Imported, Failure> {
        self.authenticate(job).await?;
        match job.channel {
            Channel::Email => {
                let first = self.mail_url(&job.member_address);
                let mut sink = MailSink::default();
                let cursor = self
                    .delta(first, job.cursor.as_deref(), Need::Mail, &mut sink)
                    .await?;
                if sink.removed > 0 {
                    debug!(removed = sink.removed, "messages reported @removed");
                }
                Ok(Imported {
                    email_items: sink.into_items(),
                    calendar_items: Vec::new(),
                    cursor,
                })
            }
            Channel::Calendar => {
                let first = self.calendar_url(&job.member_address, job.now);
                let mut sink = CalendarSink::default();
                let cursor = self
                    .delta(first, job.cursor.as_deref(), Need::Calendar, &mut sink)
                    .await?;
                Ok(Imported {
                    email_items: Vec::new(),
                    calendar_items: sink.into_items(),
                    cursor,
                })
            }
        }
    }

    pub(crate) fn finish(self, result: Result<Imported, Failure>) -> Attempt {
        let mut attempt = match result {
            Ok(imported) => {
                info!(
                    outcome = %Outcome::Success,
                    requests = self.requests,
                    emails = imported.email_items.len(),
                    events = imported.calendar_items.len(),
                    request_id = self.last_request_id.as_deref().unwrap_or(""),
                    "microsoft import finished"
                );
                Attempt {
                    email_items: imported.email_items,
                    calendar_items: imported.calendar_items,
                    next_cursor: Some(imported.cursor),
                    http_status: self.last_status,
                    request_id: self.last_request_id.clone(),
                    ..Attempt::success()
                }
            }
            Err(failure) => {
                warn!(
                    outcome = %failure.outcome,
                    requests = self.requests,
                    http_status = failure.http_status.unwrap_or(0),
                    error_code = failure.error_code.as_deref().unwrap_or(""),
                    request_id = failure.request_id.as_deref().unwrap_or(""),
                    retry_after_ms = failure.retry_after.map_or(0, |d| d.as_millis() as u64),
                    "microsoft import failed"
                );
                Attempt::failed(failure)
            }
        };
        attempt.requests = self.requests;
        attempt.token_requests = self.token_requests;
        // Entra may have rotated the member's refresh token even if the attempt failed
        // later: always hand the new one back so it is persisted.
        attempt.rotated_refresh_token = self.rotated.map(RotatedToken);
        attempt
    }

    // ---- tokens -------------------------------------------------------------------------

    pub(crate) async fn authenticate(&mut self, job: &ImportJob) -> Result<(), Failure> {
        match &job.auth {
            Auth::MicrosoftApp(credential) => self.app_token(credential, None).await,
            Auth::OAuthClient(client) => {
                let refresh_token = job.member_refresh_token()?.clone();
                self.member_token(client, refresh_token).await
            }
            Auth::GoogleServiceAccount(_) => Err(Failure::new(
                Outcome::ProviderError,
                "a google service account job reached the microsoft connector",
            )),
        }
    }

    /// The tenant's app token: from the cache unless it is near expiry or is `refused`;
    /// one token request in flight per tenant.
    pub(crate) async fn app_token(
        &mut self,
        credential: &Arc<MicrosoftAppCredential>,
        refused: Option<&SecretString>,
    ) -> Result<(), Failure> {
        let slot = self.inner.app_slot(credential);
        let mut cached = slot.lock().await;
        if let Some(entry) = cached.as_ref()
            && Instant::now() < entry.refresh_at
            && refused.is_none_or(|r| expose(r) != expose(&entry.token))
        {
            self.held = Held::App {
                credential: Arc::clone(credential),
                token: entry.token.clone(),
                claims: entry.claims.clone(),
            };
            return Ok(());
        }
        let config = &self.inner.config;
        self.requests += 1;
        let grant = request_token(
            &self.inner.http,
            &config.login_base,
            config.http.max_body_bytes,
            &credential.tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &credential.client_id),
                ("client_secret", expose(&credential.client_secret)),
                ("scope", APP_SCOPE),
            ],
            self.attempt_id,
            &self.gate,
        )
        .await;
        self.token_request(GrantType::ClientCredentials, &grant);
        let grant = match grant {
            Ok(grant) => grant,
            Err(failure) => {
                *cached = None;
                return Err(failure);
            }
        };
        let claims = TokenClaims::decode(expose(&grant.access_token));
        let lifetime = Duration::from_secs(grant.expires_in);
        *cached = Some(CachedToken {
            token: grant.access_token.clone(),
            claims: claims.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(config.token_refresh_margin),
        });
        self.held = Held::App {
            credential: Arc::clone(credential),
            token: grant.access_token,
            claims,
        };
        Ok(())
    }

    /// A refresh grant for the member; a rotated refresh token is kept for the attempt.
    pub(crate) async fn member_token(
        &mut self,
        client: &Arc<OAuthClient>,
        refresh_token: SecretString,
    ) -> Result<(), Failure> {
        let config = &self.inner.config;
        let tenant = client.tenant.as_deref().unwrap_or(DEFAULT_MEMBER_TENANT);
        self.requests += 1;
        let grant = request_token(
            &self.inner.http,
            &config.login_base,
            config.http.max_body_bytes,
            tenant,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client.client_id),
                ("client_secret", expose(&client.client_secret)),
                ("refresh_token", expose(&refresh_token)),
                ("scope", &config.delegated_scope),
            ],
            self.attempt_id,
            &self.gate,
        )
        .await;
        self.token_request(GrantType::RefreshToken, &grant);
        let grant = grant?;
        let current = match grant.refresh_token {
            Some(rotated) => {
                self.rotated = Some(rotated.clone());
                self.save_rotated(&rotated).await;
                rotated
            }
            None => refresh_token,
        };
        self.held = Held::Member {
            client: Arc::clone(client),
            refresh_token: current,
            claims: TokenClaims::decode(expose(&grant.access_token)),
            token: grant.access_token,
        };
        Ok(())
    }

    /// Notes a token request that was sent and how it ended.
    pub(crate) fn token_request(&mut self, grant: GrantType, result: &Result<TokenGrant, Failure>) {
        let outcome = result
            .as_ref()
            .map_or_else(|failure| failure.outcome, |_| Outcome::Success);
        self.token_requests.push(TokenRequest { grant, outcome });
    }

    pub(crate) async fn save_rotated(&self, token: &SecretString) {
        let (Some(sink), Some((_, member_id))) = (&self.inner.refresh_token_sink, &self.member)
        else {
            return;
        };
        match sink.save(member_id, &RotatedToken(token.clone())).await {
            Ok(()) => debug!("rotated refresh token saved"),
            Err(error) => {
                warn!(%error, "rotated refresh token not saved; it is returned on the attempt")
            }
        }
    }

    /// After a 401: a new app token (bypassing the cached one), or another refresh.
    pub(crate) async fn renew(&mut self) -> Result<(), Failure> {
        match std::mem::replace(&mut self.held, Held::None) {
            Held::App {
                credential, token, ..
            } => self.app_token(&credential, Some(&token)).await,
            Held::Member {
                client,
                refresh_token,
                ..
            } => self.member_token(&client, refresh_token).await,
            Held::None => Err(Failure::new(Outcome::ProviderError, "no token to renew")),
        }
    }

    pub(crate) fn token(&self) -> Option<&SecretString> {
        match &self.held {
            Held::App { token, .. } | Held::Member { token, .. } => Some(token),
            Held::None => None,
        }
    }

    /// Whether the token carries the permission `need` asks for; `None` if unreadable.
    pub(crate) fn token_grants(&self, need: Need) -> Option<bool> {
        match &self.held {
            Held::App { claims, .. } | Held::Member { claims, .. } => {
                claims.as_ref().map(|c| need.granted_by(c.permissions()))
            }
            Held::None => None,
        }
    }

    // ---- Graph --------------------------------------------------------------------------

    pub(crate) fn mail_url(&self, address: &str) -> Url {
        let mut url = self.inner.graph_url(&[
            "users",
            address,
            "mailFolders",
            "inbox",
            "messages",
            "delta",
        ]);
        url.set_query(Some(&format!("$select={MAIL_SELECT}")));
        url
    }

    pub(crate) fn calendar_url(&self, address: &str, now: OffsetDateTime) -> Url {
        let config = &self.inner.config;
        let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let at = |t: OffsetDateTime| {
            t.to_offset(time::UtcOffset::UTC)
                .format(format)
                .unwrap_or_default()
        };
        let mut url = self
            .inner
            .graph_url(&["users", address, "calendarView", "delta"]);
        url.set_query(Some(&format!(
            "startDateTime={}&endDateTime={}",
            at(now - config.calendar_past),
            at(now + config.calendar_future)
        )));
        url
    }

    /// Validates a link Graph handed back before following it with our token.
    pub(crate) fn follow(&self, link: &str, seen: &mut HashSet<String>) -> Result<Url, Failure> {
        let Some(url) = self.inner.graph_link(link) else {
            return Err(
                self.provider_error("graph paging link points outside the configured graph base")
            );
        };
        if !seen.insert(link.to_owned()) {
            return Err(self.provider_error("graph paging loops: a nextLink came back twice"));
        }
        Ok(url)
    }

    /// Follows one delta round from `cursor` (or from `first`) to its deltaLink, which is
    /// returned as the new cursor. An expired cursor restarts the full pass once. When the
    /// page budget runs out, the next link is returned instead and the next attempt
    /// carries on from it.
    pub(crate) async fn delta<S: DeltaSink + Send>(
        &mut self,
        first: Url,
        cursor: Option<&str>,
        need: Need,
        sink: &mut S,
    ) -> Result<String, Failure> {
        let mut url = match cursor {
            None => first.clone(),
            Some(cursor) => match self.inner.graph_link(cursor) {
                Some(url) => url,
                None => {
                    warn!(
                        "saved cursor is not a link into the configured graph base; running a full pass"
                    );
                    first.clone()
                }
            },
        };
        let mut resynced = false;
        let mut seen = HashSet::new();
        for _ in 0..self.inner.config.max_pages_per_attempt {
            match self.get(&url, need).await? {
                GraphBody::Resync => {
                    if resynced {
                        return Err(self.provider_error(
                            "graph asked for a delta resync twice in one attempt",
                        ));
                    }
                    info!("delta cursor expired; running a full pass in this attempt");
                    resynced = true;
                    sink.reset();
                    seen.clear();
                    url = first.clone();
                }
                GraphBody::Page(body) => {
                    let links = sink.page(&body).map_err(|error| {
                        self.provider_error(&format!("graph delta page does not parse: {error}"))
                    })?;
                    match (links.delta, links.next) {
                        (Some(delta), _) => {
                            if self.inner.graph_link(&delta).is_none() {
                                return Err(self.provider_error(
                                    "graph deltaLink points outside the configured graph base",
                                ));
                            }
                            return Ok(delta);
                        }
                        (None, Some(next)) => url = self.follow(&next, &mut seen)?,
                        (None, None) => {
                            return Err(self.provider_error(
                                "graph delta page has neither a nextLink nor a deltaLink",
                            ));
                        }
                    }
                }
            }
        }
        info!(
            pages = self.inner.config.max_pages_per_attempt,
            "page budget reached; the next attempt resumes from the next link"
        );
        Ok(url.to_string())
    }

    /// One Graph GET with throttling waits, one token renewal, and the verdict on errors.
    pub(crate) async fn get(&mut self, url: &Url, need: Need) -> Result<GraphBody, Failure> {
        let mut waits = self.inner.config.throttle().waits();
        let mut renew = RenewOnce::default();
        loop {
            let answer = self.send(url, need).await?;
            if (200..300).contains(&answer.status) {
                return Ok(GraphBody::Page(answer.body));
            }
            let error = GraphErrorInfo::parse(&answer.body);
            let grants = self.token_grants(need);
            let verdict = classify_graph_error(answer.status, error.as_ref(), grants);
            let code = error.as_ref().and_then(GraphErrorInfo::code).unwrap_or("");
            if verdict == GraphVerdict::Fail(Outcome::ProviderError)
                && (400..500).contains(&answer.status)
                && !error.as_ref().is_some_and(crate::errors::graph_error_known)
            {
                // A 4xx no row knows: kept transient, logged whole (secrets cut) so that
                // a row can be added (issue 21 §4).
                warn!(
                    http_status = answer.status,
                    body = %datacap_connector::redacted_body(&answer.body),
                    "graph answer no mapping row knows: kept as provider_error"
                );
            }
            warn!(
                http_status = answer.status,
                error_code = code,
                request_id = answer.request_id.as_deref().unwrap_or(""),
                client_request_id = %self.attempt_id,
                call = need_name(need),
                retry_after_ms = answer.retry_after.map_or(0, |d| d.as_millis() as u64),
                verdict = verdict.as_str(),
                "graph call refused"
            );
            let outcome = match verdict {
                GraphVerdict::Resync => return Ok(GraphBody::Resync),
                GraphVerdict::RenewToken if renew.may_renew() => {
                    self.renew().await?;
                    continue;
                }
                GraphVerdict::RenewToken => {
                    refused_after_renewal(matches!(self.held, Held::Member { .. }))
                }
                GraphVerdict::Fail(outcome) => outcome,
            };
            let throttled = outcome == Outcome::RateLimited || answer.status == 503;
            if throttled && waits.wait_out(answer.retry_after, answer.gate_pause).await {
                continue;
            }
            let message = match &error {
                Some(error) if !error.message.is_empty() => {
                    format!("{} (client-request-id {})", error.message, self.attempt_id)
                }
                _ => format!(
                    "graph answered http {} (client-request-id {})",
                    answer.status, self.attempt_id
                ),
            };
            let mut failure = Failure::new(outcome, message).with_answer(
                answer.status,
                answer
                    .request_id
                    .clone()
                    .or_else(|| error.as_ref().and_then(|e| e.request_id.clone())),
            );
            if !code.is_empty() {
                failure = failure.with_code(code);
            }
            failure.retry_after = answer.retry_after;
            return Err(failure);
        }
    }

    /// Sends one GET within the mailbox's concurrency slot and reads the whole body.
    pub(crate) async fn send(&mut self, url: &Url, need: Need) -> Result<GraphAnswer, Failure> {
        let Some(token) = self.token().cloned() else {
            return Err(Failure::new(
                Outcome::ProviderError,
                "graph call without a token",
            ));
        };
        let config = &self.inner.config;
        let _permit = match &self.mailbox {
            Some(mailbox) if need != Need::Users => Some(self.inner.limiter.acquire(mailbox).await),
            _ => None,
        };
        self.gate.ready().await;
        self.requests += 1;
        let response = self
            .inner
            .http
            .get(url.clone())
            .bearer_auth(expose(&token))
            .header("client-request-id", self.attempt_id.to_string())
            .header("return-client-request-id", "true")
            .header(
                "prefer",
                format!(
                    "odata.maxpagesize={}, outlook.timezone=\"UTC\"",
                    config.max_page_size
                ),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| transport_failure(&error))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let request_id = datacap_connector::request_id(response.headers());
        let client_request_id = response
            .headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = datacap_connector::retry_after(response.headers(), SystemTime::now());
        self.last_status = Some(status);
        self.last_request_id = request_id.clone();
        let body = read_body(response, config.http.max_body_bytes).await?;
        // The pause holds back what the answer names (the mailbox, the tenant), read
        // from its body and endpoint: the gate is told once the body is in.
        let gate_pause = if status == 429 || status == 503 {
            let scope = graph_throttle_scope(need, GraphErrorInfo::parse(&body).as_ref());
            self.gate.answered(status, &headers, scope)
        } else {
            None
        };
        debug!(
            http_status = status,
            request_id = request_id.as_deref().unwrap_or(""),
            client_request_id = client_request_id.as_deref().unwrap_or(""),
            call = need_name(need),
            bytes = body.len(),
            "graph call"
        );
        Ok(GraphAnswer {
            status,
            body,
            request_id,
            retry_after,
            gate_pause,
        })
    }
}

fn need_name(need: Need) -> &'static str {
    match need {
        Need::Mail => "messages.delta",
        Need::Calendar => "calendarView.delta",
        Need::Users => "users",
    }
}
