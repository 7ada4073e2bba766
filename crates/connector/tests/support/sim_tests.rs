//! What the Google and the Microsoft connector's tests against datacap-sim share (included
//! by path from each): the sim's control endpoint, the ids an attempt imported or the sim
//! added, a request gate that counts, and the check that a table-driven test found no row
//! that maps wrongly.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datacap_connector::{Attempt, GateFuture, RequestGate, ThrottleScope};
use datacap_core::Channel;
use serde_json::Value;

/// POSTs `body` to `path` of the sim's control endpoint at `control_url`, which must answer
/// 2xx: the JSON it answers, `Null` for an empty answer.
pub async fn control(http: &reqwest::Client, control_url: &str, path: &str, body: Value) -> Value {
    let response = http
        .post(format!("{control_url}/{path}"))
        .json(&body)
        .send()
        .await
        .expect("control call");
    let status = response.status();
    let text = response.text().await.expect("control body");
    assert!(status.is_success(), "control {path}: {status} {text}");
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text).expect("control json")
}

/// The provider ids of what `attempt` imported on `channel`.
pub fn item_ids(attempt: &Attempt, channel: Channel) -> Vec<String> {
    match channel {
        Channel::Email => attempt
            .email_items
            .iter()
            .map(|i| i.provider_id.clone())
            .collect(),
        Channel::Calendar => attempt
            .calendar_items
            .iter()
            .map(|i| i.provider_id.clone())
            .collect(),
    }
}

/// The `key` of each item a control answer lists under `added`.
pub fn added_ids(answer: &Value, key: &str) -> HashSet<String> {
    answer["added"]
        .as_array()
        .expect("added")
        .iter()
        .map(|item| item[key].as_str().expect(key).to_owned())
        .collect()
}

/// Fails naming every row of a table-driven test that `failures` lists (`what` they are).
pub fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(failures.is_empty(), "{what}:\n{}", failures.join("\n"));
}

/// A gate that counts the requests it lets through and the pauses it is asked for.
#[derive(Default)]
pub struct CountingGate {
    ready: AtomicU64,
    pub pauses: Mutex<Vec<(Duration, ThrottleScope)>>,
}

impl CountingGate {
    /// How many requests it let through.
    pub fn requests(&self) -> u64 {
        self.ready.load(Ordering::SeqCst)
    }
}

impl RequestGate for CountingGate {
    fn ready(&self) -> GateFuture<'_> {
        self.ready.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }

    /// Records the pause but holds nothing back (`None`: the connector waits itself).
    fn pause(&self, wait: Duration, scope: ThrottleScope) -> Option<Duration> {
        self.pauses.lock().expect("pauses").push((wait, scope));
        None
    }
}
