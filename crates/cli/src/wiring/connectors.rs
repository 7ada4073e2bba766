//! The provider connectors the binary builds from its config: both, as their own types for
//! what only the binary does with them (the connect flow's code exchange, the demo's
//! set-up), and as the [`Registry`] the worker runs jobs on, which names no provider.

use std::sync::Arc;

use anyhow::Context;
use datacap_connector::{MemberConnect, RefreshTokenSink, Registry};
use datacap_core::Provider;
use datacap_google::{GoogleConfig, GoogleConnector};
use datacap_microsoft::{MicrosoftConfig, MicrosoftConnector};

use crate::config::Config;

/// The connectors, by provider. A provider without one cannot be polled or connected to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Connectors {
    pub google: Option<Arc<GoogleConnector>>,
    pub microsoft: Option<MicrosoftConnector>,
}

impl Connectors {
    /// The worker's view: the same connectors behind the provider-free registry.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::new();
        if let Some(google) = &self.google {
            registry = registry.with(google.clone());
        }
        if let Some(microsoft) = &self.microsoft {
            registry = registry.with(Arc::new(microsoft.clone()));
        }
        registry
    }

    /// The connect flow's side of `provider`'s connector, if there is one.
    pub fn member_connect(&self, provider: Provider) -> Option<&dyn MemberConnect> {
        match provider {
            Provider::GoogleWorkspace => self
                .google
                .as_deref()
                .map(|google| google as &dyn MemberConnect),
            Provider::Microsoft365 => self
                .microsoft
                .as_ref()
                .map(|microsoft| microsoft as &dyn MemberConnect),
            Provider::None => None,
        }
    }
}

/// Both connectors at the configured base URLs; `sink` stores refresh tokens Microsoft
/// rotates as soon as they are issued.
pub(crate) fn build(
    config: &Config,
    sink: Option<Arc<dyn RefreshTokenSink>>,
) -> anyhow::Result<Connectors> {
    let google = &config.google;
    let google_config = GoogleConfig {
        mail_window: google.mail_window,
        calendar_past: google.calendar_past,
        calendar_future: google.calendar_future,
        page_size: google.page_size,
        max_pages: google.max_pages,
        authorize_url: google.authorize_url.clone(),
        ..GoogleConfig::default().with_endpoints(
            &google.token_url,
            &google.gmail_base,
            &google.calendar_base,
            &google.directory_base,
        )
    };
    let microsoft = &config.microsoft;
    let mut microsoft_config =
        MicrosoftConfig::with_bases(&microsoft.login_base, &microsoft.graph_base);
    microsoft_config.calendar_past = time::Duration::try_from(microsoft.calendar_past)
        .context("microsoft.calendar_past is too long")?;
    microsoft_config.calendar_future = time::Duration::try_from(microsoft.calendar_future)
        .context("microsoft.calendar_future is too long")?;
    microsoft_config.max_pages_per_attempt = microsoft.max_pages_per_attempt;
    microsoft_config.max_page_size = microsoft.max_page_size;
    Ok(Connectors {
        google: Some(Arc::new(
            GoogleConnector::new(google_config).context("invalid [google] configuration")?,
        )),
        microsoft: Some(
            match sink {
                Some(sink) => MicrosoftConnector::with_refresh_token_sink(microsoft_config, sink),
                None => MicrosoftConnector::new(microsoft_config),
            }
            .context("invalid [microsoft] configuration")?,
        ),
    })
}
