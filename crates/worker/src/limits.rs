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
    /// How long requests waited in the gates for pauses (what the tests check).
    #[cfg(test)]
    pause_waited: Mutex<Duration>,
}

impl TenantLimits {
    pub(crate) fn new(rate: NonZeroU32, burst: NonZeroU32, max_pause: Duration) -> TenantLimits {
        TenantLimits {
            bucket: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            paused: Mutex::new(HashMap::new()),
            max_pause,
            #[cfg(test)]
            pause_waited: Mutex::new(Duration::ZERO),
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
                #[cfg(test)]
                {
                    *self
                        .limits
                        .pause_waited
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) += left;
                }
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

    fn pause(&self, wait: Duration) -> Option<Duration> {
        let wait = self.limits.pause(&self.company, wait)?;
        info!(
            company = %self.company,
            pause_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "provider asked to wait: every request of the company paused"
        );
        Some(wait)
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

    const SCENARIO: &str = r#"
seed = 7

[[tenant]]
name = "contoso"
provider = "microsoft"
domain = "contoso.example"
tenant_id = "8f3e1c52-2d4a-4c1e-9b7a-3f5d6e7a8b9c"
[tenant.app]
client_id = "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
client_secret = "sim-microsoft-secret"
roles = ["User.Read.All", "Mail.Read", "Calendars.Read"]
[[tenant.user]]
email = "row@contoso.example"
messages = 4
events = 2
[[tenant.user.fault]]
fault = "application_throttled"
retry_after = 1
times = 1
"#;

    /// A Graph 429 with `Retry-After: 1` inside an attempt, through the worker's own gate:
    /// the retry waits once, in the gate (which holds the whole company), not in a sleep
    /// of the connector's followed by the gate's pause.
    #[tokio::test]
    async fn a_microsoft_retry_after_a_429_waits_once_in_the_gate() {
        use datacap_connector::{Connector, ImportJob, JobAuth, MicrosoftAppCredential};
        use datacap_microsoft::{MicrosoftConfig, MicrosoftConnector};
        use secrecy::SecretString;

        let scenario =
            datacap_sim::Scenario::from_toml(SCENARIO, "limits-tests", std::path::Path::new("."))
                .expect("scenario");
        let sim = datacap_sim::Sim::start(scenario, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("sim starts");
        datacap_connector::http::install_crypto_provider();
        let endpoints = sim.endpoints();
        let mut config =
            MicrosoftConfig::with_bases(&endpoints.microsoft_login_base, &endpoints.graph_base);
        config.throttle_retries = 1;
        config.max_retry_wait = Duration::from_secs(5);
        let connector = MicrosoftConnector::new(config).expect("connector");
        let limits = limits(1000, 1000, Duration::from_secs(60));
        let job = ImportJob {
            attempt_id: uuid::Uuid::new_v4(),
            company_id: "contoso".into(),
            member_id: "row".into(),
            member_address: "row@contoso.example".into(),
            channel: datacap_core::Channel::Email,
            auth: JobAuth::MicrosoftApp(Arc::new(MicrosoftAppCredential {
                tenant: "8f3e1c52-2d4a-4c1e-9b7a-3f5d6e7a8b9c".into(),
                client_id: "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b".into(),
                client_secret: SecretString::from("sim-microsoft-secret"),
            })),
            cursor: None,
            now: time::OffsetDateTime::now_utc(),
            gate: limits.gate("contoso", Provider::Microsoft365),
        };
        let started = Instant::now();
        let attempt = connector.import(&job).await;
        let elapsed = started.elapsed();
        assert_eq!(
            attempt.outcome,
            datacap_core::Outcome::Success,
            "{:?} {:?}",
            attempt.http_status,
            attempt.error_message
        );
        assert_eq!(attempt.requests, 3, "a token, the 429, one retry");
        assert!(
            elapsed >= Duration::from_millis(950),
            "Retry-After honoured: {elapsed:?}"
        );
        // Before, the connector slept the second itself and the gate, whose pause had run
        // out meanwhile, waited nothing.
        let in_gate = *limits
            .pause_waited
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        assert!(
            in_gate >= Duration::from_millis(900),
            "the retry waited {in_gate:?} in the gate (of {elapsed:?} in all)"
        );
        assert!(
            elapsed < in_gate + Duration::from_millis(900),
            "waited {elapsed:?} in all, {in_gate:?} of it in the gate: the connector slept too"
        );
        sim.shutdown().await;
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
