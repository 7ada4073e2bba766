//! Webhook delivery end to end below the binary: status changes written by the store reach
//! a real HTTP receiver on loopback that checks every signature with its own HMAC (the
//! Standard Webhooks algorithm, computed here, not with the worker's code). The receiver
//! is down for a while (503s, then one answer too slow for the timeout) and then takes
//! everything: each change once, in the order it was written, though two delivery tasks
//! (two replicas, each with its own connection pool) serve the same database.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use datacap_core::Outcome;
use datacap_store::{SecretRef, Store, StoreOptions, WriteOptions, parse_tenants};
use datacap_worker::{WebhookConfig, WebhookDeliverer, WebhookSecrets};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use crate::support::{attempt, postgres};

/// The Standard Webhooks specification's example secret (24 bytes after `whsec_`).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Receiver {
    /// While true every request gets a 503.
    down: AtomicBool,
    /// Requests answered late, after the sender's timeout (the next ones after `down`).
    slow_left: AtomicUsize,
    refused: AtomicUsize,
    /// Requests whose signature or headers were wrong (must stay 0).
    bad: AtomicUsize,
    /// Accepted deliveries: (webhook-id, body).
    accepted: Mutex<Vec<(String, serde_json::Value)>>,
}

/// The receiver's own verification, straight from the specification: the key is the
/// base64 after `whsec_`; the signed content is `{id}.{timestamp}.{body}`; the header
/// holds space-separated `v1,<base64>` signatures; the timestamp is within 5 minutes.
fn verify(headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("no {name}"))
    };
    let (id, timestamp, signatures) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let seconds: i64 = timestamp.parse().map_err(|_| "bad timestamp".to_owned())?;
    if (OffsetDateTime::now_utc().unix_timestamp() - seconds).abs() > 300 {
        return Err("timestamp out of tolerance".to_owned());
    }
    let key = STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .map_err(|e| e.to_string())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    if signatures.split(' ').any(|candidate| candidate == expected) {
        Ok(id)
    } else {
        Err(format!("no signature matches: {signatures}"))
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if receiver.down.load(Ordering::SeqCst) {
        receiver.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if receiver
        .slow_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
    {
        receiver.refused.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(StdDuration::from_secs(2)).await;
        return StatusCode::OK;
    }
    let id = match verify(&headers, &body) {
        Ok(id) => id,
        Err(_) => {
            receiver.bad.fetch_add(1, Ordering::SeqCst);
            return StatusCode::UNAUTHORIZED;
        }
    };
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        receiver.bad.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let Ok(value) = serde_json::from_slice(&body) else {
        receiver.bad.fetch_add(1, Ordering::SeqCst);
        return StatusCode::BAD_REQUEST;
    };
    receiver.accepted.lock().unwrap().push((id, value));
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver::default());
    receiver.down.store(true, Ordering::SeqCst);
    receiver.slow_left.store(1, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, url)
}

/// Reads the secret file the reference names, as the binary does.
struct FileSecrets;

impl WebhookSecrets for FileSecrets {
    fn secret(&self, reference: &SecretRef) -> Result<SecretString, String> {
        match reference {
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|text| SecretString::from(text.trim().to_owned()))
                .map_err(|error| format!("cannot read {path}: {error}")),
            SecretRef::Env(name) => Err(format!("{name}: no env in this test")),
        }
    }
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database: a SQLite file in `dir`, or a PostgreSQL database of its own at
/// `DATACAP_TEST_POSTGRES_URL` (required: fails, never skips, without it).
async fn database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("datacap.sqlite").display()),
        Backend::Postgres => postgres::create_database("datacap_test").await.1,
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + StdDuration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

