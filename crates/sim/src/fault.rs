//! Fault names and the exact answer each one produces.
//!
//! Every answer in PROVIDERS.md's answer → outcome table has a name here, and this module is
//! the only place that knows its status, headers and body. The same answers are used when a
//! condition arises on its own (a user without a mailbox, a stale cursor, a wrong token), so
//! a fault named in a scenario and the natural condition can never drift apart. The table in
//! docs/sim.md lists each name with the section of providers/*.md it comes from.

use serde::Deserialize;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::json::{J, obj};
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

/// Where a fault applies. `Api` is every data endpoint (not token, not authorize).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointSel {
    /// Every endpoint.
    Any,
    /// Token endpoint.
    Token,
    /// Authorize endpoint.
    Authorize,
    /// Every data endpoint.
    Api,
    /// Gmail (all calls).
    Gmail,
    /// Gmail `history.list` only.
    GmailHistory,
    /// Calendar `events.list`.
    Calendar,
    /// Directory `users.list`.
    Directory,
    /// Graph `/users`.
    GraphUsers,
    /// Graph mail delta.
    GraphMail,
    /// Graph calendarView delta.
    GraphCalendar,
    /// Mail and calendar calls (either provider).
    Mailbox,
}

/// The concrete endpoint a request hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Token,
    Authorize,
    GmailProfile,
    GmailMessages,
    GmailMessage,
    GmailHistory,
    CalendarEvents,
    Directory,
    GraphUsers,
    /// Graph `/me` (delegated tokens only).
    GraphMe,
    GraphMail,
    GraphCalendar,
}

impl Endpoint {
    /// The stats key of this endpoint.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Authorize => "authorize",
            Endpoint::GmailProfile => "gmail.profile",
            Endpoint::GmailMessages => "gmail.messages.list",
            Endpoint::GmailMessage => "gmail.messages.get",
            Endpoint::GmailHistory => "gmail.history.list",
            Endpoint::CalendarEvents => "calendar.events.list",
            Endpoint::Directory => "directory.users.list",
            Endpoint::GraphUsers => "graph.users",
            Endpoint::GraphMe => "graph.me",
            Endpoint::GraphMail => "graph.messages.delta",
            Endpoint::GraphCalendar => "graph.calendarView.delta",
        }
    }

    fn is_api(self) -> bool {
        !matches!(self, Endpoint::Token | Endpoint::Authorize)
    }

    fn is_mailbox(self) -> bool {
        matches!(
            self,
            Endpoint::GmailProfile
                | Endpoint::GmailMessages
                | Endpoint::GmailMessage
                | Endpoint::GmailHistory
                | Endpoint::CalendarEvents
                | Endpoint::GraphMail
                | Endpoint::GraphCalendar
        )
    }
}

