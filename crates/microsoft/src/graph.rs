//! One Graph conversation of an attempt: the URLs of a member's inbox and calendar-view
//! deltas, the paging links Graph hands back (checked before our token follows them), the
//! delta round from a cursor to its `@odata.deltaLink`, and the one GET every Graph call
//! takes, which holds the mailbox's concurrency slot, sends our attempt id as
//! `client-request-id`, records `request-id`, follows the connector crate's throttle-wait
//! and renew-once policies, and asks [`crate::errors`] what any other answer means.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use datacap_connector::{Failure, RenewOnce, read_body, refused_after_renewal, transport_failure};
use datacap_core::Outcome;
use reqwest::Url;
use time::OffsetDateTime;
use time::macros::format_description;
use tracing::{debug, info, warn};

use crate::delta::{DeltaSink, MAIL_SELECT};
use crate::errors::{
    GraphErrorInfo, GraphVerdict, Need, classify_graph_error, graph_throttle_scope,
};
use crate::session::{Held, Session};
use crate::token::expose;

/// What a Graph GET produced.
pub(crate) enum GraphBody {
    Page(Vec<u8>),
    /// The delta cursor is gone (410 / `SyncStateNotFound` …).
    Resync,
}

/// An answer's parts the attempt reads.
pub(crate) struct GraphAnswer {
    status: u16,
    body: Vec<u8>,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    /// The pause the tenant's gate took for this answer (its next `ready` waits it out).
    gate_pause: Option<Duration>,
}

