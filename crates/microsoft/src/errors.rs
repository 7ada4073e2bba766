//! The pure mapping from what Microsoft answers to one outcome of STATUS_MODEL.md.
//!
//! Every Microsoft row of PROVIDERS.md's answer → outcome table lives here and nowhere
//! else, with no IO, no clock and no tokens: the HTTP code reads an answer, parses its
//! error envelope with [`TokenErrorBody::parse`] or [`GraphErrorInfo::parse`], and asks
//! [`classify_token_error`] or [`classify_graph_error`] what it means. Codes are compared
//! without case (docs write `syncStateNotFound`, the service sends `SyncStateNotFound`);
//! message text is read only for the application-access-policy denial, which has no code
//! of its own (providers/microsoft.md §2.2, §6).

use datacap_connector::ThrottleScope;
use datacap_core::Outcome;
use serde::{Deserialize, Serialize};

// ---- token endpoint -------------------------------------------------------------------

/// The Entra ID token-endpoint error envelope (providers/microsoft.md §1.1). Also the
/// `oauth2` crate's error type of the connect flow's code redemption, so that every field
/// reaches [`classify_token_error`] there too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct TokenErrorBody {
    /// OAuth2 class string (`invalid_grant`, `invalid_client`, …).
    pub error: String,
    /// `AADSTSnnnnn: text` followed by trace lines; not stable, shown to on-call only.
    pub error_description: String,
    /// The numeric AADSTS codes.
    pub error_codes: Vec<u64>,
    /// MSAL's hint (`consent_required`, `bad_token`, `basic_action`, …).
    pub suberror: Option<String>,
    /// Entra's trace id, for Microsoft support.
    pub trace_id: Option<String>,
    /// Entra's correlation id (our `client-request-id` when we send one).
    pub correlation_id: Option<String>,
}

impl std::fmt::Display for TokenErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)?;
        if let Some(code) = self.error_codes.first() {
            write!(f, " (AADSTS{code})")?;
        }
        Ok(())
    }
}

impl datacap_connector::code_flow::ErrorResponse for TokenErrorBody {}

impl TokenErrorBody {
    /// Parses an error body; `None` when it is not the documented envelope.
    pub fn parse(body: &[u8]) -> Option<TokenErrorBody> {
        let parsed: TokenErrorBody = serde_json::from_slice(body).ok()?;
        (!parsed.error.is_empty()).then_some(parsed)
    }

    /// The description's first line (`AADSTS70000: Provided grant is invalid …`), without
    /// the trace, correlation and timestamp lines Entra appends.
    pub fn summary(&self) -> &str {
        let text = self.error_description.as_str();
        let cut = ["\r\n", "\n", " Trace ID:"]
            .iter()
            .filter_map(|marker| text.find(marker))
            .min()
            .unwrap_or(text.len());
        text.get(..cut).unwrap_or(text).trim()
    }
}

/// AADSTS codes by outcome (PROVIDERS.md answer → outcome, Entra rows).
/// One AADSTS code of Microsoft's catalogue and the outcome its meaning gives
/// (STATUS_MODEL.md's outcome definitions). Sources: "Microsoft Entra authentication and
/// authorization error codes" (learn.microsoft.com/entra/identity-platform/
/// reference-error-codes, "the catalogue" below) for every row; providers/microsoft.md
/// §1.2 and the issues it cites where a real body was seen.
pub struct EntraCode {
    pub code: u64,
    pub outcome: Outcome,
    /// The catalogue's name of the code.
    pub name: &'static str,
    /// Where the row comes from.
    pub source: &'static str,
}

const CATALOGUE: &str = "Entra error codes reference";

macro_rules! entra_codes {
    ($($code:literal $outcome:ident $name:literal $source:expr;)*) => {
        /// Microsoft's sign-in and token error codes, mapped whole (issue 21 §4). A code
        /// not listed falls back on the answer's `suberror` and `error`.
        pub const ENTRA_CODES: &[EntraCode] = &[
            $(EntraCode { code: $code, outcome: Outcome::$outcome, name: $name, source: $source },)*
        ];
    };
}

