//! What the worker hands a connector (an [`ImportJob`]) and what it gets back (an
//! [`Attempt`]): the one contract between scheduling and the providers.
//!
//! A connector never fails with an error: every provider answer, and every failure to get
//! one, becomes an [`Attempt`] whose outcome is one of STATUS_MODEL.md's closed set.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::gate::Gate;
use datacap_core::{CalendarItem, Channel, EmailItem, Outcome, Provider};
use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::Uuid;

/// A Google service account's key, loaded from the file the tenants file names.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// `client_email`: the JWT's `iss`.
    pub client_email: String,
    /// `private_key`: PKCS#8 PEM, signs the JWT-bearer assertion.
    pub private_key_pem: SecretString,
    /// `private_key_id`: the JWT header's `kid`.
    pub private_key_id: Option<String>,
    /// The Workspace admin that Directory calls act as (`sub`); company configuration from
    /// the tenants file, not part of the key file. `None` skips the Directory check.
    pub directory_admin: Option<String>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_pem", &"[redacted]")
            .field("private_key_id", &self.private_key_id)
            .field("directory_admin", &self.directory_admin)
            .finish()
    }
}

/// An Entra ID app registration's client credential (app-only access).
#[derive(Clone)]
pub struct MicrosoftAppCredential {
    /// Directory (tenant) id or domain.
    pub tenant: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for MicrosoftAppCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicrosoftAppCredential")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// Our OAuth client at a provider, used for members who connect one by one.
#[derive(Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: SecretString,
    /// Microsoft only: the tenant segment of the token URL (`common`, `organizations` or
    /// the company's tenant id).
    pub tenant: Option<String>,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// What a company's jobs authenticate with: the binary resolves it from the company's
/// credential references (the worker caches it per company), and every job of the
/// company carries it. One type for both, so a company's credentials and a job's cannot
/// drift apart.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Google Workspace, company-wide: domain-wide delegation, a JWT-bearer grant per
    /// member (`sub`).
    GoogleServiceAccount(Arc<ServiceAccountKey>),
    /// Microsoft 365, company-wide: app-only client credentials per tenant.
    MicrosoftApp(Arc<MicrosoftAppCredential>),
    /// Either provider, user-by-user: our OAuth client; each job brings the member's own
    /// refresh token ([`ImportJob::refresh_token`]).
    OAuthClient(Arc<OAuthClient>),
}

/// One import to run: a member's channel, from the saved cursor.
#[derive(Clone, Debug)]
pub struct ImportJob {
    /// Sent to providers that accept a client request id, logged on every line.
    pub attempt_id: Uuid,
    pub company_id: String,
    pub member_id: String,
    /// The member's primary address (Google `sub`, Graph user principal name).
    pub member_address: String,
    pub channel: Channel,
    pub auth: Auth,
    /// User-by-user: the member's refresh token, decrypted (`None` for company-wide jobs).
    pub refresh_token: Option<SecretString>,
    /// Where the last successful import stopped (history id, sync token, delta link);
    /// `None` runs a full pass over the configured window.
    pub cursor: Option<String>,
    /// The start of this attempt, for windows and token expiry.
    pub now: OffsetDateTime,
    /// Awaited before every provider request; told about every `Retry-After`.
    pub gate: Gate,
}

impl ImportJob {
    /// The member's refresh token of a user-by-user job. A job without one is a failure
    /// of ours, never the member's: the worker judges unconnected members before it
    /// builds a job.
    pub fn member_refresh_token(&self) -> Result<&SecretString, Failure> {
        self.refresh_token.as_ref().ok_or_else(|| {
            Failure::new(
                Outcome::ProviderError,
                "a user-by-user job reached the connector without the member's refresh token",
            )
        })
    }
}

