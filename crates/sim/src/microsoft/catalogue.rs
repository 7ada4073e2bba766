//! Microsoft's published error catalogues as the sim answers them by name:
//! `aadsts:<code>` (Entra's sign-in and token errors, in [`super::faults::entra_error`]'s
//! envelope) and `graph:<code>` (Graph's mail, calendar and users errors, in
//! [`super::faults::graph_error`]'s). What each entry means to datacap is the connector's
//! business; `crate::catalogue` resolves the names.

/// One Entra token-endpoint error (the envelope is `faults::entra_error`).
pub(crate) struct EntraAnswer {
    pub code: u32,
    pub status: u16,
    /// The OAuth `error` class Entra sends with the code.
    pub error: &'static str,
    pub text: &'static str,
    pub suberror: Option<&'static str>,
}

/// One Graph error (the envelope is `faults::graph_error`, with `innerError`).
pub(crate) struct GraphAnswer {
    pub code: &'static str,
    pub status: u16,
    pub message: &'static str,
    /// Cursor codes answer only incremental (delta-link) calls.
    pub incremental: bool,
}

macro_rules! entra {
    ($($code:literal $status:literal $error:literal $sub:tt $text:literal;)*) => {
        /// Sources: "Microsoft Entra authentication and authorization error codes"
        /// (learn.microsoft.com/entra/identity-platform/reference-error-codes) for the
        /// codes and texts; the `error` class per code as Entra's v2.0 token endpoint
        /// sends it (providers/microsoft.md §1.1–§1.2, and the bodies it cites).
        pub(crate) const ENTRA: &[EntraAnswer] = &[
            $(EntraAnswer { code: $code, status: $status, error: $error, text: $text, suberror: entra!(@sub $sub) },)*
        ];
    };
    (@sub -) => { None };
    (@sub $sub:literal) => { Some($sub) };
}

