//! The webhook delivery task of `datacap run` (issue 19): it takes the events the store's
//! outbox holds, signs each per the Standard Webhooks specification and POSTs it to its
//! endpoint, records every try, and retries with exponential backoff until the receiver
//! takes it or a day has passed.
//!
//! Ordering and exactly-once per change come from the store: a claim only ever leases an
//! endpoint's oldest pending delivery, so an endpoint's events leave one at a time in the
//! order they were written and no two replicas hold one event; a try is recorded only
//! while its lease is held. A replica that dies mid-try leaves its lease to expire and
//! the event is sent again with the same `webhook-id` (receivers deduplicate on it).
//!
//! Signing (<https://www.standardwebhooks.com/>): `webhook-id` is the event id,
//! `webhook-timestamp` the try's Unix time in seconds, `webhook-signature` is `v1,` and
//! the base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}` keyed with the bytes the
//! `whsec_` secret's base64 names. Secrets come from the binary's [`WebhookSecrets`]
//! (files and variables the tenants file names); they reach no log, error or `Debug`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use datacap_store::{DeliveryNext, SecretRef, Store, StoreError, WebhookDelivery, WebhookTry};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::events;

/// How the delivery task behaves. Validated by [`WebhookDeliverer::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// This replica's lease owner name (the worker's `owner`).
    pub owner: String,
    /// How long the task waits before looking again when nothing was delivered.
    pub poll_interval: Duration,
    /// A claimed delivery's lease: longer than a whole try (connect and request timeouts).
    pub lease: Duration,
    /// Endpoints served per round (one delivery each, sent concurrently).
    pub batch: u32,
    pub connect_timeout: Duration,
    /// A whole try, the answer's body included.
    pub request_timeout: Duration,
    /// The first retry's delay; each next one doubles, up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A delivery still failing this long after its event was written (or redelivered)
    /// is dead: no more tries until `datacap webhooks redeliver`.
    pub give_up_after: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            owner: "datacap".to_owned(),
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            batch: 32,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// A [`WebhookConfig`] that cannot work, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhooks.{key}: {detail}")]
    Config { key: &'static str, detail: String },
    #[error("cannot build the webhook http client: {0}")]
    Client(String),
}

/// Reads an endpoint's signing secret from what its reference names (the binary's
/// files and environment).
pub trait WebhookSecrets: Send + Sync {
    /// The secret as written (`whsec_…`), or why it cannot be read (never the value).
    fn secret(&self, reference: &SecretRef) -> Result<SecretString, String>;
}

/// A `whsec_` secret as the key bytes HMAC takes. The message names what is wrong and
/// never the value.
pub fn secret_key(secret: &SecretString) -> Result<Vec<u8>, String> {
    let text = secret.expose_secret().trim();
    let Some(encoded) = text.strip_prefix("whsec_") else {
        return Err("the secret does not start with whsec_".to_owned());
    };
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| "the secret after whsec_ is not base64".to_owned())?;
    if key.len() < 16 {
        return Err(format!(
            "the secret holds {} bytes; at least 16 (24 to 64 recommended)",
            key.len()
        ));
    }
    Ok(key)
}

/// The `webhook-signature` header value: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The delay before the try after `tries` failed ones: `backoff_base` doubled per
/// failure, at most `backoff_cap`.
pub fn retry_delay(config: &WebhookConfig, tries: u32) -> Duration {
    let doublings = tries.saturating_sub(1).min(30);
    config
        .backoff_base
        .saturating_mul(1u32 << doublings)
        .min(config.backoff_cap)
}

/// What becomes of a delivery whose `tries`-th try just failed at `now`: retried after
/// [`retry_delay`], or dead when that retry would come later than `give_up_after` since
/// `pending_since`.
pub fn after_failure(
    config: &WebhookConfig,
    pending_since: OffsetDateTime,
    tries: u32,
    now: OffsetDateTime,
) -> DeliveryNext {
    let next = now + retry_delay(config, tries);
    if next > pending_since + config.give_up_after {
        DeliveryNext::Dead
    } else {
        DeliveryNext::Retry(next)
    }
}

