//! [`MicrosoftConnector`]: one import attempt against Entra ID and Graph, from token to
//! cursor, turned into an [`Attempt`] with exactly one outcome.
//!
//! The attempt is a small state machine ([`Run`]): get a token (the tenant's cached app
//! token, or a refresh grant for the member), then follow a delta round from the saved
//! cursor (or from the start) to its `@odata.deltaLink`. Every Graph call goes through
//! one function that holds the mailbox's concurrency slot, sends our attempt id as
//! `client-request-id`, records `request-id`, waits out a short `Retry-After` at most
//! [`MicrosoftConfig::throttle_retries`] times, renews a refused token once, and asks
//! [`crate::classify`] what any other answer means.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use datacap_connector::code_flow::{self, CodeError};
use datacap_connector::{
    Attempt, Auth, Connector, Failure, Gate, GrantType, ImportJob, MicrosoftAppCredential,
    OAuthClient, RefreshTokenSink, RenewOnce, RotatedToken, TokenRequest, build_client, read_body,
    refused_after_renewal, transport_failure,
};
use datacap_core::{Channel, Outcome, Provider};
use reqwest::Url;
use secrecy::SecretString;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};
use uuid::Uuid;

use crate::MicrosoftError;
use crate::classify::{
    GraphErrorInfo, GraphVerdict, Need, TokenErrorBody, classify_graph_error, graph_throttle_scope,
};
use crate::config::MicrosoftConfig;
use crate::delta::{CalendarSink, DeltaSink, MAIL_SELECT, MailSink};
use crate::limiter::MailboxLimiter;
use crate::token::{TokenClaims, TokenGrant, expose, request_token};
use crate::users::{DirectoryUser, USER_SELECT, UsersPage};

const PROVIDER: &str = "microsoft_365";
const APP_SCOPE: &str = "https://graph.microsoft.com/.default";
/// A user-by-user client without a tenant signs in through the multi-tenant authority.
const DEFAULT_MEMBER_TENANT: &str = "common";

/// The Microsoft 365 connector. Cheap to clone; clones share the token cache and the
/// per-mailbox limits.
#[derive(Clone)]
pub struct MicrosoftConnector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MicrosoftConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicrosoftConnector")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: MicrosoftConfig,
    refresh_token_sink: Option<Arc<dyn RefreshTokenSink>>,
    http: reqwest::Client,
    graph_base: Url,
    limiter: MailboxLimiter,
    app_tokens: Mutex<HashMap<AppKey, Arc<tokio::sync::Mutex<Option<CachedToken>>>>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AppKey {
    tenant: String,
    client_id: String,
}

struct CachedToken {
    token: SecretString,
    claims: Option<TokenClaims>,
    refresh_at: Instant,
}

impl MicrosoftConnector {
    /// Validates `config` and builds the HTTP client.
    pub fn new(config: MicrosoftConfig) -> Result<MicrosoftConnector, MicrosoftError> {
        MicrosoftConnector::build(config, None)
    }

    /// Like [`MicrosoftConnector::new`], and saves every rotated refresh token through
    /// `sink` as soon as Entra issues it, before the attempt makes any Graph call, so a
    /// crash mid-attempt does not lose it.
    pub fn with_refresh_token_sink(
        config: MicrosoftConfig,
        sink: Arc<dyn RefreshTokenSink>,
    ) -> Result<MicrosoftConnector, MicrosoftError> {
        MicrosoftConnector::build(config, Some(sink))
    }

