//! Webhooks end to end: `datacap run` daemons against the sim deliver every status and
//! banner change of a company to a real HTTP receiver on loopback, which verifies each
//! signature with its own HMAC (the Standard Webhooks algorithm, computed here) and is
//! down (503s) until the daemons have a backlog. Then it receives everything in the
//! order the outbox holds it: on SQLite once per change, also after the daemon is killed
//! with SIGKILL mid-delivery and restarted (at most the one event in flight comes twice,
//! with the same `webhook-id`); on PostgreSQL with two daemons sharing the database, once
//! per change. The secret is read from the file the tenants file names.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::harness::{Harness, SCENARIO, eventually, tail};

/// Made for this test: `whsec_` and the base64 of 32 bytes.
const SECRET: &str = "whsec_dGhpcyBpcyB0aGUgZGF0YWNhcCB0ZXN0IHNlY3JldCE=";

#[derive(Default)]
struct Receiver {
    down: AtomicBool,
    /// Milliseconds each accepted request takes (to catch a daemon mid-delivery).
    delay_ms: AtomicU64,
    refused: AtomicUsize,
    bad: AtomicUsize,
    accepted: Mutex<Vec<String>>,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let header = |name: &str| headers.get(name)?.to_str().ok().map(str::to_owned);
    let (id, timestamp, signatures) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let seconds: i64 = timestamp.parse().ok()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - seconds).abs() > 300 {
        return None;
    }
    let key = STANDARD.decode(SECRET.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    (signatures.split(' ').any(|s| s == expected) && body["id"] == id.as_str()).then_some(id)
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Some(id) = verify(&headers, &body) else {
        r.bad.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    };
    r.accepted.lock().unwrap().push(id);
    let delay = r.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    StatusCode::NO_CONTENT
}

fn start_receiver(h: &Harness) -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver::default());
    receiver.down.store(true, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = h
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    h.runtime
        .spawn(async move { axum::serve(listener, app).await });
    (receiver, address)
}

/// The harness's tenants file with a webhook endpoint for globex, its secret in a file.
fn with_endpoint(h: &Harness, address: SocketAddr) {
    let secret = h.dir.path().join("globex-webhook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let text = std::fs::read_to_string(&h.tenants).unwrap().replacen(
        "[[companies]]\nid = \"fabrikam\"",
        &format!(
            "[[companies.webhooks]]\nid = \"ops\"\nurl = \"http://{address}/hooks\"\nsecret_file = \"{}\"\n\n[[companies]]\nid = \"fabrikam\"",
            secret.display()
        ),
        1,
    );
    std::fs::write(&h.tenants, text).unwrap();
}

/// A harness whose tenants file (applied) sends globex's changes to a receiver, down at
/// first.
fn harness_with_receiver(postgres: bool) -> (Harness, Arc<Receiver>) {
    let h = Harness::new(SCENARIO, postgres);
    let (receiver, address) = start_receiver(&h);
    with_endpoint(&h, address);
    h.apply();
    (h, receiver)
}

/// The daemons' fast webhook settings.
const FAST: [(&str, &str); 4] = [
    ("DATACAP_WEBHOOKS__POLL_INTERVAL", "1s"),
    ("DATACAP_WEBHOOKS__BACKOFF_BASE", "1s"),
    ("DATACAP_WEBHOOKS__BACKOFF_CAP", "2s"),
    ("DATACAP_WEBHOOKS__LEASE", "20s"),
];

fn backlog(h: &Harness) -> i64 {
    let list: serde_json::Value =
        serde_json::from_str(&h.datacap(&[], &["webhooks", "list", "--format", "json"])).unwrap();
    list["endpoints"][0]["backlog"].as_i64().unwrap()
}

/// Waits until the statuses stop changing and everything written reached the receiver.
fn settle(h: &Harness, receiver: &Receiver) -> Vec<String> {
    let mut last = (-1, -1);
    let mut stable = 0;
    eventually(
        "every event delivered and no new ones",
        Duration::from_secs(90),
        || {
            let events = h.count("SELECT COUNT(*) FROM webhook_events");
            let accepted = i64::try_from(receiver.accepted.lock().unwrap().len()).unwrap();
            let now = (events, accepted);
            stable = if now == last && backlog(h) == 0 {
                stable + 1
            } else {
                0
            };
            last = now;
            stable >= 5
        },
    );
    h.texts("SELECT event_id FROM webhook_events ORDER BY seq")
}

fn first_receipts(accepted: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    accepted
        .iter()
        .filter(|id| seen.insert((*id).clone()))
        .cloned()
        .collect()
}

