//! datacap-google: the Google Workspace connector.
//!
//! Implements [`datacap_connector::Connector`] for Google: domain-wide delegation (an RS256
//! JWT-bearer assertion per member) or the member's own grant, a Directory check for
//! company-wide imports, Gmail (history ids) and Calendar (sync tokens) imports, and the
//! mapping of every answer in PROVIDERS.md's Google rows to one outcome.
//!
//! The five endpoints are typed calls on reqwest rather than the generated `google-*`
//! crates: one HTTP stack and one error path that sees the status and headers of every
//! answer (see ARCHITECTURE.md). The connect flow's code exchange alone is the `oauth2`
//! crate's, with [`TokenError`] as its error type.

mod auth;
mod calendar;
mod config;
mod connect;
mod directory;
#[doc(hidden)]
pub mod fuzz;
mod gmail;
pub mod mapping;
mod models;
mod session;

use std::time::Instant;

use datacap_connector::code_flow::CodeError;
use datacap_connector::http::ClientError;
use datacap_connector::{
    Attempt, Auth, Connector, Failure, ImportJob, OAuthClient, RefusedCheck, build_client,
};
use datacap_core::{Channel, Outcome, Provider};
use secrecy::SecretString;
use tracing::Instrument;

pub use auth::{CALENDAR_SCOPE, DIRECTORY_SCOPE, GMAIL_SCOPE};

/// The signed JWT-bearer assertion the connector sends to the token endpoint for
/// `subject` (RS256, one hour); `None` when the key does not parse. For tools that talk to
/// a token endpoint directly, such as `datacap bench`'s load loop against the sim.
pub fn service_account_assertion(
    key: &datacap_connector::ServiceAccountKey,
    subject: &str,
    scope: &str,
    token_url: &str,
    now: time::OffsetDateTime,
) -> Option<String> {
    auth::assertion(key, subject, scope, token_url, now).ok()
}
pub use config::{ConfigError, GoogleConfig};
pub use models::{ApiError, ApiErrorDetail, ApiErrorItem, TokenError};

/// What can go wrong building the connector.
#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// A configuration value cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client cannot be built.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The authorization-code exchange failed; the failure says which outcome it means.
#[derive(Debug, thiserror::Error)]
#[error("google authorization code exchange failed: {0}")]
pub struct ExchangeError(pub Failure);

/// What the connect flow keeps from an authorization-code exchange.
pub struct CodeGrant {
    /// The member's refresh token (store it encrypted).
    pub refresh_token: SecretString,
    /// The scopes the member granted, space separated.
    pub scope: String,
    /// The access token issued with it: the connect flow asks Google whose account it
    /// is (`tokeninfo`) before it stores anything.
    pub access_token: SecretString,
}

impl std::fmt::Debug for CodeGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeGrant")
            .field("refresh_token", &"[redacted]")
            .field("access_token", &"[redacted]")
            .field("scope", &self.scope)
            .finish()
    }
}

/// State shared by every attempt: configuration, the HTTP client and the token cache.
pub(crate) struct Inner {
    pub config: GoogleConfig,
    pub http: reqwest::Client,
    pub tokens: auth::TokenCache,
}

/// The Google Workspace connector. Cheap to share: clone the `Arc` it lives in.
pub struct GoogleConnector {
    inner: Inner,
}

