//! The pure mapping from a Google answer to an outcome: PROVIDERS.md's answer → outcome
//! table, Google rows, in one place.
//!
//! No IO and no clock: it takes the HTTP status and the parsed error body and returns a
//! [`Verdict`], so every row is unit-tested without a server. Google answers 403 for rate
//! limits and for permission problems alike, so 403s are told apart by reason
//! (`errors[0].reason`, then ErrorInfo `details[].reason`, then `status`), never by status.

use datacap_connector::ThrottleScope;
use datacap_core::Outcome;

use crate::models::{ApiError, TokenError};

/// Which grant a token request used; the same `invalid_grant` means different things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// JWT-bearer assertion of the service account (domain-wide delegation).
    Delegation,
    /// The member's refresh token.
    Refresh,
    /// An authorization code (the connect flow).
    Code,
}

/// The API call an answer belongs to (a 404 means different things per call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    GmailProfile,
    GmailMessagesList,
    GmailMessageGet,
    GmailHistory,
    CalendarEvents,
    DirectoryUsers,
}

impl Api {
    /// The name used in logs.
    pub const fn name(self) -> &'static str {
        match self {
            Api::GmailProfile => "gmail.users.getProfile",
            Api::GmailMessagesList => "gmail.users.messages.list",
            Api::GmailMessageGet => "gmail.users.messages.get",
            Api::GmailHistory => "gmail.users.history.list",
            Api::CalendarEvents => "calendar.events.list",
            Api::DirectoryUsers => "directory.users.list",
        }
    }
}

/// What an API error answer means for the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The attempt ends with this outcome.
    Outcome(Outcome),
    /// The saved cursor is gone (Gmail `history.list` 404, Calendar 410): run a full pass.
    StaleCursor,
    /// One message vanished between listing and fetching (`messages.get` 404): skip it.
    Vanished,
    /// The access token was refused (401): refresh once and retry.
    Unauthenticated,
}

/// The outcome of a token endpoint error answer (providers/google.md §2, §3).
pub fn token_outcome(grant: Grant, http_status: u16, error: &TokenError) -> Outcome {
    let description = error.error_description.as_deref().unwrap_or_default();
    let code = error.error.as_str();
    if http_status == 429 {
        return Outcome::RateLimited;
    }
    match code {
        // PROVIDERS.md: "Google token 401 unauthorized_client (delegation not granted for
        // a scope)". The refresh grant's 400 `unauthorized_client` (token of another
        // client) is not listed, so it stays a provider_error.
        "unauthorized_client" if http_status == 401 => Outcome::NotAuthorized,
        // An admin's policy: Workspace API access control (admin_policy_enforced), an
        // app limited to its own organisation (org_internal), "Requested client not
        // authorized." (google.md §2, GAM token-error list).
        "admin_policy_enforced" | "org_internal" => Outcome::AccessDenied,
        "access_denied" if description.starts_with("Account restricted") => {
            Outcome::MailboxUnavailable
        }
        "access_denied" => Outcome::AccessDenied,
        // Google OAuth errors: the client was deleted or disabled in its project.
        "invalid_client" | "deleted_client" | "disabled_client" => Outcome::CredentialRejected,
        "invalid_grant" => invalid_grant(grant, description, error.error_subtype.as_deref()),
        _ => Outcome::ProviderError,
    }
}