/// The delivery task: cheap to clone, one per daemon.
#[derive(Clone)]
pub struct WebhookDeliverer {
    store: Store,
    client: reqwest::Client,
    config: Arc<WebhookConfig>,
    secrets: Arc<dyn WebhookSecrets>,
}

impl WebhookDeliverer {
    /// Checks `config` and builds the task's HTTP client (the connectors' configuration:
    /// rustls on ring, timeouts, no redirects: a receiver's redirect is a failed try).
    pub fn new(
        store: Store,
        secrets: Arc<dyn WebhookSecrets>,
        config: WebhookConfig,
    ) -> Result<WebhookDeliverer, WebhookError> {
        let bad = |key, detail: &str| {
            Err(WebhookError::Config {
                key,
                detail: detail.to_owned(),
            })
        };
        if config.batch == 0 {
            return bad("batch", "must be at least 1");
        }
        if config.backoff_base.is_zero() || config.backoff_cap < config.backoff_base {
            return bad(
                "backoff_base",
                "must be above zero and at most webhooks.backoff_cap",
            );
        }
        if config.request_timeout.is_zero() || config.connect_timeout.is_zero() {
            return bad("request_timeout", "timeouts must be above zero");
        }
        if config.lease <= config.connect_timeout + config.request_timeout {
            return bad(
                "lease",
                "must be longer than connect_timeout + request_timeout, or a slow try could be sent twice",
            );
        }
        let client = datacap_connector::build_client(&datacap_connector::HttpLimits {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            max_body_bytes: 0,
        })
        .map_err(|error| WebhookError::Client(error.to_string()))?;
        Ok(WebhookDeliverer {
            store,
            client,
            config: Arc::new(config),
            secrets,
        })
    }

    /// One round as of `now`: claims the heads of up to `batch` endpoints' queues, sends
    /// them at once and records each try. Returns how many were delivered.
    pub async fn deliver_due(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        let lease = time::Duration::try_from(self.config.lease).unwrap_or(time::Duration::MINUTE);
        let claimed = self
            .store
            .claim_webhook_deliveries(&self.config.owner, now, lease, self.config.batch)
            .await?;
        let tries = claimed.iter().map(|delivery| self.deliver(delivery));
        let results = futures_util::future::join_all(tries).await;
        let mut delivered = 0;
        for result in results {
            delivered += usize::from(result?);
        }
        Ok(delivered)
    }

    /// Sends one leased delivery and records the try; true when it was delivered.
    async fn deliver(&self, delivery: &WebhookDelivery) -> Result<bool, StoreError> {
        let started = Instant::now();
        let tried_at = OffsetDateTime::now_utc();
        let (http_status, error) = self.send(delivery, tried_at).await;
        let attempt = WebhookTry {
            tried_at,
            http_status,
            error,
            duration: started.elapsed(),
        };
        let next = if attempt.error.is_none() {
            DeliveryNext::Delivered
        } else {
            after_failure(
                &self.config,
                delivery.pending_since,
                delivery.tries + 1,
                tried_at,
            )
        };
        let recorded = self
            .store
            .record_webhook_try(delivery, &attempt, next)
            .await?;
        events::webhook_try(delivery, &attempt, next, recorded);
        Ok(recorded && next == DeliveryNext::Delivered)
    }

