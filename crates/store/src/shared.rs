//! The store's queries, written once in the SQL both SQLite and PostgreSQL accept
//! (`$N` placeholders, `ON CONFLICT … DO UPDATE`, window functions) and compiled twice:
//! `sqlite.rs` and `postgres.rs` each declare this file as their `queries` module after
//! defining `Db` (the sqlx database), `Backend` (their store type, with `begin_write`,
//! `writer`, `reader` and `options`), `POSTGRES` and `MIGRATOR`. Each backend so gets
//! concrete, non-generic sqlx code (no higher-ranked executor bounds), and the two cannot
//! drift apart. The few places where the dialects differ branch on `POSTGRES`.

use super::{
    Backend, Db, MIGRATOR, POSTGRES, RECOMPUTE_CHUNK, Tx, insert_attempts, insert_changes,
    lease_rows, push_in, recent_attempts, update_sync_state, upsert_calendar_items,
    upsert_email_items, upsert_icons,
};
use std::collections::{HashMap, HashSet};

use datacap_core::{
    AttemptSummary, BannerCode, BannerTally, CalendarItem, Channel, Color, CompanySettings,
    ConnectionMode, EmailItem, Icon, MemberConnection, MemberSettings, MemberStatus, Outcome,
    Provider, Reason, banner_for, banner_text, classify_member, reason_text,
};
use secrecy::SecretString;
use sqlx::{QueryBuilder, Row};
use time::OffsetDateTime;

use crate::crypto::{CryptoError, EncryptionKey, Sealed};
use crate::dbtime::DbTime;
use crate::error::{StoreError, corrupt};
use crate::model::{
    ApplySummary, AttemptRecord, BannerReport, CompanyReport, DueReport, FailPoint, IconReport,
    Job, KeyRotation, LastSuccess, MemberGrant, MemberReport, RecordResult, StatusReport,
    WriteOptions,
};
use crate::rows::{AttemptRow, ChangeRow, EmailRow, EventRow, IconRow, SyncRow};
use crate::tenants::Tenants;
use crate::webhooks::{
    BannerChange, OutboxEvent, StatusChange, banner_changed, new_event_id, status_changed,
};

/// The (company id, member id) a key-check canary is sealed for; tenant ids are never
/// empty, so no member row can share it.
const CANARY_ROW: (&str, &str) = ("", "encryption-key-canary");
const CANARY_TEXT: &str = "datacap encryption key check";

/// What the classifier needs to know of a member and its company.
struct MemberContext {
    member_id: String,
    company_id: String,
    company: CompanySettings,
    member: MemberSettings,
    /// The member and its company are active: only then do the company's banners count
    /// the member.
    counted: bool,
    /// The member's address, for the events its status changes send.
    member_email: String,
}

macro_rules! member_context_select {
    () => {
        "SELECT m.id, m.company_id, m.has_recording_seat, m.recording_enabled, m.email_import, \
         m.calendar_import, m.import_non_recorded_meetings, c.provider, c.connection_mode, \
         c.permission_given, c.email_authorized, c.calendar_authorized, c.import_email, \
         c.import_calendar, c.import_non_recorded_meetings, g.state, m.active AND c.active, \
         m.email FROM members m JOIN companies c ON c.id = m.company_id \
         LEFT JOIN member_grants g ON g.member_id = m.id"
    };
}

/// The due, unleased jobs a claim ranks: the oldest first, from companies not skipped.
macro_rules! claim_candidates {
    () => {
        "SELECT s.member_id, s.channel, s.next_due_at, m.company_id \
         FROM sync_state s JOIN members m ON m.id = s.member_id \
         JOIN companies c ON c.id = m.company_id \
         WHERE m.active AND c.active AND c.provider <> 'none' AND s.next_due_at <= "
    };
}

/// A due job's lease is free (never taken, released, or expired).
macro_rules! lease_free {
    () => {
        "(s.lease_owner IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= "
    };
}

fn member_context(row: &<Db as sqlx::Database>::Row) -> Result<MemberContext, StoreError> {
    let provider: String = row.try_get(7)?;
    let mode: String = row.try_get(8)?;
    let state: Option<String> = row.try_get(15)?;
    let connection = match state {
        Some(state) => Some(
            MemberConnection::parse(&state)
                .ok_or_else(|| corrupt("member_grants", "state", &state))?,
        ),
        None => None,
    };
    Ok(MemberContext {
        counted: row.try_get(16)?,
        member_email: row.try_get(17)?,
        member_id: row.try_get(0)?,
        company_id: row.try_get(1)?,
        member: MemberSettings {
            has_recording_seat: row.try_get(2)?,
            recording_enabled: row.try_get(3)?,
            email_import: row.try_get(4)?,
            calendar_import: row.try_get(5)?,
            import_non_recorded_meetings: row.try_get(6)?,
            connection,
        },
        company: CompanySettings {
            provider: parse_provider(&provider)?,
            connection_mode: ConnectionMode::parse(&mode)
                .ok_or_else(|| corrupt("companies", "connection_mode", &mode))?,
            permission_given: row.try_get(9)?,
            email_authorized: row.try_get(10)?,
            calendar_authorized: row.try_get(11)?,
            import_email: row.try_get(12)?,
            import_calendar: row.try_get(13)?,
            import_non_recorded_meetings: row.try_get(14)?,
        },
    })
}

fn parse_provider(text: &str) -> Result<Provider, StoreError> {
    Provider::parse(text).ok_or_else(|| corrupt("companies", "provider", text))
}

fn parse_channel(text: &str) -> Result<Channel, StoreError> {
    Channel::parse(text).ok_or_else(|| corrupt("sync_state", "channel", text))
}

fn parse_reason(table: &'static str, text: &str) -> Result<Reason, StoreError> {
    Reason::parse(text).ok_or_else(|| corrupt(table, "reason", text))
}

/// How many banner codes there are.
const BANNERS: usize = BannerCode::ALL.len();

/// Per company (in id order, the order their rows are locked in): its provider (for the
/// banners' text) and the change of each banner's count, in `BannerCode::ALL` order.
type BannerDeltas = std::collections::BTreeMap<String, (Provider, [i64; BANNERS])>;

/// How one member's move from `before` to `after` (its email and calendar reasons)
/// changes each banner's count: a banner counts a member once, whichever channel has its
/// reason (STATUS_MODEL.md, "Banners"); the seat banner does not move (an attempt changes
/// no seat).
fn banner_delta(before: [Reason; 2], after: [Reason; 2]) -> [i64; BANNERS] {
    let counted = |reasons: [Reason; 2]| {
        let mut seen = [false; BANNERS];
        for code in reasons.into_iter().filter_map(banner_for) {
            seen[code as usize] = true;
        }
        seen
    };
    let (before, after) = (counted(before), counted(after));
    let mut delta = [0; BANNERS];
    for ((change, was), is) in delta.iter_mut().zip(before).zip(after) {
        *change = i64::from(is) - i64::from(was);
    }
    delta
}

