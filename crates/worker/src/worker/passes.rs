//! The daemon's periodic passes beside the claim loop: the stall pass (every status
//! re-evaluated against `now`, and the members gauge), the queue-lag sample and the hourly
//! retention pass.

use super::*;

impl Worker {
    /// Runs a stall pass every `stall_pass_interval` (the first at once, in full) until
    /// `cancel` fires, in a task of its own: claims never wait for a pass, and a pass
    /// over a large company never holds up the poll loop.
    pub(super) fn spawn_stall_passes(
        &self,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let worker = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = worker.stall_pass() => {}
                }
                if sleep_or_cancel(worker.inner.config.stall_pass_interval, &cancel).await {
                    break;
                }
            }
        })
    }

    /// Samples the queue lag every [`events::QUEUE_LAG_INTERVAL`] until `cancel` fires, in
    /// a task of its own, so a daemon whose permits are all busy still reports its backlog.
    pub(super) fn spawn_queue_lag(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let worker = self.clone();
        tokio::spawn(async move {
            loop {
                worker.sample_queue_lag().await;
                if sleep_or_cancel(events::QUEUE_LAG_INTERVAL, &cancel).await {
                    break;
                }
            }
        })
    }

    /// Sets the queue-lag gauge: the age of the oldest due job no live lease holds (0
    /// when none waits). One index-backed read; a failure is our own (logged, counted).
    pub async fn sample_queue_lag(&self) {
        let now = OffsetDateTime::now_utc();
        match self.inner.store.oldest_waiting_due_at(now).await {
            Ok(oldest) => {
                let lag = oldest.map_or(Duration::ZERO, |due| {
                    Duration::try_from(now - due).unwrap_or(Duration::ZERO)
                });
                events::queue_lag(lag);
            }
            Err(error) => {
                self.inner.health.database_failed();
                events::own_failure("queue_lag", &error, None);
            }
        }
    }

    /// Deletes attempts older than `attempts_max_age` (each channel keeps the attempts its
    /// status depends on; status history is kept). Returns how many went, or `None` when
    /// retention is off or the database failed (a failure of our own: logged, not fatal).
    pub async fn retention_pass(&self) -> Option<u64> {
        let max_age = time::Duration::try_from(self.inner.config.attempts_max_age?).ok()?;
        let cutoff = OffsetDateTime::now_utc().checked_sub(max_age)?;
        match self.inner.store.prune_attempts(cutoff).await {
            Ok(pruned) => {
                info!(pruned, "retention pass: old attempts deleted");
                // Webhook events by the same age, once every endpoint has them or gave up.
                match self.inner.store.prune_webhooks(cutoff).await {
                    Ok(events) => info!(events, "retention pass: settled webhook events deleted"),
                    Err(error) => events::own_failure("retention_pass", &error, None),
                }
                Some(pruned)
            }
            Err(error) => {
                self.inner.health.database_failed();
                events::own_failure("retention_pass", &error, None);
                None
            }
        }
    }

    /// Re-evaluates statuses against `now`, so a channel that nothing polls turns
    /// `import_stalled`. The daemon's first pass recomputes every active member (statuses
    /// then follow thresholds changed while it was down); later passes, and
    /// [`Worker::run_once`]'s, recompute only the members time may have changed
    /// ([`Store::recompute_stale`]), so a pass costs nothing while imports run on schedule,
    /// whatever the number of members. Failures are our own: logged, not fatal.
    pub async fn stall_pass(&self) {
        let full = !self.inner.full_pass_done.load(Ordering::Relaxed);
        self.stall_pass_of(full).await;
    }

    pub(super) async fn stall_pass_of(&self, full: bool) {
        let now = OffsetDateTime::now_utc();
        let companies = match self.inner.store.active_company_ids().await {
            Ok(companies) => {
                self.set_companies(companies.len());
                companies
            }
            Err(error) => {
                self.inner.health.database_failed();
                events::own_failure("stall_pass", &error, None);
                return;
            }
        };
        let recomputed = if full {
            async {
                for company_id in &companies {
                    self.inner.store.recompute_company(company_id, now).await?;
                }
                self.inner.full_pass_done.store(true, Ordering::Relaxed);
                Ok(None)
            }
            .await
        } else {
            self.inner.store.recompute_stale(now).await.map(Some)
        };
        match recomputed {
            Ok(members) => debug!(full, members = ?members, "stall pass done"),
            Err(error) => {
                self.inner.health.database_failed();
                events::own_failure("stall_pass", &error, None);
                return;
            }
        }
        self.inner.health.progress();
        self.inner.limits.prune();
        events::stall_pass();
        match self.inner.store.status_counts().await {
            Ok(rows) => {
                let mut counts: BTreeMap<(Icon, Reason), u64> = BTreeMap::new();
                for (icon, reason, count) in rows {
                    *counts.entry((icon, reason)).or_default() += count;
                }
                let mut shown = lock(&self.inner.members_shown);
                for gone in shown.iter().filter(|key| !counts.contains_key(key)) {
                    events::members(gone.0, gone.1, 0);
                }
                for ((icon, reason), count) in &counts {
                    events::members(*icon, *reason, *count);
                }
                *shown = counts.into_keys().collect();
            }
            Err(error) => events::own_failure("member_gauges", &error, None),
        }
    }
}
