//! [`Session`]: one attempt's state against Entra ID and Graph, from token to cursor.
//!
//! Get a token (the tenant's cached app token, or a refresh grant for the member), then
//! follow a delta round from the saved cursor (or from the start) to its
//! `@odata.deltaLink` ([`crate::graph`], through which every Graph call goes).

use std::sync::Arc;
use std::time::Duration;

use datacap_connector::{
    Attempt, Auth, Failure, Gate, GrantType, ImportJob, MicrosoftAppCredential, OAuthClient,
    RotatedToken, TokenRequest,
};
use datacap_core::{Channel, Outcome};
use secrecy::SecretString;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::delta::{CalendarSink, MailSink};
use crate::errors::Need;
use crate::token::{TokenClaims, TokenGrant, expose, request_token};

use crate::connector::{APP_SCOPE, CachedToken, DEFAULT_MEMBER_TENANT, Inner};

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
}
