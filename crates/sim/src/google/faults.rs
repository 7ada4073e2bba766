//! What each fault answers at Google, the only place that knows its status, headers and
//! body: the token endpoint's flat `error` / `error_description` (providers/google.md
//! §1.2) and the APIs' REST envelope (code, message, errors, status, details).

use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind};
use crate::json::{J, obj};

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

pub(crate) fn google_answer(kind: FaultKind, ctx: &AnswerCtx) -> Answer {
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
