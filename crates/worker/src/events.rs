//! The worker's internal events, Vector-style: each function writes the log line and
//! updates the metric together, so names and labels live in one place.
//!
//! Metric names follow `datacap_<name>_<unit>_total`; labels are bounded (provider,
//! channel, outcome, a fixed operation or skip reason), never a member or company id.
//! [`HISTOGRAM_BUCKETS`] are the explicit buckets the exporter gives the duration metric.

use std::collections::BTreeMap;
use std::time::Duration;

use datacap_connector::TokenRequest;
use datacap_core::{Channel, Icon, Outcome, Provider, Reason};
use metrics::{counter, gauge, histogram};
use tracing::{info, warn};

/// Attempts by provider, channel and outcome.
pub const ATTEMPTS: &str = "datacap_attempts_total";
/// Attempt duration in seconds (histogram).
pub const ATTEMPT_DURATION: &str = "datacap_attempt_duration_seconds";
/// Items imported by provider and channel.
pub const ITEMS: &str = "datacap_items_imported_total";
/// Jobs not run because settings forbid importing or the member has no grant.
pub const SKIPPED: &str = "datacap_jobs_skipped_total";
/// Failures of our own (database, credentials), by operation.
pub const OWN_FAILURES: &str = "datacap_own_failures_total";
/// Jobs claimed under a lease.
pub const LEASE_CLAIMS: &str = "datacap_lease_claims_total";
/// Leases a live worker found taken over while it held the job (waiting for its member's
/// lock or running it); the reclaims of dead workers' leases are the rest of
/// [`LEASE_RECLAIMS`].
pub const LEASE_LOST: &str = "datacap_lease_lost_total";
/// Jobs claimed whose previous lease had expired: another worker (or this one before a
/// restart) died or stalled mid-attempt, and its job was reclaimed.
pub const LEASE_RECLAIMS: &str = "datacap_lease_reclaims_total";
/// Attempts abandoned at shutdown or because their lease was lost.
pub const ABANDONED: &str = "datacap_attempts_abandoned_total";
/// Requests (and jobs) that waited for their company's token bucket or for a
/// `Retry-After` pause, by provider and cause (`bucket`, `retry_after`), and their total
/// time.
pub const RATE_LIMIT_WAITS: &str = "datacap_rate_limit_waits_total";
pub const RATE_LIMIT_WAIT_SECONDS: &str = "datacap_rate_limit_wait_seconds_total";
/// Pauses a provider's `Retry-After` put on requests, by provider and the scope the
/// answer named (`member_channel`, `mailbox`, `tenant`, `app`; docs/throttling.md).
pub const THROTTLE_PAUSES: &str = "datacap_throttle_pauses_total";
/// Optional checks (the Google Directory pre-check) the provider refused, by provider
/// and check; the import went on without them (docs/runbook.md).
pub const OPTIONAL_CHECKS_REFUSED: &str = "datacap_optional_checks_refused_total";
/// Refresh tokens rotated by the provider and stored.
pub const TOKENS_ROTATED: &str = "datacap_refresh_tokens_rotated_total";
/// Token failures: attempts whose outcome says a credential or grant was refused.
pub const TOKEN_FAILURES: &str = "datacap_token_failures_total";
/// Token requests (refreshes) sent by attempts, and the connect flow's code exchanges, by
/// provider, grant (`jwt_bearer`, `client_credentials`, `refresh_token`,
/// `authorization_code`) and result (`ok` or the failure's outcome). Tokens served from a
/// connector's cache send none.
pub const TOKEN_REQUESTS: &str = "datacap_token_requests_total";
/// Age in seconds of the oldest due job no live lease holds; 0 when none waits. Sampled
/// every [`QUEUE_LAG_INTERVAL`] by the daemon.
pub const QUEUE_LAG: &str = "datacap_queue_lag_seconds";
/// How often the daemon samples [`QUEUE_LAG`] (one index-backed read).
pub const QUEUE_LAG_INTERVAL: Duration = Duration::from_secs(5);
/// Members by icon, colour and reason (a gauge, set by each stall pass).
pub const MEMBERS: &str = "datacap_members";
/// Stall passes completed.
pub const STALL_PASSES: &str = "datacap_stall_passes_total";