/// The PostgreSQL settings [`Backend::server_settings`] reads.
const SERVER_SETTINGS: [&str; 6] = [
    "autovacuum",
    "checkpoint_timeout",
    "max_wal_size",
    "server_version",
    "shared_buffers",
    "synchronous_commit",
];

/// Members per multi-row statement of `apply` (12 parameters each): below both
/// databases' bind-parameter limits (SQLite 32,766, PostgreSQL 65,535).
const APPLY_CHUNK: usize = 1_000;

/// Ids per `IN` list on SQLite (PostgreSQL binds one array whatever the count; see each
/// backend's `push_in`): far below SQLite's bind-parameter limit.
const CHUNK: usize = 400;

/// PostgreSQL: the suffix that locks the selected members' rows (in the statement's
/// `ORDER BY m.id` order) until the transaction ends. Every write that recomputes a
/// member's status takes it first, members in id order, then company rows in id order:
/// two writers of one member take turns (the second reads the first's attempts and
/// statuses), and two writers of overlapping members or companies never wait on each
/// other in a cycle. `NO KEY UPDATE` does not conflict with the `KEY SHARE` locks that
/// foreign-key checks of other writers' inserts take. SQLite's single writer needs none.
const LOCK_MEMBERS: &str = if POSTGRES {
    " FOR NO KEY UPDATE OF m"
} else {
    ""
};

/// The members' contexts, sorted by member id (unknown ids are simply absent); on
/// PostgreSQL their rows are locked, in that order (see [`LOCK_MEMBERS`]).
async fn member_contexts_in(
    tx: &mut Tx,
    member_ids: &[&str],
) -> Result<Vec<MemberContext>, StoreError> {
    let mut contexts = Vec::with_capacity(member_ids.len());
    for chunk in member_ids.chunks(CHUNK) {
        let mut query = QueryBuilder::<Db>::new(concat!(member_context_select!(), " WHERE "));
        push_in(
            &mut query,
            "m.id",
            chunk.iter().map(|id| (*id).to_owned()).collect(),
        );
        query.push(" ORDER BY m.id");
        query.push(LOCK_MEMBERS);
        for row in query.build().fetch_all(&mut **tx).await? {
            contexts.push(member_context(&row)?);
        }
    }
    contexts.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    Ok(contexts)
}

/// A member's grant follows what its attempts proved (issue 21 §5): an attempt that ended
/// `grant_invalid` (the provider declared the refresh token dead) marks a `connected`
/// grant `invalid` at once, so the dead token is no longer sent on every poll (the worker
/// rechecks an invalid grant only every `invalid_grant_recheck`); a recheck that worked
/// makes it `connected` again. A grant stored after the attempt started (the member
/// connected again meanwhile) is never touched. `contexts` get the new states, so the
/// statuses computed in this transaction see them.
async fn grant_states_in(
    tx: &mut Tx,
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
        let updated = sqlx::query(
            "UPDATE member_grants SET state = $1, updated_at = $2 \
             WHERE member_id = $3 AND state = $4 AND updated_at <= $5",
        )
        .bind(to.as_str())
        .bind(at)
        .bind(&attempt.member_id)
        .bind(from.as_str())
        .bind(DbTime::new(attempt.started_at))
        .execute(&mut **tx)
        .await?
        .rows_affected();
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
async fn sync_state_in(
    tx: &mut Tx,
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
    Ok(update_sync_state(tx, writes, at)
        .await?
        .into_iter()
        .collect())
}

/// Records each (member, channel)'s latest successful attempt of the batch as its last
/// successful import (time and items), unless a later one is stored already: one
/// statement per batch ([`CHUNK`] rows each), none when the batch has no success.
async fn last_success_in(tx: &mut Tx, attempts: &[AttemptRecord]) -> Result<(), StoreError> {
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
        let mut update = QueryBuilder::<Db>::new("WITH v (member_id, channel, at, items) AS (");
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
        update.build().execute(&mut **tx).await?;
    }
    Ok(())
}

fn fail_point(options: &WriteOptions, point: FailPoint) -> Result<(), StoreError> {
    if options.fail_at == Some(point) {
        return Err(StoreError::InjectedFailure(point));
    }
    Ok(())
}

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

fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned())
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