impl EndpointSel {
    /// Whether a request to `endpoint` is selected.
    pub(crate) fn matches(self, endpoint: Endpoint) -> bool {
        match self {
            EndpointSel::Any => true,
            EndpointSel::Token => endpoint == Endpoint::Token,
            EndpointSel::Authorize => endpoint == Endpoint::Authorize,
            EndpointSel::Api => endpoint.is_api(),
            EndpointSel::Gmail => matches!(
                endpoint,
                Endpoint::GmailProfile
                    | Endpoint::GmailMessages
                    | Endpoint::GmailMessage
                    | Endpoint::GmailHistory
            ),
            EndpointSel::GmailHistory => endpoint == Endpoint::GmailHistory,
            EndpointSel::Calendar => endpoint == Endpoint::CalendarEvents,
            EndpointSel::Directory => endpoint == Endpoint::Directory,
            EndpointSel::GraphUsers => {
                matches!(endpoint, Endpoint::GraphUsers | Endpoint::GraphMe)
            }
            EndpointSel::GraphMail => endpoint == Endpoint::GraphMail,
            EndpointSel::GraphCalendar => endpoint == Endpoint::GraphCalendar,
            EndpointSel::Mailbox => endpoint.is_mailbox(),
        }
    }
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
            F::DelegationUnauthorizedClient
            | F::InvalidGrantRevoked
            | F::InvalidRapt
            | F::AdminPolicyEnforced
            | F::InvalidEmail
            | F::NotAValidEmail
            | F::AccountDeleted
            | F::InvalidJwtSignature
            | F::JwtNotShortLived
            | F::AccountNotFound
            | F::DeletedClient
            | F::DisabledClient
            | F::DomainCannotUseApis
            | F::InternalFailure
            | F::RefreshScopeMissing
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
            F::InvalidClient
            | F::DelegationUnauthorizedClient
            | F::InvalidGrantRevoked
            | F::InvalidRapt
            | F::AdminPolicyEnforced
            | F::InvalidEmail
            | F::NotAValidEmail
            | F::AccountDeleted
            | F::InvalidJwtSignature
            | F::JwtNotShortLived
            | F::AccountNotFound
            | F::DeletedClient
            | F::DisabledClient
            | F::InternalFailure
            | F::RefreshScopeMissing
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

/// What an answer needs to know about the request it answers.
#[derive(Clone, Debug, Default)]
pub(crate) struct AnswerCtx {
    /// The endpoint hit (decides Gmail vs Calendar wording).
    pub endpoint: Option<Endpoint>,
    /// The member's address or the id in the path.
    pub user: String,
    /// The OAuth client id of the request.
    pub client_id: String,
    /// The tenant as named in the request path (Microsoft).
    pub tenant: String,
    /// Graph `request-id` of this answer.
    pub request_id: String,
    /// The caller's `client-request-id`, or the request id.
    pub client_request_id: String,
    /// The `Retry-After` value to send, if any.
    pub retry_after: Option<String>,
    /// Scopes the call needed (for `WWW-Authenticate: … scope=`).
    pub needed_scope: String,
}

/// A complete answer: status, extra headers and a JSON body.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: J,
}

impl Answer {
    pub(crate) fn new(status: u16, body: J) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    fn retry_after(self, ctx: &AnswerCtx) -> Answer {
        match &ctx.retry_after {
            Some(value) => self.header("retry-after", value.clone()),
            None => self,
        }
    }
}

// ---- Google builders ------------------------------------------------------------------

/// The flat token-endpoint error (providers/google.md §1.2).
pub(crate) fn google_token_error(status: u16, error: &str, description: &str) -> Answer {
    Answer::new(
        status,
        obj! { "error" => error, "error_description" => description },
    )
}

/// One `errors[]` item in the order Google's quotes show it: domain, reason, message.
pub(crate) fn item(domain: &str, reason: &str, message: &str) -> J {
    obj! { "domain" => domain, "reason" => reason, "message" => message }
}

/// The Google REST envelope: code, message, errors, [status], [details].
pub(crate) fn google_error(
    code: u16,
    message: &str,
    errors: Option<Vec<J>>,
    status: Option<&str>,
    details: Option<Vec<J>>,
) -> Answer {
    let mut inner = obj! { "code" => code, "message" => message };
    if let Some(errors) = errors {
        inner.push("errors", errors);
    }
    if let Some(status) = status {
        inner.push("status", status);
    }
    if let Some(details) = details {
        inner.push("details", details);
    }
    Answer::new(code, obj! { "error" => inner })
}

fn google_service(endpoint: Option<Endpoint>) -> (&'static str, &'static str, &'static str) {
    match endpoint {
        Some(Endpoint::CalendarEvents) => (
            "calendar-json.googleapis.com",
            "Google Calendar API",
            "calendar.v3.Events.List",
        ),
        Some(Endpoint::Directory) => (
            "admin.googleapis.com",
            "Admin SDK API",
            "ccc.hosted.frontend.directory.v1.DirectoryUsers.List",
        ),
        Some(Endpoint::GmailHistory) => (
            "gmail.googleapis.com",
            "Gmail API",
            "caribou.api.proto.MailboxService.ListHistory",
        ),
        Some(Endpoint::GmailMessages) => (
            "gmail.googleapis.com",
            "Gmail API",
            "caribou.api.proto.MailboxService.ListMessages",
        ),
        Some(Endpoint::GmailMessage) => (
            "gmail.googleapis.com",
            "Gmail API",
            "caribou.api.proto.MailboxService.GetMessage",
        ),
        _ => (
            "gmail.googleapis.com",
            "Gmail API",
            "caribou.api.proto.MailboxService.GetProfile",
        ),
    }
}

