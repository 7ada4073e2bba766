//! datacap-worker: the poller behind `datacap run` and `datacap demo`.
//!
//! It claims due (member, channel) jobs from the store under a lease, runs each on its
//! provider's connector within the limits (a global concurrency cap, one attempt per
//! member, a token bucket per company), writes every attempt atomically with the member's
//! recomputed status and the company's banners, and schedules the next poll. A periodic
//! stall pass re-evaluates every status against `now`. Scheduling decisions are pure
//! functions ([`schedule`]) that take `now` and a random number.
//!
//! The worker reads no file, no environment variable and no config: the binary hands it a
//! [`Store`](datacap_store::Store), the connectors (a [`datacap_connector::Registry`]: this
//! crate depends on no provider crate), a [`CredentialResolver`] and a
//! [`WorkerConfig`].

mod credentials;
pub mod events;
mod health;
pub mod limits;
mod rotation;
pub mod schedule;
pub mod webhooks;
mod worker;
mod writer;

pub use credentials::{CompanyCredentials, CredentialError, CredentialResolver};
pub use health::{Health, NotReady};
pub use rotation::store_token_sink;
pub use schedule::ScheduleConfig;
pub use webhooks::{WebhookConfig, WebhookDeliverer, WebhookError, WebhookSecrets};
pub use worker::{ConfigError, CycleReport, Worker, WorkerConfig, WorkerError};

/// The runtime the worker is sized for: two threads, as on a machine of two cores, with
/// IO and timers. `datacap run` polls on it, and the bench measures the worker on the same.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
