//! datacap-sim: a faithful fake of Google Workspace and Microsoft 365 on loopback.
//!
//! No test machine reaches Google or Microsoft, so the connectors, the worker, the demo and
//! the benchmarks all run against this sim. It answers status for status and body for body
//! what providers/google.md and providers/microsoft.md quote, from a [`Scenario`] that says
//! who exists and what goes wrong for them.
//!
//! # Layout
//!
//! One listener serves both providers; every real host is mirrored under a prefix:
//!
//! | real | sim |
//! |---|---|
//! | `https://oauth2.googleapis.com/token` | `{base}/google/token` |
//! | `https://accounts.google.com/o/oauth2/v2/auth` | `{base}/google/authorize` |
//! | `https://gmail.googleapis.com/gmail/v1/users/{userId}/…` | `{base}/google/gmail/v1/users/{userId}/…` |
//! | `https://www.googleapis.com/calendar/v3/calendars/{calendarId}/events` | `{base}/google/calendar/v3/calendars/{calendarId}/events` |
//! | `https://admin.googleapis.com/admin/directory/v1/users` | `{base}/google/admin/directory/v1/users` |
//! | `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/{token,authorize}` | `{base}/microsoft/{tenant}/oauth2/v2.0/{token,authorize}` |
//! | `https://graph.microsoft.com/v1.0/…` | `{base}/graph/v1.0/…` |
//! | — (control) | `{base}/_sim/…` |
//!
//! [`Endpoints`] holds each base URL. docs/sim.md documents the scenario format, the fault
//! names and the control endpoint.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), datacap_sim::SimError> {
//! let scenario = datacap_sim::Scenario::from_file("config/sim/small.toml".as_ref())?;
//! let sim = datacap_sim::Sim::start(scenario, "127.0.0.1:0".parse().unwrap()).await?;
//! println!("graph at {}", sim.endpoints().graph_base);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod catalogue;
mod control;
mod fault;
mod google;
mod json;
mod microsoft;
mod oauth;
mod paging;
mod scenario;
mod server;
mod state;

pub use catalogue::names as catalogue_fault_names;
pub use fault::{EndpointSel, FaultKind, RetryAfter};
pub use scenario::{
    Client, FaultSpec, MAX_GENERATED, Provider, Scenario, ServiceAccount, Tenant, User,
};

/// What can go wrong starting the sim or loading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file cannot be read.
    #[error("cannot read scenario {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario is malformed; `line` and `column` point at the offending field.
    #[error("{path}:{line}:{column}: {message}")]
    Scenario {
        /// The file (or the name given to [`Scenario::from_toml`]).
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The listener cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The https listener's certificate or key does not load.
    #[error("cannot set up https: {message}")]
    Tls {
        /// What is wrong.
        message: String,
    },
}

/// The CA certificate (PEM) that signed the https listener's certificate: hand it to a
/// client as its only trust anchor. **Fake and test-only** (config/sim/keys/; the CA's key
/// was discarded after signing, so nothing else can be issued under it).
pub const TEST_CA_PEM: &str =
    include_str!("../../../config/sim/keys/FAKE-TEST-ONLY-sim-tls-ca.pem");

/// Every base URL a connector configuration needs, without trailing slashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Google token endpoint (`…/google/token`).
    pub google_token_url: String,
    /// Google authorize endpoint (`…/google/authorize`).
    pub google_authorize_url: String,
    /// Gmail API base: append `/users/{userId}/profile` etc. (`…/google/gmail/v1`).
    pub gmail_base: String,
    /// Calendar API base: append `/calendars/{calendarId}/events` (`…/google/calendar/v3`).
    pub calendar_base: String,
    /// Directory API base: append `/users` (`…/google/admin/directory/v1`).
    pub directory_base: String,
    /// Entra ID authority base: `{microsoft_login_base}/{tenant}/oauth2/v2.0/token`.
    pub microsoft_login_base: String,
    /// Graph base: append `/users` etc. (`…/graph/v1.0`).
    pub graph_base: String,
    /// Control endpoint base (`…/_sim`).
    pub control_url: String,
}

