//! Member statuses: reading each member's recent attempts and stored icons, asking
//! datacap-core what they mean (`derive_member`: the icons, the attempt each points at, its
//! `since`, which changes are history and which are news, the banner delta), and
//! persisting what core decided: each icon's row, a history row and a
//! `member.status_changed` event per change, and each company's banner delta (see
//! `banners`).

use std::collections::HashMap;

use datacap_core::{
    Channel, Color, Icon, Outcome, Reason, RecentAttempt, StoredIcon, StoredIcons, derive_member,
    reason_text,
};
use time::OffsetDateTime;

use super::banners::{BANNERS, BannerDeltas};
use super::{
    MemberContext, locked, member_context, member_context_select, member_contexts_in,
    parse_channel, parse_reason,
};
use crate::backend::{Backend, Dialect, Tx};
use crate::dbtime::DbTime;
use crate::error::{StoreError, corrupt};
use crate::rows::{ChangeRow, IconRow};
use crate::sql::{Builder, query, query_as};
use crate::webhooks::{OutboxEvent, StatusChange, new_event_id, status_changed};

impl<D: Dialect> Backend<D> {
    /// Recomputes every active member's status and the banners of one company, as of
    /// `now` (the daemon's first stall pass, so statuses follow thresholds changed while
    /// it was down). Members go `D::RECOMPUTE_CHUNK` per transaction, each chunk with its
    /// banner changes, so attempt writes of a large company wait for one chunk at most,
    /// not for the whole company; a final recount makes the banners exact.
    pub async fn recompute_company(
        &self,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let ids: Vec<(String,)> = query_as(
            "SELECT m.id FROM members m JOIN companies c ON c.id = m.company_id \
             WHERE c.id = $1 AND m.active ORDER BY m.id",
        )
        .bind(company_id)
        .fetch_all(self.reader())
        .await?;
        let ids: Vec<&str> = ids.iter().map(|(id,)| id.as_str()).collect();
        self.recompute_members_chunked(&ids, now).await?;
        let mut tx = self.begin_write().await?;
        self.write_banners_in(&mut tx, company_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Recomputes the members whose status time alone may have changed since it was last
    /// evaluated, as of `now`, and returns how many there were. STATUS_MODEL.md's rule 10
    /// (`import_stalled`) is the only rule that reads `now`: a channel's status can change
    /// without a write only when its latest attempt is older than `now - stall_after` and
    /// the status was evaluated before that attempt became that old. Channels evaluated
    /// since then either show `import_stalled` already or an earlier rule (a setting)
    /// decides them, which only a write changes. So a pass reads one row per (member,
    /// channel) whose latest attempt is old — none while imports run on schedule — and
    /// recomputes only those members, in chunks.
    pub async fn recompute_stale(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let stall_after = self.options().thresholds.stall_after;
        let cutoff = DbTime::new(now - stall_after);
        let rows: Vec<(String, DbTime, Option<DbTime>)> = query_as(
            "SELECT s.member_id, s.last_attempt_at, ms.evaluated_at FROM sync_state s \
             JOIN members m ON m.id = s.member_id JOIN companies c ON c.id = m.company_id \
             LEFT JOIN member_status ms ON ms.member_id = s.member_id AND ms.icon = s.channel \
             WHERE m.active AND c.active AND s.last_attempt_at < $1",
        )
        .bind(cutoff)
        .fetch_all(self.reader())
        .await?;
        let mut ids: Vec<&str> = rows
            .iter()
            .filter(|(_, last, evaluated)| {
                evaluated.is_none_or(|evaluated| evaluated.0 - last.0 <= stall_after)
            })
            .map(|(member_id, _, _)| member_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        self.recompute_members_chunked(&ids, now).await?;
        Ok(ids.len() as u64)
    }

    /// Recomputes `member_ids` (sorted) `D::RECOMPUTE_CHUNK` per transaction, each chunk's
    /// banner changes with it (members locked first, then companies, as every write does).
    pub(super) async fn recompute_members_chunked(
        &self,
        member_ids: &[&str],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for chunk in member_ids.chunks(D::RECOMPUTE_CHUNK) {
            let mut tx = self.begin_write().await?;
            let contexts = member_contexts_in(&mut tx, chunk).await?;
            let deltas = self.recompute_members_in(&mut tx, &contexts, now).await?;
            self.apply_banner_deltas_in(&mut tx, &deltas, now).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    pub(super) async fn recompute_company_in(
        &self,
        tx: &mut Tx<D>,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let exists: Option<(String,)> = query_as("SELECT id FROM companies WHERE id = $1")
            .bind(company_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::UnknownCompany {
                company_id: company_id.to_owned(),
            });
        }
        let select = locked(
            concat!(
                member_context_select!(),
                " WHERE m.company_id = $1 AND m.active ORDER BY m.id"
            ),
            D::LOCK_MEMBERS,
        );
        let rows = query(select).bind(company_id).fetch_all(&mut *tx).await?;
        let contexts = rows
            .iter()
            .map(member_context::<D>)
            .collect::<Result<Vec<_>, _>>()?;
        self.recompute_members_in(tx, &contexts, now).await?;
        self.write_banners_in(tx, company_id, now).await
    }

    /// Classifies members over their recent attempts and writes their three icons, with
    /// a history row for every icon whose colour or reason changed. `contexts` are sorted
    /// by member id, so concurrent writers lock shared rows in one order. Returns the
    /// companies of the members whose colour or reason changed.
    pub(super) async fn recompute_members_in(
        &self,
        tx: &mut Tx<D>,
        contexts: &[MemberContext],
        now: OffsetDateTime,
    ) -> Result<BannerDeltas, StoreError> {
        let mut deltas = BannerDeltas::new();
        let thresholds = self.options().thresholds;
        // The latest N attempts of a channel decide it exactly: either all N are transient
        // (red) or the latest non-transient one is among them.
        let limit = i64::from(thresholds.red_after_consecutive_failures.max(1));
        let at = DbTime::new(now);
        for chunk in contexts.chunks(D::RECOMPUTE_CHUNK) {
            let member_ids: Vec<String> = chunk.iter().map(|c| c.member_id.clone()).collect();
            let rows = D::recent_attempts(tx, &member_ids, limit).await?;
            let mut attempts_of: HashMap<String, Vec<(String, Channel, DbTime, Outcome)>> =
                HashMap::new();
            for (member_id, id, channel, finished_at, outcome) in rows {
                let channel = parse_channel(&channel)?;
                let outcome = Outcome::parse(&outcome)
                    .ok_or_else(|| corrupt("import_attempts", "outcome", &outcome))?;
                attempts_of
                    .entry(member_id)
                    .or_default()
                    .push((id, channel, finished_at, outcome));
            }

            let mut previous_query = Builder::<D>::new(
                "SELECT member_id, icon, color, reason, since FROM member_status WHERE ",
            );
            previous_query.push_in("member_id", member_ids.clone());
            let previous_rows: Vec<(String, String, String, String, DbTime)> =
                previous_query.build_query_as().fetch_all(&mut *tx).await?;
            let previous: HashMap<(String, String), (String, String, DbTime)> = previous_rows
                .into_iter()
                .map(|(member, icon, color, reason, since)| {
                    ((member, icon), (color, reason, since))
                })
                .collect();

            let mut icon_rows: Vec<IconRow> = Vec::with_capacity(chunk.len() * 3);
            let mut changes: Vec<ChangeRow> = Vec::new();
            let mut events: Vec<OutboxEvent> = Vec::new();
            for context in chunk {
                let recent: Vec<RecentAttempt<'_>> = attempts_of
                    .get(&context.member_id)
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|(id, channel, finished_at, outcome)| RecentAttempt {
                        id,
                        channel: *channel,
                        finished_at: finished_at.0,
                        outcome: *outcome,
                    })
                    .collect();
                // The member's stored rows, looked up once: capture, email, calendar.
                let rows = [Icon::Capture, Icon::Email, Icon::Calendar].map(|icon| {
                    previous.get(&(context.member_id.clone(), icon.as_str().to_owned()))
                });
                let row = |icon: Icon| rows[icon_index(icon)];
                let stored_icon = |icon: Icon| {
                    row(icon).map(|(color, reason, since)| StoredIcon {
                        color: Color::parse(color),
                        reason: Reason::parse(reason),
                        since: since.0,
                    })
                };
                let stored = StoredIcons {
                    capture: stored_icon(Icon::Capture),
                    email: stored_icon(Icon::Email),
                    calendar: stored_icon(Icon::Calendar),
                };
                // A stored reason that is none of ours cannot be counted out of a banner.
                if context.counted {
                    for (icon, held) in [
                        (Icon::Email, stored.email),
                        (Icon::Calendar, stored.calendar),
                    ] {
                        if let (Some(held), Some((_, text, _))) = (held, row(icon))
                            && held.reason.is_none()
                        {
                            parse_reason("member_status", text)?;
                        }
                    }
                }
                // What core decided; the rest is writing it down.
                let update = derive_member(
                    &context.company,
                    &context.member,
                    &recent,
                    &stored,
                    context.counted,
                    now,
                    &thresholds,
                );
                if update.banner_delta.iter().any(|count| *count != 0) {
                    let entry = deltas
                        .entry(context.company_id.clone())
                        .or_insert((context.company.provider, [0; BANNERS]));
                    for (total, count) in entry.1.iter_mut().zip(update.banner_delta) {
                        *total += count;
                    }
                }
                for decided in update.icons {
                    let (icon, reason) = (decided.icon, decided.reason);
                    let before = row(icon);
                    let last_attempt_id = decided.attempt_id.map(str::to_owned);
                    let text = reason_text(reason, context.company.provider);
                    if let (true, Some((from_color, from_reason, _))) = (decided.announce, before) {
                        events.push(status_changed(
                            &new_event_id(),
                            &StatusChange {
                                company_id: &context.company_id,
                                member_id: &context.member_id,
                                member_email: &context.member_email,
                                icon: icon.as_str(),
                                from_color,
                                from_reason,
                                to_color: reason.color().as_str(),
                                to_reason: reason.as_str(),
                                message: &text.message,
                                resolution: &text.resolution,
                                attempt_id: last_attempt_id.as_deref(),
                            },
                            now,
                        ));
                    }
                    if decided.changed {
                        changes.push(ChangeRow {
                            member_id: context.member_id.clone(),
                            icon: icon.as_str(),
                            from_color: before.map(|(color, _, _)| color.clone()),
                            from_reason: before.map(|(_, reason, _)| reason.clone()),
                            to_color: reason.color().as_str(),
                            to_reason: reason.as_str(),
                            attempt_id: last_attempt_id.clone(),
                        });
                    }
                    icon_rows.push(IconRow {
                        member_id: context.member_id.clone(),
                        icon: icon.as_str(),
                        color: reason.color().as_str(),
                        reason: reason.as_str(),
                        message: text.message,
                        resolution: text.resolution,
                        since: DbTime::new(decided.since),
                        last_attempt_id,
                    });
                }
            }

            D::insert_rows(tx, icon_rows, Some(at)).await?;

            D::insert_rows(tx, changes, Some(at)).await?;
            super::outbox::enqueue_in(tx, events, at).await?;
        }
        Ok(deltas)
    }
}

/// An icon's place in the capture, email, calendar order of a member's rows.
fn icon_index(icon: Icon) -> usize {
    match icon {
        Icon::Capture => 0,
        Icon::Email => 1,
        Icon::Calendar => 2,
    }
}