/// The live 401 (providers/google.md §4 "Same, as actually sent today").
pub(crate) fn google_unauthenticated() -> Answer {
    google_error(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        Some(vec![obj! {
            "message" => "Invalid Credentials",
            "domain" => "global",
            "reason" => "authError",
            "location" => "Authorization",
            "locationType" => "header",
        }]),
        Some("UNAUTHENTICATED"),
        None,
    )
    .header(
        "www-authenticate",
        "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
    )
}

/// The 403 scope failure (providers/google.md §1.1, php-samples#123).
pub(crate) fn google_insufficient_scope(ctx: &AnswerCtx, with_errors: bool) -> Answer {
    let (service, _, method) = google_service(ctx.endpoint);
    let errors = with_errors.then(|| {
        vec![obj! {
            "message" => "Insufficient Permission",
            "domain" => "global",
            "reason" => "insufficientPermissions",
        }]
    });
    google_error(
        403,
        "Request had insufficient authentication scopes.",
        errors,
        Some("PERMISSION_DENIED"),
        Some(vec![obj! {
            "@type" => "type.googleapis.com/google.rpc.ErrorInfo",
            "reason" => "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain" => "googleapis.com",
            "metadata" => obj! { "method" => method, "service" => service },
        }]),
    )
    .header(
        "www-authenticate",
        format!(
            "Bearer realm=\"https://accounts.google.com/\", error=\"insufficient_scope\", scope=\"{}\"",
            ctx.needed_scope
        ),
    )
}

