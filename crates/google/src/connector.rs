//! [`GoogleConnector`]: one import attempt against Google, from token to cursor, turned
//! into an [`Attempt`] with exactly one outcome: the optional Directory check for
//! company-wide imports, then Gmail (history ids) or Calendar (sync tokens) through a
//! [`crate::session::Session`], which holds the token and the calls' policies.

use std::time::Instant;

use datacap_connector::code_flow::CodeError;
use datacap_connector::{
    Attempt, Auth, Connector, Failure, ImportJob, OAuthClient, RefusedCheck, build_client,
};
use datacap_core::{Channel, Outcome, Provider};
use secrecy::SecretString;
use tracing::Instrument;

use crate::models::TokenError;
use crate::{
    CodeGrant, ExchangeError, GoogleConfig, GoogleError, calendar, directory, errors, gmail,
    session, token,
};

/// State shared by every attempt: configuration, the HTTP client and the token cache.
pub(crate) struct Inner {
    pub config: GoogleConfig,
    pub http: reqwest::Client,
    pub tokens: token::TokenCache,
}

/// The Google Workspace connector. Cheap to share: clone the `Arc` it lives in.
pub struct GoogleConnector {
    pub(crate) inner: Inner,
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
                tokens: token::TokenCache::default(),
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
                throttle_scope: errors::token_throttle_scope(),
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
                return Err(ExchangeError(token::token_refused(
                    errors::Grant::Code,
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
