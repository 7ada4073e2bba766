//! The connectors the worker can run, by provider, behind trait objects: the worker asks
//! the registry for the job's provider and never names a provider crate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use datacap_core::Provider;

use crate::job::{Attempt, Connector, ImportJob};

/// A future the registry hands out: one import, boxed so connectors fit one trait object.
pub type ImportFuture<'a> = Pin<Box<dyn Future<Output = Attempt> + Send + 'a>>;

/// [`Connector`] as a trait object. Every `Connector` is one; nothing implements it by hand.
pub trait DynConnector: Send + Sync {
    /// The provider this connector speaks to.
    fn provider(&self) -> Provider;

    /// Runs one import (see [`Connector::import`]).
    fn import<'a>(&'a self, job: &'a ImportJob) -> ImportFuture<'a>;
}

impl<T: Connector> DynConnector for T {
    fn provider(&self) -> Provider {
        Connector::provider(self)
    }

    fn import<'a>(&'a self, job: &'a ImportJob) -> ImportFuture<'a> {
        Box::pin(Connector::import(self, job))
    }
}

/// At most one connector per provider. Cheap to clone (the connectors are shared).
#[derive(Clone, Default)]
pub struct Registry {
    connectors: Vec<Arc<dyn DynConnector>>,
}

impl Registry {
    /// No connector: every job of every provider is one the worker cannot run.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The same registry with `connector` for its provider, replacing any earlier one.
    #[must_use]
    pub fn with(mut self, connector: Arc<dyn DynConnector>) -> Registry {
        let provider = connector.provider();
        self.connectors.retain(|known| known.provider() != provider);
        self.connectors.push(connector);
        self
    }

    /// The connector for `provider`, if there is one.
    pub fn get(&self, provider: Provider) -> Option<&dyn DynConnector> {
        self.connectors
            .iter()
            .find(|connector| connector.provider() == provider)
            .map(|connector| connector.as_ref())
    }

    /// Whether jobs of `provider` can run.
    pub fn has(&self, provider: Provider) -> bool {
        self.get(provider).is_some()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.connectors.iter().map(|connector| connector.provider()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datacap_core::{Channel, Outcome};
    use time::OffsetDateTime;
    use uuid::Uuid;

    /// Answers every import with one outcome, to tell connectors apart.
    struct Fixed(Provider, Outcome);

    impl Connector for Fixed {
        fn provider(&self) -> Provider {
            self.0
        }

        async fn import(&self, _job: &ImportJob) -> Attempt {
            Attempt::failed(crate::Failure::new(self.1, "fixed"))
        }
    }

    fn job() -> ImportJob {
        ImportJob {
            attempt_id: Uuid::nil(),
            company_id: "acme".to_owned(),
            member_id: "ana".to_owned(),
            member_address: "ana@acme.test".to_owned(),
            channel: Channel::Email,
            auth: crate::Auth::OAuthClient(Arc::new(crate::OAuthClient {
                client_id: "id".to_owned(),
                client_secret: secrecy::SecretString::from("secret"),
                tenant: None,
            })),
            refresh_token: Some(secrecy::SecretString::from("refresh")),
            cursor: None,
            now: OffsetDateTime::UNIX_EPOCH,
            gate: crate::Gate::open(),
        }
    }

    #[tokio::test]
    async fn each_provider_runs_its_own_connector_and_a_later_one_replaces_an_earlier() {
        let registry = Registry::new()
            .with(Arc::new(Fixed(
                Provider::GoogleWorkspace,
                Outcome::RateLimited,
            )))
            .with(Arc::new(Fixed(
                Provider::Microsoft365,
                Outcome::NetworkError,
            )));
        assert!(!registry.has(Provider::None));
        let google = registry.get(Provider::GoogleWorkspace).expect("google");
        assert_eq!(google.import(&job()).await.outcome, Outcome::RateLimited);
        let microsoft = registry.get(Provider::Microsoft365).expect("microsoft");
        assert_eq!(
            microsoft.import(&job()).await.outcome,
            Outcome::NetworkError
        );

        let replaced = registry.with(Arc::new(Fixed(
            Provider::Microsoft365,
            Outcome::ProviderError,
        )));
        let microsoft = replaced.get(Provider::Microsoft365).expect("microsoft");
        assert_eq!(
            microsoft.import(&job()).await.outcome,
            Outcome::ProviderError
        );
        assert_eq!(format!("{replaced:?}").matches("Microsoft365").count(), 1);
    }
}
