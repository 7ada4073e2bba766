//! At most N requests in flight per mailbox, across every attempt of this process.
//!
//! Outlook allows 4 concurrent requests per app and mailbox and answers 429
//! `ApplicationThrottled` "MailboxConcurrency" beyond that (providers/microsoft.md §4).
//! Mail and calendar imports of one member, or a retry overlapping a slow attempt, share
//! the mailbox, so the limit is kept here rather than per attempt. Each mailbox also keeps
//! a high-water mark of requests in flight, for metrics and for the test that proves the
//! limit holds under load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The map is pruned of idle mailboxes when it reaches this many (then at twice what is
/// left), so mailboxes nobody polls any more do not stay in memory forever.
const PRUNE_FLOOR: usize = 1024;

/// Per-mailbox semaphores.
#[derive(Debug)]
pub(crate) struct MailboxLimiter {
    limit: usize,
    mailboxes: Mutex<Mailboxes>,
    floor: usize,
}

#[derive(Debug)]
struct Mailboxes {
    map: HashMap<String, Arc<Slot>>,
    prune_at: usize,
}

#[derive(Debug)]
struct Slot {
    semaphore: Arc<Semaphore>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// A request slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct MailboxPermit {
    slot: Arc<Slot>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for MailboxPermit {
    fn drop(&mut self) {
        self.slot.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MailboxLimiter {
    pub(crate) fn new(limit: usize) -> MailboxLimiter {
        MailboxLimiter::with_floor(limit, PRUNE_FLOOR)
    }

    fn with_floor(limit: usize, floor: usize) -> MailboxLimiter {
        MailboxLimiter {
            limit: limit.max(1),
            mailboxes: Mutex::new(Mailboxes {
                map: HashMap::new(),
                prune_at: floor,
            }),
            floor,
        }
    }

    fn slot(&self, mailbox: &str) -> Arc<Slot> {
        let key = mailbox.to_ascii_lowercase();
        let mut mailboxes = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !mailboxes.map.contains_key(&key) && mailboxes.map.len() >= mailboxes.prune_at {
            // A slot only the map holds has no request in flight (each permit holds one).
            mailboxes.map.retain(|_, slot| Arc::strong_count(slot) > 1);
            mailboxes.prune_at = (mailboxes.map.len() * 2).max(self.floor);
        }
        Arc::clone(mailboxes.map.entry(key).or_insert_with(|| {
            Arc::new(Slot {
                semaphore: Arc::new(Semaphore::new(self.limit)),
                in_flight: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            })
        }))
    }

    /// Waits for a free slot of `mailbox`.
    pub(crate) async fn acquire(&self, mailbox: &str) -> MailboxPermit {
        let slot = self.slot(mailbox);
        let permit = Arc::clone(&slot.semaphore)
            .acquire_owned()
            .await
            .expect("mailbox semaphores are never closed");
        let now = slot.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        slot.peak.fetch_max(now, Ordering::SeqCst);
        MailboxPermit {
            slot,
            _permit: permit,
        }
    }

    /// The most requests `mailbox` had in flight at once (since it was last idle while
    /// the map was pruned).
    pub(crate) fn peak(&self, mailbox: &str) -> usize {
        let mailboxes = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        mailboxes
            .map
            .get(&mailbox.to_ascii_lowercase())
            .map_or(0, |slot| slot.peak.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_more_than_the_limit_per_mailbox() {
        let limiter = Arc::new(MailboxLimiter::new(4));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let limiter = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                let _permit = limiter.acquire("Ada@Contoso.example").await;
                tokio::task::yield_now().await;
                let _other = limiter.acquire("grace@contoso.example").await;
                tokio::task::yield_now().await;
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        assert!(limiter.peak("ada@contoso.example") <= 4);
        assert!(limiter.peak("ada@contoso.example") >= 1);
        assert_eq!(limiter.peak("nobody@contoso.example"), 0);
    }

    #[tokio::test]
    async fn idle_mailboxes_are_pruned_as_the_map_grows() {
        let limiter = MailboxLimiter::with_floor(4, 3);
        let busy = limiter.acquire("busy@contoso.example").await;
        drop(limiter.acquire("a@contoso.example").await);
        drop(limiter.acquire("b@contoso.example").await);
        assert_eq!(limiter.peak("a@contoso.example"), 1);
        // The fourth mailbox prunes the idle ones; the busy one keeps its slot.
        let _new = limiter.acquire("new@contoso.example").await;
        assert_eq!(limiter.peak("a@contoso.example"), 0);
        assert_eq!(limiter.peak("busy@contoso.example"), 1);
        drop(busy);
        let mailboxes = limiter.mailboxes.lock().expect("lock");
        assert_eq!(mailboxes.map.len(), 2);
    }
}
