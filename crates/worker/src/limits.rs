//! Per-tenant request limits: the token bucket every provider request of a company takes
//! one token from, and the pause a provider's `Retry-After` puts on the whole company.
//!
//! The worker hands each job a [`Gate`] built here; the connectors await it before every
//! HTTP request (token endpoints included) and report every `429`/`503` with
//! `Retry-After` to it. A `Retry-After` of up to [`TENANT_PAUSE_MAX`] pauses every request
//! of the company (requests under way wait it out in their gate, jobs about to start are
//! given back until it ends); a longer one is a quota of that member's own (Google charges
//! per `quotaUser`, a mailbox can be throttled alone) and only delays that member's job,
//! through its schedule, up to `max_retry_after`. Both maps are pruned of idle tenants by
//! [`TenantLimits::prune`], which the stall pass calls.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use datacap_connector::{Gate, GateFuture, RequestGate};
use datacap_core::Provider;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tracing::info;

use crate::events;

/// The longest `Retry-After` that pauses a whole company (see the module docs).
pub const TENANT_PAUSE_MAX: Duration = Duration::from_secs(60);

/// The token buckets and pauses of every tenant this process works for.
pub(crate) struct TenantLimits {
    bucket: DefaultKeyedRateLimiter<String>,
    paused: Mutex<HashMap<String, Instant>>,
    max_pause: Duration,
}

impl TenantLimits {
    pub(crate) fn new(rate: NonZeroU32, burst: NonZeroU32, max_pause: Duration) -> TenantLimits {
        TenantLimits {
            bucket: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            paused: Mutex::new(HashMap::new()),
            max_pause,
        }
    }

    /// The gate of `company`'s requests.
    pub(crate) fn gate(self: &Arc<Self>, company: &str, provider: Provider) -> Gate {
        Gate::new(Arc::new(TenantGate {
            limits: Arc::clone(self),
            company: company.to_owned(),
            provider,
        }))
    }

    /// How long `company` is still paused by a `Retry-After`, if it is.
    pub(crate) fn paused_for(&self, company: &str) -> Option<Duration> {
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        paused
            .get(company)
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// Pauses `company` for `wait` (capped at `max_pause`); an existing longer pause stays.
    /// A `wait` over [`TENANT_PAUSE_MAX`] pauses nothing (`None`).
    pub(crate) fn pause(&self, company: &str, wait: Duration) -> Option<Duration> {
        if wait > TENANT_PAUSE_MAX {
            return None;
        }
        let wait = wait.min(self.max_pause);
        let until = Instant::now() + wait;
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = paused.entry(company.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
        Some(wait)
    }

    /// Forgets tenants with a full bucket and pauses that are over.
    pub(crate) fn prune(&self) {
        self.bucket.retain_recent();
        self.bucket.shrink_to_fit();
        let now = Instant::now();
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        paused.retain(|_, until| *until > now);
        paused.shrink_to_fit();
    }

    /// Tenants the limits hold state for (buckets, pauses), for the pruning test.
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        (self.bucket.len(), paused.len())
    }
}

/// One company's gate.
struct TenantGate {
    limits: Arc<TenantLimits>,
    company: String,
    provider: Provider,
}

impl RequestGate for TenantGate {
    fn ready(&self) -> GateFuture<'_> {
        Box::pin(async move {
            // A pause can be extended while we sleep (another member's 429): look again.
            while let Some(left) = self.limits.paused_for(&self.company) {
                tokio::time::sleep(left).await;
                events::rate_limit_wait(self.provider, events::WaitCause::RetryAfter, left);
            }
            if self.limits.bucket.check_key(&self.company).is_err() {
                let started = Instant::now();
                self.limits.bucket.until_key_ready(&self.company).await;
                events::rate_limit_wait(
                    self.provider,
                    events::WaitCause::Bucket,
                    started.elapsed(),
                );
            }
        })
    }

    fn pause(&self, wait: Duration) {
        let Some(wait) = self.limits.pause(&self.company, wait) else {
            return;
        };
        info!(
            company = %self.company,
            pause_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "provider asked to wait: every request of the company paused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32, max_pause: Duration) -> Arc<TenantLimits> {
        Arc::new(TenantLimits::new(
            NonZeroU32::new(rate).expect("rate"),
            NonZeroU32::new(burst).expect("burst"),
            max_pause,
        ))
    }

    #[tokio::test]
    async fn a_pause_is_capped_per_company_and_pruned_when_over() {
        let limits = limits(1000, 1000, Duration::from_secs(40));
        // Over TENANT_PAUSE_MAX: the member's own quota, not the company's.
        assert_eq!(limits.pause("acme", Duration::from_secs(3600)), None);
        assert_eq!(limits.paused_for("acme"), None);
        assert_eq!(
            limits.pause("acme", Duration::from_secs(50)),
            Some(Duration::from_secs(40))
        );
        let left = limits.paused_for("acme").expect("acme paused");
        assert!(left <= Duration::from_secs(40) && left > Duration::from_secs(20));
        assert_eq!(limits.paused_for("globex"), None);
        // A shorter pause does not shorten a longer one.
        limits.pause("acme", Duration::from_millis(1));
        assert!(limits.paused_for("acme").expect("still paused") > Duration::from_secs(20));

        limits.pause("globex", Duration::ZERO);
        limits
            .gate("initech", Provider::GoogleWorkspace)
            .ready()
            .await;
        assert_eq!(limits.tracked(), (1, 2));
        limits.prune();
        // globex's pause is over, acme's is not; initech's bucket goes once it is full.
        let (buckets, pauses) = limits.tracked();
        assert_eq!(pauses, 1);
        assert!(buckets <= 1);
    }

    #[tokio::test]
    async fn the_gate_waits_out_a_pause() {
        let limits = limits(1000, 1000, Duration::from_secs(60));
        let gate = TenantGate {
            limits: Arc::clone(&limits),
            company: "acme".to_owned(),
            provider: Provider::Microsoft365,
        };
        RequestGate::pause(&gate, Duration::from_millis(200));
        assert!(limits.paused_for("acme").is_some());
        assert_eq!(limits.paused_for("globex"), None);
        tokio::time::timeout(Duration::from_secs(30), gate.ready())
            .await
            .expect("the pause ends");
        assert_eq!(limits.paused_for("acme"), None);
    }
}
