//! The sim's raw request rate: a plain HTTP load loop (as many connections as the worker's
//! concurrency) repeating the requests an incremental poll makes (Gmail `history.list`,
//! Calendar `events.list` with a sync token).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use datacap_connector::http::install_crypto_provider;
use datacap_google::{CALENDAR_SCOPE, GMAIL_SCOPE, GoogleConfig};

use crate::Args;
use crate::setup::*;

/// Requests the sim has answered so far (its `/_sim/stats` total), 0 when unreadable.
pub(crate) async fn sim_requests(client: &reqwest::Client, base: &str) -> u64 {
    let Ok(response) = client.get(format!("{base}/_sim/stats")).send().await else {
        return 0;
    };
    let Ok(stats) = response.json::<serde_json::Value>().await else {
        return 0;
    };
    stats["requests_total"].as_u64().unwrap_or(0)
}

/// Asks the sim for an access token for `subject` and `scope` (JWT bearer, as the
/// connector does).
pub(crate) async fn sim_token(
    client: &reqwest::Client,
    base: &str,
    subject: &str,
    scope: &str,
) -> anyhow::Result<String> {
    let token_url = format!("{base}/google/token");
    let assertion = datacap_google::service_account_assertion(
        &service_account(),
        subject,
        scope,
        &token_url,
        time::OffsetDateTime::now_utc(),
    )
    .context("cannot sign the sim assertion")?;
    let token: serde_json::Value = client
        .post(&token_url)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok(token["access_token"]
        .as_str()
        .context("the sim gave no access token")?
        .to_owned())
}

/// One load-loop connection's request: the URL and its bearer token.
pub(crate) struct LoadRequest {
    pub(crate) url: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) access: String,
}

/// The request an incremental poll of `channel` makes for mailbox `subject`, with the
/// cursor a first pass gives: Gmail `history.list` from the profile's history id, or
/// Calendar `events.list` with the sync token of a full listing.
pub(crate) async fn incremental_request(
    client: &reqwest::Client,
    base: &str,
    subject: &str,
    email: bool,
) -> anyhow::Result<LoadRequest> {
    let page_size = GoogleConfig::default().page_size.to_string();
    if email {
        let access = sim_token(client, base, subject, GMAIL_SCOPE).await?;
        let gmail = format!("{base}/google/gmail/v1/users/{subject}");
        let profile: serde_json::Value = client
            .get(format!("{gmail}/profile"))
            .bearer_auth(&access)
            .send()
            .await?
            .json()
            .await?;
        let history_id = profile["historyId"]
            .as_str()
            .context("the sim's profile has no historyId")?
            .to_owned();
        return Ok(LoadRequest {
            url: format!("{gmail}/history"),
            query: vec![
                ("startHistoryId", history_id),
                ("historyTypes", "messageAdded".to_owned()),
                ("maxResults", page_size),
            ],
            access,
        });
    }
    let access = sim_token(client, base, subject, CALENDAR_SCOPE).await?;
    let url = format!("{base}/google/calendar/v3/calendars/primary/events");
    let mut page_token: Option<String> = None;
    // A first pass, page by page (bounded), to its sync token.
    for _ in 0..1_000 {
        let mut query = vec![
            ("maxResults", page_size.clone()),
            ("singleEvents", "true".to_owned()),
        ];
        if let Some(token) = &page_token {
            query.push(("pageToken", token.clone()));
        }
        let page: serde_json::Value = client
            .get(&url)
            .query(&query)
            .bearer_auth(&access)
            .send()
            .await?
            .json()
            .await?;
        if let Some(sync_token) = page["nextSyncToken"].as_str() {
            return Ok(LoadRequest {
                url,
                query: vec![
                    ("maxResults", page_size),
                    ("singleEvents", "true".to_owned()),
                    ("syncToken", sync_token.to_owned()),
                ],
                access,
            });
        }
        page_token = Some(
            page["nextPageToken"]
                .as_str()
                .context("a calendar page with neither nextPageToken nor nextSyncToken")?
                .to_owned(),
        );
    }
    anyhow::bail!("the sim's calendar listing did not end within 1,000 pages")
}

/// The sim's raw rate: `concurrency` connections, each repeating the request an
/// incremental poll makes (Gmail `history.list` or Calendar `events.list` with a sync
/// token, half the connections each, as a cycle polls both channels) for its own mailbox
/// with its own access token, for `load_seconds`. The same requests as the worker's
/// incremental cycle, with nothing else around them.
pub(crate) async fn raw_request_rate(
    client: &reqwest::Client,
    base: &str,
    args: &Args,
) -> anyhow::Result<f64> {
    install_crypto_provider();
    let mut requests = Vec::with_capacity(args.concurrency);
    for connection in 0..args.concurrency {
        let subject = format!("u{}@{DOMAIN}", connection % args.members);
        requests.push(incremental_request(client, base, &subject, connection % 2 == 0).await?);
    }
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.load_seconds.max(1));
    let started = Instant::now();
    let mut loops = Vec::new();
    for request in requests {
        let (client, answered) = (client.clone(), answered.clone());
        loops.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let sent = client
                    .get(&request.url)
                    .query(&request.query)
                    .bearer_auth(&request.access)
                    .send()
                    .await;
                let ok = match sent {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in loops {
        let _ = task.await;
    }
    Ok(answered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