    /// POSTs the signed event; the answer's status, and the error when it was not 2xx.
    async fn send(
        &self,
        delivery: &WebhookDelivery,
        tried_at: OffsetDateTime,
    ) -> (Option<u16>, Option<String>) {
        let key = match self
            .secrets
            .secret(&delivery.secret)
            .and_then(|secret| secret_key(&secret))
        {
            Ok(key) => key,
            Err(detail) => {
                return (
                    None,
                    Some(format!(
                        "cannot use the endpoint's secret ({}): {detail}",
                        delivery.secret.describe()
                    )),
                );
            }
        };
        let timestamp = tried_at.unix_timestamp();
        let signature = sign(
            &key,
            &delivery.event_id,
            timestamp,
            delivery.body.as_bytes(),
        );
        let answer = self
            .client
            .post(&delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.clone())
            .send()
            .await;
        match answer {
            Ok(response) => {
                let status = response.status();
                // The body is not read: a receiver's answer says nothing we keep.
                drop(response);
                if status.is_success() {
                    (Some(status.as_u16()), None)
                } else {
                    (
                        Some(status.as_u16()),
                        Some(format!("http {}", status.as_u16())),
                    )
                }
            }
            Err(error) => {
                let kind = if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                // Without the URL: a receiver's URL may carry a token in its query.
                (None, Some(format!("{kind}: {}", error.without_url())))
            }
        }
    }

    /// Delivers until `cancel` fires: a round right after one that delivered something
    /// (the endpoint's next event is due), else one per `poll_interval`. A round under
    /// way finishes (each try is bounded by the timeouts); a database failure is logged
    /// and counted and the task goes on after `poll_interval`.
    pub async fn run(&self, cancel: CancellationToken) {
        let mut last_sample = Instant::now() - events::QUEUE_LAG_INTERVAL;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            if last_sample.elapsed() >= events::QUEUE_LAG_INTERVAL {
                self.sample_backlog().await;
                last_sample = Instant::now();
            }
            let delivered = match self.deliver_due(OffsetDateTime::now_utc()).await {
                Ok(delivered) => delivered,
                Err(error) => {
                    events::own_failure("webhook_delivery", &error, None);
                    0
                }
            };
            if delivered > 0 {
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// Sets the oldest-undelivered-event gauge.
    pub async fn sample_backlog(&self) {
        match self.store.oldest_undelivered_webhook().await {
            Ok(oldest) => {
                let age = oldest.map_or(Duration::ZERO, |since| {
                    Duration::try_from(OffsetDateTime::now_utc() - since).unwrap_or(Duration::ZERO)
                });
                events::webhook_backlog(age);
            }
            Err(error) => events::own_failure("webhook_backlog", &error, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn signatures_reproduce_the_specifications_test_vector() {
        // The Standard Webhooks reference libraries' own test vector.
        let key = secret_key(&SecretString::from(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ))
        .unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn bad_secrets_say_what_is_wrong_without_the_value() {
        let check = |text: &str, expected: &str| {
            let error = secret_key(&SecretString::from(text)).unwrap_err();
            assert_eq!(error, expected);
            assert!(!error.contains(text));
        };
        check(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "the secret does not start with whsec_",
        );
        check("whsec_not base64!", "the secret after whsec_ is not base64");
        check(
            "whsec_c2hvcnQ=",
            "the secret holds 5 bytes; at least 16 (24 to 64 recommended)",
        );
    }

    #[test]
    fn retries_back_off_from_seconds_to_an_hour_for_a_day_then_die() {
        let config = WebhookConfig::default();
        let delays: Vec<u64> = (1..=12)
            .map(|tries| retry_delay(&config, tries).as_secs())
            .collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        let since = datetime!(2026-11-28 12:00 UTC);
        assert_eq!(
            after_failure(&config, since, 1, since),
            DeliveryNext::Retry(since + time::Duration::seconds(5))
        );
        let late = since + time::Duration::hours(23) + time::Duration::minutes(30);
        assert_eq!(
            after_failure(&config, since, 30, late),
            DeliveryNext::Dead,
            "an hour more would pass the day"
        );
        assert_eq!(
            after_failure(&config, since, 30, since + time::Duration::hours(22)),
            DeliveryNext::Retry(since + time::Duration::hours(23))
        );
        // A day of tries is about 30 of them.
        let mut at = since;
        let mut tries = 0;
        while let DeliveryNext::Retry(next) = after_failure(&config, since, tries + 1, at) {
            at = next;
            tries += 1;
        }
        assert_eq!(tries, 32);
    }
}