fn invalid_grant(grant: Grant, description: &str, subtype: Option<&str>) -> Outcome {
    const MAILBOX: &[&str] = &[
        "Invalid email or User ID",
        "Not a valid email",
        "The account has been deleted",
        "Account has been deleted",
    ];
    const CREDENTIAL: &[&str] = &[
        "Invalid JWT Signature",
        "Invalid JWT: Token must be a short-lived token",
        "Invalid grant: account not found",
        // Not in PROVIDERS.md's table; google.md §2 lists both as the company credential
        // being unknown or gone, which is what credential_rejected means.
        "Invalid JWT: No valid verifier found for issuer",
        "Robot is disabled",
    ];
    let starts = |list: &[&str]| list.iter().any(|prefix| description.starts_with(prefix));
    match grant {
        Grant::Delegation if starts(MAILBOX) => Outcome::MailboxUnavailable,
        Grant::Delegation if starts(CREDENTIAL) => Outcome::CredentialRejected,
        Grant::Delegation => Outcome::ProviderError,
        // The member's account itself is gone ("Account has been deleted", google.md §2,
        // FlowCrypt/flowcrypt-browser#2269): no new grant brings it back.
        Grant::Refresh | Grant::Code if starts(MAILBOX) => Outcome::MailboxUnavailable,
        // Every other refresh/code `invalid_grant` ("Token has been expired or revoked.",
        // `invalid_rapt`, "Bad Request", a redeemed or malformed code) means the member's
        // grant is dead: they connect again.
        Grant::Refresh | Grant::Code => {
            let _ = subtype;
            Outcome::GrantInvalid
        }
    }
}

/// The verdict on an API error answer (providers/google.md §1, §4, §6, §8). `error` is
/// `None` when the body is not Google's envelope.
pub fn api_verdict(api: Api, http_status: u16, error: Option<&ApiError>) -> Verdict {
    let reason = error.and_then(ApiError::reason).unwrap_or_default();
    let message = error.and_then(ApiError::best_message).unwrap_or_default();

    // Cursors and vanished items: decided by call and status, not by reason.
    match (api, http_status) {
        (Api::GmailHistory, 404) => return Verdict::StaleCursor,
        (Api::GmailMessageGet, 404) => return Verdict::Vanished,
        (Api::CalendarEvents, 410)
            if matches!(reason, "fullSyncRequired" | "updatedMinTooLongAgo") =>
        {
            return Verdict::StaleCursor;
        }
        _ => {}
    }
    if http_status == 401 {
        return Verdict::Unauthenticated;
    }
    if http_status == 429 {
        return Verdict::Outcome(Outcome::RateLimited);
    }
    if http_status >= 500 {
        return Verdict::Outcome(Outcome::ProviderError);
    }
    // "Mail service not enabled" is the one failedPrecondition that says something about
    // the member; the bare "Precondition check failed." is Google's hiccup (google.md §4).
    if reason == "failedPrecondition" && message.starts_with("Mail service not enabled") {
        return Verdict::Outcome(Outcome::MailboxUnavailable);
    }
    // Every other reason by the catalogue; one no row knows is provider_error (transient),
    // and the session logs its body so that a row can be added.
    Verdict::Outcome(api_reason(reason).map_or(Outcome::ProviderError, |row| row.outcome))
}

/// One reason of Google's API error catalogue (the legacy `errors[].reason`, the
/// ErrorInfo `reason`, or the `status`) and the outcome its meaning gives by
/// STATUS_MODEL.md's definitions, for a 4xx (401, 429 and 5xx are decided by status first).
pub struct ApiReason {
    pub reason: &'static str,
    pub outcome: Outcome,
    pub source: &'static str,
}

macro_rules! api_reasons {
    ($($reason:literal $outcome:ident $source:literal;)*) => {
        /// Gmail, Calendar and Directory error reasons (issue 21 §4).
        pub const API_REASONS: &[ApiReason] = &[
            $(ApiReason { reason: $reason, outcome: Outcome::$outcome, source: $source },)*
        ];
    };
}