entra_codes! {
    // -- tenant: the company's tenant id names no usable tenant (its configuration) ------
    90002 CredentialRejected "InvalidTenantName: the tenant was not found (or has no active subscription)" "catalogue; MicrosoftDocs/azure-docs#21690";
    900023 CredentialRejected "InvalidTenantIdentifier: the tenant identifier is not valid" CATALOGUE;
    900971 CredentialRejected "NoReplyAddress / tenant identifier missing" CATALOGUE;
    500021 AccessDenied "Access to the tenant is denied (tenant restrictions)" CATALOGUE;
    // -- the app in the tenant: consent and registration --------------------------------
    65001 NotAuthorized "DelegationDoesNotExist: the user or admin has not consented" "catalogue; microsoft.md §1.2";
    65004 NotAuthorized "UserDeclinedConsent" CATALOGUE;
    65005 NotAuthorized "MisconfiguredApplication: required resource access not granted" CATALOGUE;
    90094 NotAuthorized "AdminConsentRequired" "catalogue; microsoft.md §1.2";
    90095 NotAuthorized "AdminConsentRequiredDueToRiskyApp" CATALOGUE;
    700016 NotAuthorized "UnauthorizedClient_DoesNotMatchRequest: the app is not in the tenant" "catalogue; MicrosoftDocs/azure-docs#35244";
    500011 NotAuthorized "InvalidResourceServicePrincipalNotFound: the resource is not in the tenant" CATALOGUE;
    50001 NotAuthorized "InvalidResource: the resource is disabled or does not exist" CATALOGUE;
    // -- the app's own credential --------------------------------------------------------
    70002 CredentialRejected "InvalidClient: client credentials are not valid" "catalogue; microsoft.md §1.2";
    7000215 CredentialRejected "InvalidClientSecretProvided" "catalogue; microsoft.md §1.2";
    7000222 CredentialRejected "InvalidClientSecretExpiredKeysProvided" "catalogue; microsoft.md §1.2";
    7000218 CredentialRejected "The request needs client_assertion or client_secret" CATALOGUE;
    700024 CredentialRejected "Client assertion is not within its valid time range" CATALOGUE;
    700027 CredentialRejected "Client assertion failed signature validation" CATALOGUE;
    50012 CredentialRejected "AuthenticationFailed: client assertion invalid" CATALOGUE;
    50013 CredentialRejected "InvalidAssertion: signature or lifetime" CATALOGUE;
    50027 CredentialRejected "InvalidJwtToken" CATALOGUE;
    // -- admin policy refuses the app or the member ---------------------------------------
    70001 AccessDenied "UnauthorizedClient: the application is disabled" CATALOGUE;
    7000112 AccessDenied "UnauthorizedClientApplicationDisabled" "catalogue; microsoft.md §1.2";
    50105 AccessDenied "EntitlementGrantsNotFound: the member is not assigned to the app" "catalogue; microsoft.md §1.2";
    53000 AccessDenied "DeviceNotCompliant (Conditional Access)" CATALOGUE;
    53001 AccessDenied "DeviceNotDomainJoined (Conditional Access)" CATALOGUE;
    53002 AccessDenied "ApplicationUsedIsNotAnApprovedApp (Conditional Access)" CATALOGUE;
    53003 AccessDenied "BlockedByConditionalAccess" "catalogue; microsoft.md §1.2";
    53004 AccessDenied "ProofUpBlockedDueToRisk" CATALOGUE;
    53011 AccessDenied "User blocked due to risk on home tenant" CATALOGUE;
    530032 AccessDenied "BlockedByConditionalAccessOnSecurityPolicy" "catalogue; microsoft.md §1.2";
    530035 AccessDenied "Access blocked by security defaults" CATALOGUE;
    50097 AccessDenied "DeviceAuthenticationRequired" CATALOGUE;
    50005 AccessDenied "DevicePolicyError: platform not supported by Conditional Access" CATALOGUE;
    50131 AccessDenied "ConditionalAccessFailed" CATALOGUE;
    // -- the member's account is gone -----------------------------------------------------
    50034 MailboxUnavailable "UserAccountNotFound" "catalogue; microsoft.md §1.2";
    50053 MailboxUnavailable "IdsLocked: the account is locked" "catalogue; microsoft.md §1.2";
    50057 MailboxUnavailable "UserDisabled" "catalogue; microsoft.md §1.2";
    50020 MailboxUnavailable "UserUnauthorized: the account does not exist in the tenant" "catalogue; microsoft.md §1.2";
    51004 MailboxUnavailable "UserAccountNotInDirectory" CATALOGUE;
    // -- throttling -----------------------------------------------------------------------
    90055 RateLimited "TenantThrottled" "catalogue; PROVIDERS.md";
    50196 RateLimited "LoopDetected" "catalogue; PROVIDERS.md";
    // -- the member's grant must be renewed (they sign in again) -------------------------
    70000 GrantInvalid "InvalidGrant: the refresh token is not valid" "catalogue; microsoft.md §1.2";
    70008 GrantInvalid "ExpiredOrRevokedGrant" "catalogue; microsoft.md §1.2";
    700082 GrantInvalid "ExpiredOrRevokedGrantInactiveToken: unused for 90 days" "catalogue; microsoft.md §1.2";
    700084 GrantInvalid "The refresh token has expired (single-page app lifetime)" CATALOGUE;
    700003 GrantInvalid "Device object not found: the device was deleted" CATALOGUE;
    70043 GrantInvalid "BadTokenDueToSignInFrequency (Conditional Access sign-in frequency)" "catalogue; microsoft.md §1.2";
    50173 GrantInvalid "FreshTokenNeeded: the password changed" "catalogue; microsoft.md §1.2";
    50133 GrantInvalid "SsoArtifactInvalidOrExpired: session ended (password change or expiry)" CATALOGUE;
    50055 GrantInvalid "InvalidPasswordExpiredPassword" CATALOGUE;
    50144 GrantInvalid "InvalidPasswordExpiredOnPremPassword" CATALOGUE;
    50135 GrantInvalid "PasswordChangeCompromisedPassword" CATALOGUE;
    50076 GrantInvalid "UserStrongAuthClientAuthNRequired: MFA required" "catalogue; microsoft.md §1.2";
    50079 GrantInvalid "UserStrongAuthEnrollmentRequiredInterrupt: MFA registration" "catalogue; microsoft.md §1.2";
    50072 GrantInvalid "UserStrongAuthEnrollmentRequiredInterrupt" CATALOGUE;
    50074 GrantInvalid "UserStrongAuthClientAuthNRequiredInterrupt" CATALOGUE;
    50078 GrantInvalid "UserStrongAuthExpired" CATALOGUE;
    50158 GrantInvalid "ExternalSecurityChallenge" CATALOGUE;
    50143 GrantInvalid "Session mismatch" CATALOGUE;
    54005 GrantInvalid "OAuth2 authorization code was already redeemed" CATALOGUE;
    70012 ProviderError "MsaServerError" CATALOGUE;
    50033 ProviderError "RetryableError: a transient error" CATALOGUE;
    90033 ProviderError "MsodsServiceUnavailable" CATALOGUE;
    // -- our own request is wrong (an engineer's fix; transient by the model) -------------
    70011 ProviderError "InvalidScope" CATALOGUE;
    90014 ProviderError "MissingRequiredField" CATALOGUE;
    50011 ProviderError "InvalidReplyTo: redirect URI mismatch" CATALOGUE;
    50194 ProviderError "Application not configured as multi-tenant" CATALOGUE;
}

