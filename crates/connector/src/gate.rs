//! The per-request gate: what a connector awaits before every HTTP request it sends to a
//! provider, and what it tells when a provider asks it to slow down.
//!
//! The worker hands each [`ImportJob`](crate::ImportJob) a [`Gate`] for the job: its token
//! bucket spaces every request of every attempt of the job's company, and a `429`/`503`
//! with `Retry-After` pauses exactly what the provider throttled, as the connector reads
//! it from the answer ([`ThrottleScope`]): the member's one API, the member's mailbox
//! (both channels), the company's tenant, or every company on the same app or project.
//! One hot mailbox must not hold back its colleagues (docs/throttling.md). Every request
//! counts for the bucket, the token endpoints included: Entra and Google throttle token
//! requests per tenant and client too (AADSTS90055/50196), and a rate that counts every
//! request is the one an operator can check against the provider's figures.
//!
//! A connector used on its own (tests, `datacap demo`'s one-off calls, the connect flow)
//! gets [`Gate::open`], which never waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// What a throttling answer holds back, as the provider scopes the limit it hit
/// (PROVIDERS.md "Throttling has a scope"; the table with sources is docs/throttling.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThrottleScope {
    /// The member's quota on one API (Gmail's and Calendar's per-user limits are
    /// separate): only this member's channel waits.
    MemberChannel,
    /// The member's mailbox, whichever channel asks (Outlook's limits are per app and
    /// mailbox, mail and calendar alike): both of the member's channels wait.
    Mailbox,
    /// The company's tenant with our app (the identity platform's throttling, Graph's
    /// tenant-level limits, a token endpoint's 429): every member of the company waits.
    Tenant,
    /// Our app or project as a whole (Google's per-project quotas, Graph's per-app
    /// limits across tenants): every company that uses the same app or project waits.
    App,
}

impl ThrottleScope {
    /// The name used in logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            ThrottleScope::MemberChannel => "member_channel",
            ThrottleScope::Mailbox => "mailbox",
            ThrottleScope::Tenant => "tenant",
            ThrottleScope::App => "app",
        }
    }
}

/// A boxed future of a gate (object-safe async).
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The policy behind a [`Gate`], implemented by the worker.
pub trait RequestGate: Send + Sync {
    /// Resolves when the job may send its next request (takes one token of the company's
    /// bucket, after every pause that covers the job).
    fn ready(&self) -> GateFuture<'_>;

    /// A provider answer asked to wait `wait` (`429` or `503` with `Retry-After`) for
    /// what `scope` names. The implementation caps it, and returns how long from now its
    /// `ready` will hold this job's requests (`None`: it took no pause).
    fn pause(&self, wait: Duration, scope: ThrottleScope) -> Option<Duration>;
}

/// What a connector awaits before each provider request. Cheap to clone; the default is
/// [`Gate::open`].
#[derive(Clone, Default)]
pub struct Gate(Option<Arc<dyn RequestGate>>);

impl Gate {
    /// A gate that never waits and ignores `Retry-After` (the connector still honours a
    /// `Retry-After` within its own attempt where it retries).
    pub fn open() -> Gate {
        Gate(None)
    }

    /// A gate run by `policy`.
    pub fn new(policy: Arc<dyn RequestGate>) -> Gate {
        Gate(Some(policy))
    }

    /// Waits until one more request may be sent. Call it right before every request.
    pub async fn ready(&self) {
        if let Some(policy) = &self.0 {
            policy.ready().await;
        }
    }

    /// Reports an answer: a `429` or `503` carrying a valid `Retry-After` pauses what
    /// `scope` names (the connector reads it from the answer's body and endpoint);
    /// anything else is ignored. Returns the pause the gate took: the next
    /// [`Gate::ready`] waits it out, so a connector that retries after a `Retry-After`
    /// must not also sleep it (only a wait longer than the gate's is the connector's own).
    pub fn answered(
        &self,
        status: u16,
        headers: &HeaderMap,
        scope: ThrottleScope,
    ) -> Option<Duration> {
        let policy = self.0.as_ref()?;
        if status != 429 && status != 503 {
            return None;
        }
        policy.pause(crate::http::retry_after(headers, SystemTime::now())?, scope)
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Gate(tenant)"
        } else {
            "Gate(open)"
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use reqwest::header::HeaderValue;

    use super::*;

    #[derive(Default)]
    struct Recorder {
        readies: Mutex<u32>,
        pauses: Mutex<Vec<(Duration, ThrottleScope)>>,
    }

    impl RequestGate for Recorder {
        fn ready(&self) -> GateFuture<'_> {
            Box::pin(async move {
                *self.readies.lock().expect("lock") += 1;
            })
        }

        fn pause(&self, wait: Duration, scope: ThrottleScope) -> Option<Duration> {
            self.pauses.lock().expect("lock").push((wait, scope));
            Some(wait)
        }
    }

    #[tokio::test]
    async fn only_throttling_answers_with_retry_after_pause() {
        let recorder = Arc::new(Recorder::default());
        let gate = Gate::new(recorder.clone());
        gate.ready().await;
        gate.ready().await;
        assert_eq!(*recorder.readies.lock().expect("lock"), 2);

        let mut headers = HeaderMap::new();
        let member = ThrottleScope::MemberChannel;
        assert_eq!(gate.answered(429, &headers, member), None); // no Retry-After
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(gate.answered(200, &headers, member), None);
        assert_eq!(gate.answered(403, &headers, member), None);
        assert_eq!(
            gate.answered(429, &headers, ThrottleScope::Mailbox),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            gate.answered(503, &headers, ThrottleScope::Tenant),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            *recorder.pauses.lock().expect("lock"),
            [
                (Duration::from_secs(7), ThrottleScope::Mailbox),
                (Duration::from_secs(7), ThrottleScope::Tenant)
            ],
            "the scope the connector read reaches the policy"
        );

        // The open gate never waits and ignores everything.
        let open = Gate::open();
        open.ready().await;
        assert_eq!(
            open.answered(429, &headers, ThrottleScope::App),
            None,
            "the open gate takes no pause"
        );
        assert_eq!(format!("{open:?}"), "Gate(open)");
        assert_eq!(format!("{gate:?}"), "Gate(tenant)");
    }
}
