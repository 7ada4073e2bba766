//! The lease heartbeat: while an attempt runs, its lease is extended outside the attempt's
//! transaction; an attempt whose lease was taken over writes nothing.

use super::*;

/// Stops a job's heartbeat task when dropped.
pub(super) struct HeartbeatGuard(CancellationToken);

impl Drop for HeartbeatGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Worker {
    /// Whether this worker still holds `job`'s lease (extending it). A lease found taken
    /// over is logged and counted as lost by a live holder; a database failure counts as
    /// not held (the attempt cannot be written either).
    pub(super) async fn lease_still_held(&self, job: &Job) -> bool {
        let inner = &self.inner;
        let until = OffsetDateTime::now_utc()
            + time::Duration::try_from(inner.config.lease).unwrap_or(time::Duration::minutes(2));
        match inner.store.heartbeat(job, self.owner(), until).await {
            Ok(true) => true,
            Ok(false) => {
                warn!("lease lost while the job waited for its member: not polling");
                events::lease_lost();
                false
            }
            Err(error) => {
                inner.health.database_failed();
                events::own_failure("heartbeat", &error, None);
                false
            }
        }
    }

    /// Extends `job`'s lease every `heartbeat` until the returned guard is dropped. The
    /// heartbeat runs as its own task, outside the attempt's transaction: a heartbeat
    /// that waits on the row the attempt's write is updating never holds the write up.
    /// When the lease turns out to be another worker's, `lost` is cancelled so the
    /// attempt stops instead of polling beside the new holder.
    pub(super) fn start_heartbeat(&self, job: &Job, lost: CancellationToken) -> HeartbeatGuard {
        let stop = CancellationToken::new();
        let worker = self.clone();
        let job = job.clone();
        let stopped = stop.clone();
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                let inner = &worker.inner;
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + inner.config.heartbeat,
                    inner.config.heartbeat,
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stopped.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let until = OffsetDateTime::now_utc()
                        + time::Duration::try_from(inner.config.lease)
                            .unwrap_or(time::Duration::minutes(2));
                    let result = inner.store.heartbeat(&job, worker.owner(), until).await;
                    if stopped.is_cancelled() {
                        // The attempt was written (and its lease released) meanwhile.
                        break;
                    }
                    match result {
                        Ok(true) => debug!("lease extended"),
                        Ok(false) => {
                            warn!("lease lost while the job was held: stopping it");
                            events::lease_lost();
                            lost.cancel();
                            break;
                        }
                        Err(error) => {
                            inner.health.database_failed();
                            events::own_failure("heartbeat", &error, None);
                        }
                    }
                }
            }
            .instrument(span),
        );
        HeartbeatGuard(stop)
    }
}
