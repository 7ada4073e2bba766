//! The shared HTTP plumbing against real sockets on loopback: a body over the limit, a
//! connection reset mid-body, a server that never answers, and a refused connection each
//! become the outcome PROVIDERS.md gives them.

use std::time::Duration;

use datacap_connector::{Failure, HttpLimits, build_client, read_body};
use datacap_core::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one raw HTTP answer per connection: `head` then `body`, then closes (or waits).
async fn raw_server(answer: &'static [u8], then_wait: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(answer).await;
                if then_wait {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    format!("http://{addr}/")
}

fn limits() -> HttpLimits {
    HttpLimits {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
        max_body_bytes: 16,
    }
}

/// The answer a client with `limits` gets from a [`raw_server`] sending `raw`.
async fn answer(raw: &'static [u8], limits: HttpLimits) -> reqwest::Response {
    let url = raw_server(raw, false).await;
    let client = build_client(&limits).expect("client");
    client.get(&url).send().await.expect("answer")
}

/// Reading the body of `raw` under the 16-byte limit fails as a provider error: the failure.
async fn over_the_limit(raw: &'static [u8]) -> Failure {
    let response = answer(raw, limits()).await;
    let failure = read_body(response, 16).await.expect_err("over the limit");
    assert_eq!(failure.outcome, Outcome::ProviderError);
    failure
}

/// A GET of `url` that must fail (`what` says why): its error.
async fn failed_get(client: &reqwest::Client, url: &str, what: &str) -> reqwest::Error {
    client.get(url).send().await.expect_err(what)
}

#[tokio::test]
async fn a_body_within_the_limit_is_read() {
    let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nrequest-id: r-1\r\n\r\n{}";
    let response = answer(raw, limits()).await;
    assert_eq!(read_body(response, 16).await.expect("body"), b"{}");
}

#[tokio::test]
async fn a_declared_oversized_body_is_a_provider_error() {
    let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 64\r\nrequest-id: r-2\r\n\r\n{\"value\":[]}";
    let failure = over_the_limit(raw).await;
    assert_eq!(failure.http_status, Some(200));
    assert_eq!(failure.request_id.as_deref(), Some("r-2"));
}

#[tokio::test]
async fn a_streamed_oversized_body_is_a_provider_error() {
    let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    over_the_limit(raw).await;
}

#[tokio::test]
async fn a_reset_mid_body_is_a_network_error() {
    let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"value\":";
    let larger = HttpLimits {
        max_body_bytes: 1024,
        ..limits()
    };
    let response = answer(raw, larger).await;
    let failure = read_body(response, 1024).await.expect_err("cut short");
    assert_eq!(failure.outcome, Outcome::NetworkError, "{failure}");
    assert_eq!(failure.http_status, Some(200));
}

#[tokio::test]
async fn a_silent_server_times_out_as_a_network_error() {
    let url = raw_server(b"", true).await;
    let client = build_client(&limits()).expect("client");
    let error = failed_get(&client, &url, "no answer").await;
    let failure = datacap_connector::transport_failure(&error);
    assert_eq!(failure.outcome, Outcome::NetworkError);
    let message = failure.error_message.as_deref().unwrap_or("");
    assert!(message.starts_with("timed out"), "{failure}");
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = build_client(&limits()).expect("client");
    let error = failed_get(&client, &format!("http://{addr}/"), "refused").await;
    let failure = datacap_connector::transport_failure(&error);
    assert_eq!(failure.outcome, Outcome::NetworkError);
    let message = failure.error_message.as_deref().unwrap_or("");
    assert!(message.starts_with("could not connect"), "{failure}");
    // An https URL builds a TLS client with the workspace's provider and fails cleanly.
    let error = failed_get(&client, &format!("https://{addr}/"), "refused").await;
    assert_eq!(
        datacap_connector::transport_failure(&error).outcome,
        Outcome::NetworkError
    );
}