/// Webhook delivery tries by result: `delivered` (a 2xx answer), `retry` (failed, tried
/// again later), `dead` (failed, given up), `lease_lost` (another replica took the
/// delivery meanwhile; nothing recorded).
pub const WEBHOOK_DELIVERIES: &str = "datacap_webhook_deliveries_total";
/// Age in seconds of the oldest webhook event not yet delivered to an endpoint; 0 when
/// none waits. Sampled every [`QUEUE_LAG_INTERVAL`] by the delivery task.
pub const WEBHOOK_OLDEST_UNDELIVERED: &str = "datacap_webhook_oldest_undelivered_seconds";

/// Explicit buckets of [`ATTEMPT_DURATION`], in seconds.
pub const HISTOGRAM_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// One attempt was written: what its log line and its metrics say.
pub(crate) struct AttemptWritten<'a> {
    pub provider: Provider,
    pub channel: Channel,
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub items: usize,
    pub http_status: Option<u16>,
    pub error_code: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub requests: u32,
}

impl AttemptWritten<'_> {
    /// Counts the attempt, its duration, items and a token failure, and logs it.
    pub(crate) fn emit(&self) {
        let outcome = self.outcome;
        let labels = [
            ("provider", self.provider.as_str()),
            ("channel", self.channel.as_str()),
            ("outcome", outcome.as_str()),
        ];
        counter!(ATTEMPTS, &labels).increment(1);
        histogram!(ATTEMPT_DURATION, &labels[..2]).record(self.elapsed.as_secs_f64());
        counter!(ITEMS, &labels[..2]).increment(u64::try_from(self.items).unwrap_or(u64::MAX));
        if matches!(
            outcome,
            Outcome::CredentialRejected | Outcome::GrantInvalid | Outcome::NotAuthorized
        ) {
            counter!(TOKEN_FAILURES, &labels).increment(1);
        }
        let duration_ms = u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX);
        let (items, requests, request_id) = (self.items, self.requests, self.request_id);
        if outcome == Outcome::Success {
            info!(
                outcome = outcome.as_str(),
                items, requests, duration_ms, request_id, "attempt written"
            );
        } else {
            let (http_status, error_code) = (self.http_status, self.error_code);
            warn!(
                outcome = outcome.as_str(),
                http_status, error_code, request_id, requests, duration_ms, "attempt written"
            );
        }
    }
}

pub(crate) fn claimed(count: usize, reclaimed: usize) {
    if count > 0 {
        counter!(LEASE_CLAIMS).increment(u64::try_from(count).unwrap_or(u64::MAX));
    }
    if reclaimed > 0 {
        counter!(LEASE_RECLAIMS).increment(u64::try_from(reclaimed).unwrap_or(u64::MAX));
    }
}

pub(crate) fn skipped(provider: Provider, channel: Channel, reason: &'static str) {
    counter!(
        SKIPPED,
        "provider" => provider.as_str(),
        "channel" => channel.as_str(),
        "reason" => reason
    )
    .increment(1);
}

/// A failure of our own; `retry_in` when the loop backs off because of it.
pub(crate) fn own_failure(
    operation: &'static str,
    error: &dyn std::error::Error,
    retry_in: Option<Duration>,
) {
    counter!(OWN_FAILURES, "operation" => operation).increment(1);
    let retry_in_ms = retry_in.map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    warn!(
        operation,
        error = %error,
        retry_in_ms,
        "failure of our own: nothing recorded for the member"
    );
}

pub(crate) fn own_failure_text(operation: &'static str, problem: &str) {
    counter!(OWN_FAILURES, "operation" => operation).increment(1);
    warn!(
        operation,
        error = problem,
        "failure of our own: nothing recorded for the member"
    );
}

pub(crate) fn lease_lost() {
    counter!(LEASE_LOST).increment(1);
}

pub(crate) fn abandoned() {
    counter!(ABANDONED).increment(1);
    warn!("attempt abandoned (shutdown or lease lost): nothing written, lease released");
}

/// Why a request (or a job) waited for its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WaitCause {
    /// The company's token bucket was empty.
    Bucket,
    /// A provider's `Retry-After` paused the company.
    RetryAfter,
}

impl WaitCause {
    fn as_str(self) -> &'static str {
        match self {
            WaitCause::Bucket => "bucket",
            WaitCause::RetryAfter => "retry_after",
        }
    }
}