entra! {
    90002 400 "invalid_request" - "Tenant 'contoso' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.";
    900023 400 "invalid_request" - "Specified tenant identifier 'none' is neither a valid DNS name, nor a valid external domain.";
    900971 400 "invalid_request" - "No reply address provided.";
    500021 400 "access_denied" - "Access to 'contoso' tenant is denied.";
    65001 400 "invalid_grant" "consent_required" "The user or administrator has not consented to use the application with ID 'datacap'. Send an interactive authorization request for this user and resource.";
    65004 400 "access_denied" - "User declined to consent to access the app.";
    65005 400 "invalid_client" - "The application required resource access list does not contain applications discoverable by the resource, or the client has requested access to a resource which was not specified in its required resource access list.";
    90094 400 "invalid_grant" - "The grant requires admin permission.";
    90095 400 "invalid_grant" - "Admin consent is required for the permissions requested by this application.";
    700016 400 "unauthorized_client" - "Application with identifier 'datacap' was not found in the directory 'contoso'.";
    500011 400 "invalid_resource" - "The resource principal named https://graph.microsoft.com was not found in the tenant named contoso.";
    50001 400 "invalid_resource" - "The resource is disabled or does not exist.";
    70002 401 "invalid_client" - "Error validating credentials.";
    7000215 401 "invalid_client" - "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.";
    7000222 401 "invalid_client" - "The provided client secret keys for app 'datacap' are expired.";
    7000218 401 "invalid_client" - "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.";
    700024 401 "invalid_client" - "Client assertion is not within its valid time range.";
    700027 401 "invalid_client" - "Client assertion failed signature validation.";
    50012 401 "invalid_client" - "Authentication failed: the client assertion is invalid.";
    50013 400 "invalid_grant" - "Assertion failed signature validation.";
    50027 400 "invalid_request" - "JWT token is invalid or malformed.";
    70001 400 "unauthorized_client" - "The application 'datacap' is disabled.";
    7000112 400 "unauthorized_client" - "Application 'datacap' is disabled.";
    50105 400 "invalid_grant" - "Your administrator has configured the application datacap to block users unless they are specifically granted ('assigned') access to the application.";
    53000 400 "invalid_grant" "message_only" "Device is not in required device state: compliant. Conditional Access policy requires a compliant device, and the device is not compliant.";
    53001 400 "invalid_grant" "message_only" "Device is not in required device state: domain joined.";
    53002 400 "invalid_grant" "message_only" "The application used isn't an approved application for Conditional Access.";
    53003 400 "invalid_grant" "message_only" "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.";
    53004 400 "interaction_required" - "Proof up is blocked due to user risk.";
    53011 400 "invalid_grant" - "User blocked due to risk on home tenant.";
    530032 400 "invalid_grant" - "The tenant admin has configured a security policy that blocks this request.";
    530035 400 "invalid_grant" - "Access has been blocked by security defaults.";
    50097 400 "interaction_required" - "Device authentication is required.";
    50005 400 "invalid_grant" - "User tried to log in to a device from a platform that's currently not supported through Conditional Access policy.";
    50131 400 "invalid_grant" - "Conditional Access failed.";
    50034 400 "invalid_grant" - "The user account does not exist in the contoso directory.";
    50053 400 "invalid_grant" - "Your account is locked because you've tried to sign in too many times with an incorrect user ID or password.";
    50057 400 "invalid_grant" - "The user account is disabled.";
    50020 400 "invalid_grant" - "User account from identity provider does not exist in tenant.";
    51004 400 "invalid_grant" - "The user account doesn't exist in the directory.";
    90055 429 "temporarily_unavailable" - "The tenant is throttled: too many requests to the identity platform.";
    50196 400 "invalid_request" - "The server terminated an operation because it encountered a client request loop.";
    70000 400 "invalid_grant" - "Provided grant is invalid or malformed.";
    70008 400 "invalid_grant" "bad_token" "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.";
    700082 400 "invalid_grant" "bad_token" "The refresh token has expired due to inactivity. The token was issued on 2026-08-01T08:00:00Z and was inactive for 90.00:00:00.";
    700084 400 "invalid_grant" "bad_token" "The refresh token was issued to a single page app (SPA), and therefore has a fixed, limited lifetime of 1.00:00:00, which can't be extended.";
    700003 400 "invalid_grant" - "Device object was not found in the tenant 'contoso' directory.";
    70043 400 "invalid_grant" "bad_token" "The refresh token has expired or is invalid due to sign-in frequency checks by Conditional Access.";
    50173 400 "invalid_grant" "bad_token" "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.";
    50133 400 "invalid_grant" - "Session is invalid due to expiration or recent password change.";
    50055 400 "invalid_grant" "user_password_expired" "The password is expired.";
    50144 400 "invalid_grant" "user_password_expired" "User's Active Directory password has expired.";
    50135 400 "invalid_grant" - "Password change is required due to account risk.";
    50076 400 "invalid_grant" "basic_action" "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.";
    50079 400 "invalid_grant" "basic_action" "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.";
    50072 400 "interaction_required" - "User needs to enroll for second factor authentication.";
    50074 400 "interaction_required" - "Strong Authentication is required.";
    50078 400 "interaction_required" - "Presented multi-factor authentication has expired due to policies configured by your administrator.";
    50158 400 "interaction_required" - "External security challenge was not satisfied.";
    50143 400 "invalid_grant" - "Session mismatch: the session is not valid because the tenant of the user doesn't match the domain hint.";
    54005 400 "invalid_grant" - "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.";
    70012 500 "server_error" - "A server error occurred while authenticating an MSA (consumer) user.";
    50033 400 "invalid_request" - "A transient error has occurred. Try again.";
    90033 503 "temporarily_unavailable" - "A transient error has occurred. Try again.";
    70011 400 "invalid_scope" - "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid.";
    90014 400 "invalid_request" - "The request body must contain the following parameter: 'grant_type'.";
    50011 400 "invalid_request" - "The redirect URI specified in the request does not match the redirect URIs configured for the application.";
    50194 400 "invalid_request" - "Application 'datacap' is not configured as a multi-tenant application.";
}

macro_rules! graph {
    ($($code:literal $status:literal $incr:literal $message:literal;)*) => {
        /// Sources: Graph error responses reference (learn.microsoft.com/graph/errors),
        /// providers/microsoft.md §2–§6, Exchange response codes, and the issue threads
        /// the connector's table cites row by row.
        pub(crate) const GRAPH: &[GraphAnswer] = &[
            $(GraphAnswer { code: $code, status: $status, message: $message, incremental: $incr },)*
        ];
    };
}

