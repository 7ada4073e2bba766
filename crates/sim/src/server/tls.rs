//! The https listener: the shipped test certificate, and a listener that hands axum only
//! connections whose TLS handshake completed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::SimError;

const TLS_CERT_PEM: &str = include_str!("../../../../config/sim/keys/FAKE-TEST-ONLY-sim-tls.pem");
const TLS_KEY_PEM: &str =
    include_str!("../../../../config/sim/keys/FAKE-TEST-ONLY-sim-tls.key.pem");

/// The https listener's rustls configuration (ring, the workspace's one provider).
pub(crate) fn config() -> Result<Arc<rustls::ServerConfig>, SimError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |message: String| SimError::Tls { message };
    let certs = CertificateDer::pem_slice_iter(TLS_CERT_PEM.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(format!("test certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(TLS_KEY_PEM.as_bytes())
        .map_err(|e| tls(format!("test key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener that hands axum only connections whose TLS handshake completed (within
/// 5 s); a failed handshake is dropped and accepting goes on.
pub(crate) struct TlsListener {
    pub(crate) tcp: tokio::net::TcpListener,
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "datacap-sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            match tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(error)) => tracing::debug!(%error, "datacap-sim: TLS handshake failed"),
                Err(_) => tracing::debug!("datacap-sim: TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
