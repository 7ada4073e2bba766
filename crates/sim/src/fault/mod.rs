//! Fault names, where each applies, and the machinery both providers share: how a fault
//! is chosen for a request and consumed (fail-N-times), the `Retry-After` forms, and the
//! transport faults that mangle an answer on the wire.
//!
//! Every answer in PROVIDERS.md's answer → outcome table has a name here. What each name
//! answers lives with its provider (`google/faults.rs`, `microsoft/faults.rs`), the only
//! place that knows its status, headers and body; the same answers are used when a
//! condition arises on its own (a user without a mailbox, a stale cursor, a wrong token),
//! so a fault named in a scenario and the natural condition can never drift apart. The
//! table in docs/sim.md lists each name with the section of providers/*.md it comes from.

mod active;
mod answer;
mod endpoint;
mod retry_after;
mod transport;

use serde::Deserialize;

pub(crate) use active::{ActiveFault, Quirks};
pub(crate) use answer::{Answer, AnswerCtx, Fired, answer, fire};
pub(crate) use endpoint::Endpoint;
pub use endpoint::EndpointSel;
pub use retry_after::RetryAfter;
pub(crate) use transport::apply as apply_transport;

use crate::scenario::Provider;

/// A fault's name as written in a scenario file or sent to the control endpoint.
///
/// Besides the names below, every entry of the providers' published catalogues is a fault
/// (`aadsts:<code>`, `graph:<code>`, `google:<reason>`; crate::catalogue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case", remote = "Self")]
pub enum FaultKind {
    // ---- either provider -------------------------------------------------------------
    /// 429 with the provider's rate-limit body (Google `rateLimitExceeded` /
    /// `RESOURCE_EXHAUSTED`, Graph `TooManyRequests`); `retry_after` sets the header.
    RateLimited,
    /// 500 (Google `backendError`, Graph `generalException`).
    ServerError,
    /// 503 (Google `backendError` / `UNAVAILABLE`, Graph `ServiceUnavailable`).
    ServiceUnavailable,
    /// The OAuth client is unknown: 401 `invalid_client`.
    InvalidClient,
    /// No mailbox: Gmail 400 `failedPrecondition` "Mail service not enabled"; Graph 404
    /// `MailboxNotEnabledForRESTAPI`.
    MailboxNotEnabled,
    /// The API rejects the access token: Google 401 `authError`, Graph 401
    /// `InvalidAuthenticationToken` "Access token has expired or is not yet valid.".
    TokenExpired,
    /// The incremental cursor is gone: Gmail 404, Calendar 410 `fullSyncRequired`, Graph 410
    /// `SyncStateNotFound`. Fires only on incremental calls.
    CursorExpired,
    /// The authorize endpoint redirects back with `error=access_denied`.
    ConsentDenied,
    /// The answer waits `latency_ms` before it is sent (then answers normally).
    Latency,
    /// Status and headers are sent, then the connection drops half-way through the body.
    ConnectionReset,
    /// A 200 whose JSON body stops half-way.
    TruncatedJson,
    /// A 200 whose (valid JSON) body is `bytes` long (default 16 MiB + 1).
    OversizedBody,
    /// Quirk: every list/delta page is preceded by an empty page that still has a next link.
    EmptyPages,
    /// Quirk: each page after the first repeats the last item of the previous page.
    DuplicateItems,

    // ---- Google token endpoint (providers/google.md §2, §3) -------------------------------
    /// 401 `unauthorized_client`: delegation not granted for a scope.
    DelegationUnauthorizedClient,
    /// 400 `invalid_grant` "Token has been expired or revoked.".
    InvalidGrantRevoked,
    /// 400 `invalid_grant` "reauth related error (invalid_rapt)" + `error_subtype`.
    InvalidRapt,
    /// 400 `admin_policy_enforced`.
    AdminPolicyEnforced,
    /// 400 `invalid_grant` "Invalid email or User ID".
    InvalidEmail,
    /// 400 `invalid_grant` "Not a valid email.".
    NotAValidEmail,
    /// 400 `invalid_grant` "The account has been deleted".
    AccountDeleted,
    /// 400 `invalid_grant` "Invalid JWT Signature.".
    InvalidJwtSignature,
    /// 400 `invalid_grant` "Invalid JWT: Token must be a short-lived token …".
    JwtNotShortLived,
    /// 400 `invalid_grant` "Invalid grant: account not found".
    AccountNotFound,
    /// 401 `deleted_client` "The OAuth client was deleted.".
    DeletedClient,
    /// 401 `disabled_client` "The OAuth client was disabled." (Google OAuth 2.0 errors).
    DisabledClient,
    /// 403 `domainCannotUseApis` "Domain cannot use apis." (Directory API common errors).
    DomainCannotUseApis,
    /// 500 `internal_failure`.
    InternalFailure,
    /// Quirk: refresh and code answers leave the Gmail and Calendar scopes out of `scope`.
    RefreshScopeMissing,

