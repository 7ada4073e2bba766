//! Company banners: the count of members behind each banner code, kept two ways. An
//! attempt write adds the exact change of each count (its members' reasons before and
//! after; a banner counts a member once, STATUS_MODEL.md "Banners"); `apply` and the
//! stall pass recount a company in full. Every count change sends a
//! `company.banner_changed` event.

use std::collections::HashMap;

use datacap_core::{BannerCode, BannerTally, MemberStatus, Provider, Reason, banner_text};
use time::OffsetDateTime;

use super::{CHUNK, locked, parse_provider, parse_reason, to_u32};
use crate::backend::{Backend, Dialect, Tx};
use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::sql::{Builder, query, query_as};
use crate::webhooks::{BannerChange, OutboxEvent, banner_changed, new_event_id};

/// How many banner codes there are.
pub(super) const BANNERS: usize = datacap_core::BANNER_COUNT;

/// Per company (in id order, the order their rows are locked in): its provider (for the
/// banners' text) and the change of each banner's count, in `BannerCode::ALL` order.
pub(super) type BannerDeltas = std::collections::BTreeMap<String, (Provider, [i64; BANNERS])>;

/// The `company.banner_changed` event of a banner whose count went from `from` to `to`
/// (the text is the banner's at its new count, or at its last one when it cleared).
fn banner_event(
    company_id: &str,
    code: BannerCode,
    provider: Provider,
    from: i64,
    to: i64,
    now: OffsetDateTime,
) -> OutboxEvent {
    let text = banner_text(code, provider, to_u32(if to == 0 { from } else { to }));
    banner_changed(
        &new_event_id(),
        &BannerChange {
            company_id,
            code: code.as_str(),
            color: code.color().as_str(),
            provider: provider.as_str(),
            from_count: from,
            to_count: to,
            message: &text.message,
            resolution: &text.resolution,
        },
        now,
    )
}

/// recording_enabled, has_recording_seat, capture, email and calendar reasons.
type BannerInputRow = (bool, bool, Option<String>, Option<String>, Option<String>);

impl<D: Dialect> Backend<D> {
    /// Adds the banner count changes of an attempt write to the stored banners: the
    /// companies' rows locked in id order (after the members, see [`Dialect::LOCK_MEMBERS`]), one
    /// read of their banners, one upsert of the changed counts (`since` kept), one delete
    /// of those that reached zero. A count that would go negative means the stored
    /// banners had drifted from the statuses: that company is recounted in full instead.
    pub(super) async fn apply_banner_deltas_in(
        &self,
        tx: &mut Tx<D>,
        deltas: &BannerDeltas,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let at = DbTime::new(now);
        let mut current: HashMap<(String, String), i64> = HashMap::new();
        let companies: Vec<&String> = deltas.keys().collect();
        for chunk in companies.chunks(CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|id| (*id).clone()).collect();
            let mut lock = Builder::<D>::new("SELECT id FROM companies WHERE ");
            lock.push_in("id", ids.clone());
            lock.push(" ORDER BY id");
            lock.push(D::LOCK_ROWS);
            lock.build().fetch_all(&mut *tx).await?;
            let mut read =
                Builder::<D>::new("SELECT company_id, code, count FROM company_banners WHERE ");
            read.push_in("company_id", ids);
            let rows: Vec<(String, String, i64)> =
                read.build_query_as().fetch_all(&mut *tx).await?;
            current.extend(
                rows.into_iter()
                    .map(|(company, code, count)| ((company, code), count)),
            );
        }

