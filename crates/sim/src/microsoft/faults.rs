//! What each fault answers at Microsoft, the only place that knows its status, headers and
//! body: Entra's token-endpoint error (providers/microsoft.md §1.1) and Graph's envelope
//! (§2.1).

use time::OffsetDateTime;
use time::macros::format_description;

use crate::fault::{Answer, AnswerCtx, FaultKind};
use crate::json::{J, obj};

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

pub(crate) fn microsoft_answer(kind: FaultKind, ctx: &AnswerCtx) -> Answer {
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