impl Backend {
    /// Applies every migration of this backend's folder.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(self.writer()).await?;
        Ok(())
    }

    /// Upserts the companies and members of a validated tenants file, deactivates the
    /// members (and companies) it no longer lists, and recomputes the statuses and banners
    /// of every listed company: all in one transaction.
    pub async fn apply_tenants(
        &self,
        tenants: &Tenants,
        now: OffsetDateTime,
    ) -> Result<ApplySummary, StoreError> {
        let at = DbTime::new(now);
        let mut tx = self.begin_write().await?;
        // The writers' lock order (see [`LOCK_MEMBERS`]): every member row in id order,
        // then every company row in id order, before any row is written. Apply touches
        // any member (deactivation) and recomputes company after company, so it takes
        // them all up front; taking a company before a member would wait in a cycle
        // with an attempt write holding that member and waiting for the company.
        let (select_members, select_companies) = if POSTGRES {
            (
                "SELECT id, company_id, active FROM members ORDER BY id FOR NO KEY UPDATE",
                "SELECT id, active FROM companies ORDER BY id FOR NO KEY UPDATE",
            )
        } else {
            (
                "SELECT id, company_id, active FROM members ORDER BY id",
                "SELECT id, active FROM companies ORDER BY id",
            )
        };
        let existing_members: Vec<(String, String, bool)> =
            sqlx::query_as(select_members).fetch_all(&mut *tx).await?;
        let owners: HashMap<&str, &str> = existing_members
            .iter()
            .map(|(id, company, _)| (id.as_str(), company.as_str()))
            .collect();
        let existing_companies: Vec<(String, bool)> =
            sqlx::query_as(select_companies).fetch_all(&mut *tx).await?;

        let mut summary = ApplySummary::default();
        let mut declared_members = HashSet::new();
        for company in &tenants.companies {
            let settings = &company.settings;
            let credentials =
                serde_json::to_string(&company.credentials).unwrap_or_else(|_| "{}".to_owned());
            sqlx::query(
                "INSERT INTO companies (id, name, provider, connection_mode, permission_given, \
                 email_authorized, calendar_authorized, import_email, import_calendar, \
                 import_non_recorded_meetings, credential_refs, active, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, TRUE, $12, $12) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 provider = excluded.provider, connection_mode = excluded.connection_mode, \
                 permission_given = excluded.permission_given, \
                 email_authorized = excluded.email_authorized, \
                 calendar_authorized = excluded.calendar_authorized, \
                 import_email = excluded.import_email, import_calendar = excluded.import_calendar, \
                 import_non_recorded_meetings = excluded.import_non_recorded_meetings, \
                 credential_refs = excluded.credential_refs, active = TRUE, \
                 updated_at = excluded.updated_at",
            )
            .bind(&company.id)
            .bind(&company.name)
            .bind(settings.provider.as_str())
            .bind(settings.connection_mode.as_str())
            .bind(settings.permission_given)
            .bind(settings.email_authorized)
            .bind(settings.calendar_authorized)
            .bind(settings.import_email)
            .bind(settings.import_calendar)
            .bind(settings.import_non_recorded_meetings)
            .bind(credentials)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            summary.companies += 1;

            for member in &company.members {
                if let Some(existing) = owners.get(member.id.as_str())
                    && *existing != company.id
                {
                    return Err(StoreError::MemberInOtherCompany {
                        member_id: member.id.clone(),
                        existing: (*existing).to_owned(),
                        requested: company.id.clone(),
                    });
                }
                declared_members.insert(member.id.as_str());
            }
            // Multi-row statements: a file of half a million members is a few thousand
            // statements, not a million.
            for chunk in company.members.chunks(APPLY_CHUNK) {
                let mut upsert = QueryBuilder::<Db>::new(
                    "INSERT INTO members (id, company_id, email, aliases, has_recording_seat, \
                     recording_enabled, email_import, calendar_import, \
                     import_non_recorded_meetings, active, created_at, updated_at, \
                     deactivated_at) ",
                );
                upsert.push_values(chunk, |mut row, member| {
                    let settings = &member.settings;
                    row.push_bind(member.id.clone())
                        .push_bind(company.id.clone())
                        .push_bind(member.email.clone())
                        .push_bind(member.aliases.join(" "))
                        .push_bind(settings.has_recording_seat)
                        .push_bind(settings.recording_enabled)
                        .push_bind(settings.email_import)
                        .push_bind(settings.calendar_import)
                        .push_bind(settings.import_non_recorded_meetings)
                        .push_bind(member.active)
                        .push_bind(at)
                        .push_bind(at)
                        .push_bind((!member.active).then_some(at));
                });
                upsert.push(
                    " ON CONFLICT (id) DO UPDATE SET email = excluded.email, \
                     aliases = excluded.aliases, has_recording_seat = excluded.has_recording_seat, \
                     recording_enabled = excluded.recording_enabled, \
                     email_import = excluded.email_import, \
                     calendar_import = excluded.calendar_import, \
                     import_non_recorded_meetings = excluded.import_non_recorded_meetings, \
                     active = excluded.active, updated_at = excluded.updated_at, \
                     deactivated_at = CASE WHEN excluded.active THEN NULL \
                     WHEN members.active THEN excluded.updated_at \
                     ELSE members.deactivated_at END",
                );
                upsert.build().execute(&mut *tx).await?;
                let mut sync = QueryBuilder::<Db>::new(
                    "INSERT INTO sync_state (member_id, channel, next_due_at) ",
                );
                sync.push_values(
                    chunk
                        .iter()
                        .flat_map(|member| [(member, Channel::Email), (member, Channel::Calendar)]),
                    |mut row, (member, channel)| {
                        row.push_bind(member.id.clone())
                            .push_bind(channel.as_str())
                            .push_bind(at);
                    },
                );
                sync.push(" ON CONFLICT (member_id, channel) DO NOTHING");
                sync.build().execute(&mut *tx).await?;
                summary.members += chunk.len();
            }
        }

        for (id, _, active) in &existing_members {
            if *active && !declared_members.contains(id.as_str()) {
                sqlx::query(
                    "UPDATE members SET active = FALSE, deactivated_at = $2, updated_at = $2 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                summary.members_deactivated += 1;
            }
        }
        let declared_companies: HashSet<&str> = tenants
            .companies
            .iter()
            .map(|company| company.id.as_str())
            .collect();
        for (id, active) in &existing_companies {
            if *active && !declared_companies.contains(id.as_str()) {
                sqlx::query("UPDATE companies SET active = FALSE, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM company_banners WHERE company_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                summary.companies_deactivated += 1;
            }
        }
        (summary.webhooks, summary.webhooks_deactivated) =
            self.apply_webhooks_in(&mut tx, tenants, at).await?;
        for company in &tenants.companies {
            self.recompute_company_in(&mut tx, &company.id, now).await?;
        }
        tx.commit().await?;
        Ok(summary)
    }

    /// Upserts every declared webhook endpoint and deactivates the ones the file no longer
    /// lists (their deliveries kept; declared again, they resume). Before the statuses
    /// are recomputed, so the changes `apply` itself causes reach the new endpoints.
    async fn apply_webhooks_in(
        &self,
        tx: &mut Tx,
        tenants: &Tenants,
        at: DbTime,
    ) -> Result<(usize, usize), StoreError> {
        let existing: Vec<(String, String)> =
            sqlx::query_as("SELECT company_id, id FROM webhook_endpoints WHERE active")
                .fetch_all(&mut **tx)
                .await?;
        let mut declared = HashSet::new();
        for company in &tenants.companies {
            for webhook in &company.webhooks {
                let events: Vec<&str> = webhook.events.iter().map(|e| e.as_str()).collect();
                sqlx::query(
                    "INSERT INTO webhook_endpoints (company_id, id, url, secret_ref, events,                      active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6)                      ON CONFLICT (company_id, id) DO UPDATE SET url = excluded.url,                      secret_ref = excluded.secret_ref, events = excluded.events, active = TRUE,                      updated_at = excluded.updated_at",
                )
                .bind(&company.id)
                .bind(&webhook.id)
                .bind(&webhook.url)
                .bind(webhook.secret.to_json())
                .bind(serde_json::to_string(&events).unwrap_or_else(|_| "[]".to_owned()))
                .bind(at)
                .execute(&mut **tx)
                .await?;
                declared.insert((company.id.as_str(), webhook.id.as_str()));
            }
        }
        let mut deactivated = 0;
        for (company_id, id) in &existing {
            if !declared.contains(&(company_id.as_str(), id.as_str())) {
                deactivated += 1;
                sqlx::query(
                    "UPDATE webhook_endpoints SET active = FALSE, updated_at = $3                      WHERE company_id = $1 AND id = $2",
                )
                .bind(company_id)
                .bind(id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok((declared.len(), deactivated))
    }

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
        insert_attempts(&mut tx, rows).await?;
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
    async fn upsert_items_in(
        &self,
        tx: &mut Tx,
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
        upsert_email_items(tx, emails, at).await?;
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
        upsert_calendar_items(tx, events, at).await
    }

    /// Recomputes every active member's status and the banners of one company, as of
    /// `now` (the daemon's first stall pass, so statuses follow thresholds changed while
    /// it was down). Members go `RECOMPUTE_CHUNK` per transaction, each chunk with its
    /// banner changes, so attempt writes of a large company wait for one chunk at most,
    /// not for the whole company; a final recount makes the banners exact.
    pub async fn recompute_company(
        &self,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let ids: Vec<(String,)> = sqlx::query_as(
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
        let rows: Vec<(String, DbTime, Option<DbTime>)> = sqlx::query_as(
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

    /// Recomputes `member_ids` (sorted) `RECOMPUTE_CHUNK` per transaction, each chunk's
    /// banner changes with it (members locked first, then companies, as every write does).
    async fn recompute_members_chunked(
        &self,
        member_ids: &[&str],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for chunk in member_ids.chunks(RECOMPUTE_CHUNK) {
            let mut tx = self.begin_write().await?;
            let contexts = member_contexts_in(&mut tx, chunk).await?;
            let deltas = self.recompute_members_in(&mut tx, &contexts, now).await?;
            self.apply_banner_deltas_in(&mut tx, &deltas, now).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// PostgreSQL's settings that decide how the store performs at scale, by name (empty
    /// on SQLite): the daemon warns about the ones that hurt, the benchmark records them.
    pub async fn server_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        if !POSTGRES {
            return Ok(Vec::new());
        }
        let names: Vec<String> = SERVER_SETTINGS
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        let mut query =
            QueryBuilder::<Db>::new("SELECT name, current_setting(name) FROM pg_settings WHERE ");
        push_in(&mut query, "name", names);
        query.push(" ORDER BY name");
        Ok(query.build_query_as().fetch_all(self.reader()).await?)
    }

    /// How many active members' icons show each (icon, reason): the members gauge, one
    /// grouped read instead of the whole status report.
    pub async fn status_counts(&self) -> Result<Vec<(Icon, Reason, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT s.icon, s.reason, COUNT(*) FROM member_status s \
             JOIN members m ON m.id = s.member_id JOIN companies c ON c.id = m.company_id \
             WHERE m.active AND c.active GROUP BY s.icon, s.reason",
        )
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|(icon, reason, count)| {
                let icon =
                    Icon::parse(&icon).ok_or_else(|| corrupt("member_status", "icon", &icon))?;
                Ok((
                    icon,
                    parse_reason("member_status", &reason)?,
                    u64::try_from(count).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn recompute_company_in(
        &self,
        tx: &mut Tx,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let exists: Option<(String,)> = sqlx::query_as("SELECT id FROM companies WHERE id = $1")
            .bind(company_id)
            .fetch_optional(&mut **tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::UnknownCompany {
                company_id: company_id.to_owned(),
            });
        }
        let select = if POSTGRES {
            concat!(
                member_context_select!(),
                " WHERE m.company_id = $1 AND m.active ORDER BY m.id FOR NO KEY UPDATE OF m"
            )
        } else {
            concat!(
                member_context_select!(),
                " WHERE m.company_id = $1 AND m.active ORDER BY m.id"
            )
        };
        let rows = sqlx::query(select)
            .bind(company_id)
            .fetch_all(&mut **tx)
            .await?;
        let contexts = rows
            .iter()
            .map(member_context)
            .collect::<Result<Vec<_>, _>>()?;
        self.recompute_members_in(tx, &contexts, now).await?;
        self.write_banners_in(tx, company_id, now).await
    }

    /// Classifies members over their recent attempts and writes their three icons, with
    /// a history row for every icon whose colour or reason changed. `contexts` are sorted
    /// by member id, so concurrent writers lock shared rows in one order. Returns the
    /// companies of the members whose colour or reason changed.
    async fn recompute_members_in(
        &self,
        tx: &mut Tx,
        contexts: &[MemberContext],
        now: OffsetDateTime,
    ) -> Result<BannerDeltas, StoreError> {
        let mut deltas = BannerDeltas::new();
        let thresholds = self.options().thresholds;
        // The latest N attempts of a channel decide it exactly: either all N are transient
        // (red) or the latest non-transient one is among them.
        let limit = i64::from(thresholds.red_after_consecutive_failures.max(1));
        let at = DbTime::new(now);
        for chunk in contexts.chunks(RECOMPUTE_CHUNK) {
            let member_ids: Vec<String> = chunk.iter().map(|c| c.member_id.clone()).collect();
            let rows = recent_attempts(tx, &member_ids, limit).await?;
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

            let mut previous_query = QueryBuilder::<Db>::new(
                "SELECT member_id, icon, color, reason, since FROM member_status WHERE ",
            );
            push_in(&mut previous_query, "member_id", member_ids.clone());
            let previous_rows: Vec<(String, String, String, String, DbTime)> =
                previous_query.build_query_as().fetch_all(&mut **tx).await?;
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
                let recent = attempts_of
                    .get(&context.member_id)
                    .map_or(&[][..], Vec::as_slice);
                let summaries: Vec<AttemptSummary> = recent
                    .iter()
                    .map(|(_, channel, finished_at, outcome)| AttemptSummary {
                        channel: *channel,
                        at: finished_at.0,
                        outcome: *outcome,
                    })
                    .collect();
                let latest = |channel: Option<Channel>| {
                    recent
                        .iter()
                        .filter(|(_, c, _, _)| channel.is_none_or(|wanted| *c == wanted))
                        .max_by_key(|(_, _, finished_at, _)| *finished_at)
                        .map(|(id, _, _, _)| id.clone())
                };
                let status = classify_member(
                    &context.company,
                    &context.member,
                    &summaries,
                    now,
                    &thresholds,
                );
                if context.counted {
                    let stored = |icon: Icon| {
                        previous
                            .get(&(context.member_id.clone(), icon.as_str().to_owned()))
                            .map(|(_, reason, _)| reason.as_str())
                    };
                    // A member without stored icons counts as awaiting its first import,
                    // as the full recount reads it; seats never change here.
                    let read = |icon: Icon| {
                        stored(icon).map_or(Ok(Reason::AwaitingFirstImport), |text| {
                            parse_reason("member_status", text)
                        })
                    };
                    let delta = banner_delta(
                        [read(Icon::Email)?, read(Icon::Calendar)?],
                        [status.email, status.calendar],
                    );
                    if delta.iter().any(|count| *count != 0) {
                        let entry = deltas
                            .entry(context.company_id.clone())
                            .or_insert((context.company.provider, [0; BANNERS]));
                        for (total, count) in entry.1.iter_mut().zip(delta) {
                            *total += count;
                        }
                    }
                }
                // The microphone takes the worse channel's reason, so it points at that
                // channel's attempt (a later success of the other channel explains nothing).
                let capture_attempt = if status.capture == status.email {
                    latest(Some(Channel::Email))
                } else if status.capture == status.calendar {
                    latest(Some(Channel::Calendar))
                } else {
                    latest(None)
                };
                for (icon, reason, last_attempt_id) in [
                    (Icon::Capture, status.capture, capture_attempt),
                    (Icon::Email, status.email, latest(Some(Channel::Email))),
                    (
                        Icon::Calendar,
                        status.calendar,
                        latest(Some(Channel::Calendar)),
                    ),
                ] {
                    let before =
                        previous.get(&(context.member_id.clone(), icon.as_str().to_owned()));
                    let unchanged = before.is_some_and(|(color, stored, _)| {
                        color == reason.color().as_str() && stored == reason.as_str()
                    });
                    let since = match before {
                        Some((_, _, since)) if unchanged => *since,
                        _ => at,
                    };
                    let text = reason_text(reason, context.company.provider);
                    // A member's first status (no stored icon yet: `apply` just created
                    // it) is history, not news: only a change of a stored icon is sent.
                    if let (false, Some((from_color, from_reason, _))) = (unchanged, before) {
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
                    if !unchanged {
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
                        since,
                        last_attempt_id,
                    });
                }
            }

            upsert_icons(tx, icon_rows, at).await?;

            insert_changes(tx, changes, at).await?;
            super::outbox::enqueue_in(tx, events, at).await?;
        }
        Ok(deltas)
    }

    /// Adds the banner count changes of an attempt write to the stored banners: the
    /// companies' rows locked in id order (after the members, see [`LOCK_MEMBERS`]), one
    /// read of their banners, one upsert of the changed counts (`since` kept), one delete
    /// of those that reached zero. A count that would go negative means the stored
    /// banners had drifted from the statuses: that company is recounted in full instead.
    async fn apply_banner_deltas_in(
        &self,
        tx: &mut Tx,
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
            let mut lock = QueryBuilder::<Db>::new("SELECT id FROM companies WHERE ");
            push_in(&mut lock, "id", ids.clone());
            lock.push(" ORDER BY id");
            if POSTGRES {
                lock.push(" FOR NO KEY UPDATE");
            }
            lock.build().fetch_all(&mut **tx).await?;
            let mut read = QueryBuilder::<Db>::new(
                "SELECT company_id, code, count FROM company_banners WHERE ",
            );
            push_in(&mut read, "company_id", ids);
            let rows: Vec<(String, String, i64)> =
                read.build_query_as().fetch_all(&mut **tx).await?;
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
            let mut upsert = QueryBuilder::<Db>::new(
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
            upsert.build().execute(&mut **tx).await?;
        }
        for (company_id, code) in deletes {
            sqlx::query("DELETE FROM company_banners WHERE company_id = $1 AND code = $2")
                .bind(company_id)
                .bind(code.as_str())
                .execute(&mut **tx)
                .await?;
        }
        super::outbox::enqueue_in(tx, events, at).await?;
        for company_id in recount {
            self.write_banners_in(tx, company_id, now).await?;
        }
        Ok(())
    }

    /// Recounts a company's banners over its active members' stored statuses.
    async fn write_banners_in(
        &self,
        tx: &mut Tx,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // PostgreSQL: writers of one company's banners take turns here, so each recount
        // reads the statuses the previous one committed (a statement after the lock sees
        // them) and the banner rows are never written by two at once.
        let lock = if POSTGRES {
            "SELECT provider FROM companies WHERE id = $1 FOR NO KEY UPDATE"
        } else {
            "SELECT provider FROM companies WHERE id = $1"
        };
        let (provider,): (String,) = sqlx::query_as(lock)
            .bind(company_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::UnknownCompany {
                company_id: company_id.to_owned(),
            })?;
        let provider = parse_provider(&provider)?;
        let rows: Vec<BannerInputRow> = sqlx::query_as(
            "SELECT m.recording_enabled, m.has_recording_seat, cap.reason, em.reason, \
             cal.reason FROM members m \
             LEFT JOIN member_status cap ON cap.member_id = m.id AND cap.icon = 'capture' \
             LEFT JOIN member_status em ON em.member_id = m.id AND em.icon = 'email' \
             LEFT JOIN member_status cal ON cal.member_id = m.id AND cal.icon = 'calendar' \
             WHERE m.company_id = $1 AND m.active",
        )
        .bind(company_id)
        .fetch_all(&mut **tx)
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
            sqlx::query_as("SELECT code, since, count FROM company_banners WHERE company_id = $1")
                .bind(company_id)
                .fetch_all(&mut **tx)
                .await?;
        sqlx::query("DELETE FROM company_banners WHERE company_id = $1")
            .bind(company_id)
            .execute(&mut **tx)
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
        let mut insert = QueryBuilder::<Db>::new(
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
        insert.build().execute(&mut **tx).await?;
        Ok(())
    }

    /// Leases up to `limit` due (member, channel) jobs to `owner` until `now + lease`.
    /// A job whose lease expired is due again. Companies take turns (see
    /// [`Self::claim_due_fair`], with no company skipped and `limit` per company).
    pub async fn claim_due(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.claim_due_fair(owner, now, lease, limit, limit, &[])
            .await
    }

    /// Leases up to `limit` due jobs to `owner` until `now + lease`, round-robin across
    /// companies: each company's oldest due job first, then each one's second, and so on,
    /// at most `per_company` of any one company, none of the companies in `skip` (the
    /// worker's companies already at their share of its permits). Only the oldest due jobs
    /// (a few times `limit`) are ranked, so a claim costs the same whatever the backlog; a
    /// company whose backlog fills them is skipped by the next claim once it has its share.
    pub async fn claim_due_fair(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
        per_company: u32,
        skip: &[String],
    ) -> Result<Vec<Job>, StoreError> {
        let at = DbTime::new(now);
        let expires = DbTime::new(now + lease);
        let candidates = i64::from(limit.saturating_mul(4).max(64));
        let mut tx = self.begin_write().await?;
        let mut select = QueryBuilder::<Db>::new(
            // The job's context (settings, grant state, credential references) comes
            // with it, so the worker reads nothing more before it runs the job.
            concat!(
                "SELECT s.member_id, s.channel, s.cursor, s.consecutive_transient_failures, \
                 s.lease_owner, ",
                super::context::context_columns!(),
                " FROM sync_state s JOIN members m ON m.id = s.member_id \
             JOIN companies c ON c.id = m.company_id \
             LEFT JOIN member_grants g ON g.member_id = m.id JOIN (SELECT d.member_id, d.channel, \
             d.next_due_at, row_number() OVER (PARTITION BY d.company_id \
             ORDER BY d.next_due_at, d.member_id, d.channel) AS turn FROM ("
            ),
        );
        select.push(claim_candidates!()).push_bind(at);
        select
            .push(concat!(" AND ", lease_free!()))
            .push_bind(at)
            .push(")");
        if !skip.is_empty() {
            select.push(" AND m.company_id NOT IN (");
            let mut companies = select.separated(", ");
            for company in skip {
                companies.push_bind(company.as_str());
            }
            select.push(")");
        }
        select
            .push(" ORDER BY s.next_due_at, s.member_id, s.channel LIMIT ")
            .push_bind(candidates)
            .push(") d) r ON r.member_id = s.member_id AND r.channel = s.channel WHERE r.turn <= ")
            .push_bind(i64::from(per_company))
            // Checked again on the locked row: another replica may have leased it since.
            .push(concat!(" AND ", lease_free!()))
            .push_bind(at)
            .push(") ORDER BY r.turn, r.next_due_at, s.member_id, s.channel LIMIT ")
            .push_bind(i64::from(limit));
        // PostgreSQL: replicas share the database, so skip rows another claimer is taking
        // (only `s` is locked; the ranking is a plain subquery).
        // SQLite: the single writer transaction already serializes claimers.
        if POSTGRES {
            select.push(" FOR UPDATE OF s SKIP LOCKED");
        }
        let rows = select.build().fetch_all(&mut *tx).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let channel: String = row.try_get(1)?;
            let failures: i64 = row.try_get(3)?;
            let context = super::context::context_from_row(row, 5)?;
            jobs.push(Job {
                channel: parse_channel(&channel)?,
                provider: context.company.provider,
                connection_mode: context.company.connection_mode,
                company_id: context.company_id.clone(),
                member_id: row.try_get(0)?,
                member_email: context.member_email.clone(),
                cursor: row.try_get(2)?,
                consecutive_transient_failures: to_u32(failures),
                lease_owner: owner.to_owned(),
                lease_expires_at: expires.0,
                reclaimed_from: row.try_get(4)?,
                context,
            });
        }
        // Every claimed row's lease in one statement, not one round trip per job.
        let keys = jobs
            .iter()
            .map(|job| (job.member_id.clone(), job.channel.as_str().to_owned()))
            .collect();
        lease_rows(&mut tx, keys, owner, expires).await?;
        tx.commit().await?;
        Ok(jobs)
    }

    /// Extends `owner`'s lease on the job until `until`; false when the lease is no longer
    /// `owner`'s (it expired and another claimer took it, or it was released).
    pub async fn heartbeat(
        &self,
        job: &Job,
        owner: &str,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE sync_state SET lease_expires_at = $4 \
             WHERE member_id = $1 AND channel = $2 AND lease_owner = $3",
        )
        .bind(&job.member_id)
        .bind(job.channel.as_str())
        .bind(owner)
        .bind(DbTime::new(until))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated > 0)
    }

    /// Gives `owner`'s lease back without an attempt (shutdown, skipped work), optionally
    /// moving the due time; false when the lease was not `owner`'s.
    pub async fn release(
        &self,
        job: &Job,
        owner: &str,
        next_due_at: Option<OffsetDateTime>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE sync_state SET lease_owner = NULL, lease_expires_at = NULL, \
             next_due_at = COALESCE($4, next_due_at) \
             WHERE member_id = $1 AND channel = $2 AND lease_owner = $3",
        )
        .bind(&job.member_id)
        .bind(job.channel.as_str())
        .bind(owner)
        .bind(next_due_at.map(DbTime::new))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated > 0)
    }

    /// Releases a user-by-user job that found no usable grant, due again at `recheck`,
    /// unless the member has a connected grant with a token by now: then the due time
    /// stays (the job is claimed again at once; a grant without a token would not end the
    /// skip, so it gets the recheck). The member may connect while the job is leased, when
    /// `make_due` leaves it alone; without this the first import would wait for `recheck`.
    pub async fn release_without_grant(
        &self,
        job: &Job,
        owner: &str,
        recheck: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE sync_state SET lease_owner = NULL, lease_expires_at = NULL, \
             next_due_at = CASE WHEN EXISTS (SELECT 1 FROM member_grants g \
                 WHERE g.member_id = $1 AND g.state = 'connected' \
                 AND g.refresh_token_ciphertext IS NOT NULL) \
               THEN next_due_at ELSE $4 END \
             WHERE member_id = $1 AND channel = $2 AND lease_owner = $3",
        )
        .bind(&job.member_id)
        .bind(job.channel.as_str())
        .bind(owner)
        .bind(DbTime::new(recheck))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated > 0)
    }

    /// When the oldest job that is due at `now` and held by no live lease became due (the
    /// start of the queue lag); `None` when nothing waits. The claim's own filter, walked in
    /// `next_due_at` order on the `sync_state_due_order` index and stopped at the first match.
    pub async fn oldest_waiting_due_at(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let row: Option<(DbTime,)> = sqlx::query_as(
            "SELECT s.next_due_at FROM sync_state s JOIN members m ON m.id = s.member_id \
             JOIN companies c ON c.id = m.company_id \
             WHERE m.active AND c.active AND c.provider <> 'none' AND s.next_due_at <= $1 \
             AND (s.lease_owner IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= $1) \
             ORDER BY s.next_due_at LIMIT 1",
        )
        .bind(DbTime::new(now))
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|(at,)| at.0))
    }

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
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(
            "DELETE FROM import_attempts WHERE finished_at < $1 AND id NOT IN (\
             SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY member_id, channel \
             ORDER BY finished_at DESC, id DESC) AS recent FROM import_attempts) ranked \
             WHERE recent <= $2)",
        )
        .bind(DbTime::new(older_than))
        .bind(keep)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
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
        sqlx::query(concat!(
            "DELETE FROM webhook_tries WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE event_seq IN (",
            settled!(),
            "))"
        ))
        .bind(DbTime::new(older_than))
        .execute(&mut *tx)
        .await?;
        sqlx::query(concat!(
            "DELETE FROM webhook_deliveries WHERE event_seq IN (",
            settled!(),
            ")"
        ))
        .bind(DbTime::new(older_than))
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM webhook_events WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = webhook_events.seq)",
        )
        .bind(DbTime::new(older_than))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// The Team members page as data: active companies (or one), their banners in display
    /// order and their active members' icons.
    pub async fn status(&self, company_id: Option<&str>) -> Result<StatusReport, StoreError> {
        let companies: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT id, name, provider, connection_mode FROM companies \
             WHERE active AND ($1 IS NULL OR id = $1) ORDER BY id",
        )
        .bind(company_id)
        .fetch_all(self.reader())
        .await?;
        if let Some(company_id) = company_id
            && companies.is_empty()
        {
            return Err(StoreError::UnknownCompany {
                company_id: company_id.to_owned(),
            });
        }
        let mut report = StatusReport {
            companies: Vec::with_capacity(companies.len()),
        };
        for (id, name, provider, mode) in companies {
            let banner_rows: Vec<(String, String, i64, String, String, String, DbTime)> =
                sqlx::query_as(
                    "SELECT code, color, count, provider, message, resolution, since \
                     FROM company_banners WHERE company_id = $1 ORDER BY position",
                )
                .bind(&id)
                .fetch_all(self.reader())
                .await?;
            let mut banners = Vec::with_capacity(banner_rows.len());
            for (code, color, count, provider, message, resolution, since) in banner_rows {
                banners.push(BannerReport {
                    code: BannerCode::parse(&code)
                        .ok_or_else(|| corrupt("company_banners", "code", &code))?,
                    color: Color::parse(&color)
                        .ok_or_else(|| corrupt("company_banners", "color", &color))?,
                    count: to_u32(count),
                    provider: parse_provider(&provider)?,
                    message,
                    resolution,
                    since: since.0,
                });
            }
            let icon_rows: Vec<IconReadRow> = sqlx::query_as(
                "SELECT m.id, m.email, s.icon, s.color, s.reason, s.message, s.resolution, \
                 s.since, s.last_attempt_id, s.evaluated_at, ss.last_success_at, \
                 ss.last_success_items \
                 FROM members m JOIN member_status s ON s.member_id = m.id \
                 LEFT JOIN sync_state ss ON ss.member_id = m.id AND ss.channel = s.icon \
                 WHERE m.company_id = $1 AND m.active ORDER BY m.id",
            )
            .bind(&id)
            .fetch_all(self.reader())
            .await?;
            report.companies.push(CompanyReport {
                provider: parse_provider(&provider)?,
                connection_mode: ConnectionMode::parse(&mode)
                    .ok_or_else(|| corrupt("companies", "connection_mode", &mode))?,
                id,
                name,
                banners,
                members: members_from_rows(icon_rows)?,
            });
        }
        Ok(report)
    }

    /// Stores a member's own grant, sealing the refresh token with `key` for this row,
    /// and recomputes the member's status and the company's banners (the grant's state is
    /// an input of the classifier).
    pub async fn put_member_grant(
        &self,
        member_id: &str,
        state: MemberConnection,
        scopes: &[String],
        refresh_token: Option<&SecretString>,
        key: &EncryptionKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        // Locks the member first, as every status write does (see `LOCK_MEMBERS`).
        let select = if POSTGRES {
            "SELECT company_id FROM members WHERE id = $1 FOR NO KEY UPDATE"
        } else {
            "SELECT company_id FROM members WHERE id = $1"
        };
        let (company_id,): (String,) = sqlx::query_as(select)
            .bind(member_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::UnknownMember {
                member_id: member_id.to_owned(),
            })?;
        let sealed = refresh_token.map(|token| key.seal(&company_id, member_id, token));
        sqlx::query(
            "INSERT INTO member_grants (member_id, company_id, state, scopes, \
             refresh_token_ciphertext, key_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (member_id) DO UPDATE SET company_id = excluded.company_id, \
             state = excluded.state, scopes = excluded.scopes, \
             refresh_token_ciphertext = excluded.refresh_token_ciphertext, \
             key_id = excluded.key_id, updated_at = excluded.updated_at",
        )
        .bind(member_id)
        .bind(&company_id)
        .bind(state.as_str())
        .bind(scopes.join(" "))
        .bind(sealed.as_ref().map(|sealed| sealed.bytes.clone()))
        .bind(sealed.as_ref().map(|sealed| sealed.key_id.clone()))
        .bind(DbTime::new(now))
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(concat!(member_context_select!(), " WHERE m.id = $1"))
            .bind(member_id)
            .fetch_one(&mut *tx)
            .await?;
        let context = member_context(&row)?;
        self.recompute_members_in(&mut tx, &[context], now).await?;
        self.write_banners_in(&mut tx, &company_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A member's own grant with its refresh token opened; `None` when the member has
    /// none. A stored token without a key, or one that does not open, is an error.
    pub async fn member_grant(
        &self,
        member_id: &str,
        key: Option<&EncryptionKey>,
    ) -> Result<Option<MemberGrant>, StoreError> {
        let row: Option<GrantRow> = sqlx::query_as(
            "SELECT company_id, state, scopes, refresh_token_ciphertext, key_id, updated_at \
                 FROM member_grants WHERE member_id = $1",
        )
        .bind(member_id)
        .fetch_optional(self.reader())
        .await?;
        let Some((company_id, state, scopes, ciphertext, key_id, updated_at)) = row else {
            return Ok(None);
        };
        let refresh_token = match ciphertext {
            None => None,
            Some(bytes) => {
                let key = key.ok_or_else(|| CryptoError::MissingKey {
                    member_id: member_id.to_owned(),
                })?;
                let sealed = Sealed {
                    key_id: key_id.unwrap_or_default(),
                    bytes,
                };
                Some(key.open(&company_id, member_id, &sealed)?)
            }
        };
        Ok(Some(MemberGrant {
            state: MemberConnection::parse(&state)
                .ok_or_else(|| corrupt("member_grants", "state", &state))?,
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
            refresh_token,
            updated_at: updated_at.0,
        }))
    }

    /// Proves that `key` is the key this database's secrets were sealed with: the first
    /// use of a key id stores a canary sealed with it, later uses must open it.
    pub async fn verify_key(
        &self,
        key: &EncryptionKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        check_canary(&mut tx, key, now, true).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets `next_due_at = now` on the member's sync-state rows (one channel's, or both)
    /// that no live lease holds, in one transaction; counts the leased ones apart.
    pub async fn make_due(
        &self,
        member_id: &str,
        channel: Option<Channel>,
        now: OffsetDateTime,
        full: bool,
    ) -> Result<DueReport, StoreError> {
        let mut tx = self.begin_write().await?;
        let known: Option<(String,)> = sqlx::query_as("SELECT id FROM members WHERE id = $1")
            .bind(member_id)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::UnknownMember {
                member_id: member_id.to_owned(),
            });
        }
        // One channel or both: `channel IN ($3, $4)` with the same value twice for one.
        let (first, second) = match channel {
            Some(channel) => (channel.as_str(), channel.as_str()),
            None => (Channel::Email.as_str(), Channel::Calendar.as_str()),
        };
        // `full`: the saved cursor goes too, so the next poll is a full pass (items are
        // upserted on their provider id, so what was imported before stays one row).
        let made_due = sqlx::query(
            "UPDATE sync_state SET next_due_at = $2, \
             cursor = CASE WHEN $5 THEN NULL ELSE cursor END \
             WHERE member_id = $1 AND channel IN ($3, $4) \
             AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= $2)",
        )
        .bind(member_id)
        .bind(DbTime::new(now))
        .bind(first)
        .bind(second)
        .bind(full)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let (leased,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sync_state WHERE member_id = $1 AND channel IN ($3, $4) \
             AND lease_owner IS NOT NULL AND lease_expires_at > $2",
        )
        .bind(member_id)
        .bind(DbTime::new(now))
        .bind(first)
        .bind(second)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DueReport {
            made_due,
            leased: u64::try_from(leased).unwrap_or(0),
        })
    }

    /// Re-seals every stored refresh token from `old` to `new` in one transaction (rows
    /// locked on PostgreSQL, the write lock held on SQLite, so no grant is written under
    /// the old key meanwhile), and registers `new`'s canary. `old` must open its canary
    /// when it has one; a token already under `new` must open with it; a token under any
    /// third key id fails the whole rotation and nothing is written.
    pub async fn rotate_key(
        &self,
        old: &EncryptionKey,
        new: &EncryptionKey,
        now: OffsetDateTime,
    ) -> Result<KeyRotation, StoreError> {
        if old.id() == new.id() {
            return Err(CryptoError::SameKeyId {
                key_id: new.id().to_owned(),
            }
            .into());
        }
        let mut tx = self.begin_write().await?;
        check_canary(&mut tx, old, now, false).await?;
        check_canary(&mut tx, new, now, true).await?;
        let select = if POSTGRES {
            "SELECT member_id, company_id, refresh_token_ciphertext, key_id FROM member_grants \
             WHERE refresh_token_ciphertext IS NOT NULL ORDER BY member_id FOR UPDATE"
        } else {
            "SELECT member_id, company_id, refresh_token_ciphertext, key_id FROM member_grants \
             WHERE refresh_token_ciphertext IS NOT NULL ORDER BY member_id"
        };
        let rows: Vec<(String, String, Vec<u8>, Option<String>)> =
            sqlx::query_as(select).fetch_all(&mut *tx).await?;
        let mut rotation = KeyRotation::default();
        for (member_id, company_id, bytes, key_id) in rows {
            let sealed = Sealed {
                key_id: key_id.unwrap_or_default(),
                bytes,
            };
            if sealed.key_id == new.id() {
                new.open(&company_id, &member_id, &sealed)?;
                rotation.already_new += 1;
                continue;
            }
            // `open` refuses a third key id with a KeyMismatch naming the member.
            let plaintext = old.open(&company_id, &member_id, &sealed)?;
            let resealed = new.seal(&company_id, &member_id, &plaintext);
            sqlx::query(
                "UPDATE member_grants SET refresh_token_ciphertext = $1, key_id = $2 \
                 WHERE member_id = $3",
            )
            .bind(resealed.bytes)
            .bind(resealed.key_id)
            .bind(&member_id)
            .execute(&mut *tx)
            .await?;
            rotation.resealed += 1;
        }
        tx.commit().await?;
        Ok(rotation)
    }
}

