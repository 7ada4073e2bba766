//! [`MicrosoftConnector`]: one import attempt against Entra ID and Graph, from token to
//! cursor, turned into an [`Attempt`] with exactly one outcome.
//!
//! The connector holds what attempts share (configuration, the HTTP client, the tenants'
//! app tokens, the per-mailbox limits); each attempt is a [`crate::session::Session`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use datacap_connector::code_flow::{self, CodeError};
use datacap_connector::{
    Attempt, Connector, Failure, Gate, ImportJob, MicrosoftAppCredential, OAuthClient,
    RefreshTokenSink, build_client,
};
use datacap_core::{Outcome, Provider};
use reqwest::Url;
use secrecy::SecretString;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::MicrosoftError;
use crate::config::MicrosoftConfig;
use crate::errors::{Need, TokenErrorBody};
use crate::graph::GraphBody;
use crate::limiter::MailboxLimiter;
use crate::session::Session;
use crate::token::{TokenClaims, TokenGrant};
use crate::users::{DirectoryUser, USER_SELECT, UsersPage};

pub(crate) const PROVIDER: &str = "microsoft_365";
pub(crate) const APP_SCOPE: &str = "https://graph.microsoft.com/.default";
/// A user-by-user client without a tenant signs in through the multi-tenant authority.
pub(crate) const DEFAULT_MEMBER_TENANT: &str = "common";

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

pub(crate) struct Inner {
    pub(crate) config: MicrosoftConfig,
    pub(crate) refresh_token_sink: Option<Arc<dyn RefreshTokenSink>>,
    pub(crate) http: reqwest::Client,
    pub(crate) graph_base: Url,
    pub(crate) limiter: MailboxLimiter,
    app_tokens: Mutex<HashMap<AppKey, Arc<tokio::sync::Mutex<Option<CachedToken>>>>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AppKey {
    tenant: String,
    client_id: String,
}

pub(crate) struct CachedToken {
    pub(crate) token: SecretString,
    pub(crate) claims: Option<TokenClaims>,
    pub(crate) refresh_at: Instant,
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
                throttle_scope: crate::errors::token_throttle_scope(),
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
            let mut run = Session::new(&self.inner, request_id, None);
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
            let mut run = Session::new(
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
    pub(crate) fn graph_url(&self, segments: &[&str]) -> Url {
        let mut url = self.graph_base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A paging link or saved cursor, if it points into our Graph base (our token is never
    /// sent anywhere else).
    pub(crate) fn graph_link(&self, link: &str) -> Option<Url> {
        let base = self.config.graph_base.as_str();
        let rest = link.strip_prefix(base)?;
        if !(rest.starts_with('/') || rest.starts_with('?')) {
            return None;
        }
        Url::parse(link).ok()
    }

    pub(crate) fn app_slot(
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
