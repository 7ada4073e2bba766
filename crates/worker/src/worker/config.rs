//! What the worker is tuned by (`[worker]` in the config) and how a bad value is named.

use super::*;

/// Everything the worker is tuned by (`[worker]` in the config), validated by
/// [`Worker::new`].
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The lease owner name of this process (unique per daemon).
    pub owner: String,
    /// Attempts in flight at most (the global cap).
    pub concurrency: usize,
    /// Jobs claimed per database round trip at most.
    pub claim_batch: u32,
    /// A claimed job's lease lasts this long unless its heartbeat extends it.
    pub lease: Duration,
    /// While an attempt runs its lease is extended this often.
    pub heartbeat: Duration,
    /// On shutdown, attempts in flight get this long to finish.
    pub grace: Duration,
    /// With nothing due the loop looks again after this long.
    pub idle_wait: Duration,
    /// [`Worker::run_once`] waits for a provider's pause on a job that was due for at
    /// most this long after it started; a job still paused then is left for the next run
    /// and counted in [`CycleReport::paused_past_bound`].
    pub once_pause_wait: Duration,
    /// A user-by-user grant the provider declared dead (`member_grants.state` =
    /// `invalid`) is tried again at most this often, until the member connects again.
    pub invalid_grant_recheck: Duration,
    /// Every status is re-evaluated against `now` this often (stall detection).
    pub stall_pass_interval: Duration,
    /// The daemon deletes attempts older than this (each channel keeps what the
    /// classifier reads; status history is kept); `None` keeps every attempt.
    pub attempts_max_age: Option<Duration>,
    /// The daemon prunes old attempts this often.
    pub retention_pass_interval: Duration,
    /// Attempts started per second per company (token bucket rate).
    pub tenant_rate_per_second: u32,
    /// Token bucket size per company.
    pub tenant_burst: u32,
    /// After a failure of our own the loop waits from this …
    pub own_failure_backoff_base: Duration,
    /// … up to this.
    pub own_failure_backoff_cap: Duration,
    /// Resolved company credentials are reused for this long.
    pub credentials_ttl: Duration,
    /// When jobs are due again.
    pub schedule: ScheduleConfig,
    /// The classifier's thresholds (for the settings check before a job runs).
    pub thresholds: Thresholds,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            owner: format!("datacap-{}", Uuid::new_v4().simple()),
            concurrency: 16,
            claim_batch: 64,
            lease: Duration::from_secs(120),
            heartbeat: Duration::from_secs(30),
            grace: Duration::from_secs(20),
            idle_wait: Duration::from_secs(1),
            once_pause_wait: Duration::from_secs(120),
            invalid_grant_recheck: Duration::from_secs(24 * 3600),
            stall_pass_interval: Duration::from_secs(60),
            attempts_max_age: None,
            retention_pass_interval: Duration::from_secs(3600),
            tenant_rate_per_second: 50,
            tenant_burst: 100,
            own_failure_backoff_base: Duration::from_secs(1),
            own_failure_backoff_cap: Duration::from_secs(30),
            credentials_ttl: Duration::from_secs(300),
            schedule: ScheduleConfig::default(),
            thresholds: Thresholds::default(),
        }
    }
}

/// A worker configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker configuration: {field} {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: &'static str,
}