fn google_answer(kind: FaultKind, ctx: &AnswerCtx) -> Answer {
    use FaultKind as F;
    let not_found = || {
        google_error(
            404,
            "Requested entity was not found.",
            Some(vec![obj! {
                "message" => "Requested entity was not found.",
                "domain" => "global",
                "reason" => "notFound",
            }]),
            Some("NOT_FOUND"),
            None,
        )
    };
    let full_sync = || {
        google_error(
            410,
            "Sync token is no longer valid, a full sync is required.",
            Some(vec![obj! {
                "domain" => "calendar",
                "reason" => "fullSyncRequired",
                "message" => "Sync token is no longer valid, a full sync is required.",
                "locationType" => "parameter",
                "location" => "syncToken",
            }]),
            None,
            None,
        )
    };
    let usage = |code: u16, reason: &str, message: &str| {
        google_error(
            code,
            message,
            Some(vec![item("usageLimits", reason, message)]),
            None,
            None,
        )
        .retry_after(ctx)
    };
    match kind {
        F::GoogleReason(i) => {
            let row = &crate::catalogue::GOOGLE[usize::from(i)];
            let (service, _, method) = google_service(ctx.endpoint);
            let (errors, details) = if row.reason == row.status_name {
                (None, None)
            } else if row.domain == "googleapis.com" {
                let info = obj! {
                    "@type" => "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason" => row.reason,
                    "domain" => "googleapis.com",
                    "metadata" => obj! { "method" => method, "service" => service },
                };
                (None, Some(vec![info]))
            } else {
                (Some(vec![item(row.domain, row.reason, row.message)]), None)
            };
            google_error(
                row.status,
                row.message,
                errors,
                Some(row.status_name),
                details,
            )
            .retry_after(ctx)
        }
        // Token endpoint, §2 and §3.
        F::InvalidClient => {
            google_token_error(401, "invalid_client", "The OAuth client was not found.")
        }
        F::DelegationUnauthorizedClient => google_token_error(
            401,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        ),
        F::InvalidGrantRevoked => {
            google_token_error(400, "invalid_grant", "Token has been expired or revoked.")
        }
        F::InvalidRapt => {
            let mut answer =
                google_token_error(400, "invalid_grant", "reauth related error (invalid_rapt)");
            answer
                .body
                .push("error_uri", "https://support.google.com/a/answer/9368756");
            answer.body.push("error_subtype", "invalid_rapt");
            answer
        }
        F::AdminPolicyEnforced => google_token_error(
            400,
            "admin_policy_enforced",
            "Access to this application has been restricted by your Google Workspace administrator.",
        ),
        F::InvalidEmail => google_token_error(400, "invalid_grant", "Invalid email or User ID"),
        F::NotAValidEmail => google_token_error(400, "invalid_grant", "Not a valid email."),
        F::AccountDeleted => {
            google_token_error(400, "invalid_grant", "The account has been deleted")
        }
        F::InvalidJwtSignature => {
            google_token_error(400, "invalid_grant", "Invalid JWT Signature.")
        }
        F::JwtNotShortLived => google_token_error(
            400,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        ),
        F::AccountNotFound => {
            google_token_error(400, "invalid_grant", "Invalid grant: account not found")
        }
        F::DeletedClient => {
            google_token_error(401, "deleted_client", "The OAuth client was deleted.")
        }
        F::DisabledClient => {
            google_token_error(401, "disabled_client", "The OAuth client was disabled.")
        }
        F::InternalFailure => google_token_error(500, "internal_failure", "Backend Error"),
        F::ConsentDenied => google_token_error(400, "access_denied", "The user denied access."),

        // APIs.
        F::TokenExpired => google_unauthenticated(),
        F::InvalidCredentialsDocumented => google_error(
            401,
            "Invalid Credentials",
            Some(vec![obj! {
                "domain" => "global",
                "reason" => "authError",
                "message" => "Invalid Credentials",
                "locationType" => "header",
                "location" => "Authorization",
            }]),
            None,
            None,
        ),
        F::InsufficientPermissions => google_insufficient_scope(ctx, true),
        F::InsufficientPermissionsNoErrors => google_insufficient_scope(ctx, false),
        F::DomainCannotUseApis => google_error(
            403,
            "Domain cannot use apis.",
            Some(vec![item(
                "global",
                "domainCannotUseApis",
                "Domain cannot use apis.",
            )]),
            Some("PERMISSION_DENIED"),
            None,
        ),
        F::DomainPolicy => google_error(
            403,
            "The domain administrators have disabled Gmail apps.",
            Some(vec![item(
                "global",
                "domainPolicy",
                "The domain administrators have disabled Gmail apps.",
            )]),
            None,
            None,
        ),
        F::MailboxNotEnabled => google_error(
            400,
            "Mail service not enabled",
            Some(vec![item(
                "global",
                "failedPrecondition",
                "Mail service not enabled",
            )]),
            Some("FAILED_PRECONDITION"),
            None,
        ),
        F::PreconditionFailed => google_error(
            400,
            "Precondition check failed.",
            Some(vec![item(
                "global",
                "failedPrecondition",
                "Precondition check failed.",
            )]),
            Some("FAILED_PRECONDITION"),
            None,
        ),
        F::NotACalendarUser => google_error(
            403,
            "The user must be signed up for Google Calendar.",
            Some(vec![item(
                "calendar",
                "notACalendarUser",
                "The user must be signed up for Google Calendar.",
            )]),
            None,
            None,
        ),
        F::DelegationDenied => {
            let message = format!("Delegation denied for {}", ctx.user);
            google_error(
                403,
                &message,
                Some(vec![item("global", "forbidden", &message)]),
                Some("PERMISSION_DENIED"),
                None,
            )
        }
        F::AccessNotConfigured => {
            let (service, title, _) = google_service(ctx.endpoint);
            let activation = format!(
                "https://console.developers.google.com/apis/api/{service}/overview?project=123456789012"
            );
            let message = format!(
                "{title} has not been used in project 123456789012 before or it is disabled. Enable it by visiting {activation} then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry."
            );
            google_error(
                403,
                &message,
                Some(vec![obj! {
                    "message" => message.as_str(),
                    "domain" => "usageLimits",
                    "reason" => "accessNotConfigured",
                    "extendedHelp" => "https://console.developers.google.com",
                }]),
                Some("PERMISSION_DENIED"),
                Some(vec![obj! {
                    "@type" => "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason" => "SERVICE_DISABLED",
                    "domain" => "googleapis.com",
                    "metadata" => obj! {
                        "service" => service,
                        "consumer" => "projects/123456789012",
                        "activationUrl" => activation.as_str(),
                    },
                }]),
            )
        }
        F::RateLimited => google_error(
            429,
            "Rate Limit Exceeded",
            Some(vec![item(
                "usageLimits",
                "rateLimitExceeded",
                "Rate Limit Exceeded",
            )]),
            Some("RESOURCE_EXHAUSTED"),
            None,
        )
        .retry_after(ctx),
        F::RateLimitExceeded => usage(403, "rateLimitExceeded", "Rate Limit Exceeded"),
        F::UserRateLimitExceeded => usage(403, "userRateLimitExceeded", "User Rate Limit Exceeded"),
        F::DailyLimitExceeded => usage(403, "dailyLimitExceeded", "Daily Limit Exceeded"),
        F::QuotaExceeded => usage(403, "quotaExceeded", "Calendar usage limits exceeded."),
        F::TooManyConcurrentRequests => google_error(
            429,
            "Too many concurrent requests for user",
            Some(vec![item(
                "global",
                "rateLimitExceeded",
                "Too many concurrent requests for user",
            )]),
            Some("RESOURCE_EXHAUSTED"),
            None,
        )
        .retry_after(ctx),
        F::ServerError => google_error(
            500,
            "Backend Error",
            Some(vec![item("global", "backendError", "Backend Error")]),
            None,
            None,
        )
        .retry_after(ctx),
        F::ServiceUnavailable => google_error(
            503,
            "The service is currently unavailable.",
            Some(vec![item(
                "global",
                "backendError",
                "The service is currently unavailable.",
            )]),
            Some("UNAVAILABLE"),
            None,
        )
        .retry_after(ctx),
        F::HistoryNotFound => not_found(),
        F::FullSyncRequired => full_sync(),
        F::CursorExpired => match ctx.endpoint {
            Some(Endpoint::CalendarEvents) => full_sync(),
            _ => not_found(),
        },
        F::UpdatedMinTooLongAgo => google_error(
            410,
            "The requested minimum modification time lies too far in the past.",
            Some(vec![obj! {
                "domain" => "calendar",
                "reason" => "updatedMinTooLongAgo",
                "message" => "The requested minimum modification time lies too far in the past.",
                "locationType" => "parameter",
                "location" => "updatedMin",
            }]),
            None,
            None,
        ),
        F::CalendarNotFound => google_error(
            404,
            "Not Found",
            Some(vec![item("global", "notFound", "Not Found")]),
            None,
            None,
        ),
        F::DirectoryNotAuthorized => google_error(
            403,
            "Not Authorized to access this resource/api",
            Some(vec![obj! {
                "message" => "Not Authorized to access this resource/api",
                "domain" => "global",
                "reason" => "forbidden",
            }]),
            None,
            None,
        ),
        // Microsoft-only names never reach here (rejected at load); answer as Google would
        // for an unexpected server state rather than panic.
        _ => google_error(
            500,
            "Backend Error",
            Some(vec![item("global", "backendError", "Backend Error")]),
            None,
            None,
        ),
    }
}

