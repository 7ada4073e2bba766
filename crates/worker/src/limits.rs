//! Request limits: the token bucket every provider request of a company takes one token
//! from, and the pauses a provider's `Retry-After` puts on exactly what it throttled.
//!
//! The worker hands each job a [`Gate`] built here for the job's [`Holder`] (company,
//! member, channel, app); the connectors await it before every HTTP request (token
//! endpoints included) and report every `429`/`503` with `Retry-After` to it, with the
//! [`ThrottleScope`] they read from the answer. A pause holds back what the scope names
//! and no more (docs/throttling.md): the member's one API, the member's mailbox (both
//! channels), the company, or every company on the same app or project. Requests under
//! way wait a pause out in their gate; jobs about to start are given back until it ends.
//! A `Retry-After` over [`PAUSE_MAX`] pauses nothing: it only delays that member's job,
//! through its schedule, up to `max_retry_after`. The bucket and the pauses are pruned of
//! idle keys by [`TenantLimits::prune`], which the stall pass calls.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use datacap_connector::{Auth, Gate, GateFuture, RequestGate, ThrottleScope};
use datacap_core::{Channel, Provider};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tracing::info;

use crate::events;

/// The longest `Retry-After` that pauses anything beyond the job's own schedule (see the
/// module docs).
pub const PAUSE_MAX: Duration = Duration::from_secs(60);

/// Whose requests a gate sends: every key a pause may be put on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub company: String,
    pub member: String,
    pub channel: Channel,
    /// Our app or project at the provider (see [`app_key`]).
    pub app: String,
}

impl Holder {
    fn key(&self, scope: ThrottleScope) -> PauseKey {
        match scope {
            ThrottleScope::MemberChannel => {
                PauseKey::MemberChannel(self.company.clone(), self.member.clone(), self.channel)
            }
            ThrottleScope::Mailbox => PauseKey::Mailbox(self.company.clone(), self.member.clone()),
            ThrottleScope::Tenant => PauseKey::Company(self.company.clone()),
            ThrottleScope::App => PauseKey::App(self.app.clone()),
        }
    }

    /// Every key whose pause holds this holder back.
    fn keys(&self) -> [PauseKey; 4] {
        [
            ThrottleScope::MemberChannel,
            ThrottleScope::Mailbox,
            ThrottleScope::Tenant,
            ThrottleScope::App,
        ]
        .map(|scope| self.key(scope))
    }
}

/// Our app or project at the provider, which the provider's per-app and per-project
/// quotas count: the service account's project (the domain of its address, every key
/// of one project shares its quota), the Microsoft app, or the OAuth client.
pub(crate) fn app_key(provider: Provider, auth: &Auth) -> String {
    let app = match auth {
        Auth::GoogleServiceAccount(key) => key
            .client_email
            .rsplit_once('@')
            .map_or(key.client_email.as_str(), |(_, domain)| domain),
        Auth::MicrosoftApp(app) => app.client_id.as_str(),
        Auth::OAuthClient(client) => client.client_id.as_str(),
    };
    format!("{}:{app}", provider.as_str())
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PauseKey {
    MemberChannel(String, String, Channel),
    Mailbox(String, String),
    Company(String),
    App(String),
}

/// The token buckets and pauses of every company this process works for.
pub(crate) struct TenantLimits {
    bucket: DefaultKeyedRateLimiter<String>,
    paused: Mutex<HashMap<PauseKey, Instant>>,
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

    /// The gate of `holder`'s requests.
    pub(crate) fn gate(self: &Arc<Self>, holder: Holder, provider: Provider) -> Gate {
        Gate::new(Arc::new(TenantGate {
            limits: Arc::clone(self),
            holder,
            provider,
        }))
    }

    /// How long `holder` is still held back by a pause, if it is (the longest of the
    /// pauses that cover it).
    pub(crate) fn paused_for(&self, holder: &Holder) -> Option<Duration> {
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        holder
            .keys()
            .iter()
            .filter_map(|key| paused.get(key))
            .map(|until| until.saturating_duration_since(now))
            .max()
            .filter(|left| !left.is_zero())
    }

    /// Pauses what `scope` names of `holder` for `wait` (capped at `max_pause`); an
    /// existing longer pause stays. A `wait` over [`PAUSE_MAX`] pauses nothing (`None`).
    pub(crate) fn pause(
        &self,
        holder: &Holder,
        scope: ThrottleScope,
        wait: Duration,
    ) -> Option<Duration> {
        if wait > PAUSE_MAX {
            return None;
        }
        let wait = wait.min(self.max_pause);
        let until = Instant::now() + wait;
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = paused.entry(holder.key(scope)).or_insert(until);
        *entry = (*entry).max(until);
        Some(wait)
    }

    /// Forgets companies with a full bucket and pauses that are over.
    pub(crate) fn prune(&self) {
        self.bucket.retain_recent();
        self.bucket.shrink_to_fit();
        let now = Instant::now();
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        paused.retain(|_, until| *until > now);
        paused.shrink_to_fit();
    }

    /// Keys the limits hold state for (buckets, pauses), for the pruning test.
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        (self.bucket.len(), paused.len())
    }
}

