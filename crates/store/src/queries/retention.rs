//! Retention: old attempts and settled webhook events are deleted, never anything a
//! status still depends on.

use time::OffsetDateTime;

use crate::backend::{Backend, Dialect};
use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::sql::query;

impl<D: Dialect> Backend<D> {
    /// Deletes attempts that finished before `older_than`, except the latest of each
    /// (member, channel), which the stall rule still needs. Status and its history stay.
    pub async fn prune_attempts(&self, older_than: OffsetDateTime) -> Result<u64, StoreError> {
        // Each channel keeps the latest N attempts (N = red_after_consecutive_failures),
        // the ones the classifier reads: pruning never changes a status.
        let keep = i64::from(
            self.options()
                .thresholds
                .red_after_consecutive_failures
                .max(1),
        );
        let prune = query(
            "DELETE FROM import_attempts WHERE finished_at < $1 AND id NOT IN (\
             SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY member_id, channel \
             ORDER BY finished_at DESC, id DESC) AS recent FROM import_attempts) ranked \
             WHERE recent <= $2)",
        )
        .bind(DbTime::new(older_than))
        .bind(keep);
        self.write_one(prune).await
    }

    /// Deletes webhook events written before `older_than` that no delivery still waits
    /// for (each delivered or dead), with their deliveries and tries; pending ones stay
    /// whatever their age. Returns how many events went.
    pub async fn prune_webhooks(&self, older_than: OffsetDateTime) -> Result<u64, StoreError> {
        // The events no delivery waits for any more (each delivered or dead).
        macro_rules! settled {
            () => {
                "SELECT e.seq FROM webhook_events e WHERE e.created_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p \
                 WHERE p.event_seq = e.seq AND p.state = 'pending')"
            };
        }
        let mut tx = self.begin_write().await?;
        query(concat!(
            "DELETE FROM webhook_tries WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE event_seq IN (",
            settled!(),
            "))"
        ))
        .bind(DbTime::new(older_than))
        .execute(&mut tx)
        .await?;
        query(concat!(
            "DELETE FROM webhook_deliveries WHERE event_seq IN (",
            settled!(),
            ")"
        ))
        .bind(DbTime::new(older_than))
        .execute(&mut tx)
        .await?;
        let deleted = query(
            "DELETE FROM webhook_events WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = webhook_events.seq)",
        )
        .bind(DbTime::new(older_than))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}