/// MSAL's `suberror` values and the outcome they give when no code of the catalogue
/// decided (MSAL "handle errors and exceptions": `consent_required`, `basic_action`,
/// `additional_action`, `message_only`, `user_password_expired`, `bad_token`,
/// `client_mismatch`, `protection_policy_required`).
const SUBERRORS: &[(&str, Outcome)] = &[
    ("consent_required", Outcome::NotAuthorized),
    ("basic_action", Outcome::GrantInvalid),
    ("additional_action", Outcome::GrantInvalid),
    ("message_only", Outcome::GrantInvalid),
    ("user_password_expired", Outcome::GrantInvalid),
    ("bad_token", Outcome::GrantInvalid),
    ("client_mismatch", Outcome::CredentialRejected),
    ("protection_policy_required", Outcome::AccessDenied),
];

/// The catalogue row of `code`, if any.
pub fn entra_code(code: u64) -> Option<&'static EntraCode> {
    ENTRA_CODES.iter().find(|row| row.code == code)
}

/// Whether an answer was decided by a row of the catalogue or a known `error`/`suberror`
/// (`false`: the fallback guessed, and the connector logs the whole body to add a row).
pub fn token_error_known(body: &TokenErrorBody) -> bool {
    body.error_codes
        .iter()
        .any(|code| entra_code(*code).is_some())
        || body
            .suberror
            .as_deref()
            .is_some_and(|sub| SUBERRORS.iter().any(|(s, _)| s.eq_ignore_ascii_case(sub)))
        || matches!(
            body.error.to_ascii_lowercase().as_str(),
            "invalid_client" | "deleted_client" | "invalid_grant" | "interaction_required"
        )
}

/// The outcome of a token-endpoint error answer. `body` is `None` when the answer was not
/// the documented envelope. The first code of `error_codes` the catalogue knows decides;
/// then the `suberror`; then the `error` class.
pub fn classify_token_error(status: u16, body: Option<&TokenErrorBody>) -> Outcome {
    let Some(body) = body else {
        return if status == 429 {
            Outcome::RateLimited
        } else {
            Outcome::ProviderError
        };
    };
    if let Some(row) = body.error_codes.iter().find_map(|code| entra_code(*code)) {
        return row.outcome;
    }
    if let Some(sub) = &body.suberror
        && let Some((_, outcome)) = SUBERRORS.iter().find(|(s, _)| s.eq_ignore_ascii_case(sub))
    {
        return *outcome;
    }
    if status == 429 {
        return Outcome::RateLimited;
    }
    match body.error.to_ascii_lowercase().as_str() {
        "invalid_client" | "deleted_client" => Outcome::CredentialRejected,
        // providers/microsoft.md §1.2 fallback: an `invalid_grant` with an unknown code
        // still says the member's grant no longer works.
        "invalid_grant" | "interaction_required" => Outcome::GrantInvalid,
        // `temporarily_unavailable`, `server_error`, 5xx, `invalid_request`,
        // `invalid_scope`, `unsupported_grant_type`, and anything not listed.
        _ => Outcome::ProviderError,
    }
}

// ---- Graph ----------------------------------------------------------------------------

/// The parts of a Graph error envelope the mapping reads (providers/microsoft.md §2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphErrorInfo {
    /// `error.code` first, then every nested `innerError` / `innererror` code, outermost
    /// first (Microsoft: use the most specific code you understand).
    pub codes: Vec<String>,
    /// `error.message`.
    pub message: String,
    /// `innerError.request-id`, when the body carries one.
    pub request_id: Option<String>,
}

/// Inner errors nest; this many levels are read (the rest is ignored, never a stack walk).
const MAX_INNER_DEPTH: usize = 8;

impl GraphErrorInfo {
    /// Parses `{"error": {"code", "message", "innerError"|"innererror": {…}}}`; `None`
    /// when the body is not that envelope.
    pub fn parse(body: &[u8]) -> Option<GraphErrorInfo> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let error = value.get("error")?.as_object()?;
        let text = |object: &serde_json::Map<String, serde_json::Value>, key: &str| {
            object
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let mut info = GraphErrorInfo {
            codes: Vec::new(),
            message: text(error, "message").unwrap_or_default(),
            request_id: None,
        };
        info.codes.extend(text(error, "code"));
        let mut inner = inner_of(error);
        for _ in 0..MAX_INNER_DEPTH {
            let Some(object) = inner else { break };
            info.codes.extend(text(object, "code"));
            if info.request_id.is_none() {
                info.request_id = text(object, "request-id");
            }
            inner = inner_of(object);
        }
        if info.codes.is_empty() && info.message.is_empty() {
            return None;
        }
        Some(info)
    }

    fn has_rule(&self, rule: GraphRule) -> bool {
        self.codes
            .iter()
            .any(|code| graph_code(code).is_some_and(|row| row.rule == rule))
    }

    /// The code worth recording: the top-level one (inner codes like `"429"` add nothing).
    pub fn code(&self) -> Option<&str> {
        self.codes.first().map(String::as_str)
    }
}

fn inner_of(
    object: &serde_json::Map<String, serde_json::Value>,
) -> Option<&serde_json::Map<String, serde_json::Value>> {
    object
        .get("innerError")
        .or_else(|| object.get("innererror"))
        .and_then(serde_json::Value::as_object)
}

/// What to do with a Graph error answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphVerdict {
    /// The delta cursor is gone: drop it and run a full pass in the same attempt.
    Resync,
    /// The access token was refused (401): get a new one and retry once.
    RenewToken,
    /// The attempt ends with this outcome.
    Fail(Outcome),
}

impl GraphVerdict {
    /// The log field's value: `resync`, `renew_token` or the outcome (`mailbox_unavailable`).
    pub const fn as_str(self) -> &'static str {
        match self {
            GraphVerdict::Resync => "resync",
            GraphVerdict::RenewToken => "renew_token",
            GraphVerdict::Fail(outcome) => outcome.as_str(),
        }
    }
}