        let mut upserts: Vec<(&str, BannerCode, i64, Provider)> = Vec::new();
        let mut deletes: Vec<(&str, BannerCode)> = Vec::new();
        let mut events: Vec<OutboxEvent> = Vec::new();
        let mut recount: Vec<&str> = Vec::new();
        for (company_id, (provider, delta)) in deltas {
            let counts: Vec<(BannerCode, i64, i64)> = BannerCode::ALL
                .iter()
                .zip(delta)
                .filter(|(_, change)| **change != 0)
                .map(|(code, change)| {
                    let stored = current
                        .get(&(company_id.clone(), code.as_str().to_owned()))
                        .copied()
                        .unwrap_or(0);
                    (*code, stored + change, *change)
                })
                .collect();
            if counts.iter().any(|(_, count, _)| *count < 0) {
                recount.push(company_id);
                continue;
            }
            for (code, count, change) in counts {
                events.push(banner_event(
                    company_id,
                    code,
                    *provider,
                    count - change,
                    count,
                    now,
                ));
                if count == 0 {
                    deletes.push((company_id, code));
                } else {
                    upserts.push((company_id, code, count, *provider));
                }
            }
        }
        for chunk in upserts.chunks(CHUNK / 4) {
            let mut upsert = Builder::<D>::new(
                "INSERT INTO company_banners (company_id, code, position, color, count, \
                 provider, message, resolution, since, evaluated_at) ",
            );
            upsert.push_values(chunk, |mut row, (company_id, code, count, provider)| {
                let text = banner_text(*code, *provider, to_u32(*count));
                row.push_bind((*company_id).to_owned())
                    .push_bind(code.as_str())
                    .push_bind(*code as i64)
                    .push_bind(code.color().as_str())
                    .push_bind(*count)
                    .push_bind(provider.as_str())
                    .push_bind(text.message)
                    .push_bind(text.resolution)
                    .push_bind(at)
                    .push_bind(at);
            });
            upsert.push(
                " ON CONFLICT (company_id, code) DO UPDATE SET count = excluded.count, \
                 position = excluded.position, color = excluded.color, \
                 provider = excluded.provider, message = excluded.message, \
                 resolution = excluded.resolution, evaluated_at = excluded.evaluated_at",
            );
            upsert.build().execute(&mut *tx).await?;
        }
        for (company_id, code) in deletes {
            query("DELETE FROM company_banners WHERE company_id = $1 AND code = $2")
                .bind(company_id)
                .bind(code.as_str())
                .execute(&mut *tx)
                .await?;
        }
        super::outbox::enqueue_in(tx, events, at).await?;
        for company_id in recount {
            self.write_banners_in(tx, company_id, now).await?;
        }
        Ok(())
    }

    /// Recounts a company's banners over its active members' stored statuses.
    pub(super) async fn write_banners_in(
        &self,
        tx: &mut Tx<D>,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // PostgreSQL: writers of one company's banners take turns here, so each recount
        // reads the statuses the previous one committed (a statement after the lock sees
        // them) and the banner rows are never written by two at once.
        let lock = locked("SELECT provider FROM companies WHERE id = $1", D::LOCK_ROWS);
        let (provider,): (String,) = query_as(lock)
            .bind(company_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::UnknownCompany {
                company_id: company_id.to_owned(),
            })?;
        let provider = parse_provider(&provider)?;
        let rows: Vec<BannerInputRow> = query_as(
            "SELECT m.recording_enabled, m.has_recording_seat, cap.reason, em.reason, \
             cal.reason FROM members m \
             LEFT JOIN member_status cap ON cap.member_id = m.id AND cap.icon = 'capture' \
             LEFT JOIN member_status em ON em.member_id = m.id AND em.icon = 'email' \
             LEFT JOIN member_status cal ON cal.member_id = m.id AND cal.icon = 'calendar' \
             WHERE m.company_id = $1 AND m.active",
        )
        .bind(company_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut tally = BannerTally::default();
        for (recording_enabled, has_seat, capture, email, calendar) in rows {
            let read = |reason: Option<String>| match reason {
                Some(text) => parse_reason("member_status", &text),
                None => Ok(Reason::AwaitingFirstImport),
            };
            tally.add(&MemberStatus {
                capture: read(capture)?,
                email: read(email)?,
                calendar: read(calendar)?,
                seat_missing: recording_enabled && !has_seat,
            });
        }
        let previous: Vec<(String, DbTime, i64)> =
            query_as("SELECT code, since, count FROM company_banners WHERE company_id = $1")
                .bind(company_id)
                .fetch_all(&mut *tx)
                .await?;
        query("DELETE FROM company_banners WHERE company_id = $1")
            .bind(company_id)
            .execute(&mut *tx)
            .await?;
        let banners = tally.banners();
        let at = DbTime::new(now);
        let mut events = Vec::new();
        for &code in BannerCode::ALL {
            let before = previous
                .iter()
                .find(|(stored, _, _)| stored == code.as_str())
                .map_or(0, |(_, _, count)| *count);
            let after = banners
                .iter()
                .find(|banner| banner.code == code)
                .map_or(0, |banner| i64::from(banner.count));
            if before != after {
                events.push(banner_event(company_id, code, provider, before, after, now));
            }
        }
        super::outbox::enqueue_in(tx, events, at).await?;
        if banners.is_empty() {
            return Ok(());
        }
        let mut insert = Builder::<D>::new(
            "INSERT INTO company_banners (company_id, code, position, color, count, provider, \
             message, resolution, since, evaluated_at) ",
        );
        insert.push_values(banners, |mut row, banner| {
            let since = previous
                .iter()
                .find(|(code, _, _)| code == banner.code.as_str())
                .map_or(at, |(_, since, _)| *since);
            let text = banner_text(banner.code, provider, banner.count);
            row.push_bind(company_id.to_owned())
                .push_bind(banner.code.as_str())
                .push_bind(banner.code as i64)
                .push_bind(banner.code.color().as_str())
                .push_bind(i64::from(banner.count))
                .push_bind(provider.as_str())
                .push_bind(text.message)
                .push_bind(text.resolution)
                .push_bind(since)
                .push_bind(at);
        });
        insert.build().execute(&mut *tx).await?;
        Ok(())
    }
}