/// One job's gate.
struct TenantGate {
    limits: Arc<TenantLimits>,
    holder: Holder,
    provider: Provider,
}

impl RequestGate for TenantGate {
    fn ready(&self) -> GateFuture<'_> {
        Box::pin(async move {
            // A pause can be extended while we sleep (another 429): look again.
            while let Some(left) = self.limits.paused_for(&self.holder) {
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
            let company = &self.holder.company;
            if self.limits.bucket.check_key(company).is_err() {
                let started = Instant::now();
                self.limits.bucket.until_key_ready(company).await;
                events::rate_limit_wait(
                    self.provider,
                    events::WaitCause::Bucket,
                    started.elapsed(),
                );
            }
        })
    }

    fn pause(&self, wait: Duration, scope: ThrottleScope) -> Option<Duration> {
        let wait = self.limits.pause(&self.holder, scope, wait)?;
        events::throttle_pause(self.provider, scope);
        info!(
            company = %self.holder.company,
            scope = scope.as_str(),
            pause_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "provider asked to wait: requests in the answer's scope paused"
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

    fn holder(company: &str, member: &str, channel: Channel, app: &str) -> Holder {
        Holder {
            company: company.to_owned(),
            member: member.to_owned(),
            channel,
            app: app.to_owned(),
        }
    }

    #[tokio::test]
    async fn a_pause_is_capped_and_pruned_when_over() {
        let limits = limits(1000, 1000, Duration::from_secs(40));
        let acme = holder("acme", "ada", Channel::Email, "google:p1");
        let globex = holder("globex", "gus", Channel::Email, "google:p2");
        // Over PAUSE_MAX: the member's own quota, through its schedule.
        assert_eq!(
            limits.pause(&acme, ThrottleScope::Tenant, Duration::from_secs(3600)),
            None
        );
        assert_eq!(limits.paused_for(&acme), None);
        assert_eq!(
            limits.pause(&acme, ThrottleScope::Tenant, Duration::from_secs(50)),
            Some(Duration::from_secs(40))
        );
        let left = limits.paused_for(&acme).expect("acme paused");
        assert!(left <= Duration::from_secs(40) && left > Duration::from_secs(20));
        assert_eq!(limits.paused_for(&globex), None);
        // A shorter pause does not shorten a longer one.
        limits.pause(&acme, ThrottleScope::Tenant, Duration::from_millis(1));
        assert!(limits.paused_for(&acme).expect("still paused") > Duration::from_secs(20));

        limits.pause(&globex, ThrottleScope::Tenant, Duration::ZERO);
        limits
            .gate(
                holder("initech", "ida", Channel::Calendar, "google:p3"),
                Provider::GoogleWorkspace,
            )
            .ready()
            .await;
        assert_eq!(limits.tracked(), (1, 2));
        limits.prune();
        // globex's pause is over, acme's is not; initech's bucket goes once it is full.
        let (buckets, pauses) = limits.tracked();
        assert_eq!(pauses, 1);
        assert!(buckets <= 1);
    }

    /// One row per scope: which holders a pause reaches (docs/throttling.md).
    #[test]
    fn a_pause_holds_back_what_its_scope_names_and_no_more() {
        use Channel::{Calendar, Email};
        let ada_mail = holder("acme", "ada", Email, "microsoft:app1");
        let everyone = [
            ("ada's mail", ada_mail.clone()),
            (
                "ada's calendar",
                holder("acme", "ada", Calendar, "microsoft:app1"),
            ),
            ("bob's mail", holder("acme", "bob", Email, "microsoft:app1")),
            (
                "gus, another company on the same app",
                holder("globex", "gus", Email, "microsoft:app1"),
            ),
            (
                "ida, another company and app",
                holder("initech", "ida", Email, "microsoft:app2"),
            ),
            // A member id is a company's own: another company's "ada" is someone else.
            (
                "another company's ada",
                holder("globex", "ada", Email, "microsoft:app1"),
            ),
        ];
        let rows: [(ThrottleScope, &[&str]); 4] = [
            (ThrottleScope::MemberChannel, &["ada's mail"]),
            (ThrottleScope::Mailbox, &["ada's mail", "ada's calendar"]),
            (
                ThrottleScope::Tenant,
                &["ada's mail", "ada's calendar", "bob's mail"],
            ),
            (
                ThrottleScope::App,
                &[
                    "ada's mail",
                    "ada's calendar",
                    "bob's mail",
                    "gus, another company on the same app",
                    "another company's ada",
                ],
            ),
        ];
        for (scope, held) in rows {
            let limits = limits(1000, 1000, Duration::from_secs(60));
            limits.pause(&ada_mail, scope, Duration::from_secs(30));
            for (name, who) in &everyone {
                assert_eq!(
                    limits.paused_for(who).is_some(),
                    held.contains(name),
                    "a {scope:?} pause on ada's mail and {name}"
                );
            }
        }
    }

    #[test]
    fn the_app_key_is_the_project_the_app_or_the_client() {
        use datacap_connector::{MicrosoftAppCredential, OAuthClient, ServiceAccountKey};
        use secrecy::SecretString;
        let google = Auth::GoogleServiceAccount(Arc::new(ServiceAccountKey {
            client_email: "importer@acme-prod.iam.gserviceaccount.com".into(),
            private_key_pem: SecretString::from("k"),
            private_key_id: None,
            directory_admin: None,
        }));
        assert_eq!(
            app_key(Provider::GoogleWorkspace, &google),
            "google_workspace:acme-prod.iam.gserviceaccount.com"
        );
        let microsoft = Auth::MicrosoftApp(Arc::new(MicrosoftAppCredential {
            tenant: "t".into(),
            client_id: "app-1".into(),
            client_secret: SecretString::from("s"),
        }));
        assert_eq!(
            app_key(Provider::Microsoft365, &microsoft),
            "microsoft_365:app-1"
        );
        let member = Auth::OAuthClient(Arc::new(OAuthClient {
            client_id: "client-9".into(),
            client_secret: SecretString::from("s"),
            tenant: None,
        }));
        assert_eq!(
            app_key(Provider::GoogleWorkspace, &member),
            "google_workspace:client-9"
        );
    }

    const SCENARIO: &str = include_str!("../../../tests/fixtures/worker/limits-scenario.toml");

    /// A Graph 429 with `Retry-After: 1` inside an attempt, through the worker's own gate:
    /// the retry waits once, in the gate (which holds the whole company), not in a sleep
    /// of the connector's followed by the gate's pause.
    #[tokio::test]
    async fn a_microsoft_retry_after_a_429_waits_once_in_the_gate() {
        use datacap_connector::{Auth, Connector, ImportJob, MicrosoftAppCredential};
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
            channel: Channel::Email,
            auth: Auth::MicrosoftApp(Arc::new(MicrosoftAppCredential {
                tenant: "8f3e1c52-2d4a-4c1e-9b7a-3f5d6e7a8b9c".into(),
                client_id: "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b".into(),
                client_secret: SecretString::from("sim-microsoft-secret"),
            })),
            refresh_token: None,
            cursor: None,
            now: time::OffsetDateTime::now_utc(),
            gate: limits.gate(
                holder("contoso", "row", Channel::Email, "microsoft_365:app"),
                Provider::Microsoft365,
            ),
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
        let acme = holder("acme", "ada", Channel::Email, "microsoft_365:app");
        let gate = TenantGate {
            limits: Arc::clone(&limits),
            holder: acme.clone(),
            provider: Provider::Microsoft365,
        };
        RequestGate::pause(&gate, Duration::from_millis(200), ThrottleScope::Tenant);
        assert!(limits.paused_for(&acme).is_some());
        assert_eq!(
            limits.paused_for(&holder(
                "globex",
                "gus",
                Channel::Email,
                "microsoft_365:other"
            )),
            None
        );
        tokio::time::timeout(Duration::from_secs(30), gate.ready())
            .await
            .expect("the pause ends");
        assert_eq!(limits.paused_for(&acme), None);
    }
}