// ---- Microsoft builders ---------------------------------------------------------------

fn entra_timestamp(now: OffsetDateTime) -> String {
    now.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

/// The Entra token-endpoint error (providers/microsoft.md §1.1).
pub(crate) fn entra_error(
    ctx: &AnswerCtx,
    status: u16,
    error: &str,
    code: u32,
    text: &str,
    suberror: Option<&str>,
) -> Answer {
    let timestamp = entra_timestamp(OffsetDateTime::now_utc());
    let trace_id = uuid::Uuid::new_v4().to_string();
    let correlation_id = if ctx.client_request_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        ctx.client_request_id.clone()
    };
    let description = format!(
        "AADSTS{code}: {text}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
    );
    let mut body = obj! {
        "error" => error,
        "error_description" => description,
        "error_codes" => vec![J::Int(i64::from(code))],
        "timestamp" => timestamp,
        "trace_id" => trace_id,
        "correlation_id" => correlation_id,
        "error_uri" => format!("https://login.microsoftonline.com/error?code={code}"),
    };
    if let Some(suberror) = suberror {
        body.push("suberror", suberror);
    }
    Answer::new(status, body)
        .header("cache-control", "no-store, no-cache")
        .header("pragma", "no-cache")
}

fn graph_inner(ctx: &AnswerCtx) -> J {
    let date = OffsetDateTime::now_utc()
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    obj! {
        "date" => date,
        "request-id" => ctx.request_id.as_str(),
        "client-request-id" => ctx.client_request_id.as_str(),
    }
}