async fn a_receiver_that_was_down_gets_every_change_once_in_order(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("acme-hook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let (receiver, url) = start_receiver().await;
    let tenants = include_str!("../../../../tests/fixtures/worker/webhooks-one-endpoint.toml")
        .replace("@URL@", &url)
        .replace("@SECRET_FILE@", &secret_file.display().to_string());
    let url = database(backend, dir.path()).await;
    let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    let now = OffsetDateTime::now_utc();
    store
        .apply_tenants(&parse_tenants(&tenants).unwrap(), now)
        .await
        .unwrap();
    // Green, three network errors (red), green again: a red change and its recovery.
    let options = WriteOptions::default();
    let outcomes = [
        Outcome::Success,
        Outcome::NetworkError,
        Outcome::NetworkError,
        Outcome::NetworkError,
        Outcome::Success,
    ];
    for (step, outcome) in outcomes.into_iter().enumerate() {
        let at = now + Duration::seconds(i64::try_from(step).unwrap());
        store
            .record_attempt(&attempt(outcome, at), at, &options)
            .await
            .unwrap();
    }

    let config = |owner: &str| WebhookConfig {
        owner: owner.to_owned(),
        poll_interval: StdDuration::from_millis(20),
        lease: StdDuration::from_secs(3),
        batch: 8,
        connect_timeout: StdDuration::from_millis(500),
        request_timeout: StdDuration::from_millis(400),
        backoff_base: StdDuration::from_millis(50),
        backoff_cap: StdDuration::from_millis(200),
        give_up_after: StdDuration::from_secs(3600),
    };
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for owner in ["replica-a", "replica-b"] {
        // Each replica with its own pool, as two daemons would have.
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        let deliverer = WebhookDeliverer::new(store, Arc::new(FileSecrets), config(owner)).unwrap();
        let cancel = cancel.clone();
        tasks.push(tokio::spawn(async move { deliverer.run(cancel).await }));
    }
    until("the receiver to refuse a few tries", || {
        receiver.refused.load(Ordering::SeqCst) >= 4
    })
    .await;
    assert!(receiver.accepted.lock().unwrap().is_empty());
    receiver.down.store(false, Ordering::SeqCst);
    let report = store.webhook_endpoints(Some("acme")).await.unwrap();
    let expected = 8;
    let deadline = std::time::Instant::now() + StdDuration::from_secs(20);
    while receiver.accepted.lock().unwrap().len() < expected {
        if std::time::Instant::now() > deadline {
            let tries = raw_strings(&url, "SELECT COALESCE(CAST(http_status AS TEXT), '') || ' ' || COALESCE(error, '') FROM webhook_tries ORDER BY id").await;
            panic!(
                "timed out: accepted {}, bad {}, refused {}, tries {tries:?}",
                receiver.accepted.lock().unwrap().len(),
                receiver.bad.load(Ordering::SeqCst),
                receiver.refused.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    // Nothing more comes: let both tasks look again a few times.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    cancel.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(receiver.bad.load(Ordering::SeqCst), 0, "bad signatures");
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), expected, "each change exactly once");
    assert!(
        report[0].backlog > 0,
        "a backlog while the receiver was down"
    );

    // In the order they were written (the outbox's order), ids as stored.
    let pool_ids = raw_strings(&url, "SELECT event_id FROM webhook_events ORDER BY seq").await;
    let ids: Vec<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, pool_ids.iter().map(String::as_str).collect::<Vec<_>>());
    let story: Vec<String> = accepted
        .iter()
        .map(|(id, body)| {
            assert_eq!(body["id"], id.as_str());
            let data = &body["data"];
            match body["type"].as_str().unwrap() {
                "member.status_changed" => format!(
                    "{} {}->{}{}",
                    data["icon"].as_str().unwrap(),
                    data["from"]["color"].as_str().unwrap(),
                    data["to"]["color"].as_str().unwrap(),
                    if data["recovery"] == true {
                        " recovery"
                    } else {
                        ""
                    }
                ),
                other => format!(
                    "{other} {} {}",
                    data["code"].as_str().unwrap(),
                    data["change"].as_str().unwrap()
                ),
            }
        })
        .collect();
    assert_eq!(
        story,
        [
            "capture gray->green recovery",
            "email gray->green recovery",
            "capture green->red",
            "email green->red",
            "company.banner_changed members_technical_problem appeared",
            "capture red->green recovery",
            "email red->green recovery",
            "company.banner_changed members_technical_problem cleared",
        ]
        .map(str::to_owned)
    );
    // Every try is recorded: the refused ones (503 and the timeout), then one success
    // per event.
    let report = store.webhook_endpoints(Some("acme")).await.unwrap();
    assert_eq!((report[0].backlog, report[0].dead), (0, 0));
    assert!(report[0].last_success_at.is_some());
    assert!(report[0].last_failure_at.is_some());
    let tries = try_counts(&url).await;
    assert_eq!(tries.delivered, expected as i64);
    assert!(tries.http_503 >= 4, "{tries:?}");
    assert_eq!(tries.timeouts, 1, "{tries:?}");
    store.close().await;
    drop_database(&url).await;
}

#[derive(Debug)]
struct TryCounts {
    delivered: i64,
    http_503: i64,
    timeouts: i64,
}

async fn raw_strings(url: &str, sql: &'static str) -> Vec<String> {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
    }
}