    // ---- Google APIs (providers/google.md §1, §4, §6, §8) ---------------------------------
    /// 403 `insufficientPermissions` + ErrorInfo `ACCESS_TOKEN_SCOPE_INSUFFICIENT`.
    InsufficientPermissions,
    /// The same 403 without `errors[]` (only `status` + `details`).
    InsufficientPermissionsNoErrors,
    /// 403 `domainPolicy` "The domain administrators have disabled Gmail apps.".
    DomainPolicy,
    /// 400 `failedPrecondition` "Precondition check failed.".
    PreconditionFailed,
    /// Calendar 403 `notACalendarUser`.
    NotACalendarUser,
    /// 403 `forbidden` "Delegation denied for <email>".
    DelegationDenied,
    /// 403 `accessNotConfigured` + ErrorInfo `SERVICE_DISABLED`.
    AccessNotConfigured,
    /// 403 `usageLimits` `rateLimitExceeded`.
    RateLimitExceeded,
    /// 403 `usageLimits` `userRateLimitExceeded`.
    UserRateLimitExceeded,
    /// 403 `usageLimits` `dailyLimitExceeded`.
    DailyLimitExceeded,
    /// Calendar 403 `usageLimits` `quotaExceeded`.
    QuotaExceeded,
    /// 429 "Too many concurrent requests for user".
    TooManyConcurrentRequests,
    /// The documented 401 "Invalid Credentials" body (legacy shape, no `status`).
    InvalidCredentialsDocumented,
    /// Gmail `history.list` 404 `notFound`.
    HistoryNotFound,
    /// Calendar 410 `fullSyncRequired`.
    FullSyncRequired,
    /// Calendar 410 `updatedMinTooLongAgo`.
    UpdatedMinTooLongAgo,
    /// Calendar 404 `notFound` "Not Found" on `primary`.
    CalendarNotFound,
    /// Directory 403 `forbidden` "Not Authorized to access this resource/api".
    DirectoryNotAuthorized,

    // ---- Microsoft identity platform (providers/microsoft.md §1.2) ------------------------
    /// AADSTS65001 `invalid_grant`, `suberror: consent_required`.
    ConsentRequired,
    /// AADSTS90094 `invalid_grant`.
    AdminConsentRequired,
    /// AADSTS700016 `unauthorized_client`: the app is not in the tenant.
    AppNotInTenant,
    /// AADSTS53003 Conditional Access, `suberror: message_only` + `claims`.
    ConditionalAccess,
    /// AADSTS530032 security policy.
    SecurityPolicy,
    /// AADSTS50105 user not assigned to the app.
    AssignmentRequired,
    /// AADSTS7000112 app disabled in the tenant.
    AppDisabled,
    /// AADSTS700082 refresh token expired from inactivity (`bad_token`).
    RefreshTokenExpired,
    /// AADSTS70008 grant expired or revoked.
    GrantExpiredOrRevoked,
    /// AADSTS50173 grant revoked after a password change (`bad_token`).
    FreshTokenNeeded,
    /// AADSTS70000 invalid refresh token.
    InvalidRefreshToken,
    /// AADSTS50076 MFA required (`basic_action`).
    MfaRequired,
    /// AADSTS50079 MFA registration required.
    MfaRegistrationRequired,
    /// AADSTS50057 user disabled.
    UserDisabled,
    /// AADSTS50053 account locked.
    UserLocked,
    /// AADSTS50034 user not in the tenant.
    UserNotFound,
    /// AADSTS7000215 wrong client secret (401).
    InvalidClientSecret,
    /// AADSTS7000222 client secret expired (401).
    ClientSecretExpired,
    /// AADSTS90002 tenant not found.
    InvalidTenant,
    /// AADSTS90055 tenant throttled (429).
    TenantThrottled,
    /// AADSTS50196 loop detected (`temporarily_unavailable`).
    LoopDetected,
    /// AADSTS50033 `temporarily_unavailable` (503).
    TemporarilyUnavailable,
    /// AADSTS50055 the password is expired (`user_password_expired`).
    PasswordExpired,
    /// AADSTS70043 the refresh token expired by Conditional Access sign-in frequency.
    SignInFrequency,
    /// AADSTS53000 the device is not compliant (Conditional Access).
    DeviceNotCompliant,

