//! The attempt write: a batch of finished attempts in one transaction, with their items,
//! each (member, channel)'s sync state and last success, the grant states the attempts
//! proved, and (through `status` and `banners`) the members' statuses, history and the
//! companies' banners. All of it or none of it.

use std::collections::{HashMap, HashSet};

use datacap_core::{
    CalendarItem, Channel, ConnectionMode, EmailItem, MemberConnection, Outcome, Provider,
};
use time::OffsetDateTime;

use super::{CHUNK, MemberContext, member_contexts_in};
use crate::backend::{Backend, Dialect, Tx};
use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::{AttemptRecord, FailPoint, RecordResult, WriteOptions};
use crate::rows::{AttemptRow, EmailRow, EventRow, SyncRow};
use crate::sql::{Builder, query};

/// A member's grant follows what its attempts proved (issue 21 §5): an attempt that ended
/// `grant_invalid` (the provider declared the refresh token dead) marks a `connected`
/// grant `invalid` at once, so the dead token is no longer sent on every poll (the worker
/// rechecks an invalid grant only every `invalid_grant_recheck`); a recheck that worked
/// makes it `connected` again. A grant stored after the attempt started (the member
/// connected again meanwhile) is never touched. `contexts` get the new states, so the
/// statuses computed in this transaction see them.
async fn grant_states_in<D: Dialect>(
    tx: &mut Tx<D>,
    attempts: &[AttemptRecord],
    contexts: &mut [MemberContext],
    at: DbTime,
) -> Result<(), StoreError> {
    for attempt in attempts {
        let Ok(index) = contexts.binary_search_by(|c| c.member_id.cmp(&attempt.member_id)) else {
            continue;
        };
        let context = &mut contexts[index];
        if context.company.connection_mode != ConnectionMode::UserByUser {
            continue;
        }
        let (from, to) = match (attempt.outcome, context.member.connection) {
            (Outcome::GrantInvalid, Some(MemberConnection::Connected)) => {
                (MemberConnection::Connected, MemberConnection::Invalid)
            }
            // A failed recheck: the next one is `invalid_grant_recheck` from now.
            (Outcome::GrantInvalid, Some(MemberConnection::Invalid)) => {
                (MemberConnection::Invalid, MemberConnection::Invalid)
            }
            (Outcome::Success, Some(MemberConnection::Invalid)) => {
                (MemberConnection::Invalid, MemberConnection::Connected)
            }
            _ => continue,
        };
        let updated = query(
            "UPDATE member_grants SET state = $1, updated_at = $2 \
             WHERE member_id = $3 AND state = $4 AND updated_at <= $5",
        )
        .bind(to.as_str())
        .bind(at)
        .bind(&attempt.member_id)
        .bind(from.as_str())
        .bind(DbTime::new(attempt.started_at))
        .execute(&mut *tx)
        .await?;
        if updated > 0 {
            context.member.connection = Some(to);
        }
    }
    Ok(())
}

/// Updates each (member, channel) of the batch once: the cursor and due time of its
/// latest attempt, the transient-failure run carried over or restarted, the lease
/// released. Only rows whose lease is the latest attempt's owner's, free or expired are
/// touched; returns the (member, channel) pairs that were.
async fn sync_state_in<D: Dialect>(
    tx: &mut Tx<D>,
    attempts: &[AttemptRecord],
    at: DbTime,
) -> Result<HashSet<(String, String)>, StoreError> {
    let mut writes: Vec<SyncRow> = Vec::new();
    let mut index: HashMap<(&str, Channel), usize> = HashMap::new();
    for attempt in attempts {
        let key = (attempt.member_id.as_str(), attempt.channel);
        let position = *index.entry(key).or_insert_with(|| {
            writes.push(SyncRow {
                member_id: attempt.member_id.clone(),
                channel: attempt.channel.as_str(),
                cursor: None,
                next_due_at: DbTime::new(attempt.next_due_at),
                last_attempt_at: DbTime::new(attempt.finished_at),
                restart: false,
                transients: 0,
                lease_owner: None,
            });
            writes.len() - 1
        });
        let write = &mut writes[position];
        if attempt.next_cursor.is_some() {
            write.cursor.clone_from(&attempt.next_cursor);
        }
        write.next_due_at = DbTime::new(attempt.next_due_at);
        write.last_attempt_at = DbTime::new(attempt.finished_at);
        write.lease_owner.clone_from(&attempt.lease_owner);
        if attempt.outcome.is_transient() {
            write.transients += 1;
        } else {
            write.restart = true;
            write.transients = 0;
        }
    }
    Ok(D::update_sync_state(tx, writes, at)
        .await?
        .into_iter()
        .collect())
}