/// What one Graph error `code` says, by STATUS_MODEL.md's outcome definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphRule {
    /// The delta cursor is gone (any 4xx): a full pass in the same attempt.
    Resync,
    /// Throttling, whatever the status.
    RateLimited,
    /// The app lacks the permission (403).
    NotAuthorized,
    /// A 403 whose meaning depends on the token: the permission is missing
    /// (`not_authorized`) unless the token holds it, then an admin's policy refuses this
    /// mailbox (`access_denied`).
    PermissionOrPolicy,
    /// An admin's policy refuses the member (403).
    AccessDenied,
    /// The member has no usable mailbox (any 4xx).
    Mailbox,
    /// The provider's failure or our own bad request: transient by the model, and known
    /// (not logged as an answer no row knows).
    ProviderError,
}

/// One Graph error code and what it says.
pub struct GraphCode {
    pub code: &'static str,
    pub rule: GraphRule,
    pub source: &'static str,
}

const GRAPH_REF: &str = "Graph error responses reference (learn.microsoft.com/graph/errors)";

macro_rules! graph_codes {
    ($($code:literal $rule:ident $source:expr;)*) => {
        /// Graph's error codes for mail, calendar and users, mapped whole (issue 21 §4).
        /// Codes are compared without case (Graph spells some both ways); the top-level
        /// `code` and every nested `innerError` code are read.
        pub const GRAPH_CODES: &[GraphCode] = &[
            $(GraphCode { code: $code, rule: GraphRule::$rule, source: $source },)*
        ];
    };
}

graph_codes! {
    // -- the delta cursor is gone ---------------------------------------------------------
    "SyncStateNotFound" Resync "microsoft.md §2.2, §3 (delta: 410 with this code)";
    "resyncRequired" Resync GRAPH_REF;
    "SyncStateInvalid" Resync "microsoft.md §3";
    // -- throttling -----------------------------------------------------------------------
    "TooManyRequests" RateLimited "microsoft.md §2.2; Graph throttling guidance";
    "ApplicationThrottled" RateLimited "microsoft.md §2.2 (\"over its MailboxConcurrency limit\")";
    "activityLimitReached" RateLimited GRAPH_REF;
    "ErrorServerBusy" RateLimited "Exchange throttling (EWS ErrorServerBusy, BackOffMilliseconds)";
    "ErrorExceededConnectionCount" RateLimited "Exchange throttling policies (concurrent connections)";
    "ErrorTooManyObjectsOpened" RateLimited "Exchange throttling policies";
    // -- consent or permission ------------------------------------------------------------
    "Authorization_RequestDenied" NotAuthorized "microsoft.md §2.2 (\"Insufficient privileges to complete the operation.\")";
    "Authorization_IdentityNotFound" NotAuthorized "\"The identity of the calling application could not be established.\" (app not in the tenant; msgraph-sdk-dotnet issues)";
    "accessDenied" PermissionOrPolicy GRAPH_REF;
    "ErrorAccessDenied" PermissionOrPolicy "microsoft.md §2.2, §6";
    // -- an admin's policy ----------------------------------------------------------------
    "insufficient_claims" AccessDenied "Graph error responses reference, 403 (Conditional Access on the resource)";
    "InsufficientClaims" AccessDenied "same, Graph's code spelling";
    // -- the member has no usable mailbox ---------------------------------------------------
    "MailboxNotEnabledForRESTAPI" Mailbox "microsoft.md §2.2 (inactive, soft-deleted or on-premises)";
    "MailboxNotSupportedForRESTAPI" Mailbox "microsoft.md §2.2";
    "ErrorInvalidUser" Mailbox "microsoft.md §2.2";
    "ErrorNonExistentMailbox" Mailbox "microsoft.md §2.2";
    "Request_ResourceNotFound" Mailbox "microsoft.md §2.2 (users/{id} not found)";
    "ResourceNotFound" Mailbox "\"Resource could not be discovered.\" on users/{id}/messages for a user without a mailbox: microsoft-graph-docs#4598, #5143 (Microsoft: 'a users mailbox that does not exist')";
    "ErrorMailboxIsNotActive" Mailbox "Exchange response codes";
    // -- Graph or Exchange failed (transient) -------------------------------------------------
    "generalException" ProviderError "microsoft.md §2.2; Graph error reference";
    "serviceNotAvailable" ProviderError GRAPH_REF;
    "ServiceUnavailable" ProviderError "microsoft.md §2.2";
    "UnknownError" ProviderError "503/504 with an empty message on calendar delta: microsoft-graph-docs-contrib#4562, microsoft-graph-docs#6499";
    "InternalServerError" ProviderError "\"Error while processing response.\" on delta: msgraph-beta-sdk-dotnet#34";
    "Proxy_InternalServerError" ProviderError "503 \"Failure in forwarding request.\" on delta: microsoft-graph-docs#6493";
    "ErrorInternalServerError" ProviderError "Exchange response codes";
    "ErrorInternalServerTransientError" ProviderError "Exchange response codes";
    "ErrorTimeoutExpired" ProviderError "Exchange response codes";
    "ErrorMailboxStoreUnavailable" ProviderError "Exchange response codes (mailbox database unavailable)";
    "ErrorMailboxMoveInProgress" ProviderError "Exchange response codes (mailbox move)";
    "ErrorConnectionFailed" ProviderError "Exchange response codes";
    "Directory_ConcurrencyViolation" ProviderError "Graph error responses reference, 409 (repeat after a delay)";
    // -- our own request is wrong (an engineer's fix; transient by the model) -----------------
    "invalidRequest" ProviderError GRAPH_REF;
    "BadRequest" ProviderError "\"/me request is only valid with delegated authentication flow.\"";
    "Request_BadRequest" ProviderError "Graph directory errors";
    "Request_UnsupportedQuery" ProviderError "Graph directory errors ($filter/$orderby not supported)";
    "ErrorInvalidUrlQuery" ProviderError "Exchange response codes";
    "ErrorInvalidIdMalformed" ProviderError "Exchange response codes";
    "invalidRange" ProviderError GRAPH_REF;
    "notSupported" ProviderError GRAPH_REF;
    "notAllowed" ProviderError GRAPH_REF;
    "itemNotFound" ProviderError GRAPH_REF;
    "ErrorItemNotFound" ProviderError "\"The specified object was not found in the store.\"";
    "InvalidAuthenticationToken" ProviderError "microsoft.md §2.2 (decided by the 401 first: renew once)";
    "unauthenticated" ProviderError "Graph error reference (decided by the 401 first)";
}