/// The Graph envelope (providers/microsoft.md §2.1); `inner` adds `innerError`.
pub(crate) fn graph_error(
    ctx: &AnswerCtx,
    status: u16,
    code: &str,
    message: &str,
    inner: bool,
) -> Answer {
    let mut error = obj! { "code" => code, "message" => message };
    if inner {
        error.push("innerError", graph_inner(ctx));
    }
    Answer::new(status, obj! { "error" => error })
}

/// The `WWW-Authenticate` Graph sends with a 401.
pub(crate) const GRAPH_WWW_AUTHENTICATE: &str = "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"";

fn microsoft_answer(kind: FaultKind, ctx: &AnswerCtx) -> Answer {
    use FaultKind as F;
    let client = ctx.client_id.as_str();
    let tenant = ctx.tenant.as_str();
    let user = ctx.user.as_str();
    let graph = "00000003-0000-0000-c000-000000000000";
    let sync_state =
        "The sync state generation is not found; generation=149;[highest=157][157][155][156].";
    match kind {
        F::Entra(i) => {
            let row = &crate::catalogue::ENTRA[usize::from(i)];
            entra_error(ctx, row.status, row.error, row.code, row.text, row.suberror)
                .retry_after(ctx)
        }
        F::Graph(i) => {
            let row = &crate::catalogue::GRAPH[usize::from(i)];
            let answer = graph_error(ctx, row.status, row.code, row.message, true).retry_after(ctx);
            if row.status == 401 {
                answer.header("www-authenticate", GRAPH_WWW_AUTHENTICATE)
            } else {
                answer
            }
        }
        // Token endpoint, §1.2.
        F::ConsentRequired => entra_error(
            ctx,
            400,
            "invalid_grant",
            65001,
            &format!(
                "The user or administrator has not consented to use the application with ID '{client}' named 'datacap'. Send an interactive authorization request for this user and resource."
            ),
            Some("consent_required"),
        ),
        F::AdminConsentRequired => entra_error(
            ctx,
            400,
            "invalid_grant",
            90094,
            "The grant requires admin permission.",
            None,
        ),
        F::AppNotInTenant => entra_error(
            ctx,
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
            None,
        ),
        F::ConditionalAccess => {
            let mut answer = entra_error(
                ctx,
                400,
                "invalid_grant",
                53003,
                "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
                Some("message_only"),
            );
            answer.body.push("claims", "{\"access_token\":{\"capolids\":{\"essential\":true,\"values\":[\"00000000-0000-0000-0000-000000000001\"]}}}");
            answer
        }
        F::SecurityPolicy => entra_error(
            ctx,
            400,
            "invalid_grant",
            530032,
            "The tenant admin has configured a security policy that blocks this request.",
            None,
        ),
        F::AssignmentRequired => entra_error(
            ctx,
            400,
            "invalid_grant",
            50105,
            &format!(
                "Your administrator has configured the application datacap ('{client}') to block users unless they are specifically granted ('assigned') access to the application. The signed in user '{user}' is blocked because they are not a direct member of a group with access, nor had access directly assigned by an administrator. Please contact your administrator to assign access to this application."
            ),
            None,
        ),
        F::AppDisabled => entra_error(
            ctx,
            400,
            "unauthorized_client",
            7000112,
            &format!("Application '{client}'(datacap) is disabled."),
            None,
        ),
        F::RefreshTokenExpired => entra_error(
            ctx,
            400,
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity. The token was issued on 2026-08-01T08:00:00.0000000Z and was inactive for 90.00:00:00.",
            Some("bad_token"),
        ),
        F::GrantExpiredOrRevoked => entra_error(
            ctx,
            400,
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            Some("bad_token"),
        ),
        F::FreshTokenNeeded => entra_error(
            ctx,
            400,
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '2026-10-01T08:00:00.0000000Z' and the TokensValidFrom date (before which tokens are not valid) for this user is '2026-11-01T08:00:00.0000000Z'.",
            Some("bad_token"),
        ),
        F::InvalidRefreshToken => entra_error(
            ctx,
            400,
            "invalid_grant",
            70000,
            "Provided grant is invalid or malformed.",
            None,
        ),
        F::MfaRequired => entra_error(
            ctx,
            400,
            "invalid_grant",
            50076,
            &format!(
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{graph}'."
            ),
            Some("basic_action"),
        ),
        F::MfaRegistrationRequired => entra_error(
            ctx,
            400,
            "invalid_grant",
            50079,
            &format!(
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '{graph}'."
            ),
            Some("basic_action"),
        ),
        F::UserDisabled => entra_error(
            ctx,
            400,
            "invalid_grant",
            50057,
            "The user account is disabled.",
            None,
        ),
        F::UserLocked => entra_error(
            ctx,
            400,
            "invalid_grant",
            50053,
            "Your account is locked because you've tried to sign in too many times with an incorrect user ID or password.",
            None,
        ),
        F::UserNotFound => entra_error(
            ctx,
            400,
            "invalid_grant",
            50034,
            &format!(
                "The user account {{EmailHidden}} does not exist in the {tenant} directory. To sign into this application, the account must be added to the directory."
            ),
            None,
        ),
        F::InvalidClientSecret => entra_error(
            ctx,
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client}'."
            ),
            None,
        ),
        F::ClientSecretExpired => entra_error(
            ctx,
            401,
            "invalid_client",
            7000222,
            &format!(
                "The provided client secret keys for app '{client}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
            ),
            None,
        ),
        F::InvalidClient => entra_error(
            ctx,
            401,
            "invalid_client",
            70002,
            "Error validating credentials.",
            None,
        ),
        F::InvalidTenant => entra_error(
            ctx,
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
            None,
        ),
        F::TenantThrottled => entra_error(
            ctx,
            429,
            "temporarily_unavailable",
            90055,
            "There are too many incoming requests. This exception is thrown for blocked tenants.",
            None,
        )
        .retry_after(ctx),
        F::LoopDetected => entra_error(
            ctx,
            400,
            "temporarily_unavailable",
            50196,
            "The server terminated an operation because it encountered a client request loop. Please contact your app vendor.",
            None,
        ),
        F::TemporarilyUnavailable => entra_error(
            ctx,
            503,
            "temporarily_unavailable",
            50033,
            "A transient error has occurred. Please try again.",
            None,
        )
        .retry_after(ctx),
        F::PasswordExpired => entra_error(
            ctx,
            400,
            "invalid_grant",
            50055,
            "The password is expired.",
            Some("user_password_expired"),
        ),
        F::SignInFrequency => entra_error(
            ctx,
            400,
            "invalid_grant",
            70043,
            "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The token was issued on 2026-11-20T10:00:00.0000000Z and the maximum allowed lifetime for this request is 86400.",
            Some("bad_token"),
        ),
        F::DeviceNotCompliant => entra_error(
            ctx,
            400,
            "invalid_grant",
            53000,
            "Device is not in required device state: compliant. Conditional Access policy requires a compliant device, and the device is not compliant. The user must enroll their device with an approved MDM provider like Intune.",
            None,
        ),
        F::ConsentDenied => entra_error(
            ctx,
            400,
            "access_denied",
            65004,
            "User declined to consent to access the app.",
            None,
        ),

        // Graph, §2.2 and §6.
        F::TokenExpired => graph_error(
            ctx,
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
            true,
        )
        .header("www-authenticate", GRAPH_WWW_AUTHENTICATE),
        F::InvalidAuthenticationToken => graph_error(
            ctx,
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure.",
            true,
        )
        .header("www-authenticate", GRAPH_WWW_AUTHENTICATE),
        F::AccessDenied => graph_error(
            ctx,
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
            true,
        ),
        F::ApplicationAccessPolicy => graph_error(
            ctx,
            403,
            "ErrorAccessDenied",
            "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
            false,
        ),
        F::ApplicationAccessPolicyDocumented => graph_error(
            ctx,
            403,
            "ErrorAccessDenied",
            "Access to OData is disabled.",
            true,
        ),
        F::AuthorizationRequestDenied => graph_error(
            ctx,
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
            true,
        ),
        F::MailboxNotEnabled => graph_error(
            ctx,
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            true,
        ),
        F::MailboxNotEnabledLegacy => graph_error(
            ctx,
            404,
            "MailboxNotEnabledForRESTAPI",
            "REST API is not yet supported for this mailbox.",
            true,
        ),
        F::MailboxNotSupported => graph_error(
            ctx,
            404,
            "MailboxNotSupportedForRESTAPI",
            "The mailbox is not supported for REST API.",
            true,
        ),
        F::InvalidUser => graph_error(
            ctx,
            404,
            "ErrorInvalidUser",
            &format!("The requested user '{user}' is invalid."),
            true,
        ),
        F::NonExistentMailbox => graph_error(
            ctx,
            404,
            "ErrorNonExistentMailbox",
            "The SMTP address has no mailbox associated with it.",
            true,
        ),
        F::ResourceNotFound => graph_error(
            ctx,
            404,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{user}' does not exist or one of its queried reference-property objects are not present."
            ),
            true,
        ),
        F::SyncStateNotFound | F::CursorExpired => {
            graph_error(ctx, 410, "SyncStateNotFound", sync_state, true)
        }
        F::SyncStateNotFound400 => graph_error(ctx, 400, "SyncStateNotFound", sync_state, true),
        F::ResyncRequired => graph_error(
            ctx,
            410,
            "resyncRequired",
            "Resync required. Replace any local items with the server's items.",
            true,
        ),
        F::SyncStateInvalid => graph_error(
            ctx,
            400,
            "SyncStateInvalid",
            "The sync state is invalid.",
            true,
        ),
        F::RateLimited => {
            let mut inner = graph_inner(ctx);
            if let J::Obj(fields) = &mut inner {
                fields.insert(0, ("code".to_owned(), J::from("429")));
                fields.insert(2, ("message".to_owned(), J::from("Please retry after")));
                fields.push(("status".to_owned(), J::from("429")));
            }
            Answer::new(
                429,
                obj! { "error" => obj! {
                    "code" => "TooManyRequests",
                    "message" => "Please retry again later.",
                    "innerError" => inner,
                }},
            )
            .retry_after(ctx)
        }
        F::ApplicationThrottled => graph_error(
            ctx,
            429,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
            false,
        )
        .retry_after(ctx),
        F::ActivityLimitReached => graph_error(
            ctx,
            429,
            "activityLimitReached",
            "The app or user has been throttled.",
            true,
        )
        .retry_after(ctx),
        F::AccessDeniedDocumented => graph_error(
            ctx,
            403,
            "accessDenied",
            "The caller doesn't have permission to perform the action.",
            true,
        ),
        F::ServiceUnavailable => {
            graph_error(ctx, 503, "ServiceUnavailable", "Service Unavailable", true)
                .retry_after(ctx)
        }
        F::ServerError => graph_error(
            ctx,
            500,
            "generalException",
            "An unspecified error has occurred.",
            true,
        )
        .retry_after(ctx),
        // Google-only names never reach here (rejected at load).
        _ => graph_error(
            ctx,
            500,
            "generalException",
            "An unspecified error has occurred.",
            true,
        ),
    }
}

/// The answer `kind` produces for `provider`.
pub(crate) fn answer(kind: FaultKind, provider: Provider, ctx: &AnswerCtx) -> Answer {
    match provider {
        Provider::Google => google_answer(kind, ctx),
        Provider::Microsoft => microsoft_answer(kind, ctx),
    }
}

/// Formats `Retry-After` as an HTTP date `secs` seconds from now.
pub(crate) fn http_date_in(secs: u64) -> String {
    let now = OffsetDateTime::now_utc();
    let when = now
        .checked_add(time::Duration::seconds(i64::try_from(secs).unwrap_or(0)))
        .unwrap_or(now);
    when.format(format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .unwrap_or_default()
}
