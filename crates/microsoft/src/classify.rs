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
use serde::Deserialize;

// ---- token endpoint -------------------------------------------------------------------

/// The Entra ID token-endpoint error envelope (providers/microsoft.md §1.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
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

    fn has_code(&self, codes: &[u64]) -> bool {
        self.error_codes.iter().any(|code| codes.contains(code))
    }
}

/// AADSTS codes by outcome (PROVIDERS.md answer → outcome, Entra rows).
const NOT_AUTHORIZED_CODES: &[u64] = &[65001, 90094, 700016];
const ACCESS_DENIED_CODES: &[u64] = &[53003, 530032, 50105, 7000112];
const MAILBOX_UNAVAILABLE_CODES: &[u64] = &[50057, 50053, 50034];
const CREDENTIAL_REJECTED_CODES: &[u64] = &[7000215, 7000222, 70002];
const RATE_LIMITED_CODES: &[u64] = &[90055, 50196];
const GRANT_INVALID_CODES: &[u64] = &[700082, 70008, 50173, 70000, 50076, 50079];

/// The outcome of a token-endpoint error answer. `body` is `None` when the answer was not
/// the documented envelope.
pub fn classify_token_error(status: u16, body: Option<&TokenErrorBody>) -> Outcome {
    let Some(body) = body else {
        return if status == 429 {
            Outcome::RateLimited
        } else {
            Outcome::ProviderError
        };
    };
    let error = body.error.to_ascii_lowercase();
    let suberror = body
        .suberror
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if error == "invalid_client"
        || error == "deleted_client"
        || body.has_code(CREDENTIAL_REJECTED_CODES)
    {
        return Outcome::CredentialRejected;
    }
    if suberror == "consent_required" || body.has_code(NOT_AUTHORIZED_CODES) {
        return Outcome::NotAuthorized;
    }
    if body.has_code(ACCESS_DENIED_CODES) {
        return Outcome::AccessDenied;
    }
    if body.has_code(MAILBOX_UNAVAILABLE_CODES) {
        return Outcome::MailboxUnavailable;
    }
    if status == 429 || body.has_code(RATE_LIMITED_CODES) {
        return Outcome::RateLimited;
    }
    if body.has_code(GRANT_INVALID_CODES)
        || suberror == "bad_token"
        || error == "invalid_grant"
        || error == "interaction_required"
    {
        // providers/microsoft.md §1.2 fallback: an `invalid_grant` with an unknown code
        // still says the member's grant no longer works.
        return Outcome::GrantInvalid;
    }
    // `temporarily_unavailable`, `server_error`, 5xx, `invalid_request` (90002),
    // `invalid_scope`, `unsupported_grant_type`, and anything not listed: provider_error.
    Outcome::ProviderError
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

    fn has_code(&self, wanted: &[&str]) -> bool {
        self.codes
            .iter()
            .any(|code| wanted.iter().any(|w| code.eq_ignore_ascii_case(w)))
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

const RESYNC_CODES: &[&str] = &["SyncStateNotFound", "resyncRequired", "SyncStateInvalid"];
const RATE_LIMIT_CODES: &[&str] = &["TooManyRequests", "ApplicationThrottled"];
const MAILBOX_CODES: &[&str] = &[
    "MailboxNotEnabledForRESTAPI",
    "MailboxNotSupportedForRESTAPI",
    "ErrorInvalidUser",
    "ErrorNonExistentMailbox",
    "Request_ResourceNotFound",
];
/// The application-access-policy denial has no code of its own (microsoft.md §6).
const ACCESS_POLICY_TEXT: &[&str] = &["AccessPolicy", "[RAOP]", "Access to OData is disabled"];

/// The verdict on a non-2xx Graph answer. `token_grants` says whether the access token's
/// `roles` (app) or `scp` (delegated) claim holds the permission the call needs; `None`
/// when the token could not be read.
pub fn classify_graph_error(
    status: u16,
    error: Option<&GraphErrorInfo>,
    token_grants: Option<bool>,
) -> GraphVerdict {
    let empty = GraphErrorInfo::default();
    let error = error.unwrap_or(&empty);
    if status == 410 || ((400..500).contains(&status) && error.has_code(RESYNC_CODES)) {
        return GraphVerdict::Resync;
    }
    if status == 429 || error.has_code(RATE_LIMIT_CODES) {
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
        if error.has_code(&["Authorization_RequestDenied"]) {
            return GraphVerdict::Fail(Outcome::NotAuthorized);
        }
        if error.has_code(&["ErrorAccessDenied"]) {
            return GraphVerdict::Fail(if token_grants == Some(true) {
                Outcome::AccessDenied
            } else {
                Outcome::NotAuthorized
            });
        }
    }
    if (400..500).contains(&status) && error.has_code(MAILBOX_CODES) {
        return GraphVerdict::Fail(Outcome::MailboxUnavailable);
    }
    // 5xx, `generalException`, `ServiceUnavailable`, and every answer not listed.
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
            (400, "invalid_request", 90002, None, ProviderError), // tenant not found
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