/// What one import attempt did.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub outcome: Outcome,
    pub email_items: Vec<EmailItem>,
    pub calendar_items: Vec<CalendarItem>,
    /// The cursor to save; `None` keeps the saved one (always `None` unless `success`).
    pub next_cursor: Option<String>,
    /// The HTTP status of the answer that decided the outcome.
    pub http_status: Option<u16>,
    /// The provider's error code (`invalid_grant`, `ErrorAccessDenied`, `rateLimitExceeded`, …).
    pub error_code: Option<String>,
    /// The provider's error message (never a token).
    pub error_message: Option<String>,
    /// The provider's request id of the deciding answer (Graph `request-id`, any
    /// `x-request-id`), for on-call.
    pub request_id: Option<String>,
    /// The provider asked us to wait this long before the next call.
    pub retry_after: Option<Duration>,
    /// Microsoft rotates refresh tokens: the new one, to persist encrypted.
    pub rotated_refresh_token: Option<RotatedToken>,
    /// HTTP requests this attempt made.
    pub requests: u32,
    /// The token requests this attempt sent (a token from the connector's cache sends
    /// none), each with how it ended, for the token metrics.
    pub token_requests: Vec<TokenRequest>,
    /// Optional checks (not the import itself) that failed and were passed over: the
    /// import went on without them (issue 21: an optional check never blocks working
    /// imports). The worker logs and counts them.
    pub refused_checks: Vec<RefusedCheck>,
}

/// An optional check the provider refused or could not answer, and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedCheck {
    /// The check's name for logs and metrics (`google_directory`).
    pub check: &'static str,
    /// The provider's answer, as a failure of that one call.
    pub failure: Failure,
}

/// The OAuth grant a token request used: it tells the connection mode apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantType {
    /// Google domain-wide delegation: a JWT-bearer assertion per member (company-wide).
    JwtBearer,
    /// Microsoft app-only client credentials (company-wide).
    ClientCredentials,
    /// A member's own refresh token (user-by-user).
    RefreshToken,
    /// The connect flow redeeming a member's authorization code (user-by-user).
    AuthorizationCode,
}

impl GrantType {
    /// The metric label: `jwt_bearer`, `client_credentials`, `refresh_token`,
    /// `authorization_code`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::JwtBearer => "jwt_bearer",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
            GrantType::AuthorizationCode => "authorization_code",
        }
    }
}

/// One token request of an attempt and how it ended: `Success` when it gave a usable
/// access token, else the outcome the answer maps to (a Google refresh answer without the
/// needed scope is `NotAuthorized`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant: GrantType,
    pub outcome: Outcome,
}

/// A refresh token the provider handed back in place of the one we sent.
#[derive(Clone)]
pub struct RotatedToken(pub SecretString);

impl std::fmt::Debug for RotatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotatedToken([redacted])")
    }
}

impl PartialEq for RotatedToken {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Attempt {
    /// A successful attempt with nothing imported and the cursor kept.
    pub fn success() -> Attempt {
        Attempt {
            outcome: Outcome::Success,
            email_items: Vec::new(),
            calendar_items: Vec::new(),
            next_cursor: None,
            http_status: None,
            error_code: None,
            error_message: None,
            request_id: None,
            retry_after: None,
            rotated_refresh_token: None,
            requests: 0,
            token_requests: Vec::new(),
            refused_checks: Vec::new(),
        }
    }

    /// A failed attempt: nothing imported, the cursor kept.
    pub fn failed(failure: Failure) -> Attempt {
        Attempt {
            outcome: failure.outcome,
            http_status: failure.http_status,
            error_code: failure.error_code,
            error_message: failure.error_message,
            request_id: failure.request_id,
            retry_after: failure.retry_after,
            ..Attempt::success()
        }
    }
}

/// Why an attempt stopped short of success: the outcome and the evidence for on-call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure with only an outcome and a message (no HTTP answer behind it).
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Failure {
        Failure {
            outcome,
            http_status: None,
            error_code: None,
            error_message: Some(message.into()),
            request_id: None,
            retry_after: None,
        }
    }

    /// The same failure with the HTTP status and request id of the answer.
    pub fn with_answer(mut self, http_status: u16, request_id: Option<String>) -> Failure {
        self.http_status = Some(http_status);
        self.request_id = request_id.or(self.request_id);
        self
    }

    /// The same failure with the provider's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Failure {
        self.error_code = Some(code.into());
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.outcome)?;
        if let Some(status) = self.http_status {
            write!(f, " (http {status})")?;
        }
        if let Some(code) = &self.error_code {
            write!(f, " {code}")?;
        }
        if let Some(message) = &self.error_message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// A provider connector: runs one import and reports it. Implemented by
/// `datacap-google` and `datacap-microsoft`; the worker picks one by provider.
pub trait Connector: Send + Sync {
    /// The provider this connector speaks to.
    fn provider(&self) -> Provider;

    /// Runs one import. Never panics and never returns an error: every answer, and every
    /// failure to get one, is an [`Attempt`] with one outcome.
    fn import(&self, job: &ImportJob) -> impl Future<Output = Attempt> + Send;
}