/// Checks `key` against its stored canary inside `tx`; with no canary for its id, stores
/// one when `register` is set (and accepts the key as is otherwise).
///
/// Registering is idempotent: the canary is inserted only if absent (`ON CONFLICT DO
/// NOTHING`) and then read back and opened, so two daemons starting at once on a fresh
/// database both succeed with the same key (the second's insert waits for the first's
/// commit on PostgreSQL, then does nothing) and a different key still fails.
async fn check_canary(
    tx: &mut Tx,
    key: &EncryptionKey,
    now: OffsetDateTime,
    register: bool,
) -> Result<(), StoreError> {
    let mut canary = read_canary(tx, key).await?;
    if canary.is_none() && register {
        let sealed = key.seal(CANARY_ROW.0, CANARY_ROW.1, &SecretString::from(CANARY_TEXT));
        sqlx::query(
            "INSERT INTO encryption_keys (key_id, canary, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(key.id())
        .bind(sealed.bytes)
        .bind(DbTime::new(now))
        .execute(&mut **tx)
        .await?;
        canary = read_canary(tx, key).await?;
    }
    let Some(bytes) = canary else {
        return Ok(());
    };
    let sealed = Sealed {
        key_id: key.id().to_owned(),
        bytes,
    };
    let opened = key.open(CANARY_ROW.0, CANARY_ROW.1, &sealed);
    if !opened.is_ok_and(|text| secrecy::ExposeSecret::expose_secret(&text) == CANARY_TEXT) {
        return Err(CryptoError::WrongKey {
            key_id: key.id().to_owned(),
        }
        .into());
    }
    Ok(())
}

/// The stored canary of `key`'s id, if any.
async fn read_canary(tx: &mut Tx, key: &EncryptionKey) -> Result<Option<Vec<u8>>, StoreError> {
    let canary: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT canary FROM encryption_keys WHERE key_id = $1")
            .bind(key.id())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(canary.map(|(bytes,)| bytes))
}

/// recording_enabled, has_recording_seat, capture, email and calendar reasons.
type BannerInputRow = (bool, bool, Option<String>, Option<String>, Option<String>);
/// company_id, state, scopes, ciphertext, key_id.
type GrantRow = (
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<String>,
    DbTime,
);
/// member id, email, icon, color, reason, message, resolution, since, last attempt, evaluated.
type IconReadRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    DbTime,
    Option<String>,
    DbTime,
    Option<DbTime>,
    Option<i64>,
);

