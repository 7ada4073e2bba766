//! The webhook outbox's queries (issue 19): events written in the transaction of the
//! status or banner change that causes them, one delivery row per subscribed endpoint,
//! and what the delivery task and `datacap webhooks` do with them.
//!
//! An endpoint's deliveries leave one at a time, oldest event first: a claim only ever
//! takes the oldest pending delivery of an endpoint (its queue's head), under a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several replicas never send one event at
//! once, nor an endpoint's events out of order.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::backend::{Backend, Dialect, Tx};
use crate::dbtime::DbTime;
use crate::error::{StoreError, corrupt};
use crate::sql::{Builder, query, query_as};
use crate::webhooks::{
    DeliveryNext, EndpointReport, OutboxEvent, SecretRef, WebhookDelivery, WebhookTry, new_event_id,
};

/// Writes `events` and a pending delivery for each active endpoint of the event's company
/// that subscribes to its type, inside the caller's transaction. Events of a company
/// without such an endpoint are not stored at all (nothing would ever read them).
pub(crate) async fn enqueue_in<D: Dialect>(
    tx: &mut Tx<D>,
    events: Vec<OutboxEvent>,
    at: DbTime,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut companies: Vec<String> = events.iter().map(|e| e.company_id.clone()).collect();
    companies.sort_unstable();
    companies.dedup();
    let mut endpoints: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
    for chunk in companies.chunks(400) {
        let mut query = Builder::<D>::new(
            "SELECT company_id, id, events FROM webhook_endpoints WHERE active AND ",
        );
        query.push_in("company_id", chunk.to_vec());
        query.push(" ORDER BY company_id, id");
        let rows: Vec<(String, String, String)> =
            query.build_query_as().fetch_all(&mut *tx).await?;
        for (company, id, subscribed) in rows {
            let subscribed: Vec<String> = serde_json::from_str(&subscribed)
                .map_err(|_| corrupt("webhook_endpoints", "events", &subscribed))?;
            endpoints.entry(company).or_default().push((id, subscribed));
        }
    }
    if endpoints.is_empty() {
        return Ok(());
    }
    for event in events {
        let Some(candidates) = endpoints.get(&event.company_id) else {
            continue;
        };
        let wanted: Vec<&str> = candidates
            .iter()
            .filter(|(_, subscribed)| subscribed.iter().any(|s| s == event.event_type.as_str()))
            .map(|(id, _)| id.as_str())
            .collect();
        if wanted.is_empty() {
            continue;
        }
        // The id is inside the body too (the envelope's `id`): read it back from there so
        // the row and the bytes agree.
        let event_id = serde_json::from_str::<serde_json::Value>(&event.body)
            .ok()
            .and_then(|body| body.get("id").and_then(|id| id.as_str()).map(str::to_owned))
            .unwrap_or_else(new_event_id);
        let (seq,): (i64,) = query_as(
            "INSERT INTO webhook_events (event_id, company_id, type, body, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING seq",
        )
        .bind(&event_id)
        .bind(&event.company_id)
        .bind(event.event_type.as_str())
        .bind(&event.body)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let mut insert = Builder::<D>::new(
            "INSERT INTO webhook_deliveries (event_seq, company_id, endpoint_id, state, \
             next_try_at, pending_since) ",
        );
        insert.push_values(wanted, |mut row, endpoint| {
            row.push_bind(seq)
                .push_bind(event.company_id.clone())
                .push_bind(endpoint.to_owned())
                .push_bind("pending")
                .push_bind(at)
                .push_bind(at);
        });
        insert.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// The columns [`delivery_from_row`] reads, `d` the delivery, `e` its event, `w` its
/// endpoint.
macro_rules! delivery_columns {
    () => {
        "d.id, e.event_id, e.type, e.body, d.company_id, d.endpoint_id, w.url, w.secret_ref, \
         d.tries, d.pending_since"
    };
}

fn delivery_from_row<D: Dialect>(row: &D::Row, owner: &str) -> Result<WebhookDelivery, StoreError> {
    let secret: String = D::get(row, 7)?;
    let tries: i64 = D::get(row, 8)?;
    let pending_since: DbTime = D::get(row, 9)?;
    Ok(WebhookDelivery {
        delivery_id: D::get(row, 0)?,
        event_id: D::get(row, 1)?,
        event_type: D::get(row, 2)?,
        body: D::get(row, 3)?,
        company_id: D::get(row, 4)?,
        endpoint_id: D::get(row, 5)?,
        url: D::get(row, 6)?,
        secret: SecretRef::from_json(&secret)
            .ok_or_else(|| corrupt("webhook_endpoints", "secret_ref", "(unreadable)"))?,
        tries: u32::try_from(tries.max(0)).unwrap_or(u32::MAX),
        pending_since: pending_since.0,
        lease_owner: owner.to_owned(),
    })
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value.max(0)).unwrap_or(0)
}

impl<D: Dialect> Backend<D> {
    /// Leases to `owner`, until `now + lease`, the head of up to `limit` endpoints'
    /// queues: each an active endpoint's oldest pending delivery, when it is due and no
    /// live lease holds it. An endpoint whose head is not due yet sends nothing else.
    pub async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let at = DbTime::new(now);
        let expires = DbTime::new(now + lease);
        let mut tx = self.begin_write().await?;
        let mut select = Builder::<D>::new(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq \
             JOIN webhook_endpoints w ON w.company_id = d.company_id AND w.id = d.endpoint_id \
             WHERE d.state = 'pending' AND w.active AND d.event_seq = (SELECT MIN(h.event_seq) \
             FROM webhook_deliveries h WHERE h.company_id = d.company_id \
             AND h.endpoint_id = d.endpoint_id AND h.state = 'pending') AND d.next_try_at <= "
        ));
        select
            .push_bind(at)
            .push(" AND (d.lease_owner IS NULL OR d.lease_expires_at <= ")
            .push_bind(at)
            .push(") ORDER BY d.next_try_at, d.id LIMIT ")
            .push_bind(i64::from(limit));
        select.push(D::SKIP_LOCKED_DELIVERIES);
        let rows = select.build().fetch_all(&mut tx).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let delivery = delivery_from_row::<D>(row, owner)?;
            query(
                "UPDATE webhook_deliveries SET lease_owner = $2, lease_expires_at = $3 \
                 WHERE id = $1",
            )
            .bind(delivery.delivery_id)
            .bind(owner)
            .bind(expires)
            .execute(&mut tx)
            .await?;
            claimed.push(delivery);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records one try of a leased delivery and what becomes of it, in one transaction;
    /// false (and nothing written) when `owner` no longer holds the lease.
    pub async fn record_webhook_try(
        &self,
        delivery: &WebhookDelivery,
        attempt: &WebhookTry,
        next: DeliveryNext,
    ) -> Result<bool, StoreError> {
        let tried = DbTime::new(attempt.tried_at);
        let mut tx = self.begin_write().await?;
        let (state, next_try_at, delivered_at, dead_at) = match next {
            DeliveryNext::Delivered => ("delivered", tried, Some(tried), None),
            DeliveryNext::Retry(at) => ("pending", DbTime::new(at), None, None),
            DeliveryNext::Dead => ("dead", tried, None, Some(tried)),
        };
        let updated = query(
            "UPDATE webhook_deliveries SET state = $3, tries = tries + 1, next_try_at = $4, \
             last_try_at = $5, last_http_status = $6, last_error = $7, \
             delivered_at = COALESCE($8, delivered_at), dead_at = $9, \
             lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
        )
        .bind(delivery.delivery_id)
        .bind(&delivery.lease_owner)
        .bind(state)
        .bind(next_try_at)
        .bind(tried)
        .bind(attempt.http_status.map(i64::from))
        .bind(attempt.error.as_deref())
        .bind(delivered_at)
        .bind(dead_at)
        .execute(&mut tx)
        .await?;
        if updated == 0 {
            return Ok(false);
        }
        query(
            "INSERT INTO webhook_tries (delivery_id, tried_at, http_status, error, duration_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(delivery.delivery_id)
        .bind(tried)
        .bind(attempt.http_status.map(i64::from))
        .bind(attempt.error.as_deref())
        .bind(i64::try_from(attempt.duration.as_millis()).unwrap_or(i64::MAX))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives a leased delivery back untried (shutdown), due again at once.
    pub async fn release_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
    ) -> Result<bool, StoreError> {
        let release = query(
            "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(delivery.delivery_id)
        .bind(&delivery.lease_owner);
        Ok(self.write_one(release).await? > 0)
    }

    /// Every endpoint (active or not) of every company or one, with its backlog, dead
    /// count, oldest pending event, last success and last failure.
    pub async fn webhook_endpoints(
        &self,
        company_id: Option<&str>,
    ) -> Result<Vec<EndpointReport>, StoreError> {
        type EndpointRow = (
            String,
            String,
            String,
            String,
            bool,
            i64,
            i64,
            Option<DbTime>,
            Option<DbTime>,
        );
        let mut query = Builder::<D>::new(
            "SELECT w.company_id, w.id, w.url, w.events, w.active, \
             (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.company_id = w.company_id \
              AND d.endpoint_id = w.id AND d.state = 'pending'), \
             (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.company_id = w.company_id \
              AND d.endpoint_id = w.id AND d.state = 'dead'), \
             (SELECT MIN(d.pending_since) FROM webhook_deliveries d \
              WHERE d.company_id = w.company_id AND d.endpoint_id = w.id AND d.state = 'pending'), \
             (SELECT MAX(d.delivered_at) FROM webhook_deliveries d \
              WHERE d.company_id = w.company_id AND d.endpoint_id = w.id) \
             FROM webhook_endpoints w",
        );
        if let Some(company_id) = company_id {
            query
                .push(" WHERE w.company_id = ")
                .push_bind(company_id.to_owned());
        }
        query.push(" ORDER BY w.company_id, w.id");
        let rows: Vec<EndpointRow> = query.build_query_as().fetch_all(self.reader()).await?;
        let mut reports = Vec::with_capacity(rows.len());
        for (company, id, url, events, active, backlog, dead, oldest, success) in rows {
            let failure: Option<(DbTime, Option<i64>, Option<String>)> = query_as(
                "SELECT t.tried_at, t.http_status, t.error FROM webhook_tries t \
                 JOIN webhook_deliveries d ON d.id = t.delivery_id \
                 WHERE d.company_id = $1 AND d.endpoint_id = $2 \
                 AND (t.http_status IS NULL OR t.http_status < 200 OR t.http_status > 299) \
                 ORDER BY t.tried_at DESC, t.id DESC LIMIT 1",
            )
            .bind(&company)
            .bind(&id)
            .fetch_optional(self.reader())
            .await?;
            reports.push(EndpointReport {
                events: serde_json::from_str(&events)
                    .map_err(|_| corrupt("webhook_endpoints", "events", &events))?,
                company_id: company,
                endpoint_id: id,
                url,
                active,
                backlog: to_u64(backlog),
                dead: to_u64(dead),
                oldest_pending_since: oldest.map(|t| t.0),
                last_success_at: success.map(|t| t.0),
                last_failure_at: failure.as_ref().map(|(at, _, _)| at.0),
                last_failure: failure.map(|(_, status, error)| match (status, error) {
                    (_, Some(error)) => error,
                    (Some(status), None) => format!("http {status}"),
                    (None, None) => "failed".to_owned(),
                }),
            });
        }
        Ok(reports)
    }

    /// Makes every delivery of the event `event_id` pending again (delivered or dead
    /// alike, to every endpoint it went to), its give-up clock restarted at `now`;
    /// returns how many.
    pub async fn redeliver_event(
        &self,
        event_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let at = DbTime::new(now);
        let redeliver = query(
            "UPDATE webhook_deliveries SET state = 'pending', tries = 0, next_try_at = $2, \
             pending_since = $2, dead_at = NULL, lease_owner = NULL, lease_expires_at = NULL \
             WHERE state <> 'pending' AND event_seq IN \
             (SELECT seq FROM webhook_events WHERE event_id = $1)",
        )
        .bind(event_id)
        .bind(at);
        self.write_one(redeliver).await
    }

    /// Makes every delivery that died at or after `since` pending again (of one company,
    /// or all), its give-up clock restarted at `now`; returns how many.
    pub async fn redeliver_dead_since(
        &self,
        since: OffsetDateTime,
        company_id: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let at = DbTime::new(now);
        let mut update = Builder::<D>::new(
            "UPDATE webhook_deliveries SET state = 'pending', tries = 0, \
             lease_owner = NULL, lease_expires_at = NULL, dead_at = NULL, next_try_at = ",
        );
        update
            .push_bind(at)
            .push(", pending_since = ")
            .push_bind(at)
            .push(" WHERE state = 'dead' AND dead_at >= ")
            .push_bind(DbTime::new(since));
        if let Some(company_id) = company_id {
            update
                .push(" AND company_id = ")
                .push_bind(company_id.to_owned());
        }
        self.write_one(update.build()).await
    }

    /// When the oldest pending delivery's run of tries began; `None` when nothing waits
    /// (the oldest-undelivered-event gauge).
    pub async fn oldest_undelivered_webhook(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let (oldest,): (Option<DbTime>,) =
            query_as("SELECT MIN(pending_since) FROM webhook_deliveries WHERE state = 'pending'")
                .fetch_one(self.reader())
                .await?;
        Ok(oldest.map(|t| t.0))
    }
}