impl std::fmt::Debug for GoogleConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleConnector")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl GoogleConnector {
    /// Validates `config` and builds the HTTP client.
    pub fn new(config: GoogleConfig) -> Result<GoogleConnector, GoogleError> {
        config.validate()?;
        let http = build_client(&config.http)?;
        Ok(GoogleConnector {
            inner: Inner {
                config,
                http,
                tokens: auth::TokenCache::default(),
            },
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &GoogleConfig {
        &self.inner.config
    }

    /// Exchanges an authorization code from the connect flow for the member's grant
    /// (providers/google.md §3), with the PKCE verifier when the flow used one.
    pub async fn exchange_code(
        &self,
        client: &OAuthClient,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: Option<&SecretString>,
    ) -> Result<CodeGrant, ExchangeError> {
        // On the `oauth2` crate (issue 17 §2), through our own HTTP client; the answer's
        // status and headers come back beside the crate's result for the mapping.
        let redeemed = datacap_connector::code_flow::redeem_code::<TokenError>(
            &self.inner.http,
            &datacap_connector::Gate::open(),
            &datacap_connector::code_flow::CodeRedemption {
                token_url: &self.inner.config.token_url,
                client,
                code,
                redirect_uri,
                verifier: pkce_verifier,
                extra_params: &[],
                headers: &[],
                max_body_bytes: self.inner.config.http.max_body_bytes,
                throttle_scope: mapping::token_throttle_scope(),
            },
        )
        .await;
        let tokens = match redeemed {
            Ok(tokens) => tokens,
            Err(CodeError::Failed(failure)) => {
                session::log_call("token", failure.http_status, None, failure.outcome);
                return Err(ExchangeError(failure));
            }
            Err(CodeError::Answered { answer, error }) if (200..300).contains(&answer.status) => {
                let _ = error;
                session::log_call("token", Some(answer.status), None, Outcome::ProviderError);
                return Err(ExchangeError(
                    Failure::new(
                        Outcome::ProviderError,
                        "the code exchange answer is not a token",
                    )
                    .with_answer(
                        answer.status,
                        datacap_connector::request_id(&answer.headers),
                    ),
                ));
            }
            Err(CodeError::Answered { answer, error }) => {
                return Err(ExchangeError(session::token_refused(
                    mapping::Grant::Code,
                    answer.status,
                    &answer.headers,
                    &answer.error_body,
                    error,
                )));
            }
        };
        session::log_call("token", Some(tokens.answer.status), None, Outcome::Success);
        let Some(refresh_token) = tokens.refresh_token else {
            return Err(ExchangeError(Failure::new(
                Outcome::ProviderError,
                "the code exchange answer carries no refresh token",
            )));
        };
        Ok(CodeGrant {
            refresh_token,
            scope: tokens.scope.unwrap_or_default(),
            access_token: tokens.access_token,
        })
    }

    async fn run(&self, job: &ImportJob) -> Attempt {
        let started = Instant::now();
        let session = session::Session::new(&self.inner, job);
        let result = run_channel(&session).await;
        let mut attempt = match result {
            Ok(attempt) => attempt,
            Err(failure) => Attempt::failed(failure),
        };
        attempt.requests = session.requests();
        attempt.token_requests = session.token_requests();
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if attempt.outcome == Outcome::Success {
            tracing::info!(
                outcome = attempt.outcome.as_str(),
                items = attempt.email_items.len() + attempt.calendar_items.len(),
                requests = attempt.requests,
                duration_ms,
                "import finished"
            );
        } else {
            tracing::warn!(
                outcome = attempt.outcome.as_str(),
                http_status = attempt.http_status,
                error_code = attempt.error_code.as_deref(),
                error_message = attempt.error_message.as_deref(),
                request_id = attempt.request_id.as_deref(),
                requests = attempt.requests,
                duration_ms,
                "import failed"
            );
        }
        attempt
    }
}

async fn run_channel(session: &session::Session<'_>) -> Result<Attempt, Failure> {
    let job = session.job;
    let mut refused = None;
    if let Auth::GoogleServiceAccount(key) = &job.auth
        && key.directory_admin.is_some()
    {
        // The Directory check is optional: only its word that the member has no mailbox
        // ends the attempt. A refusal (the subject is no Directory admin, the scope is not
        // delegated, the Admin SDK is off) or any other failure of the check lets Gmail
        // and Calendar decide for themselves (issue 21 §3).
        match directory::check_member(session).await {
            Ok(()) => {}
            Err(directory::Check::Unavailable(failure)) => return Err(failure),
            Err(directory::Check::Refused(failure)) => {
                refused = Some(RefusedCheck {
                    check: directory::CHECK_NAME,
                    failure,
                });
            }
        }
    }
    let mut attempt = Attempt::success();
    attempt.refused_checks.extend(refused);
    match job.channel {
        Channel::Email => {
            let pass = gmail::import(session).await?;
            attempt.email_items = pass.items;
            attempt.next_cursor = Some(pass.cursor);
        }
        Channel::Calendar => {
            let pass = calendar::import(session).await?;
            attempt.calendar_items = pass.items;
            attempt.next_cursor = Some(pass.cursor);
        }
    }
    Ok(attempt)
}

impl Connector for GoogleConnector {
    fn provider(&self) -> Provider {
        Provider::GoogleWorkspace
    }

    fn import(&self, job: &ImportJob) -> impl Future<Output = Attempt> + Send {
        let span = tracing::info_span!(
            "google_import",
            company = %job.company_id,
            member = %job.member_id,
            channel = job.channel.as_str(),
            provider = Provider::GoogleWorkspace.as_str(),
            attempt_id = %job.attempt_id,
        );
        self.run(job).instrument(span)
    }
}