api_reasons! {
    // -- consent or scope missing ---------------------------------------------------------
    "insufficientPermissions" NotAuthorized "Gmail/Calendar handle-errors; google.md §1.1 (php-samples#123)";
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT" NotAuthorized "ErrorInfo reason; google.md §1.1";
    // -- an admin's policy refuses the member ---------------------------------------------
    "domainPolicy" AccessDenied "Gmail handle-errors (domain administrators disabled Gmail apps); google.md §4";
    "domainCannotUseApis" AccessDenied "Directory API common errors 403:domainCannotUseApis";
    // -- the member has no usable mailbox or calendar -------------------------------------
    "notACalendarUser" MailboxUnavailable "Calendar handle-errors; google.md §6";
    // -- throttling -----------------------------------------------------------------------
    "rateLimitExceeded" RateLimited "Gmail/Calendar handle-errors (403 or 429); google.md §4, §6";
    "userRateLimitExceeded" RateLimited "Gmail/Calendar handle-errors; google.md §4, §6";
    "dailyLimitExceeded" RateLimited "Gmail handle-errors; google.md §4";
    "quotaExceeded" RateLimited "Calendar usage limits; google.md §6";
    "RATE_LIMIT_EXCEEDED" RateLimited "ErrorInfo reason (a quota 403 whose status says PERMISSION_DENIED); google.md §1.1";
    "RESOURCE_EXHAUSTED" RateLimited "status of a 429; google.md §1.1";
    // -- our project's configuration or our own bug: provider_error, and known ------------
    "accessNotConfigured" ProviderError "API disabled in the project; google.md §4 (amd/gaia#2116)";
    "SERVICE_DISABLED" ProviderError "ErrorInfo reason of a disabled API; google.md §1.1";
    "forbidden" ProviderError "\"Delegation denied for …\" (our token on another mailbox); Directory 403 forbidden; google.md §4, §8";
    "failedPrecondition" ProviderError "bare \"Precondition check failed.\"; google.md §4";
    "FAILED_PRECONDITION" ProviderError "status of the same; google.md §1.1";
    "badRequest" ProviderError "Gmail handle-errors (bad query parameter); google.md §4";
    "invalid" ProviderError "Calendar invalid parameter (e.g. pageToken); Calendar handle-errors";
    "invalidArgument" ProviderError "Gmail \"Missing/invalid parameter: startHistoryId\"; google.md §4";
    "INVALID_ARGUMENT" ProviderError "status of a 400; google.md §1.1";
    "required" ProviderError "a required parameter missing (our bug); Calendar handle-errors";
    "timeRangeEmpty" ProviderError "Calendar \"The specified time range is empty.\"; google.md §6";
    "notFound" ProviderError "Calendar 404 on the member's calendar; Gmail 404 outside history/messages.get; google.md §4, §6";
    "NOT_FOUND" ProviderError "status of a 404; google.md §1.1";
    "deleted" ProviderError "Calendar 410 \"Resource has been deleted\"; google.md §6";
    "conditionNotMet" ProviderError "Calendar 412 \"Precondition Failed\"; google.md §6";
    "duplicate" ProviderError "Calendar 409 (writes only); google.md §6";
    "forbiddenForNonOrganizer" ProviderError "Calendar 403 (writes only); google.md §6";
}

/// The catalogue row of `reason`, if any.
pub fn api_reason(reason: &str) -> Option<&'static ApiReason> {
    API_REASONS.iter().find(|row| row.reason == reason)
}

/// Whether an answer's reason is a row of the catalogue (`false`: the fallback guessed,
/// and the session logs its body so that a row can be added).
pub fn is_known_reason(reason: &str) -> bool {
    api_reason(reason).is_some()
}

/// What a Google throttling answer (`429`, or `503` with `Retry-After`) holds back
/// (docs/throttling.md, Google rows). Gmail's and Calendar's per-user quotas are per
/// member and API ("Queries per minute per user", `userRateLimitExceeded`, "Too many
/// concurrent requests for user", "User-rate limit exceeded"); the per-project ones
/// ("Queries per minute" without "per user", Gmail's `rateLimitExceeded` "Rate Limit
/// Exceeded", `dailyLimitExceeded`) hold for every company on our Google project.
/// Calendar's `rateLimitExceeded` is "per calendar or per authenticated user" and its
/// `quotaExceeded` is the user's usage limit, so both stay the member's. A 5xx names
/// nothing: the narrowest scope, so one mailbox's backend never stalls its colleagues.
pub fn throttle_scope(api: Api, http_status: u16, error: Option<&ApiError>) -> ThrottleScope {
    let reason = error.and_then(ApiError::reason).unwrap_or_default();
    let message = error
        .and_then(ApiError::best_message)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let per_user = ["per user", "for user", "user-rate", "user rate"]
        .iter()
        .any(|needle| message.contains(needle));
    if http_status >= 500 || per_user {
        return ThrottleScope::MemberChannel;
    }
    if message.contains("quota exceeded for quota metric") || message.contains("project") {
        return ThrottleScope::App;
    }
    match reason {
        "userRateLimitExceeded" | "quotaExceeded" => ThrottleScope::MemberChannel,
        "dailyLimitExceeded" => ThrottleScope::App,
        "rateLimitExceeded" | "RATE_LIMIT_EXCEEDED" if api == Api::CalendarEvents => {
            ThrottleScope::MemberChannel
        }
        "rateLimitExceeded" | "RATE_LIMIT_EXCEEDED" if message.starts_with("rate limit") => {
            ThrottleScope::App
        }
        // A bare 429 ("Resource has been exhausted (e.g. check quota).") names no
        // quota: the member's own, the narrowest reading.
        _ => ThrottleScope::MemberChannel,
    }
}

