//! Requests per second the sim serves on one core, for the two calls the worker makes most:
//! an incremental Gmail `history.list` and a Graph mail delta call, both with no changes.
//!
//! The sim runs on a current-thread runtime on its own OS thread (one core); the load comes
//! from a second single-threaded runtime with a fixed number of keep-alive connections in
//! flight. Run with `cargo bench -p datacap-sim --bench requests` (release build).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datacap_sim::{Endpoints, Scenario, Sim};

#[path = "../tests/support/mod.rs"]
mod support;

const IN_FLIGHT: usize = 16;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let scenario_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/sim/small.toml");
    let scenario = Scenario::from_file(&scenario_path).expect("config/sim/small.toml loads");
    // The sim, alone on one thread.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Endpoints>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("sim runtime");
        runtime.block_on(async move {
            let sim = Sim::start(scenario, "127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("sim starts");
            ready_tx.send(sim.endpoints().clone()).expect("ready");
            let _ = stop_rx.await;
            sim.shutdown().await;
        });
    });
    let endpoints = ready_rx.recv().expect("sim endpoints");
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    client.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()
            .expect("client");
        let (gmail_url, gmail_token) = gmail_setup(&http, &endpoints).await;
        report(
            "gmail history.list (incremental, no changes)",
            &http,
            &gmail_url,
            &gmail_token,
        )
        .await;
        let (graph_url, graph_token) = graph_setup(&http, &endpoints).await;
        report(
            "graph messages/delta (deltaLink, no changes)",
            &http,
            &graph_url,
            &graph_token,
        )
        .await;
    });
    let _ = stop_tx.send(());
    let _ = server.join();
}

async fn gmail_setup(http: &reqwest::Client, e: &Endpoints) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "iss": "datacap@datacap-sim.iam.gserviceaccount.com",
        "sub": "ada@acme.example",
        "scope": "https://www.googleapis.com/auth/gmail.readonly",
        "aud": e.google_token_url, "iat": now, "exp": now + 3600,
    });
    let assertion = support::sign(&claims);
    let token = access_token(
        http,
        &e.google_token_url,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ],
    )
    .await;
    let profile: serde_json::Value = http
        .get(format!("{}/users/me/profile", e.gmail_base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("profile")
        .json()
        .await
        .expect("profile json");
    let cursor = profile["historyId"].as_str().expect("historyId").to_owned();
    (
        format!("{}/users/me/history?startHistoryId={cursor}", e.gmail_base),
        token,
    )
}

/// POSTs `form` to a token endpoint and returns the `access_token` it answers.
async fn access_token(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> String {
    let token: serde_json::Value = http
        .post(url)
        .form(form)
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    token["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

async fn graph_setup(http: &reqwest::Client, e: &Endpoints) -> (String, String) {
    let token = access_token(
        http,
        &e.microsoft_token_url("contoso.example"),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"),
            ("client_secret", "sim-microsoft-secret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    let mut url = format!(
        "{}/users/alan@contoso.example/mailFolders/inbox/messages/delta",
        e.graph_base
    );
    // Follow the first round to its deltaLink (bounded).
    for _ in 0..100 {
        let page: serde_json::Value = http
            .get(&url)
            .bearer_auth(&token)
            .header("Prefer", "odata.maxpagesize=50")
            .send()
            .await
            .expect("delta")
            .json()
            .await
            .expect("delta json");
        if let Some(next) = page["@odata.nextLink"].as_str() {
            url = next.to_owned();
        } else {
            let delta = page["@odata.deltaLink"]
                .as_str()
                .expect("deltaLink")
                .to_owned();
            return (delta, token);
        }
    }
    panic!("delta round did not end");
}

async fn report(name: &str, http: &reqwest::Client, url: &str, token: &str) {
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
        let (count, errors, stop, counting) = (
            count.clone(),
            errors.clone(),
            stop.clone(),
            counting.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = match http.get(&url).bearer_auth(&token).send().await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if counting.load(Ordering::Relaxed) {
                    if ok {
                        count.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(MEASURE).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let done = count.load(Ordering::Relaxed);
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{name}: {:.0} requests/s ({done} in {elapsed:.1} s, {IN_FLIGHT} in flight, {} errors)",
            done as f64 / elapsed,
            errors.load(Ordering::Relaxed)
        );
    }
}