/// Records each (member, channel)'s latest successful attempt of the batch as its last
/// successful import (time and items), unless a later one is stored already: one
/// statement per batch ([`CHUNK`] rows each), none when the batch has no success.
async fn last_success_in<D: Dialect>(
    tx: &mut Tx<D>,
    attempts: &[AttemptRecord],
) -> Result<(), StoreError> {
    let mut latest: HashMap<(&str, Channel), (DbTime, i64)> = HashMap::new();
    for attempt in attempts.iter().filter(|a| a.outcome == Outcome::Success) {
        let items = i64::try_from(attempt.email_items.len() + attempt.calendar_items.len())
            .unwrap_or(i64::MAX);
        let at = DbTime::new(attempt.finished_at);
        let entry = latest
            .entry((attempt.member_id.as_str(), attempt.channel))
            .or_insert((at, items));
        if at >= entry.0 {
            *entry = (at, items);
        }
    }
    let rows: Vec<_> = latest.into_iter().collect();
    for chunk in rows.chunks(CHUNK / 4) {
        let mut update = Builder::<D>::new("WITH v (member_id, channel, at, items) AS (");
        update.push_values(chunk, |mut row, ((member_id, channel), (at, items))| {
            row.push_bind((*member_id).to_owned())
                .push_bind(channel.as_str())
                .push_bind(*at)
                .push_bind(*items);
        });
        update.push(
            ") UPDATE sync_state SET last_success_at = v.at, last_success_items = v.items \
             FROM v WHERE sync_state.member_id = v.member_id AND sync_state.channel = v.channel \
             AND (sync_state.last_success_at IS NULL OR sync_state.last_success_at <= v.at)",
        );
        update.build().execute(&mut *tx).await?;
    }
    Ok(())
}

fn fail_point(options: &WriteOptions, point: FailPoint) -> Result<(), StoreError> {
    if options.fail_at == Some(point) {
        return Err(StoreError::InjectedFailure(point));
    }
    Ok(())
}

fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned())
}