impl Endpoints {
    /// The endpoints of a sim listening at `base` (`http://host:port`).
    pub fn at(base: &str) -> Endpoints {
        let base = base.trim_end_matches('/').to_owned();
        Endpoints {
            google_token_url: format!("{base}/google/token"),
            google_authorize_url: format!("{base}/google/authorize"),
            gmail_base: format!("{base}/google/gmail/v1"),
            calendar_base: format!("{base}/google/calendar/v3"),
            directory_base: format!("{base}/google/admin/directory/v1"),
            microsoft_login_base: format!("{base}/microsoft"),
            graph_base: format!("{base}/graph/v1.0"),
            control_url: format!("{base}/_sim"),
            base,
        }
    }

    /// Microsoft token endpoint of `tenant` (id, domain, or `common`).
    pub fn microsoft_token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.microsoft_login_base)
    }

    /// Google's OpenID issuer as the sim mirrors `https://accounts.google.com`: the `iss`
    /// of its `id_token`s and the base of its discovery document.
    pub fn google_issuer(&self) -> String {
        format!("{}/google", self.base)
    }

    /// Google's discovery document (`{issuer}/.well-known/openid-configuration`).
    pub fn google_openid_configuration_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.google_issuer())
    }

    /// Google's JWKS (`https://www.googleapis.com/oauth2/v3/certs`).
    pub fn google_jwks_url(&self) -> String {
        format!("{}/oauth2/v3/certs", self.google_issuer())
    }

    /// Entra's v2.0 issuer of the tenant with GUID `tid`
    /// (`https://login.microsoftonline.com/{tid}/v2.0`).
    pub fn microsoft_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.microsoft_login_base)
    }

    /// Entra's v2.0 discovery document of `tenant` (id, domain, `common`, …).
    pub fn microsoft_openid_configuration_url(&self, tenant: &str) -> String {
        format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            self.microsoft_login_base
        )
    }

    /// Entra's v2.0 JWKS of `tenant`.
    pub fn microsoft_jwks_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/discovery/v2.0/keys", self.microsoft_login_base)
    }

    /// Microsoft authorize endpoint of `tenant`.
    pub fn microsoft_authorize_url(&self, tenant: &str) -> String {
        format!(
            "{}/{tenant}/oauth2/v2.0/authorize",
            self.microsoft_login_base
        )
    }
}

/// Starts sims.
pub struct Sim;

impl Sim {
    /// Binds `listen` (port 0 picks a free port) and serves `scenario` over plain http on
    /// the current tokio runtime until [`SimHandle::shutdown`] (or until the handle is
    /// dropped).
    pub async fn start(scenario: Scenario, listen: SocketAddr) -> Result<SimHandle, SimError> {
        Sim::serve(scenario, listen, None).await
    }

    /// Like [`Sim::start`], over https with the shipped test certificate (for `127.0.0.1`,
    /// `::1` and `localhost`, signed by [`TEST_CA_PEM`]); the endpoints are `https://…`.
    /// Clients that insist on https (msal) can then be pointed at the sim.
    pub async fn start_https(
        scenario: Scenario,
        listen: SocketAddr,
    ) -> Result<SimHandle, SimError> {
        Sim::serve(scenario, listen, Some(server::tls::config()?)).await
    }

    async fn serve(
        scenario: Scenario,
        listen: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<SimHandle, SimError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints = Endpoints::at(&format!("{scheme}://{local_addr}"));
        let shared = Arc::new(server::Shared::new(
            state::World::new(scenario),
            endpoints.clone(),
        ));
        let app = server::router(shared);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(async move {
            let served = match tls {
                None => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await
                }
                Some(config) => {
                    let listener = server::tls::TlsListener {
                        tcp: listener,
                        acceptor: tokio_rustls::TlsAcceptor::from(config),
                    };
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await
                }
            };
            if let Err(error) = served {
                tracing::warn!(%error, "datacap-sim stopped with an error");
            }
        });
        Ok(SimHandle {
            endpoints,
            local_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running sim.
pub struct SimHandle {
    endpoints: Endpoints,
    local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// The base URLs to put in a connector configuration.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The control endpoint base (`…/_sim`).
    pub fn control_url(&self) -> &str {
        &self.endpoints.control_url
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight answers finish (at most 5 s), and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