#[test]
fn a_receiver_down_then_up_gets_every_change_once_in_order_sqlite_and_after_sigkill() {
    let (h, receiver) = harness_with_receiver(false);
    let mut daemon = h.daemon("a", &FAST);
    eventually(
        "a backlog while the receiver is down",
        Duration::from_secs(60),
        || receiver.refused.load(Ordering::SeqCst) >= 3 && backlog(&h) > 3,
    );
    assert!(receiver.accepted.lock().unwrap().is_empty());
    // Up, but slow: kill the daemon while a delivery is in flight, then restart it.
    receiver.delay_ms.store(1500, Ordering::SeqCst);
    receiver.down.store(false, Ordering::SeqCst);
    eventually("two deliveries", Duration::from_secs(30), || {
        receiver.accepted.lock().unwrap().len() >= 2
    });
    daemon.signal("-KILL");
    daemon.wait(Duration::from_secs(10)).expect("killed");
    receiver.delay_ms.store(0, Ordering::SeqCst);
    let restarted = h.daemon("a2", &FAST);
    let written = settle(&h, &receiver);
    // The secret reaches no log line (the killed daemon's nor the restarted one's).
    let key = SECRET.strip_prefix("whsec_").unwrap();
    for logs in [daemon.logs(), restarted.logs()] {
        assert!(logs.contains("webhook delivered"), "{}", tail(&logs));
        assert!(!logs.contains(key), "a secret in the logs");
    }
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(receiver.bad.load(Ordering::SeqCst), 0, "bad signatures");
    assert!(
        written.len() >= 10,
        "the first cycle changes many icons: {}",
        written.len()
    );
    assert_eq!(
        first_receipts(&accepted),
        written,
        "every event, in the outbox's order"
    );
    assert!(
        accepted.len() - written.len() <= 1,
        "only the event in flight at the SIGKILL may come twice: {} received, {} written",
        accepted.len(),
        written.len()
    );
    // Every try recorded: the refused ones too.
    assert!(h.count("SELECT COUNT(*) FROM webhook_tries WHERE http_status = 503") >= 3);
    assert_eq!(
        h.count("SELECT COUNT(*) FROM webhook_deliveries WHERE state <> 'delivered'"),
        0
    );
    // The flaky member went red: its change reached the receiver with its recovery flag off.
    let red = h.count(
        "SELECT COUNT(*) FROM webhook_events WHERE body LIKE '%\"member_id\":\"flaky\"%' AND body LIKE '%\"to\":{\"color\":\"red\"%'",
    );
    assert!(red >= 1, "the flaky member's red change is an event");
    // The flaky member's red change, then its recovery: the fault cleared, the next
    // poll is green, and the change back reaches the receiver after the red one, flagged
    // as a recovery.
    let red_sql = "SELECT event_id FROM webhook_events WHERE body LIKE '%\"member_id\":\"flaky\"%' \
                   AND body LIKE '%\"to\":{\"color\":\"red\"%' ORDER BY seq";
    let recovered_sql = "SELECT event_id FROM webhook_events WHERE body LIKE '%\"member_id\":\"flaky\"%' \
                         AND body LIKE '%\"recovery\":true%' ORDER BY seq";
    eventually(
        "flaky's red change is written",
        Duration::from_secs(60),
        || !h.texts(red_sql).is_empty(),
    );
    h.control(
        "faults/clear",
        serde_json::json!({"tenant": "globex", "user": "flaky@globex.example"}),
    );
    let position = |id: &str| {
        receiver
            .accepted
            .lock()
            .unwrap()
            .iter()
            .position(|seen| seen == id)
    };
    eventually(
        "flaky's recovery is delivered",
        Duration::from_secs(120),
        || {
            h.texts(recovered_sql)
                .first()
                .is_some_and(|id| position(id).is_some())
        },
    );
    let red = h.texts(red_sql);
    let recovery = h.texts(recovered_sql);
    assert!(
        position(&red[0]).expect("the red change was delivered")
            < position(&recovery[0]).expect("the recovery was delivered"),
        "the red change, then its recovery"
    );
    drop(restarted);
}

#[test]
fn two_daemons_on_postgres_deliver_each_change_once_in_order() {
    let (h, receiver) = harness_with_receiver(true);
    let a = h.daemon("a", &FAST);
    let b = h.daemon("b", &FAST);
    eventually(
        "a backlog while the receiver is down",
        Duration::from_secs(60),
        || receiver.refused.load(Ordering::SeqCst) >= 3 && backlog(&h) > 3,
    );
    receiver.down.store(false, Ordering::SeqCst);
    let written = settle(&h, &receiver);
    drop((a, b));
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(receiver.bad.load(Ordering::SeqCst), 0, "bad signatures");
    assert!(written.len() >= 10, "{}", written.len());
    assert_eq!(accepted, written, "each change once, in the outbox's order");
    let owners = h
        .texts("SELECT DISTINCT lease_owner FROM webhook_deliveries WHERE lease_owner IS NOT NULL");
    assert!(owners.is_empty(), "no lease left behind: {owners:?}");
}
