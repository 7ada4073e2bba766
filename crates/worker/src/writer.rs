//! The attempt writer: one task per worker that writes finished attempts in batches
//! (group commit). Jobs hand their [`AttemptRecord`] over a channel and wait for their own
//! [`RecordResult`]; the task takes whatever has queued up (at most `max_batch`) and
//! writes it through [`Store::record_attempts`] in one transaction, so while one batch is
//! being written the next one gathers, and a busy daemon writes a hundred attempts per
//! transaction instead of one. An idle daemon pays no wait: a lone attempt is written at
//! once.
//!
//! Guarantees kept from the one-at-a-time write: a batch is one transaction (each attempt
//! with its items, sync state, status and banners, all or nothing); a conflict with
//! another replica's transaction (nothing written) is retried a few times; when a batch
//! fails with an error the database gave for its data, its attempts are retried one by
//! one so one bad attempt never sinks the others; when the database cannot be reached
//! every attempt of the batch gets the error (a failure of our own, never the member's).

use std::sync::Arc;
use std::time::Duration;

use datacap_store::{AttemptRecord, RecordResult, Store, StoreError, WriteOptions};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::schedule;

/// Conflicting writes are retried this many times before counting as our own failure.
const WRITE_CONFLICT_RETRIES: u32 = 5;

/// Why an attempt was not written. Nothing of it is in the database.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The store refused or could not reach the database (shared by a batch's attempts).
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// The writer task is gone (the worker is being dropped).
    #[error("the attempt writer has stopped")]
    Stopped,
}

struct Request {
    record: AttemptRecord,
    now: OffsetDateTime,
    reply: oneshot::Sender<Result<RecordResult, WriteError>>,
}

/// The handle jobs write through; the task ends when the last handle is dropped.
pub(crate) struct AttemptWriter {
    queue: mpsc::UnboundedSender<Request>,
}

impl AttemptWriter {
    /// Starts `writers` writer tasks on the current runtime, sharing one queue: while one
    /// writes its batch, the next gathers and writes beside it (each batch is its own
    /// transaction; the store's lock order keeps concurrent batches from deadlocking).
    pub(crate) fn start(store: Store, max_batch: usize, writers: usize) -> AttemptWriter {
        let (queue, requests) = mpsc::unbounded_channel();
        let requests = Arc::new(tokio::sync::Mutex::new(requests));
        for _ in 0..writers.max(1) {
            tokio::spawn(run(store.clone(), requests.clone(), max_batch.max(1)));
        }
        AttemptWriter { queue }
    }

    /// Queues one attempt and waits until its batch is written (or failed).
    pub(crate) async fn write(
        &self,
        record: AttemptRecord,
        now: OffsetDateTime,
    ) -> Result<RecordResult, WriteError> {
        let (reply, result) = oneshot::channel();
        self.queue
            .send(Request { record, now, reply })
            .map_err(|_| WriteError::Stopped)?;
        result.await.unwrap_or(Err(WriteError::Stopped))
    }
}

/// The task: every wake-up writes what has queued up since the last batch. Jobs are
/// bounded by the worker's concurrency, so the queue is too.
async fn run(
    store: Store,
    requests: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Request>>>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        // The queue is held only while taking a batch, not while writing it.
        let taken = requests.lock().await.recv_many(&mut batch, max_batch).await;
        if taken == 0 {
            break;
        }
        write_batch(&store, std::mem::take(&mut batch)).await;
    }
}

async fn write_batch(store: &Store, requests: Vec<Request>) {
    // The latest `now` of the batch: every attempt in it finished by then.
    let now = requests
        .iter()
        .map(|request| request.now)
        .max()
        .unwrap_or_else(OffsetDateTime::now_utc);
    let (records, replies): (Vec<AttemptRecord>, Vec<_>) = requests
        .into_iter()
        .map(|request| (request.record, request.reply))
        .unzip();
    match record_with_retries(store, &records, now).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(error) if records.len() > 1 && is_data_error(&error) => {
            warn!(%error, attempts = records.len(), "batch write refused: writing its attempts one by one");
            for (record, reply) in records.iter().zip(replies) {
                let result = record_with_retries(store, std::slice::from_ref(record), now)
                    .await
                    .map_err(|error| WriteError::Store(Arc::new(error)))
                    .and_then(|mut results| results.pop().ok_or(WriteError::Stopped));
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for reply in replies {
                let _ = reply.send(Err(WriteError::Store(error.clone())));
            }
        }
    }
}

/// One transaction, retried a few times when the database reports a conflict with another
/// replica's transaction (nothing was written then).
async fn record_with_retries(
    store: &Store,
    records: &[AttemptRecord],
    now: OffsetDateTime,
) -> Result<Vec<RecordResult>, StoreError> {
    let mut conflicts: u32 = 0;
    loop {
        match store
            .record_attempts(records, now, &WriteOptions::default())
            .await
        {
            Err(error) if error.is_conflict() && conflicts < WRITE_CONFLICT_RETRIES => {
                conflicts += 1;
                debug!(conflicts, %error, "write conflict: retrying");
                let wait = schedule::backoff(
                    Duration::from_millis(20),
                    Duration::from_millis(500),
                    conflicts,
                    fastrand::f64(),
                );
                // `backoff` never waits under a second; a conflict wants less.
                tokio::time::sleep(wait.min(Duration::from_millis(20) * (1 << conflicts))).await;
            }
            result => return result,
        }
    }
}

/// An error about what was written (the database answered and refused it, or the store
/// refused it before asking): worth retrying the batch's attempts one by one. With the
/// database unreachable each of them would fail the same way.
fn is_data_error(error: &StoreError) -> bool {
    !error.is_unreachable() && !error.is_conflict() && !matches!(error, StoreError::Migrate(_))
}