graph! {
    "SyncStateNotFound" 410 true "The sync state generation is not found; generation=149;[highest=157][157][155][156].";
    "resyncRequired" 410 true "The delta token is no longer valid; the app must restart the sync.";
    "SyncStateInvalid" 400 true "The sync state is invalid.";
    "TooManyRequests" 429 false "Please retry again later.";
    "ApplicationThrottled" 429 false "Application is over its MailboxConcurrency limit.";
    "activityLimitReached" 429 false "The app or user has been throttled.";
    "ErrorServerBusy" 503 false "The server cannot service this request right now. Try again later.";
    "ErrorExceededConnectionCount" 429 false "You have exceeded the available concurrent connections for your account. Try again once your other requests have completed.";
    "ErrorTooManyObjectsOpened" 429 false "Too many objects are opened for this mailbox. Try again later.";
    "Authorization_RequestDenied" 403 false "Insufficient privileges to complete the operation.";
    "Authorization_IdentityNotFound" 403 false "The identity of the calling application could not be established.";
    "accessDenied" 403 false "The caller doesn't have permission to perform the action.";
    "ErrorAccessDenied" 403 false "Access is denied. Check credentials and try again.";
    "insufficient_claims" 403 false "Continuous access evaluation resulted in claims challenge.";
    "InsufficientClaims" 403 false "The token's claims do not satisfy the resource's Conditional Access policy.";
    "MailboxNotEnabledForRESTAPI" 404 false "The mailbox is either inactive, soft-deleted, or is hosted on-premise.";
    "MailboxNotSupportedForRESTAPI" 404 false "The mailbox is not supported for the REST API.";
    "ErrorInvalidUser" 404 false "The requested user 'row@contoso.example' is invalid.";
    "ErrorNonExistentMailbox" 404 false "The SMTP address has no mailbox associated with it.";
    "Request_ResourceNotFound" 404 false "Resource 'row@contoso.example' does not exist or one of its queried reference-property objects are not present.";
    "ResourceNotFound" 404 false "Resource could not be discovered.";
    "ErrorMailboxIsNotActive" 404 false "The mailbox is not active.";
    "generalException" 500 false "An unspecified error has occurred.";
    "serviceNotAvailable" 503 false "The service is temporarily unavailable. Try again later.";
    "ServiceUnavailable" 503 false "Service Unavailable";
    "UnknownError" 503 false "";
    "InternalServerError" 500 false "Error while processing response.";
    "Proxy_InternalServerError" 503 false "Failure in forwarding request.";
    "ErrorInternalServerError" 500 false "An internal server error occurred. The operation failed.";
    "ErrorInternalServerTransientError" 500 false "An internal server error occurred. Try again later.";
    "ErrorTimeoutExpired" 504 false "The request timed out.";
    "ErrorMailboxStoreUnavailable" 503 false "The mailbox database is temporarily unavailable.";
    "ErrorMailboxMoveInProgress" 400 false "Mailbox move in progress. Try again later.";
    "ErrorConnectionFailed" 503 false "Connection did not succeed. Try again later.";
    "Directory_ConcurrencyViolation" 409 false "A conflicting operation is in progress; try again after a short delay.";
    "invalidRequest" 400 false "Invalid request.";
    "BadRequest" 400 false "/me request is only valid with delegated authentication flow.";
    "Request_BadRequest" 400 false "Invalid filter clause.";
    "Request_UnsupportedQuery" 400 false "Unsupported Query.";
    "ErrorInvalidUrlQuery" 400 false "The query parameter '$filter' is invalid.";
    "ErrorInvalidIdMalformed" 400 false "Id is malformed.";
    "invalidRange" 416 false "The specified byte range is invalid or unavailable.";
    "notSupported" 501 false "The requested feature isn't implemented.";
    "notAllowed" 405 false "The HTTP method in the request isn't allowed on the resource.";
    "itemNotFound" 404 false "The resource could not be found.";
    "ErrorItemNotFound" 404 false "The specified object was not found in the store.";
    "InvalidAuthenticationToken" 401 false "Access token validation failure. Invalid audience.";
    "unauthenticated" 401 false "The caller is not authenticated.";
}