    fn build(
        config: MicrosoftConfig,
        refresh_token_sink: Option<Arc<dyn RefreshTokenSink>>,
    ) -> Result<MicrosoftConnector, MicrosoftError> {
        config.validate()?;
        let http = build_client(&config.http)?;
        let graph_base = Url::parse(&config.graph_base).map_err(|error| {
            MicrosoftError::Config(crate::ConfigError::Url {
                field: "graph_base",
                reason: error.to_string(),
            })
        })?;
        Ok(MicrosoftConnector {
            inner: Arc::new(Inner {
                limiter: MailboxLimiter::new(config.mailbox_concurrency),
                refresh_token_sink,
                config,
                http,
                graph_base,
                app_tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The HTTP client every call of this connector goes through (timeouts, no redirects).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The configuration in use.
    pub fn config(&self) -> &MicrosoftConfig {
        &self.inner.config
    }

    /// The most Graph requests `mailbox` ever had in flight at once in this process
    /// (never above [`MicrosoftConfig::mailbox_concurrency`]).
    pub fn peak_requests_in_flight(&self, mailbox: &str) -> usize {
        self.inner.limiter.peak(mailbox)
    }

    /// Redeems an authorization code from the connect flow (with its PKCE verifier) for
    /// the member's first tokens. The returned refresh token is the one to store.
    pub async fn exchange_code(
        &self,
        client: &OAuthClient,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &SecretString,
    ) -> Result<TokenGrant, MicrosoftError> {
        let tenant = client.tenant.as_deref().unwrap_or(DEFAULT_MEMBER_TENANT);
        let config = &self.inner.config;
        let Some(url) = crate::token::token_url(&config.login_base, tenant) else {
            return Err(MicrosoftError::Provider(Failure::new(
                Outcome::ProviderError,
                format!("cannot build the token url for tenant `{tenant}`"),
            )));
        };
        let request_id = Uuid::new_v4();
        // On the `oauth2` crate (issue 17 §2), through our own HTTP client; the answer's
        // status and headers come back beside the crate's result for the mapping.
        let redeemed = code_flow::redeem_code::<TokenErrorBody>(
            &self.inner.http,
            &Gate::open(),
            &code_flow::CodeRedemption {
                token_url: url.as_str(),
                client,
                code,
                redirect_uri,
                verifier: Some(pkce_verifier),
                extra_params: &[("scope", &config.delegated_scope)],
                headers: &[
                    ("client-request-id", request_id.to_string()),
                    ("return-client-request-id", "true".to_owned()),
                ],
                max_body_bytes: config.http.max_body_bytes,
                throttle_scope: crate::classify::token_throttle_scope(),
            },
        )
        .await;
        match redeemed {
            Ok(tokens) => Ok(TokenGrant {
                access_token: tokens.access_token,
                expires_in: tokens.expires_in.unwrap_or(3600),
                refresh_token: tokens.refresh_token,
                scope: tokens.scope,
            }),
            Err(CodeError::Failed(failure)) => Err(MicrosoftError::Provider(failure)),
            Err(CodeError::Answered { answer, .. }) if (200..300).contains(&answer.status) => Err(
                MicrosoftError::Provider(crate::token::not_a_token(answer.status, &answer.headers)),
            ),
            Err(CodeError::Answered { answer, error }) => {
                Err(MicrosoftError::Provider(crate::token::token_refused(
                    answer.status,
                    &answer.headers,
                    &answer.error_body,
                    error.filter(|envelope| !envelope.error.is_empty()),
                    "authorization_code",
                    tenant,
                )))
            }
        }
    }

    /// Lists the tenant's directory users (company-wide discovery), guests and disabled
    /// accounts flagged. `request_id` is sent as `client-request-id` on every call.
    pub async fn list_users(
        &self,
        credential: &Arc<MicrosoftAppCredential>,
        request_id: Uuid,
    ) -> Result<Vec<DirectoryUser>, MicrosoftError> {
        let span = tracing::info_span!(
            "microsoft_users",
            provider = PROVIDER,
            tenant = %credential.tenant,
            attempt_id = %request_id,
        );
        async {
            let mut run = Run::new(&self.inner, request_id, None);
            run.app_token(credential, None)
                .await
                .map_err(MicrosoftError::Provider)?;
            let mut url = self.inner.graph_url(&["users"]);
            url.set_query(Some(&format!("$select={USER_SELECT}")));
            let mut users = Vec::new();
            let mut seen = HashSet::new();
            for _ in 0..self.inner.config.max_pages_per_attempt {
                let body = match run.get(&url, Need::Users).await {
                    Ok(GraphBody::Page(body)) => body,
                    Ok(GraphBody::Resync) => {
                        return Err(MicrosoftError::Provider(run.provider_error(
                            "graph /users answered a delta resync to a plain listing",
                        )));
                    }
                    Err(failure) => return Err(MicrosoftError::Provider(failure)),
                };
                let page = UsersPage::parse(&body).map_err(|error| {
                    MicrosoftError::Provider(
                        run.provider_error(&format!("graph /users page does not parse: {error}")),
                    )
                })?;
                users.extend(page.users());
                match page.next_link {
                    None => return Ok(users),
                    Some(next) => {
                        url = run
                            .follow(&next, &mut seen)
                            .map_err(MicrosoftError::Provider)?;
                    }
                }
            }
            Err(MicrosoftError::Provider(run.provider_error(&format!(
                "graph /users did not end within {} pages",
                self.inner.config.max_pages_per_attempt
            ))))
        }
        .instrument(span)
        .await
    }
}

impl Connector for MicrosoftConnector {
    fn provider(&self) -> Provider {
        Provider::Microsoft365
    }

    fn import(&self, job: &ImportJob) -> impl Future<Output = Attempt> + Send {
        let span = tracing::info_span!(
            "microsoft_import",
            company = %job.company_id,
            member = %job.member_id,
            channel = %job.channel,
            provider = PROVIDER,
            attempt_id = %job.attempt_id,
        );
        async move {
            let mut run = Run::new(
                &self.inner,
                job.attempt_id,
                Some(job.member_address.clone()),
            );
            run.member = Some((job.company_id.clone(), job.member_id.clone()));
            run.gate = job.gate.clone();
            let result = run.import(job).await;
            run.finish(result)
        }
        .instrument(span)
    }
}

impl Inner {
    /// `{graph_base}/a/b/c`, each segment escaped.
    fn graph_url(&self, segments: &[&str]) -> Url {
        let mut url = self.graph_base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A paging link or saved cursor, if it points into our Graph base (our token is never
    /// sent anywhere else).
    fn graph_link(&self, link: &str) -> Option<Url> {
        let base = self.config.graph_base.as_str();
        let rest = link.strip_prefix(base)?;
        if !(rest.starts_with('/') || rest.starts_with('?')) {
            return None;
        }
        Url::parse(link).ok()
    }

    fn app_slot(
        &self,
        credential: &MicrosoftAppCredential,
    ) -> Arc<tokio::sync::Mutex<Option<CachedToken>>> {
        let key = AppKey {
            tenant: credential.tenant.to_ascii_lowercase(),
            client_id: credential.client_id.clone(),
        };
        let mut tokens = self
            .app_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(tokens.entry(key).or_default())
    }
}

/// What a Graph GET produced.
enum GraphBody {
    Page(Vec<u8>),
    /// The delta cursor is gone (410 / `SyncStateNotFound` …).
    Resync,
}

/// The token an attempt holds.
enum Held {
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
struct Imported {
    email_items: Vec<datacap_core::EmailItem>,
    calendar_items: Vec<datacap_core::CalendarItem>,
    cursor: String,
}

/// One attempt's state.
struct Run<'a> {
    inner: &'a Inner,
    attempt_id: Uuid,
    mailbox: Option<String>,
    /// (company, member) of an import, for the refresh token sink.
    member: Option<(String, String)>,
    held: Held,
    requests: u32,
    /// The token requests sent and how each ended.
    token_requests: Vec<TokenRequest>,
    rotated: Option<SecretString>,
    last_status: Option<u16>,
    last_request_id: Option<String>,
    /// The tenant's request gate (open outside the worker).
    gate: Gate,
}

/// An answer's parts the attempt reads.
struct GraphAnswer {
    status: u16,
    body: Vec<u8>,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    /// The pause the tenant's gate took for this answer (its next `ready` waits it out).
    gate_pause: Option<Duration>,
}

impl<'a> Run<'a> {
    fn new(inner: &'a Inner, attempt_id: Uuid, mailbox: Option<String>) -> Run<'a> {
        Run {
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

    fn provider_error(&self, message: &str) -> Failure {
        let mut failure = Failure::new(Outcome::ProviderError, message);
        failure.http_status = self.last_status;
        failure.request_id = self.last_request_id.clone();
        failure
    }

    async fn import(&mut self, job: &ImportJob) -> Result<Imported, Failure> {
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

    fn finish(self, result: Result<Imported, Failure>) -> Attempt {
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

    async fn authenticate(&mut self, job: &ImportJob) -> Result<(), Failure> {
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
    async fn app_token(
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
    async fn member_token(
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
    fn token_request(&mut self, grant: GrantType, result: &Result<TokenGrant, Failure>) {
        let outcome = result
            .as_ref()
            .map_or_else(|failure| failure.outcome, |_| Outcome::Success);
        self.token_requests.push(TokenRequest { grant, outcome });
    }

    async fn save_rotated(&self, token: &SecretString) {
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
    async fn renew(&mut self) -> Result<(), Failure> {
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

    fn token(&self) -> Option<&SecretString> {
        match &self.held {
            Held::App { token, .. } | Held::Member { token, .. } => Some(token),
            Held::None => None,
        }
    }

    /// Whether the token carries the permission `need` asks for; `None` if unreadable.
    fn token_grants(&self, need: Need) -> Option<bool> {
        match &self.held {
            Held::App { claims, .. } | Held::Member { claims, .. } => {
                claims.as_ref().map(|c| need.granted_by(c.permissions()))
            }
            Held::None => None,
        }
    }

    // ---- Graph --------------------------------------------------------------------------

    fn mail_url(&self, address: &str) -> Url {
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

    fn calendar_url(&self, address: &str, now: OffsetDateTime) -> Url {
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
    fn follow(&self, link: &str, seen: &mut HashSet<String>) -> Result<Url, Failure> {
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
    async fn delta<S: DeltaSink + Send>(
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
    async fn get(&mut self, url: &Url, need: Need) -> Result<GraphBody, Failure> {
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
                && !error
                    .as_ref()
                    .is_some_and(crate::classify::graph_error_known)
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
    async fn send(&mut self, url: &Url, need: Need) -> Result<GraphAnswer, Failure> {
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