    // ---- Microsoft Graph (providers/microsoft.md §2.2, §6) --------------------------------
    /// 403 `ErrorAccessDenied` "Access is denied. Check credentials and try again.".
    AccessDenied,
    /// 403 `ErrorAccessDenied` "Access to OData is disabled: [RAOP] : …" (no innerError).
    ApplicationAccessPolicy,
    /// 403 `ErrorAccessDenied` "Access to OData is disabled." (documented shape).
    ApplicationAccessPolicyDocumented,
    /// 403 `Authorization_RequestDenied` on `/users`.
    AuthorizationRequestDenied,
    /// 404 `MailboxNotEnabledForRESTAPI` with the older text.
    MailboxNotEnabledLegacy,
    /// 404 `MailboxNotSupportedForRESTAPI`.
    MailboxNotSupported,
    /// 404 `ErrorInvalidUser`.
    InvalidUser,
    /// 404 `ErrorNonExistentMailbox`.
    NonExistentMailbox,
    /// 404 `Request_ResourceNotFound`.
    ResourceNotFound,
    /// 410 `SyncStateNotFound`.
    SyncStateNotFound,
    /// 400 `SyncStateNotFound` (the "any 4xx" variant).
    #[serde(rename = "sync_state_not_found_400")]
    SyncStateNotFound400,
    /// 410 `resyncRequired`.
    ResyncRequired,
    /// 400 `SyncStateInvalid`.
    SyncStateInvalid,
    /// 429 `ApplicationThrottled` "Application is over its MailboxConcurrency limit.".
    ApplicationThrottled,
    /// 401 `InvalidAuthenticationToken` "Access token validation failure.".
    InvalidAuthenticationToken,
    /// 429 `activityLimitReached` (Graph errors reference), `retry_after` sets the header.
    ActivityLimitReached,
    /// 403 `accessDenied`, the documented top-level spelling (Graph errors reference).
    AccessDeniedDocumented,

    // ---- the published catalogues (crate::catalogue), by index -----------------------
    /// `aadsts:<code>`: an Entra token-endpoint error.
    #[serde(skip)]
    Entra(u16),
    /// `graph:<code>`: a Graph error.
    #[serde(skip)]
    Graph(u16),
    /// `google:<reason>`: a Gmail, Calendar or Directory error.
    #[serde(skip)]
    GoogleReason(u16),
}

impl<'de> Deserialize<'de> for FaultKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IntoDeserializer};
        let name = String::deserialize(deserializer)?;
        if let Some(kind) = crate::catalogue::fault_named(&name) {
            return Ok(kind);
        }
        if ["aadsts:", "graph:", "google:"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            return Err(D::Error::custom(format!(
                "`{name}` is no entry of the sim's catalogue (docs/sim.md lists them)"
            )));
        }
        let plain: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.as_str().into_deserializer();
        FaultKind::deserialize(plain).map_err(D::Error::custom)
    }
}

/// Google's token-endpoint names (providers/google.md §2, §3): valid at Google only, and
/// answered at the token endpoint unless a scenario says otherwise.
const GOOGLE_TOKEN: &[FaultKind] = &[
    FaultKind::DelegationUnauthorizedClient,
    FaultKind::InvalidGrantRevoked,
    FaultKind::InvalidRapt,
    FaultKind::AdminPolicyEnforced,
    FaultKind::InvalidEmail,
    FaultKind::NotAValidEmail,
    FaultKind::AccountDeleted,
    FaultKind::InvalidJwtSignature,
    FaultKind::JwtNotShortLived,
    FaultKind::AccountNotFound,
    FaultKind::DeletedClient,
    FaultKind::DisabledClient,
    FaultKind::InternalFailure,
    FaultKind::RefreshScopeMissing,
];

/// How a fault acts on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Replaces the answer.
    Answer,
    /// Delays or mangles the normal answer.
    Transport,
    /// Changes paging or scopes for as long as it is set; never consumed.
    Quirk,
}

/// Which providers a fault name is valid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Both,
    Google,
    Microsoft,
}

impl FaultKind {
    /// The name in the sim's stats: a catalogue entry's own name (`aadsts:7000222`), else
    /// the variant's.
    pub(crate) fn label(self) -> String {
        use crate::catalogue::{ENTRA, GOOGLE, GRAPH};
        match self {
            FaultKind::Entra(i) => format!("aadsts:{}", ENTRA[usize::from(i)].code),
            FaultKind::Graph(i) => format!("graph:{}", GRAPH[usize::from(i)].code),
            FaultKind::GoogleReason(i) => format!("google:{}", GOOGLE[usize::from(i)].reason),
            other => format!("{other:?}"),
        }
    }