impl Session<'_> {
    pub(crate) fn mail_url(&self, address: &str) -> Url {
        let mut url = self.inner.graph_url(&[
            "users",
            address,
            "mailFolders",
            "inbox",
            "messages",
            "delta",
        ]);
        url.set_query(Some(&format!("$select={MAIL_SELECT}")));
        url
    }

    pub(crate) fn calendar_url(&self, address: &str, now: OffsetDateTime) -> Url {
        let config = &self.inner.config;
        let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let at = |t: OffsetDateTime| {
            t.to_offset(time::UtcOffset::UTC)
                .format(format)
                .unwrap_or_default()
        };
        let mut url = self
            .inner
            .graph_url(&["users", address, "calendarView", "delta"]);
        url.set_query(Some(&format!(
            "startDateTime={}&endDateTime={}",
            at(now - config.calendar_past),
            at(now + config.calendar_future)
        )));
        url
    }

    /// Validates a link Graph handed back before following it with our token.
    pub(crate) fn follow(&self, link: &str, seen: &mut HashSet<String>) -> Result<Url, Failure> {
        let Some(url) = self.inner.graph_link(link) else {
            return Err(
                self.provider_error("graph paging link points outside the configured graph base")
            );
        };
        if !seen.insert(link.to_owned()) {
            return Err(self.provider_error("graph paging loops: a nextLink came back twice"));
        }
        Ok(url)
    }

    /// Follows one delta round from `cursor` (or from `first`) to its deltaLink, which is
    /// returned as the new cursor. An expired cursor restarts the full pass once. When the
    /// page budget runs out, the next link is returned instead and the next attempt
    /// carries on from it.
    pub(crate) async fn delta<S: DeltaSink + Send>(
        &mut self,
        first: Url,
        cursor: Option<&str>,
        need: Need,
        sink: &mut S,
    ) -> Result<String, Failure> {
        let mut url = match cursor {
            None => first.clone(),
            Some(cursor) => match self.inner.graph_link(cursor) {
                Some(url) => url,
                None => {
                    warn!(
                        "saved cursor is not a link into the configured graph base; running a full pass"
                    );
                    first.clone()
                }
            },
        };
        let mut resynced = false;
        let mut seen = HashSet::new();
        for _ in 0..self.inner.config.max_pages_per_attempt {
            match self.get(&url, need).await? {
                GraphBody::Resync => {
                    if resynced {
                        return Err(self.provider_error(
                            "graph asked for a delta resync twice in one attempt",
                        ));
                    }
                    info!("delta cursor expired; running a full pass in this attempt");
                    resynced = true;
                    sink.reset();
                    seen.clear();
                    url = first.clone();
                }
                GraphBody::Page(body) => {
                    let links = sink.page(&body).map_err(|error| {
                        self.provider_error(&format!("graph delta page does not parse: {error}"))
                    })?;
                    match (links.delta, links.next) {
                        (Some(delta), _) => {
                            if self.inner.graph_link(&delta).is_none() {
                                return Err(self.provider_error(
                                    "graph deltaLink points outside the configured graph base",
                                ));
                            }
                            return Ok(delta);
                        }
                        (None, Some(next)) => url = self.follow(&next, &mut seen)?,
                        (None, None) => {
                            return Err(self.provider_error(
                                "graph delta page has neither a nextLink nor a deltaLink",
                            ));
                        }
                    }
                }
            }
        }
        info!(
            pages = self.inner.config.max_pages_per_attempt,
            "page budget reached; the next attempt resumes from the next link"
        );
        Ok(url.to_string())
    }

    /// One Graph GET with throttling waits, one token renewal, and the verdict on errors.
    pub(crate) async fn get(&mut self, url: &Url, need: Need) -> Result<GraphBody, Failure> {
        let mut waits = self.inner.config.throttle().waits();
        let mut renew = RenewOnce::default();
        loop {
            let answer = self.send(url, need).await?;
            if (200..300).contains(&answer.status) {
                return Ok(GraphBody::Page(answer.body));
            }
            let error = GraphErrorInfo::parse(&answer.body);
            let grants = self.token_grants(need);
            let verdict = classify_graph_error(answer.status, error.as_ref(), grants);
            let code = error.as_ref().and_then(GraphErrorInfo::code).unwrap_or("");
            if verdict == GraphVerdict::Fail(Outcome::ProviderError)
                && (400..500).contains(&answer.status)
                && !error.as_ref().is_some_and(crate::errors::graph_error_known)
            {
                // A 4xx no row knows: kept transient, logged whole (secrets cut) so that
                // a row can be added (issue 21 §4).
                warn!(
                    http_status = answer.status,
                    body = %datacap_connector::redacted_body(&answer.body),
                    "graph answer no mapping row knows: kept as provider_error"
                );
            }
            warn!(
                http_status = answer.status,
                error_code = code,
                request_id = answer.request_id.as_deref().unwrap_or(""),
                client_request_id = %self.attempt_id,
                call = need_name(need),
                retry_after_ms = answer.retry_after.map_or(0, |d| d.as_millis() as u64),
                verdict = verdict.as_str(),
                "graph call refused"
            );
            let outcome = match verdict {
                GraphVerdict::Resync => return Ok(GraphBody::Resync),
                GraphVerdict::RenewToken if renew.may_renew() => {
                    self.renew().await?;
                    continue;
                }
                GraphVerdict::RenewToken => {
                    refused_after_renewal(matches!(self.held, Held::Member { .. }))
                }
                GraphVerdict::Fail(outcome) => outcome,
            };
            let throttled = outcome == Outcome::RateLimited || answer.status == 503;
            if throttled && waits.wait_out(answer.retry_after, answer.gate_pause).await {
                continue;
            }
            let message = match &error {
                Some(error) if !error.message.is_empty() => {
                    format!("{} (client-request-id {})", error.message, self.attempt_id)
                }
                _ => format!(
                    "graph answered http {} (client-request-id {})",
                    answer.status, self.attempt_id
                ),
            };
            let mut failure = Failure::new(outcome, message).with_answer(
                answer.status,
                answer
                    .request_id
                    .clone()
                    .or_else(|| error.as_ref().and_then(|e| e.request_id.clone())),
            );
            if !code.is_empty() {
                failure = failure.with_code(code);
            }
            failure.retry_after = answer.retry_after;
            return Err(failure);
        }
    }

    /// Sends one GET within the mailbox's concurrency slot and reads the whole body.
    pub(crate) async fn send(&mut self, url: &Url, need: Need) -> Result<GraphAnswer, Failure> {
        let Some(token) = self.token().cloned() else {
            return Err(Failure::new(
                Outcome::ProviderError,
                "graph call without a token",
            ));
        };
        let config = &self.inner.config;
        let _permit = match &self.mailbox {
            Some(mailbox) if need != Need::Users => Some(self.inner.limiter.acquire(mailbox).await),
            _ => None,
        };
        self.gate.ready().await;
        self.requests += 1;
        let response = self
            .inner
            .http
            .get(url.clone())
            .bearer_auth(expose(&token))
            .header("client-request-id", self.attempt_id.to_string())
            .header("return-client-request-id", "true")
            .header(
                "prefer",
                format!(
                    "odata.maxpagesize={}, outlook.timezone=\"UTC\"",
                    config.max_page_size
                ),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| transport_failure(&error))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let request_id = datacap_connector::request_id(response.headers());
        let client_request_id = response
            .headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = datacap_connector::retry_after(response.headers(), SystemTime::now());
        self.last_status = Some(status);
        self.last_request_id = request_id.clone();
        let body = read_body(response, config.http.max_body_bytes).await?;
        // The pause holds back what the answer names (the mailbox, the tenant), read
        // from its body and endpoint: the gate is told once the body is in.
        let gate_pause = if status == 429 || status == 503 {
            let scope = graph_throttle_scope(need, GraphErrorInfo::parse(&body).as_ref());
            self.gate.answered(status, &headers, scope)
        } else {
            None
        };
        debug!(
            http_status = status,
            request_id = request_id.as_deref().unwrap_or(""),
            client_request_id = client_request_id.as_deref().unwrap_or(""),
            call = need_name(need),
            bytes = body.len(),
            "graph call"
        );
        Ok(GraphAnswer {
            status,
            body,
            request_id,
            retry_after,
            gate_pause,
        })
    }
}

fn need_name(need: Need) -> &'static str {
    match need {
        Need::Mail => "messages.delta",
        Need::Calendar => "calendarView.delta",
        Need::Users => "users",
    }
}