/// A request waited `waited` for its tenant (or a job was put off that long).
pub(crate) fn rate_limit_wait(provider: Provider, cause: WaitCause, waited: Duration) {
    static WAITED_MICROS: std::sync::Mutex<BTreeMap<(Provider, &'static str), u64>> =
        std::sync::Mutex::new(BTreeMap::new());
    let labels = [("provider", provider.as_str()), ("cause", cause.as_str())];
    counter!(RATE_LIMIT_WAITS, &labels).increment(1);
    // Waits are mostly under a second: keep the exact total and publish its whole seconds,
    // so many short waits add up instead of each rounding to zero.
    let mut totals = WAITED_MICROS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let total = totals.entry((provider, cause.as_str())).or_default();
    *total = total.saturating_add(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX));
    counter!(RATE_LIMIT_WAIT_SECONDS, &labels).absolute(*total / 1_000_000);
}

/// An optional check was refused and passed over; `log` for the first time per company
/// and check in [`OPTIONAL_CHECK_LOG_EVERY`], so the answer is in the logs without
/// repeating it on every poll.
pub(crate) fn optional_check_refused(
    provider: Provider,
    company: &str,
    check: &datacap_connector::RefusedCheck,
    log: bool,
) {
    counter!(
        OPTIONAL_CHECKS_REFUSED,
        "provider" => provider.as_str(),
        "check" => check.check
    )
    .increment(1);
    if log {
        let failure = &check.failure;
        warn!(
            company,
            check = check.check,
            outcome = failure.outcome.as_str(),
            http_status = failure.http_status,
            error_code = failure.error_code.as_deref(),
            error_message = failure.error_message.as_deref(),
            request_id = failure.request_id.as_deref(),
            "optional check refused: the import went on without it (logged once an hour per company; docs/runbook.md)"
        );
    }
}

/// How often a company's refused optional check is logged again.
pub const OPTIONAL_CHECK_LOG_EVERY: Duration = Duration::from_secs(3600);

/// A `Retry-After` paused what `scope` names.
pub(crate) fn throttle_pause(provider: Provider, scope: datacap_connector::ThrottleScope) {
    counter!(
        THROTTLE_PAUSES,
        "provider" => provider.as_str(),
        "scope" => scope.as_str()
    )
    .increment(1);
}

pub(crate) fn token_rotated(provider: Provider) {
    counter!(TOKENS_ROTATED, "provider" => provider.as_str()).increment(1);
    info!("rotated refresh token stored");
}

/// The token requests an attempt sent.
pub(crate) fn token_requests(provider: Provider, requests: &[TokenRequest]) {
    for request in requests {
        let result = match request.outcome {
            Outcome::Success => "ok",
            failure => failure.as_str(),
        };
        counter!(
            TOKEN_REQUESTS,
            "provider" => provider.as_str(),
            "grant" => request.grant.as_str(),
            "result" => result
        )
        .increment(1);
    }
}

/// The connect flow redeemed a member's authorization code, with this outcome.
pub fn code_exchanged(provider: Provider, outcome: Outcome) {
    token_requests(
        provider,
        &[TokenRequest {
            grant: datacap_connector::GrantType::AuthorizationCode,
            outcome,
        }],
    );
}

/// The oldest waiting due job is `lag` old (zero when none waits).
pub(crate) fn queue_lag(lag: Duration) {
    gauge!(QUEUE_LAG).set(lag.as_secs_f64());
}

pub(crate) fn stall_pass() {
    counter!(STALL_PASSES).increment(1);
}

pub(crate) fn members(icon: Icon, reason: Reason, count: u64) {
    #[allow(clippy::cast_precision_loss)]
    gauge!(
        MEMBERS,
        "icon" => icon.as_str(),
        "color" => reason.color().as_str(),
        "reason" => reason.as_str()
    )
    .set(count as f64);
}

