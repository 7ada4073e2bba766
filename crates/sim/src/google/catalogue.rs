//! Google's published error reasons as the sim answers them by name: `google:<reason>`
//! (the Gmail, Calendar and Directory errors, in [`super::faults::google_error`]'s
//! envelope). What each entry means to datacap is the connector's business;
//! `crate::catalogue` resolves the names.

/// One Google API error (the envelope is `faults::google_error`).
pub(crate) struct GoogleAnswer {
    pub reason: &'static str,
    pub status: u16,
    /// `errors[].domain`.
    pub domain: &'static str,
    pub message: &'static str,
    /// The envelope's `status`.
    pub status_name: &'static str,
}

macro_rules! google {
    ($($reason:literal $status:literal $domain:literal $name:literal $message:literal;)*) => {
        /// Sources: the Gmail, Calendar and Directory "handle errors" and usage-limits
        /// pages, Google's AIP-193 ErrorInfo, providers/google.md §1, §4, §6, §8.
        pub(crate) const GOOGLE: &[GoogleAnswer] = &[
            $(GoogleAnswer { reason: $reason, status: $status, domain: $domain, status_name: $name, message: $message },)*
        ];
    };
}

google! {
    "insufficientPermissions" 403 "global" "PERMISSION_DENIED" "Insufficient Permission";
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT" 403 "googleapis.com" "PERMISSION_DENIED" "Request had insufficient authentication scopes.";
    "domainPolicy" 403 "global" "PERMISSION_DENIED" "The domain administrators have disabled Gmail apps.";
    "domainCannotUseApis" 403 "global" "PERMISSION_DENIED" "Domain cannot use apis.";
    "notACalendarUser" 403 "calendar" "PERMISSION_DENIED" "The user must be signed up for Google Calendar.";
    "rateLimitExceeded" 403 "usageLimits" "PERMISSION_DENIED" "Rate Limit Exceeded";
    "userRateLimitExceeded" 403 "usageLimits" "PERMISSION_DENIED" "User Rate Limit Exceeded";
    "dailyLimitExceeded" 403 "usageLimits" "PERMISSION_DENIED" "Daily Limit Exceeded";
    "quotaExceeded" 403 "usageLimits" "PERMISSION_DENIED" "Calendar usage limits exceeded.";
    "RATE_LIMIT_EXCEEDED" 403 "googleapis.com" "PERMISSION_DENIED" "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'.";
    "RESOURCE_EXHAUSTED" 429 "googleapis.com" "RESOURCE_EXHAUSTED" "Resource has been exhausted (e.g. check quota).";
    "accessNotConfigured" 403 "usageLimits" "PERMISSION_DENIED" "Gmail API has not been used in project 1234 before or it is disabled.";
    "SERVICE_DISABLED" 403 "googleapis.com" "PERMISSION_DENIED" "Gmail API has not been used in project 1234 before or it is disabled. Enable it by visiting the console.";
    "forbidden" 403 "global" "PERMISSION_DENIED" "Delegation denied for datacap@project.iam.gserviceaccount.com";
    "failedPrecondition" 400 "global" "FAILED_PRECONDITION" "Precondition check failed.";
    "FAILED_PRECONDITION" 400 "googleapis.com" "FAILED_PRECONDITION" "Precondition check failed.";
    "badRequest" 400 "global" "INVALID_ARGUMENT" "Invalid query";
    "invalid" 400 "global" "INVALID_ARGUMENT" "Invalid Value";
    "invalidArgument" 400 "global" "INVALID_ARGUMENT" "Invalid id value";
    "INVALID_ARGUMENT" 400 "googleapis.com" "INVALID_ARGUMENT" "Request contains an invalid argument.";
    "required" 400 "global" "INVALID_ARGUMENT" "Required parameter: timeMin";
    "timeRangeEmpty" 400 "calendar" "INVALID_ARGUMENT" "The specified time range is empty.";
    "notFound" 404 "global" "NOT_FOUND" "Not Found";
    "NOT_FOUND" 404 "googleapis.com" "NOT_FOUND" "Requested entity was not found.";
    "deleted" 410 "global" "NOT_FOUND" "Resource has been deleted";
    "conditionNotMet" 412 "global" "FAILED_PRECONDITION" "Precondition Failed";
    "duplicate" 409 "global" "ALREADY_EXISTS" "The requested identifier already exists.";
    "forbiddenForNonOrganizer" 403 "calendar" "PERMISSION_DENIED" "The operation can only be performed by the meeting organizer.";
}