async fn raw_count(url: &str, sql: &'static str) -> i64 {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }
}

async fn try_counts(url: &str) -> TryCounts {
    TryCounts {
        delivered: raw_count(
            url,
            "SELECT COUNT(*) FROM webhook_tries WHERE http_status >= 200 AND http_status < 300",
        )
        .await,
        http_503: raw_count(url, "SELECT COUNT(*) FROM webhook_tries WHERE http_status = 503")
            .await,
        timeouts: raw_count(
            url,
            "SELECT COUNT(*) FROM webhook_tries WHERE http_status IS NULL AND error LIKE 'timeout%'",
        )
        .await,
    }
}

/// Drops a PostgreSQL test database (a SQLite file goes with its directory).
async fn drop_database(url: &str) {
    if let Some((_, name)) = url.rsplit_once('/')
        && url.starts_with("postgres")
    {
        let _ = postgres::drop_database(name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_receiver_that_was_down_gets_every_change_once_in_order() {
    a_receiver_that_was_down_gets_every_change_once_in_order(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_receiver_that_was_down_gets_every_change_once_in_order() {
    a_receiver_that_was_down_gets_every_change_once_in_order(Backend::Postgres).await;
}

/// A secret that cannot be read (or is not a `whsec_` secret) is a failed try, recorded
/// with the reference and what is wrong, never a value; nothing is sent.
async fn an_unusable_secret_is_a_recorded_failure_naming_its_reference(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, url) = start_receiver().await;
    receiver.down.store(false, Ordering::SeqCst);
    let not_whsec = dir.path().join("plain.secret");
    std::fs::write(&not_whsec, "hunter2-not-a-webhook-secret\n").unwrap();
    let missing = dir.path().join("missing.secret");
    let tenants = include_str!("../../../../tests/fixtures/worker/webhooks-unusable-secrets.toml")
        .replace("@URL@", &url)
        .replace("@MISSING_SECRET_FILE@", &missing.display().to_string())
        .replace("@PLAIN_SECRET_FILE@", &not_whsec.display().to_string());
    let database_url = database(backend, dir.path()).await;
    let store = Store::connect(&database_url, StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let now = OffsetDateTime::now_utc();
    store
        .apply_tenants(&parse_tenants(&tenants).unwrap(), now)
        .await
        .unwrap();
    store
        .record_attempt(
            &attempt(Outcome::Success, now),
            now,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let deliverer = WebhookDeliverer::new(
        store.clone(),
        Arc::new(FileSecrets),
        WebhookConfig {
            owner: "a".to_owned(),
            ..WebhookConfig::default()
        },
    )
    .unwrap();
    assert_eq!(
        deliverer
            .deliver_due(OffsetDateTime::now_utc())
            .await
            .unwrap(),
        0
    );
    let errors = raw_strings(
        &database_url,
        "SELECT d.endpoint_id || ': ' || t.error FROM webhook_tries t \
         JOIN webhook_deliveries d ON d.id = t.delivery_id ORDER BY d.endpoint_id",
    )
    .await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!(
            "missing: cannot use the endpoint's secret (secret_file {}): cannot read {}",
            missing.display(),
            missing.display()
        )),
        "{errors:?}"
    );
    assert_eq!(
        errors[1],
        format!(
            "plain: cannot use the endpoint's secret (secret_file {}): the secret does not start with whsec_",
            not_whsec.display()
        )
    );
    assert!(
        !errors.iter().any(|e| e.contains("hunter2")),
        "no secret value"
    );
    assert!(
        receiver.accepted.lock().unwrap().is_empty(),
        "nothing sent unsigned"
    );
    let report = store.webhook_endpoints(Some("acme")).await.unwrap();
    assert!(
        report
            .iter()
            .all(|endpoint| endpoint.backlog == 2 && endpoint.last_failure_at.is_some())
    );
    store.close().await;
    drop_database(&database_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_unusable_secret_is_a_recorded_failure_naming_its_reference() {
    an_unusable_secret_is_a_recorded_failure_naming_its_reference(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_unusable_secret_is_a_recorded_failure_naming_its_reference() {
    an_unusable_secret_is_a_recorded_failure_naming_its_reference(Backend::Postgres).await;
}