/// Every metric family the worker exposes, with its type and `# HELP` text (docs/
/// operations.md's table is checked against what the daemon serves).
pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        ATTEMPTS,
        "counter",
        "Import attempts written, by provider, channel and outcome.",
    ),
    (
        ATTEMPT_DURATION,
        "histogram",
        "An attempt's wall time in seconds, connector start to attempt end.",
    ),
    (
        ITEMS,
        "counter",
        "Emails and events the written attempts brought back.",
    ),
    (
        SKIPPED,
        "counter",
        "Claimed jobs not run, by reason: settings, no_grant, paused.",
    ),
    (
        OWN_FAILURES,
        "counter",
        "Failures of datacap's own (database, credentials), never recorded on a member, by operation.",
    ),
    (LEASE_CLAIMS, "counter", "Jobs claimed under a lease."),
    (
        LEASE_LOST,
        "counter",
        "Leases a live daemon found taken over while it held the job.",
    ),
    (
        LEASE_RECLAIMS,
        "counter",
        "Jobs claimed whose previous lease had expired.",
    ),
    (
        ABANDONED,
        "counter",
        "Attempts dropped at shutdown or on a lost lease: nothing written.",
    ),
    (
        RATE_LIMIT_WAITS,
        "counter",
        "Requests and jobs that waited for the company's token bucket or a provider's Retry-After, by cause.",
    ),
    (
        RATE_LIMIT_WAIT_SECONDS,
        "counter",
        "Whole seconds those waits added up to.",
    ),
    (
        THROTTLE_PAUSES,
        "counter",
        "Pauses a provider's Retry-After put on what its answer names, by scope.",
    ),
    (
        OPTIONAL_CHECKS_REFUSED,
        "counter",
        "Optional checks the provider refused, passed over so the import went on.",
    ),
    (
        TOKENS_ROTATED,
        "counter",
        "Refresh tokens the provider rotated and datacap stored sealed.",
    ),
    (
        TOKEN_FAILURES,
        "counter",
        "Attempts that ended because a credential or grant was refused.",
    ),
    (
        TOKEN_REQUESTS,
        "counter",
        "Token requests sent, by provider, grant and result (ok or the refusal's outcome).",
    ),
    (
        QUEUE_LAG,
        "gauge",
        "Age in seconds of the oldest due job no live lease holds; 0 when none waits.",
    ),
    (
        MEMBERS,
        "gauge",
        "Members by icon, colour and reason, set by each stall pass.",
    ),
    (STALL_PASSES, "counter", "Stall passes completed."),
    (
        WEBHOOK_DELIVERIES,
        "counter",
        "Webhook tries, by result: delivered, retry, dead, lease_lost.",
    ),
    (
        WEBHOOK_OLDEST_UNDELIVERED,
        "gauge",
        "Age in seconds of the oldest webhook event not yet delivered; 0 when none waits.",
    ),
];

/// The operations [`OWN_FAILURES`] counts.
pub const OWN_FAILURE_OPERATIONS: &[&str] = &[
    "claim",
    "job_context",
    "credentials",
    "record_attempt",
    "heartbeat",
    "rotated_token",
    "stall_pass",
    "retention_pass",
    "member_gauges",
    "queue_lag",
    "webhook_delivery",
    "webhook_backlog",
];