    fn family(self) -> Family {
        use FaultKind as F;
        match self {
            F::RateLimited
            | F::ServerError
            | F::ServiceUnavailable
            | F::InvalidClient
            | F::MailboxNotEnabled
            | F::TokenExpired
            | F::CursorExpired
            | F::ConsentDenied
            | F::Latency
            | F::ConnectionReset
            | F::TruncatedJson
            | F::OversizedBody
            | F::EmptyPages
            | F::DuplicateItems => Family::Both,
            _ if GOOGLE_TOKEN.contains(&self) => Family::Google,
            F::DomainCannotUseApis
            | F::InsufficientPermissions
            | F::InsufficientPermissionsNoErrors
            | F::DomainPolicy
            | F::PreconditionFailed
            | F::NotACalendarUser
            | F::DelegationDenied
            | F::AccessNotConfigured
            | F::RateLimitExceeded
            | F::UserRateLimitExceeded
            | F::DailyLimitExceeded
            | F::QuotaExceeded
            | F::TooManyConcurrentRequests
            | F::InvalidCredentialsDocumented
            | F::HistoryNotFound
            | F::FullSyncRequired
            | F::UpdatedMinTooLongAgo
            | F::CalendarNotFound
            | F::DirectoryNotAuthorized
            | F::GoogleReason(_) => Family::Google,
            _ => Family::Microsoft,
        }
    }

    /// Whether this name means something for `provider`.
    pub(crate) fn valid_for(self, provider: Provider) -> bool {
        match self.family() {
            Family::Both => true,
            Family::Google => provider == Provider::Google,
            Family::Microsoft => provider == Provider::Microsoft,
        }
    }

    pub(crate) fn effect(self) -> Effect {
        match self {
            FaultKind::Latency
            | FaultKind::ConnectionReset
            | FaultKind::TruncatedJson
            | FaultKind::OversizedBody => Effect::Transport,
            FaultKind::EmptyPages | FaultKind::DuplicateItems | FaultKind::RefreshScopeMissing => {
                Effect::Quirk
            }
            _ => Effect::Answer,
        }
    }

    /// Cursor faults fire only on incremental calls.
    pub(crate) fn needs_incremental(self) -> bool {
        if let FaultKind::Graph(i) = self {
            return crate::catalogue::GRAPH[usize::from(i)].incremental;
        }
        matches!(
            self,
            FaultKind::CursorExpired
                | FaultKind::HistoryNotFound
                | FaultKind::FullSyncRequired
                | FaultKind::SyncStateNotFound
                | FaultKind::SyncStateNotFound400
                | FaultKind::ResyncRequired
                | FaultKind::SyncStateInvalid
        )
    }

    /// Where the fault applies when the scenario does not say.
    pub(crate) fn default_endpoint(self) -> EndpointSel {
        use FaultKind as F;
        match self {
            _ if GOOGLE_TOKEN.contains(&self) => EndpointSel::Token,
            F::InvalidClient
            | F::ConsentRequired
            | F::AdminConsentRequired
            | F::AppNotInTenant
            | F::ConditionalAccess
            | F::SecurityPolicy
            | F::AssignmentRequired
            | F::AppDisabled
            | F::RefreshTokenExpired
            | F::GrantExpiredOrRevoked
            | F::FreshTokenNeeded
            | F::InvalidRefreshToken
            | F::MfaRequired
            | F::MfaRegistrationRequired
            | F::UserDisabled
            | F::UserLocked
            | F::UserNotFound
            | F::InvalidClientSecret
            | F::ClientSecretExpired
            | F::InvalidTenant
            | F::TenantThrottled
            | F::LoopDetected
            | F::TemporarilyUnavailable
            | F::PasswordExpired
            | F::SignInFrequency
            | F::DeviceNotCompliant
            | F::Entra(_) => EndpointSel::Token,
            F::ConsentDenied => EndpointSel::Authorize,
            F::MailboxNotEnabled
            | F::MailboxNotEnabledLegacy
            | F::MailboxNotSupported
            | F::InvalidUser
            | F::NonExistentMailbox
            | F::AccessDenied
            | F::ApplicationAccessPolicy
            | F::ApplicationAccessPolicyDocumented
            | F::ApplicationThrottled
            | F::ActivityLimitReached
            | F::AccessDeniedDocumented
            | F::Graph(_) => EndpointSel::Mailbox,
            F::DomainPolicy | F::PreconditionFailed | F::DelegationDenied | F::GoogleReason(_) => {
                EndpointSel::Gmail
            }
            F::HistoryNotFound => EndpointSel::GmailHistory,
            F::NotACalendarUser
            | F::QuotaExceeded
            | F::FullSyncRequired
            | F::UpdatedMinTooLongAgo
            | F::CalendarNotFound => EndpointSel::Calendar,
            F::DirectoryNotAuthorized => EndpointSel::Directory,
            F::AuthorizationRequestDenied | F::ResourceNotFound => EndpointSel::GraphUsers,
            _ => EndpointSel::Api,
        }
    }
}