/// The catalogue row of a Graph `code` (compared without case).
pub fn graph_code(code: &str) -> Option<&'static GraphCode> {
    GRAPH_CODES
        .iter()
        .find(|row| row.code.eq_ignore_ascii_case(code))
}

/// Whether an error answer carries a code the catalogue knows (`false`: the fallback
/// guessed, and the connector logs the whole body so that a row can be added).
pub fn graph_error_known(error: &GraphErrorInfo) -> bool {
    error.codes.iter().any(|code| graph_code(code).is_some())
}

/// The application-access-policy denial has no code of its own (microsoft.md §6).
const ACCESS_POLICY_TEXT: &[&str] = &["AccessPolicy", "[RAOP]", "Access to OData is disabled"];

/// The verdict on a non-2xx Graph answer. `token_grants` says whether the access token's
/// `roles` (app) or `scp` (delegated) claim holds the permission the call needs; `None`
/// when the token could not be read. The status decides first where it alone says enough
/// (410, 429 and 509 Bandwidth Limit Exceeded, 401); then the codes, the rules in this
/// order: resync, throttling, policy text, permission, policy, mailbox.
pub fn classify_graph_error(
    status: u16,
    error: Option<&GraphErrorInfo>,
    token_grants: Option<bool>,
) -> GraphVerdict {
    let empty = GraphErrorInfo::default();
    let error = error.unwrap_or(&empty);
    let client_error = (400..500).contains(&status);
    if status == 410 || (client_error && error.has_rule(GraphRule::Resync)) {
        return GraphVerdict::Resync;
    }
    if status == 429 || status == 509 || error.has_rule(GraphRule::RateLimited) {
        return GraphVerdict::Fail(Outcome::RateLimited);
    }
    if status == 401 {
        return GraphVerdict::RenewToken;
    }
    if status == 403 {
        let message = error.message.to_ascii_lowercase();
        if ACCESS_POLICY_TEXT
            .iter()
            .any(|text| message.contains(&text.to_ascii_lowercase()))
        {
            return GraphVerdict::Fail(Outcome::AccessDenied);
        }
        if error.has_rule(GraphRule::NotAuthorized) {
            return GraphVerdict::Fail(Outcome::NotAuthorized);
        }
        if error.has_rule(GraphRule::PermissionOrPolicy) {
            return GraphVerdict::Fail(if token_grants == Some(true) {
                Outcome::AccessDenied
            } else {
                Outcome::NotAuthorized
            });
        }
        if error.has_rule(GraphRule::AccessDenied) || message.contains("insufficient_claims") {
            return GraphVerdict::Fail(Outcome::AccessDenied);
        }
    }
    if client_error && error.has_rule(GraphRule::Mailbox) {
        return GraphVerdict::Fail(Outcome::MailboxUnavailable);
    }
    // 5xx, the ProviderError rows, and every answer not listed.
    GraphVerdict::Fail(Outcome::ProviderError)
}

/// What a Graph throttling answer (`429`, or `503` with `Retry-After`) holds back
/// (docs/throttling.md, Microsoft rows). Outlook's limits (10,000 requests per 10
/// minutes, 4 concurrent, `ApplicationThrottled` "MailboxConcurrency") are per app and
/// mailbox, mail and calendar alike; the directory's (`/users`) are per tenant and app.
/// A message that names its scope decides over the endpoint.
pub fn graph_throttle_scope(need: Need, error: Option<&GraphErrorInfo>) -> ThrottleScope {
    let message = error
        .map(|e| e.message.to_ascii_lowercase())
        .unwrap_or_default();
    if message.contains("mailbox") {
        return ThrottleScope::Mailbox;
    }
    if message.contains("tenant") {
        return ThrottleScope::Tenant;
    }
    match need {
        Need::Users => ThrottleScope::Tenant,
        Need::Mail | Need::Calendar => ThrottleScope::Mailbox,
    }
}

/// The identity platform throttles token requests per tenant and app (AADSTS90055,
/// 50196; PROVIDERS.md): a token endpoint's `429` holds back the company.
pub const fn token_throttle_scope() -> ThrottleScope {
    ThrottleScope::Tenant
}

/// The permission a call needs, read from the token's `roles` or `scp` claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Mail,
    Calendar,
    Users,
}