/// Describes every family (`# HELP`) and registers each series whose label values are
/// known at 0, so that an alert tells "no failures" from "not exposed": called once, right
/// after the recorder is installed.
pub fn describe_and_zero() {
    use datacap_connector::{GrantType, ThrottleScope};
    for (name, kind, help) in FAMILIES {
        match *kind {
            "counter" => metrics::describe_counter!(*name, *help),
            "gauge" => metrics::describe_gauge!(*name, *help),
            _ => metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help),
        }
    }
    let providers = [Provider::GoogleWorkspace, Provider::Microsoft365];
    for provider in providers {
        let p = provider.as_str();
        for channel in Channel::ALL {
            let c = channel.as_str();
            for outcome in Outcome::ALL {
                counter!(ATTEMPTS, "provider" => p, "channel" => c, "outcome" => outcome.as_str())
                    .absolute(0);
            }
            for outcome in [
                Outcome::CredentialRejected,
                Outcome::GrantInvalid,
                Outcome::NotAuthorized,
            ] {
                counter!(TOKEN_FAILURES, "provider" => p, "channel" => c, "outcome" => outcome.as_str())
                    .absolute(0);
            }
            counter!(ITEMS, "provider" => p, "channel" => c).absolute(0);
            // Registered, not recorded: served with empty buckets until the first attempt.
            let _ = histogram!(ATTEMPT_DURATION, "provider" => p, "channel" => c);
            for reason in ["settings", "no_grant", "paused"] {
                counter!(SKIPPED, "provider" => p, "channel" => c, "reason" => reason).absolute(0);
            }
        }
        for cause in [WaitCause::Bucket, WaitCause::RetryAfter] {
            counter!(RATE_LIMIT_WAITS, "provider" => p, "cause" => cause.as_str()).absolute(0);
            counter!(RATE_LIMIT_WAIT_SECONDS, "provider" => p, "cause" => cause.as_str())
                .absolute(0);
        }
        for scope in [
            ThrottleScope::MemberChannel,
            ThrottleScope::Mailbox,
            ThrottleScope::Tenant,
            ThrottleScope::App,
        ] {
            counter!(THROTTLE_PAUSES, "provider" => p, "scope" => scope.as_str()).absolute(0);
        }
        let grants = match provider {
            Provider::GoogleWorkspace => [
                GrantType::JwtBearer,
                GrantType::RefreshToken,
                GrantType::AuthorizationCode,
            ],
            _ => [
                GrantType::ClientCredentials,
                GrantType::RefreshToken,
                GrantType::AuthorizationCode,
            ],
        };
        for grant in grants {
            for result in std::iter::once("ok").chain(
                Outcome::ALL
                    .iter()
                    .filter(|outcome| **outcome != Outcome::Success)
                    .map(|outcome| outcome.as_str()),
            ) {
                counter!(TOKEN_REQUESTS, "provider" => p, "grant" => grant.as_str(), "result" => result)
                    .absolute(0);
            }
        }
        counter!(TOKENS_ROTATED, "provider" => p).absolute(0);
    }
    counter!(OPTIONAL_CHECKS_REFUSED, "provider" => Provider::GoogleWorkspace.as_str(), "check" => "google_directory")
        .absolute(0);
    for operation in OWN_FAILURE_OPERATIONS {
        counter!(OWN_FAILURES, "operation" => *operation).absolute(0);
    }
    for name in [
        LEASE_CLAIMS,
        LEASE_LOST,
        LEASE_RECLAIMS,
        ABANDONED,
        STALL_PASSES,
    ] {
        counter!(name).absolute(0);
    }
    gauge!(QUEUE_LAG).set(0.0);
    // Every icon and reason at 0 until the first stall pass counts the members.
    for icon in Icon::ALL {
        for reason in Reason::ALL {
            members(*icon, *reason, 0);
        }
    }
    for result in ["delivered", "retry", "dead", "lease_lost"] {
        counter!(WEBHOOK_DELIVERIES, "result" => result).absolute(0);
    }
    gauge!(WEBHOOK_OLDEST_UNDELIVERED).set(0.0);
}

/// One webhook try ended; `recorded` is false when the lease was lost before it was
/// written. Logs name the company, endpoint and event, never the secret or the body.
pub(crate) fn webhook_try(
    delivery: &datacap_store::WebhookDelivery,
    attempt: &datacap_store::WebhookTry,
    next: datacap_store::DeliveryNext,
    recorded: bool,
) {
    use datacap_store::DeliveryNext;
    let result = match (recorded, next) {
        (false, _) => "lease_lost",
        (true, DeliveryNext::Delivered) => "delivered",
        (true, DeliveryNext::Retry(_)) => "retry",
        (true, DeliveryNext::Dead) => "dead",
    };
    counter!(WEBHOOK_DELIVERIES, "result" => result).increment(1);
    let duration_ms = u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX);
    let error = attempt.error.as_deref().unwrap_or("");
    // What both lines say: which delivery, and the answer's status.
    macro_rules! webhook_event {
        ($level:ident, $($rest:tt)+) => {
            tracing::$level!(
                company_id = %delivery.company_id,
                endpoint_id = %delivery.endpoint_id,
                event_id = %delivery.event_id,
                event_type = %delivery.event_type,
                http_status = attempt.http_status,
                $($rest)+
            )
        };
    }
    match result {
        "delivered" => webhook_event!(info, duration_ms, "webhook delivered"),
        _ => webhook_event!(
            warn,
            error,
            tries = delivery.tries + 1,
            result,
            "webhook try failed (result dead: given up, `datacap webhooks redeliver` sends it again)"
        ),
    }
}

/// The oldest undelivered webhook event is `age` old (zero when none waits).
pub(crate) fn webhook_backlog(age: Duration) {
    gauge!(WEBHOOK_OLDEST_UNDELIVERED).set(age.as_secs_f64());
}