impl<D: Dialect> Backend<D> {
    /// Writes attempts in one transaction: the attempt rows, their items (idempotent
    /// upsert) and the sync-state update of each (member, channel) (cursor, due time,
    /// transient count, lease release); then each touched member's recomputed status and
    /// history, then each touched company's banners. All of it or none of it.
    ///
    /// Every step is a few multi-row statements whatever the batch size, so a batch costs
    /// about a dozen round trips, not a dozen per attempt.
    pub async fn record_attempts(
        &self,
        attempts: &[AttemptRecord],
        now: OffsetDateTime,
        options: &WriteOptions,
    ) -> Result<Vec<RecordResult>, StoreError> {
        let at = DbTime::new(now);
        let mut tx = self.begin_write().await?;

        let mut member_ids: Vec<&str> = attempts.iter().map(|a| a.member_id.as_str()).collect();
        member_ids.sort_unstable();
        member_ids.dedup();
        let mut contexts = member_contexts_in(&mut tx, &member_ids).await?;
        if let Some(missing) = member_ids.iter().find(|id| {
            contexts
                .binary_search_by(|c| c.member_id.as_str().cmp(id))
                .is_err()
        }) {
            return Err(StoreError::UnknownMember {
                member_id: (*missing).to_owned(),
            });
        }
        grant_states_in(&mut tx, attempts, &mut contexts, at).await?;
        let context_of = |member_id: &str| {
            contexts
                .binary_search_by(|c| c.member_id.as_str().cmp(member_id))
                .map(|index| &contexts[index])
                .ok()
        };

        let rows = attempts
            .iter()
            .map(|attempt| {
                // Every member was found above.
                let (company_id, provider) = context_of(&attempt.member_id)
                    .map_or((String::new(), Provider::None), |c| {
                        (c.company_id.clone(), c.company.provider)
                    });
                let items = attempt.email_items.len() + attempt.calendar_items.len();
                AttemptRow {
                    id: attempt.attempt_id.to_string(),
                    member_id: attempt.member_id.clone(),
                    company_id,
                    channel: attempt.channel.as_str(),
                    provider: provider.as_str(),
                    started_at: DbTime::new(attempt.started_at),
                    finished_at: DbTime::new(attempt.finished_at),
                    outcome: attempt.outcome.as_str(),
                    http_status: attempt.http_status.map(i64::from),
                    error_code: attempt.provider_error_code.clone(),
                    error_message: attempt.provider_error_message.clone(),
                    request_id: attempt.provider_request_id.clone(),
                    items: i64::try_from(items).unwrap_or(i64::MAX),
                }
            })
            .collect();
        D::insert_rows(&mut tx, rows, None).await?;
        fail_point(options, FailPoint::AfterAttemptRow)?;

        self.upsert_items_in(&mut tx, attempts, at).await?;
        fail_point(options, FailPoint::AfterItems)?;

        let updated = sync_state_in(&mut tx, attempts, at).await?;
        last_success_in(&mut tx, attempts).await?;
        fail_point(options, FailPoint::AfterSyncState)?;
        let results = attempts
            .iter()
            .map(|attempt| RecordResult {
                attempt_id: attempt.attempt_id,
                sync_state_updated: updated.contains(&(
                    attempt.member_id.clone(),
                    attempt.channel.as_str().to_owned(),
                )),
            })
            .collect();

        let deltas = self.recompute_members_in(&mut tx, &contexts, now).await?;
        fail_point(options, FailPoint::AfterMemberStatus)?;
        // Banners count members by their email and calendar reasons and their seat; an
        // attempt changes no seat, so the members whose reasons changed give each banner's
        // change exactly, and no company is rescanned.
        self.apply_banner_deltas_in(&mut tx, &deltas, now).await?;
        fail_point(options, FailPoint::AfterBanners)?;
        tx.commit().await?;
        Ok(results)
    }

    /// Upserts the batch's items on (member, provider id); within the batch the last
    /// attempt's copy of an item wins.
    pub(super) async fn upsert_items_in(
        &self,
        tx: &mut Tx<D>,
        attempts: &[AttemptRecord],
        at: DbTime,
    ) -> Result<(), StoreError> {
        let mut emails: HashMap<(&str, &str), (&EmailItem, String)> = HashMap::new();
        let mut events: HashMap<(&str, &str), (&CalendarItem, String)> = HashMap::new();
        for attempt in attempts {
            for item in &attempt.email_items {
                emails.insert(
                    (&attempt.member_id, &item.provider_id),
                    (item, attempt.attempt_id.to_string()),
                );
            }
            for item in &attempt.calendar_items {
                events.insert(
                    (&attempt.member_id, &item.provider_id),
                    (item, attempt.attempt_id.to_string()),
                );
            }
        }
        let emails = emails
            .into_iter()
            .map(|((member_id, _), (item, attempt_id))| EmailRow {
                member_id: member_id.to_owned(),
                provider_id: item.provider_id.clone(),
                thread_id: item.thread_id.clone(),
                sent_at: item.sent_at.map(DbTime::new),
                sender: item.sender.clone(),
                participants: json_list(&item.participants),
                subject: item.subject.clone(),
                attempt_id,
            })
            .collect();
        D::insert_rows(tx, emails, Some(at)).await?;
        let events = events
            .into_iter()
            .map(|((member_id, _), (item, attempt_id))| EventRow {
                member_id: member_id.to_owned(),
                provider_id: item.provider_id.clone(),
                starts_at: item.starts_at.map(DbTime::new),
                ends_at: item.ends_at.map(DbTime::new),
                organizer: item.organizer.clone(),
                participants: json_list(&item.participants),
                subject: item.subject.clone(),
                conference_link: item.conference_link.clone(),
                cancelled: item.cancelled,
                attempt_id,
            })
            .collect();
        D::insert_rows(tx, events, Some(at)).await
    }
}