fn members_from_rows(rows: Vec<IconReadRow>) -> Result<Vec<MemberReport>, StoreError> {
    let mut members: Vec<(String, String, [Option<IconReport>; 3])> = Vec::new();
    for (
        member_id,
        email,
        icon,
        color,
        reason,
        message,
        resolution,
        since,
        last,
        evaluated,
        success_at,
        success_items,
    ) in rows
    {
        let icon = Icon::parse(&icon).ok_or_else(|| corrupt("member_status", "icon", &icon))?;
        let report = IconReport {
            color: Color::parse(&color).ok_or_else(|| corrupt("member_status", "color", &color))?,
            reason: parse_reason("member_status", &reason)?,
            message,
            resolution,
            since: since.0,
            last_attempt_id: last,
            evaluated_at: evaluated.0,
            last_success: success_at.map(|at| LastSuccess {
                at: at.0,
                items: u64::try_from(success_items.unwrap_or(0)).unwrap_or(0),
            }),
        };
        if members.last().is_none_or(|(id, _, _)| *id != member_id) {
            members.push((member_id, email, [None, None, None]));
        }
        if let Some((_, _, icons)) = members.last_mut() {
            let slot = match icon {
                Icon::Capture => 0,
                Icon::Email => 1,
                Icon::Calendar => 2,
            };
            icons[slot] = Some(report);
        }
    }
    Ok(members
        .into_iter()
        .filter_map(|(id, email_address, [capture, email, calendar])| {
            Some(MemberReport {
                id,
                email_address,
                capture: capture?,
                email: email?,
                calendar: calendar?,
            })
        })
        .collect())
}