impl Need {
    /// Permissions any one of which allows the call (Graph permissions reference).
    pub fn permissions(self) -> &'static [&'static str] {
        match self {
            Need::Mail => &[
                "Mail.Read",
                "Mail.ReadBasic",
                "Mail.ReadBasic.All",
                "Mail.ReadWrite",
            ],
            Need::Calendar => &[
                "Calendars.Read",
                "Calendars.ReadBasic",
                "Calendars.ReadWrite",
            ],
            Need::Users => &[
                "User.Read.All",
                "User.ReadBasic.All",
                "User.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
        }
    }

    /// Whether `held` (roles or scopes) includes one of the needed permissions.
    pub fn granted_by<'a>(self, held: impl IntoIterator<Item = &'a str>) -> bool {
        held.into_iter().any(|permission| {
            self.permissions()
                .iter()
                .any(|needed| needed.eq_ignore_ascii_case(permission))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    #[track_caller]
    fn check_token(status: u16, body: &str, expected: Outcome) {
        let parsed = TokenErrorBody::parse(body.as_bytes());
        assert_eq!(
            classify_token_error(status, parsed.as_ref()),
            expected,
            "{body}"
        );
    }

    fn entra(error: &str, code: u64, suberror: Option<&str>) -> String {
        let mut body = serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: text\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: 2026-11-29 10:00:00Z"),
            "error_codes": [code],
            "trace_id": "t",
            "correlation_id": "c",
        });
        if let Some(suberror) = suberror {
            body["suberror"] = suberror.into();
        }
        body.to_string()
    }

    /// One row per Entra answer of PROVIDERS.md's table; the trailing comment names the
    /// providers/microsoft.md §1.2 row it mirrors.
    #[test]
    fn token_errors() {
        let rows: &[(u16, &str, u64, Option<&str>, Outcome)] = &[
            (
                400,
                "invalid_grant",
                65001,
                Some("consent_required"),
                NotAuthorized,
            ), // consent missing
            (400, "invalid_grant", 90094, None, NotAuthorized), // admin consent required
            (400, "unauthorized_client", 700016, None, NotAuthorized), // app not in tenant
            (
                400,
                "invalid_grant",
                53003,
                Some("message_only"),
                AccessDenied,
            ), // conditional access
            (400, "interaction_required", 53003, None, AccessDenied), // CA, other capture
            (400, "invalid_grant", 530032, None, AccessDenied), // security policy
            (400, "invalid_grant", 50105, None, AccessDenied),  // assignment required
            (400, "unauthorized_client", 7000112, None, AccessDenied), // app disabled
            (
                400,
                "invalid_grant",
                700082,
                Some("bad_token"),
                GrantInvalid,
            ), // inactive refresh token
            (400, "invalid_grant", 70008, Some("bad_token"), GrantInvalid), // expired or revoked
            (400, "invalid_grant", 50173, Some("bad_token"), GrantInvalid), // password changed
            (400, "invalid_grant", 70000, None, GrantInvalid),  // invalid refresh token
            (
                400,
                "invalid_grant",
                50076,
                Some("basic_action"),
                GrantInvalid,
            ), // MFA required
            (
                400,
                "interaction_required",
                50079,
                Some("basic_action"),
                GrantInvalid,
            ), // MFA registration
            (400, "invalid_grant", 50057, None, MailboxUnavailable), // user disabled
            (400, "invalid_grant", 50053, None, MailboxUnavailable), // user locked
            (400, "invalid_grant", 50034, None, MailboxUnavailable), // user not in tenant
            (401, "invalid_client", 7000215, None, CredentialRejected), // wrong secret
            (401, "invalid_client", 7000222, None, CredentialRejected), // secret expired
            (401, "invalid_client", 70002, None, CredentialRejected), // generic client auth
            (401, "invalid_client", 7000218, None, CredentialRejected), // no secret sent
            (429, "temporarily_unavailable", 90055, None, RateLimited), // tenant throttled
            (400, "temporarily_unavailable", 50196, None, RateLimited), // loop detected
            (503, "temporarily_unavailable", 50033, None, ProviderError), // transient STS
            (400, "invalid_request", 90002, None, CredentialRejected), // tenant not found
            (400, "invalid_scope", 1002012, None, ProviderError), // our scope
            (400, "invalid_grant", 54005, None, GrantInvalid),  // code redeemed (fallback)
            (400, "unsupported_grant_type", 70003, None, ProviderError),
        ];
        for (status, error, code, suberror, expected) in rows {
            check_token(*status, &entra(error, *code, *suberror), *expected);
        }
        // Codes are read without case; `deleted_client` is a credential problem anywhere.
        check_token(401, r#"{"error":"INVALID_CLIENT"}"#, CredentialRejected);
        check_token(401, r#"{"error":"deleted_client"}"#, CredentialRejected);
        check_token(
            400,
            r#"{"error":"invalid_grant","suberror":"CONSENT_REQUIRED"}"#,
            NotAuthorized,
        );
        // Malformed bodies never panic.
        check_token(400, "", ProviderError);
        check_token(400, "{\"error\":", ProviderError);
        check_token(400, "[]", ProviderError);
        check_token(502, "<html>bad gateway</html>", ProviderError);
        check_token(429, "", RateLimited);
    }

    /// The catalogue, whole: every row classifies to its outcome whatever `error` class
    /// and `suberror` come with it (the code is the most specific), no code is listed
    /// twice, every row names its source.
    #[test]
    fn every_catalogue_code_gives_its_outcome() {
        let mut seen = std::collections::BTreeSet::new();
        for row in ENTRA_CODES {
            assert!(seen.insert(row.code), "AADSTS{} listed twice", row.code);
            assert!(
                !row.source.is_empty() && !row.name.is_empty(),
                "AADSTS{}",
                row.code
            );
            for (error, suberror) in [
                ("invalid_grant", None),
                ("interaction_required", Some("basic_action")),
                ("invalid_request", None),
            ] {
                let body = entra(error, row.code, suberror);
                let parsed = TokenErrorBody::parse(body.as_bytes()).expect("parses");
                assert!(token_error_known(&parsed));
                assert_eq!(
                    classify_token_error(400, Some(&parsed)),
                    row.outcome,
                    "AADSTS{} {} ({error})",
                    row.code,
                    row.name
                );
            }
        }
        assert!(ENTRA_CODES.len() >= 60, "{} codes", ENTRA_CODES.len());
        // A code the catalogue does not know: the suberror, then the class decide, and the
        // answer is flagged for the log.
        let unknown = TokenErrorBody::parse(entra("invalid_request", 99999, None).as_bytes())
            .expect("parses");
        assert!(!token_error_known(&unknown));
        assert_eq!(classify_token_error(400, Some(&unknown)), ProviderError);
        let unknown_sub = TokenErrorBody::parse(
            entra("invalid_request", 99999, Some("client_mismatch")).as_bytes(),
        )
        .expect("parses");
        assert_eq!(
            classify_token_error(400, Some(&unknown_sub)),
            CredentialRejected
        );
    }

    #[test]
    fn token_summary_drops_trace_lines() {
        let body =
            TokenErrorBody::parse(entra("invalid_grant", 70000, None).as_bytes()).expect("parses");
        assert_eq!(body.summary(), "AADSTS70000: text");
        let spaced = TokenErrorBody {
            error_description: "AADSTS1: x Trace ID: t Correlation ID: c".into(),
            ..TokenErrorBody::default()
        };
        assert_eq!(spaced.summary(), "AADSTS1: x");
    }

    #[track_caller]
    fn check_graph(status: u16, body: &str, grants: Option<bool>, expected: GraphVerdict) {
        let info = GraphErrorInfo::parse(body.as_bytes());
        assert_eq!(
            classify_graph_error(status, info.as_ref(), grants),
            expected,
            "{status} {body}"
        );
    }

    fn graph(code: &str, message: &str) -> String {
        serde_json::json!({"error": {"code": code, "message": message,
            "innerError": {"date": "2026-11-29T10:00:00", "request-id": "r", "client-request-id": "c"}}})
        .to_string()
    }

    /// One row per throttling answer: what its pause holds back (docs/throttling.md).
    #[test]
    fn graph_throttle_scopes() {
        use ThrottleScope::{Mailbox, Tenant};
        let rows: Vec<(Need, String, ThrottleScope)> = vec![
            // microsoft.md §2.2 (magodo/terraform-provider-outlook#21, alcionai/corso#3695,
            // Microsoft Q&A 2143058): the Outlook limits are per app and mailbox.
            (
                Need::Mail,
                graph(
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                ),
                Mailbox,
            ),
            (
                Need::Calendar,
                graph(
                    "ApplicationThrottled",
                    "Application is over its RequestRate limit.",
                ),
                Mailbox,
            ),
            (
                Need::Mail,
                graph(
                    "ApplicationThrottled",
                    "Application is over its IncomingBytes limit.",
                ),
                Mailbox,
            ),
            // concepts/throttling.md's sample on a mailbox endpoint: Outlook's limit.
            (
                Need::Calendar,
                graph("TooManyRequests", "Please retry again later."),
                Mailbox,
            ),
            // The same on /users: the directory limits per tenant and app.
            (
                Need::Users,
                graph("TooManyRequests", "Please retry again later."),
                Tenant,
            ),
            // A message that names the tenant decides over the endpoint.
            (
                Need::Mail,
                graph(
                    "TooManyRequests",
                    "The tenant has exceeded its request limit.",
                ),
                Tenant,
            ),
            // 503 ServiceUnavailable names nothing: the mailbox, the narrowest.
            (
                Need::Mail,
                graph("ServiceUnavailable", "Service unavailable"),
                Mailbox,
            ),
            // No envelope at all.
            (Need::Users, "Too Many Requests".to_owned(), Tenant),
        ];
        for (need, body, want) in rows {
            let info = GraphErrorInfo::parse(body.as_bytes());
            assert_eq!(
                graph_throttle_scope(need, info.as_ref()),
                want,
                "{need:?} {body}"
            );
        }
        assert_eq!(token_throttle_scope(), Tenant);
    }

    /// One row per Graph answer of PROVIDERS.md's table; comments name the
    /// providers/microsoft.md §2.2 / §3 / §6 row.
    #[test]
    fn graph_errors() {
        use GraphVerdict::{Fail, RenewToken, Resync};
        let policy = r#"{"error":{"code":"ErrorAccessDenied","message":"Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings."}}"#;
        let rows: Vec<(u16, String, Option<bool>, GraphVerdict)> = vec![
            // Graph errors reference (issue 21 §4): the documented top-level spellings.
            (403, graph("accessDenied", "The caller doesn't have permission to perform the action."), Some(true), Fail(AccessDenied)),
            (403, graph("accessDenied", "The caller doesn't have permission to perform the action."), Some(false), Fail(NotAuthorized)),
            (429, graph("activityLimitReached", "The app or user has been throttled."), None, Fail(RateLimited)),
            (403, graph("activityLimitReached", "The app or user has been throttled."), None, Fail(RateLimited)),
            // Exchange: the mailbox is moving or its store is down (transient).
            (503, graph("ErrorMailboxStoreUnavailable", "The mailbox database is temporarily unavailable."), None, Fail(ProviderError)),
            (400, graph("ErrorMailboxMoveInProgress", "Mailbox move in progress. Try again later."), None, Fail(ProviderError)),
            // §2.2 scope/app-role missing: the token lacks the permission
            (403, graph("ErrorAccessDenied", "Access is denied. Check credentials and try again."), Some(false), Fail(NotAuthorized)),
            // same body, unreadable token: the documented fallback (403 → NA)
            (403, graph("ErrorAccessDenied", "Access is denied. Check credentials and try again."), None, Fail(NotAuthorized)),
            // §6 RBAC scoping: the token has the permission, this mailbox is refused
            (403, graph("ErrorAccessDenied", "Access is denied. Check credentials and try again."), Some(true), Fail(AccessDenied)),
            // §6 application access policy, current text (no innerError) and documented text
            (403, policy.to_owned(), Some(false), Fail(AccessDenied)),
            (403, graph("ErrorAccessDenied", "Access to OData is disabled."), Some(false), Fail(AccessDenied)),
            // §2.2 directory read permission missing
            (403, graph("Authorization_RequestDenied", "Insufficient privileges to complete the operation."), Some(true), Fail(NotAuthorized)),
            // §2.2 member-level 404s
            (404, graph("MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise."), None, Fail(MailboxUnavailable)),
            (404, graph("MailboxNotSupportedForRESTAPI", "x"), None, Fail(MailboxUnavailable)),
            (404, graph("ErrorInvalidUser", "The requested user 'a@b' is invalid."), None, Fail(MailboxUnavailable)),
            (404, graph("ErrorNonExistentMailbox", "x"), None, Fail(MailboxUnavailable)),
            (404, graph("Request_ResourceNotFound", "x"), None, Fail(MailboxUnavailable)),
            (404, graph("mailboxnotenabledforrestapi", "x"), None, Fail(MailboxUnavailable)),
            // §2.2 / §3 delta token expired: 410, or any 4xx with the codes
            (410, graph("SyncStateNotFound", "The sync state generation is not found"), None, Resync),
            (400, graph("SyncStateNotFound", "x"), None, Resync),
            (410, graph("resyncRequired", "x"), None, Resync),
            (400, graph("SyncStateInvalid", "x"), None, Resync),
            (404, graph("syncStateNotFound", "x"), None, Resync),
            (410, String::new(), None, Resync),
            // §2.2 throttling
            (429, r#"{"error":{"code":"TooManyRequests","message":"Please retry again later.","innerError":{"code":"429","message":"Please retry after","status":"429"}}}"#.to_owned(), None, Fail(RateLimited)),
            (429, graph("ApplicationThrottled", "Application is over its MailboxConcurrency limit."), None, Fail(RateLimited)),
            (429, String::new(), None, Fail(RateLimited)),
            (503, graph("ApplicationThrottled", "x"), None, Fail(RateLimited)),
            // §2.2 token refused: renew once
            (401, graph("InvalidAuthenticationToken", "Access token has expired or is not yet valid."), None, RenewToken),
            // §2.2 server side
            (500, graph("generalException", "An unspecified error has occurred."), None, Fail(ProviderError)),
            (503, graph("ServiceUnavailable", "Service Unavailable"), None, Fail(ProviderError)),
            (504, String::new(), None, Fail(ProviderError)),
            // not listed: provider_error
            (400, graph("BadRequest", "/me request is only valid with delegated authentication flow."), None, Fail(ProviderError)),
            (404, graph("ErrorItemNotFound", "The specified object was not found in the store."), None, Fail(ProviderError)),
            (403, graph("SomethingElse", "x"), None, Fail(ProviderError)),
            (500, "{\"error\":".to_owned(), None, Fail(ProviderError)),
        ];
        for (status, body, grants, expected) in &rows {
            check_graph(*status, body, *grants, *expected);
        }
    }

    /// The Graph catalogue, whole: no code twice (without case), each with its source,
    /// and each gives its rule's verdict at the status Graph sends it with.
    #[test]
    fn every_graph_code_gives_its_rule() {
        use GraphVerdict::{Fail, RenewToken, Resync};
        let mut seen = std::collections::BTreeSet::new();
        for row in GRAPH_CODES {
            assert!(
                seen.insert(row.code.to_ascii_lowercase()),
                "{} twice",
                row.code
            );
            assert!(!row.source.is_empty(), "{}", row.code);
            let error = GraphErrorInfo {
                codes: vec![row.code.to_owned()],
                message: "m".to_owned(),
                request_id: None,
            };
            assert!(graph_error_known(&error));
            let (status, expected) = match row.rule {
                GraphRule::Resync => (400, Resync),
                GraphRule::RateLimited => (503, Fail(RateLimited)),
                GraphRule::NotAuthorized => (403, Fail(NotAuthorized)),
                GraphRule::PermissionOrPolicy => (403, Fail(AccessDenied)),
                GraphRule::AccessDenied => (403, Fail(AccessDenied)),
                GraphRule::Mailbox => (404, Fail(MailboxUnavailable)),
                GraphRule::ProviderError
                    if row.code.eq_ignore_ascii_case("unauthenticated")
                        || row.code == "InvalidAuthenticationToken" =>
                {
                    (401, RenewToken)
                }
                GraphRule::ProviderError => (400, Fail(ProviderError)),
            };
            assert_eq!(
                classify_graph_error(status, Some(&error), Some(true)),
                expected,
                "{status} {}",
                row.code
            );
        }
        assert!(GRAPH_CODES.len() >= 40, "{}", GRAPH_CODES.len());
        let unknown = GraphErrorInfo {
            codes: vec!["SomethingNew".to_owned()],
            ..GraphErrorInfo::default()
        };
        assert!(!graph_error_known(&unknown));
        assert_eq!(
            classify_graph_error(403, Some(&unknown), Some(true)),
            Fail(ProviderError)
        );
        // 509 Bandwidth Limit Exceeded is throttling whatever the body.
        assert_eq!(classify_graph_error(509, None, None), Fail(RateLimited));
    }

    #[test]
    fn graph_envelope_reads_both_spellings_and_nesting() {
        let lower = r#"{"error":{"code":"Outer","message":"m","innererror":{"code":"SyncStateNotFound","request-id":"r1"}}}"#;
        let info = GraphErrorInfo::parse(lower.as_bytes()).expect("parses");
        assert_eq!(info.codes, ["Outer", "SyncStateNotFound"]);
        assert_eq!(info.request_id.as_deref(), Some("r1"));
        assert_eq!(
            classify_graph_error(400, Some(&info), None),
            GraphVerdict::Resync
        );
        let nested = r#"{"error":{"code":"a","innerError":{"innererror":{"innerError":{"code":"MailboxNotEnabledForRESTAPI"}}}}}"#;
        let info = GraphErrorInfo::parse(nested.as_bytes()).expect("parses");
        assert_eq!(
            classify_graph_error(404, Some(&info), None),
            GraphVerdict::Fail(MailboxUnavailable)
        );
        for bad in [
            "",
            "null",
            "[]",
            r#"{"error":"x"}"#,
            r#"{"error":{}}"#,
            "{\"error\":{\"code\":1}",
        ] {
            assert_eq!(GraphErrorInfo::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn permissions_compare_without_case() {
        assert!(Need::Mail.granted_by(["User.Read.All", "mail.read"]));
        assert!(!Need::Mail.granted_by(["Calendars.Read"]));
        assert!(Need::Calendar.granted_by(["Calendars.Read"]));
        assert!(Need::Users.granted_by(["Directory.Read.All"]));
        assert!(!Need::Users.granted_by([]));
    }
}