/// What a token endpoint's throttling answer holds back: the company's token requests
/// with our client (the endpoint limits per client and subject set, not per API).
pub const fn token_throttle_scope() -> ThrottleScope {
    ThrottleScope::Tenant
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ApiErrorDetail, ApiErrorItem};
    use Outcome::*;

    #[track_caller]
    fn check_token(grant: Grant, status: u16, error: &str, description: &str, expected: Outcome) {
        let body = TokenError {
            error: error.to_owned(),
            error_description: Some(description.to_owned()),
            error_subtype: None,
        };
        assert_eq!(
            token_outcome(grant, status, &body),
            expected,
            "{grant:?} {status} {error} {description}"
        );
    }

    #[test]
    fn token_rows() {
        use Grant::*;
        // google.md §2 row 1 (GAM OAUTH2_UNAUTHORIZED_ERRORS); PROVIDERS.md not_authorized.
        check_token(
            Delegation,
            401,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
            NotAuthorized,
        );
        // google.md §2 "sub is not a user of the domain" (PSGSuite#267) → mailbox_unavailable.
        check_token(
            Delegation,
            400,
            "invalid_grant",
            "Invalid email or User ID",
            MailboxUnavailable,
        );
        // google.md §2 "sub malformed" (google-api-php-client#783).
        check_token(
            Delegation,
            400,
            "invalid_grant",
            "Not a valid email.",
            MailboxUnavailable,
        );
        // google.md §2 "sub user recently deleted" (GAM#1171).
        check_token(
            Delegation,
            400,
            "invalid_grant",
            "The account has been deleted",
            MailboxUnavailable,
        );
        // google.md §2 "Signature doesn't verify" (google-cloud-python#10004).
        check_token(
            Delegation,
            400,
            "invalid_grant",
            "Invalid JWT Signature.",
            CredentialRejected,
        );
        // google.md §2 "Clock skew" (google-api-php-client#1429).
        check_token(
            Delegation,
            400,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            CredentialRejected,
        );
        // google.md §2 "Service account disabled or deleted" (google-cloud-php#3622).
        check_token(
            Delegation,
            400,
            "invalid_grant",
            "Invalid grant: account not found",
            CredentialRejected,
        );
        // google.md §2 "OAuth client deleted" (l5-google-cloud-storage#6).
        check_token(
            Delegation,
            401,
            "deleted_client",
            "The OAuth client was deleted.",
            CredentialRejected,
        );
        // google.md §2 "Unknown client" (gapi-google-analytics-php-interface#149).
        check_token(
            Delegation,
            401,
            "invalid_client",
            "The OAuth client was not found.",
            CredentialRejected,
        );
        // google.md §2 "Google-side failure" (twenty test) → provider_error.
        check_token(
            Delegation,
            500,
            "internal_failure",
            "Backend Error",
            ProviderError,
        );
        // google.md §2 "Malformed request" (RFC 6749 §5.2): our bug → provider_error.
        check_token(
            Delegation,
            400,
            "invalid_request",
            "Missing required parameter: grant_type",
            ProviderError,
        );
        check_token(
            Delegation,
            400,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
            ProviderError,
        );
        // §3 "User revoked access" ([DOC] oauth2 refresh token expiration) → grant_invalid.
        check_token(
            Refresh,
            400,
            "invalid_grant",
            "Token has been expired or revoked.",
            GrantInvalid,
        );
        // §3 RAPT (blobfile#2) → grant_invalid per PROVIDERS.md.
        check_token(
            Refresh,
            400,
            "invalid_grant",
            "reauth related error (invalid_rapt)",
            GrantInvalid,
        );
        // §3 admin_policy_enforced (dust#31975) → access_denied.
        check_token(
            Refresh,
            400,
            "admin_policy_enforced",
            "Access to this application has been restricted by your Google Workspace administrator.",
            AccessDenied,
        );
        // §3 "Wrong client secret" / "Client deleted" → credential_rejected.
        check_token(
            Refresh,
            401,
            "invalid_client",
            "Unauthorized",
            CredentialRejected,
        );
        check_token(
            Refresh,
            401,
            "deleted_client",
            "The OAuth client was deleted.",
            CredentialRejected,
        );
        // §3 refresh token of another client: not in PROVIDERS.md → provider_error.
        check_token(
            Refresh,
            400,
            "unauthorized_client",
            "Unauthorized",
            ProviderError,
        );
        // §3 code exchange errors.
        check_token(
            Code,
            400,
            "invalid_grant",
            "Code was already redeemed.",
            GrantInvalid,
        );
        check_token(
            Code,
            400,
            "redirect_uri_mismatch",
            "Bad Request",
            ProviderError,
        );
        // 429 at the token endpoint.
        check_token(Refresh, 429, "rate_limit_exceeded", "", RateLimited);
        // Issue 21 §4/§5: the rest of Google's published OAuth answers.
        // google.md §2 (FlowCrypt/flowcrypt-browser#2269): the account itself is gone.
        check_token(
            Refresh,
            400,
            "invalid_grant",
            "Account has been deleted",
            MailboxUnavailable,
        );
        check_token(Refresh, 400, "invalid_grant", "Bad Request", GrantInvalid);
        // Google OAuth 2.0 errors: a client disabled in its project.
        check_token(
            Refresh,
            401,
            "disabled_client",
            "The OAuth client was disabled.",
            CredentialRejected,
        );
        // Google OAuth 2.0 errors: an app limited to its own organisation.
        check_token(Code, 400, "org_internal", "", AccessDenied);
        // google.md §2 (GAM-team/GAM#1766, GAM token-error list).
        check_token(
            Delegation,
            400,
            "access_denied",
            "Requested client not authorized.",
            AccessDenied,
        );
        check_token(
            Delegation,
            400,
            "access_denied",
            "Account restricted",
            MailboxUnavailable,
        );
    }

    fn envelope(
        code: u16,
        reason: Option<&str>,
        message: &str,
        status: Option<&str>,
        detail: Option<&str>,
    ) -> ApiError {
        ApiError {
            code: Some(code),
            message: Some(message.to_owned()),
            errors: reason
                .map(|r| ApiErrorItem {
                    domain: Some("global".to_owned()),
                    reason: Some(r.to_owned()),
                    message: Some(message.to_owned()),
                })
                .into_iter()
                .collect(),
            status: status.map(str::to_owned),
            details: detail
                .map(|r| ApiErrorDetail {
                    type_url: Some("type.googleapis.com/google.rpc.ErrorInfo".to_owned()),
                    reason: Some(r.to_owned()),
                })
                .into_iter()
                .collect(),
        }
    }

    #[track_caller]
    fn check_api(
        api: Api,
        status: u16,
        reason: Option<&str>,
        message: &str,
        status_name: Option<&str>,
        detail: Option<&str>,
        expected: Verdict,
    ) {
        let error = envelope(status, reason, message, status_name, detail);
        assert_eq!(
            api_verdict(api, status, Some(&error)),
            expected,
            "{api:?} {status} {reason:?} {message}"
        );
    }

    #[track_caller]
    fn check_scope(
        api: Api,
        status: u16,
        reason: Option<&str>,
        message: &str,
        want: ThrottleScope,
    ) {
        let error = envelope(status, reason, message, None, None);
        assert_eq!(
            throttle_scope(api, status, Some(&error)),
            want,
            "{api:?} {status} {reason:?} {message}"
        );
    }

    #[test]
    fn throttle_scope_rows() {
        use Api::*;
        use ThrottleScope::*;
        // inbox-zero#480, gmail-cleaner#5, got-your-back#309: the per-user quota, 403.
        check_scope(
            GmailMessageGet,
            403,
            Some("rateLimitExceeded"),
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'gmail.googleapis.com' for consumer 'project_number:528509232048'.",
            MemberChannel,
        );
        // The same message for the project's limit (no "per user"): every company.
        check_scope(
            GmailHistory,
            429,
            Some("rateLimitExceeded"),
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'gmail.googleapis.com' for consumer 'project_number:528509232048'.",
            App,
        );
        // gmail-cleaner#5: a bare 429 names no quota.
        check_scope(
            GmailMessageGet,
            429,
            Some("rateLimitExceeded"),
            "Resource has been exhausted (e.g. check quota).",
            MemberChannel,
        );
        // GAMADV-XTD3#337, gmail-tester#23: Gmail's per-user rate, with its Retry after.
        check_scope(
            GmailMessagesList,
            429,
            Some("rateLimitExceeded"),
            "User-rate limit exceeded.  Retry after 2023-03-07T18:03:15.961Z",
            MemberChannel,
        );
        // google.md §4 (twenty fixtures): concurrent requests per user.
        check_scope(
            GmailHistory,
            429,
            Some("rateLimitExceeded"),
            "Too many concurrent requests for user",
            MemberChannel,
        );
        // passport-google-oauth#75; Gmail/Calendar handle-errors docs.
        check_scope(
            CalendarEvents,
            403,
            Some("userRateLimitExceeded"),
            "User Rate Limit Exceeded",
            MemberChannel,
        );
        // Gmail handle-errors: "Rate Limit Exceeded" is the project-wide limit.
        check_scope(
            GmailHistory,
            429,
            Some("rateLimitExceeded"),
            "Rate Limit Exceeded",
            App,
        );
        // Calendar errors guide: per calendar or per authenticated user.
        check_scope(
            CalendarEvents,
            429,
            Some("rateLimitExceeded"),
            "Rate Limit Exceeded",
            MemberChannel,
        );
        // Calendar errors guide: the user's usage limits.
        check_scope(
            CalendarEvents,
            403,
            Some("quotaExceeded"),
            "Calendar usage limits exceeded.",
            MemberChannel,
        );
        // Gmail handle-errors: the project's daily cap.
        check_scope(
            GmailMessageGet,
            403,
            Some("dailyLimitExceeded"),
            "Daily Limit Exceeded",
            App,
        );
        // A 503 backendError with Retry-After names nothing.
        check_scope(
            CalendarEvents,
            503,
            Some("backendError"),
            "Backend Error",
            MemberChannel,
        );
        assert_eq!(throttle_scope(DirectoryUsers, 429, None), MemberChannel);
        assert_eq!(token_throttle_scope(), Tenant);
    }

    /// The catalogue, whole: every reason gives its outcome on a 403 and a 400 (through
    /// `errors[0].reason`, ErrorInfo and `status` alike), none is listed twice, each names
    /// its source; a reason no row knows is provider_error and flagged for the log.
    #[test]
    fn every_catalogue_reason_gives_its_outcome() {
        let mut seen = std::collections::BTreeSet::new();
        for row in API_REASONS {
            assert!(seen.insert(row.reason), "{} listed twice", row.reason);
            assert!(!row.source.is_empty(), "{}", row.reason);
            assert!(is_known_reason(row.reason));
            for status in [400, 403] {
                let legacy = envelope(status, Some(row.reason), "text", None, None);
                let info = envelope(status, None, "text", None, Some(row.reason));
                let named = envelope(status, None, "text", Some(row.reason), None);
                for error in [legacy, info, named] {
                    assert_eq!(
                        api_verdict(Api::GmailMessagesList, status, Some(&error)),
                        Verdict::Outcome(row.outcome),
                        "{status} {}",
                        row.reason
                    );
                }
            }
        }
        assert!(API_REASONS.len() >= 25, "{} reasons", API_REASONS.len());
        assert!(!is_known_reason("somethingNew"));
        assert_eq!(
            api_verdict(
                Api::CalendarEvents,
                403,
                Some(&envelope(403, Some("somethingNew"), "x", None, None))
            ),
            Verdict::Outcome(ProviderError)
        );
    }

    #[test]
    fn api_rows() {
        use Api::*;
        let out = Verdict::Outcome;
        // google.md §1.1 scope failure (php-samples#123) → not_authorized.
        check_api(
            GmailProfile,
            403,
            Some("insufficientPermissions"),
            "Request had insufficient authentication scopes.",
            Some("PERMISSION_DENIED"),
            Some("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
            out(NotAuthorized),
        );
        // google.md §1.1 "errors[] may be absent": reason from details.
        check_api(
            CalendarEvents,
            403,
            None,
            "Request had insufficient authentication scopes.",
            Some("PERMISSION_DENIED"),
            Some("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
            out(NotAuthorized),
        );
        // google.md §4 domainPolicy ([DOC] Gmail handle-errors) → access_denied.
        check_api(
            GmailMessagesList,
            403,
            Some("domainPolicy"),
            "The domain administrators have disabled Gmail apps.",
            None,
            None,
            out(AccessDenied),
        );
        // google.md §8 (reseller "Directory API common errors": 403:domainCannotUseApis).
        check_api(
            DirectoryUsers,
            403,
            Some("domainCannotUseApis"),
            "Domain cannot use apis.",
            None,
            None,
            out(AccessDenied),
        );
        // google.md §4 "Mail service not enabled" (fluent-smtp#152) → mailbox_unavailable.
        check_api(
            GmailProfile,
            400,
            Some("failedPrecondition"),
            "Mail service not enabled",
            Some("FAILED_PRECONDITION"),
            None,
            out(MailboxUnavailable),
        );
        // google.md §4 "Precondition check failed." (nodejs-client#2322) → provider_error.
        check_api(
            GmailProfile,
            400,
            Some("failedPrecondition"),
            "Precondition check failed.",
            Some("FAILED_PRECONDITION"),
            None,
            out(ProviderError),
        );
        // google.md §6 notACalendarUser (GAM#806) → mailbox_unavailable.
        check_api(
            CalendarEvents,
            403,
            Some("notACalendarUser"),
            "The user must be signed up for Google Calendar.",
            None,
            None,
            out(MailboxUnavailable),
        );
        // google.md §6 / §9 quotas → rate_limited, 403 or 429.
        check_api(
            CalendarEvents,
            403,
            Some("rateLimitExceeded"),
            "Rate Limit Exceeded",
            None,
            None,
            out(RateLimited),
        );
        check_api(
            GmailMessageGet,
            403,
            Some("userRateLimitExceeded"),
            "User Rate Limit Exceeded",
            None,
            None,
            out(RateLimited),
        );
        check_api(
            GmailMessageGet,
            403,
            Some("dailyLimitExceeded"),
            "Daily Limit Exceeded",
            None,
            None,
            out(RateLimited),
        );
        check_api(
            CalendarEvents,
            403,
            Some("quotaExceeded"),
            "Calendar usage limits exceeded.",
            None,
            None,
            out(RateLimited),
        );
        check_api(
            GmailProfile,
            429,
            Some("rateLimitExceeded"),
            "Rate Limit Exceeded",
            Some("RESOURCE_EXHAUSTED"),
            None,
            out(RateLimited),
        );
        check_api(
            GmailProfile,
            429,
            Some("rateLimitExceeded"),
            "Too many concurrent requests for user",
            Some("RESOURCE_EXHAUSTED"),
            None,
            out(RateLimited),
        );
        // google.md §6 accessNotConfigured / SERVICE_DISABLED → provider_error.
        check_api(
            CalendarEvents,
            403,
            Some("accessNotConfigured"),
            "Google Calendar API has not been used in project 1 before or it is disabled.",
            Some("PERMISSION_DENIED"),
            Some("SERVICE_DISABLED"),
            out(ProviderError),
        );
        // PROVIDERS.md "Delegation denied" (our bug) → provider_error.
        check_api(
            GmailProfile,
            403,
            Some("forbidden"),
            "Delegation denied for ada@acme.example",
            Some("PERMISSION_DENIED"),
            None,
            out(ProviderError),
        );
        // google.md §8 Directory forbidden: not in PROVIDERS.md's table → provider_error.
        check_api(
            DirectoryUsers,
            403,
            Some("forbidden"),
            "Not Authorized to access this resource/api",
            None,
            None,
            out(ProviderError),
        );
        // 5xx backendError → provider_error.
        check_api(
            GmailHistory,
            500,
            Some("backendError"),
            "Backend Error",
            None,
            None,
            out(ProviderError),
        );
        check_api(
            CalendarEvents,
            503,
            Some("backendError"),
            "The service is currently unavailable.",
            Some("UNAVAILABLE"),
            None,
            out(ProviderError),
        );
        // google.md §4 401 authError (documented and live) → refresh once.
        check_api(
            GmailProfile,
            401,
            Some("authError"),
            "Invalid Credentials",
            None,
            None,
            Verdict::Unauthenticated,
        );
        check_api(
            CalendarEvents,
            401,
            Some("authError"),
            "Request had invalid authentication credentials.",
            Some("UNAUTHENTICATED"),
            Some("ACCESS_TOKEN_EXPIRED"),
            Verdict::Unauthenticated,
        );
        // google.md §0.4 stale cursors → full pass; messages.get 404 → vanished.
        check_api(
            GmailHistory,
            404,
            Some("notFound"),
            "Requested entity was not found.",
            Some("NOT_FOUND"),
            None,
            Verdict::StaleCursor,
        );
        check_api(
            GmailMessageGet,
            404,
            Some("notFound"),
            "Requested entity was not found.",
            Some("NOT_FOUND"),
            None,
            Verdict::Vanished,
        );
        check_api(
            CalendarEvents,
            410,
            Some("fullSyncRequired"),
            "Sync token is no longer valid, a full sync is required.",
            None,
            None,
            Verdict::StaleCursor,
        );
        check_api(
            CalendarEvents,
            410,
            Some("updatedMinTooLongAgo"),
            "The requested minimum modification time lies too far in the past.",
            None,
            None,
            Verdict::StaleCursor,
        );
        // A 404 elsewhere is not a cursor: Gmail profile, Calendar primary (google.md §6,
        // not in PROVIDERS.md's table) → provider_error.
        check_api(
            GmailProfile,
            404,
            Some("notFound"),
            "Requested entity was not found.",
            None,
            None,
            out(ProviderError),
        );
        check_api(
            CalendarEvents,
            404,
            Some("notFound"),
            "Not Found",
            None,
            None,
            out(ProviderError),
        );
        // Calendar 410 `deleted` is not a sync-token answer.
        check_api(
            CalendarEvents,
            410,
            Some("deleted"),
            "Resource has been deleted",
            None,
            None,
            out(ProviderError),
        );
        // google.md §1.1 fallback: neither errors[] nor ErrorInfo, only `status`.
        check_api(
            GmailMessagesList,
            403,
            None,
            "Quota exceeded.",
            Some("RESOURCE_EXHAUSTED"),
            None,
            out(RateLimited),
        );
        // errors[0].reason wins over details[] (domainPolicy with an unrelated ErrorInfo).
        check_api(
            GmailProfile,
            403,
            Some("domainPolicy"),
            "The domain administrators have disabled Gmail apps.",
            Some("PERMISSION_DENIED"),
            Some("RATE_LIMIT_EXCEEDED"),
            out(AccessDenied),
        );
        // No envelope at all.
        assert_eq!(api_verdict(GmailProfile, 403, None), out(ProviderError));
        assert_eq!(api_verdict(GmailProfile, 502, None), out(ProviderError));
    }
}
