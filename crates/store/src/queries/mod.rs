//! The store's queries, written once for both databases: each topic's file adds its
//! methods to [`Backend<D>`](crate::backend::Backend) for any `D: Dialect`, in the SQL
//! both SQLite and PostgreSQL accept (`$N` placeholders, `ON CONFLICT … DO UPDATE`,
//! window functions). What differs between the databases (row locks, `IN` lists, bulk
//! writers, pools) comes from [`Dialect`]; the sqlx calls go through `crate::sql`.
//!
//! A new query goes in the file of its topic: `apply` (the tenants file), `attempts` (the
//! attempt write), `status` (recomputing member statuses), `banners` (company banners),
//! `leases` (claims, heartbeats, releases, `make_due`), `grants` (members' grants and
//! the encryption key), `reads` (the page's and API's reads), `connect` (pending
//! sign-ins), `context` (what a job runs with), `outbox` (webhooks), `retention`.
//! Here are the pieces several of them share: a member's classifier context, read with
//! its row locked; the settings columns it and a job's context both decode; the check
//! that a member exists before a write for it.

mod apply;
mod attempts;
mod banners;
mod connect;
mod context;
mod grants;
mod leases;
mod outbox;
mod reads;
mod retention;
mod status;

use datacap_core::{
    Channel, CompanySettings, ConnectionMode, MemberConnection, MemberSettings, Provider, Reason,
};

use crate::backend::{Dialect, Tx};
use crate::error::{StoreError, corrupt};
use crate::sql::{Builder, query_as};

/// Ids per `IN` list on SQLite (PostgreSQL binds one array whatever the count; see each
/// dialect's `push_in`): far below SQLite's bind-parameter limit.
const CHUNK: usize = 400;

/// `sql` followed by the dialect's lock clause `lock` (empty on SQLite).
fn locked(sql: &'static str, lock: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("{sql}{lock}"))
}

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

/// The columns [`member_context`] reads, from `members m`, `companies c` and
/// `member_grants g` (left joined).
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
use member_context_select;

fn member_context<D: Dialect>(row: &D::Row) -> Result<MemberContext, StoreError> {
    let connection = parse_connection(D::get(row, 15)?)?;
    let counted = D::get(row, 16)?;
    let member_email = D::get(row, 17)?;
    let member_id = D::get(row, 0)?;
    let company_id = D::get(row, 1)?;
    let (member, company) = settings_at::<D>(row, 2, connection)?;
    Ok(MemberContext {
        member_id,
        company_id,
        company,
        member,
        counted,
        member_email,
    })
}

/// A member's and its company's settings from thirteen columns of `row`, the first at
/// index `at`: `m.has_recording_seat, m.recording_enabled, m.email_import,
/// m.calendar_import, m.import_non_recorded_meetings, c.provider, c.connection_mode,
/// c.permission_given, c.email_authorized, c.calendar_authorized, c.import_email,
/// c.import_calendar, c.import_non_recorded_meetings` (a member's context and a job's).
fn settings_at<D: Dialect>(
    row: &D::Row,
    at: usize,
    connection: Option<MemberConnection>,
) -> Result<(MemberSettings, CompanySettings), StoreError> {
    let provider: String = D::get(row, at + 5)?;
    let mode: String = D::get(row, at + 6)?;
    let member = MemberSettings {
        has_recording_seat: D::get(row, at)?,
        recording_enabled: D::get(row, at + 1)?,
        email_import: D::get(row, at + 2)?,
        calendar_import: D::get(row, at + 3)?,
        import_non_recorded_meetings: D::get(row, at + 4)?,
        connection,
    };
    let company = CompanySettings {
        provider: parse_provider(&provider)?,
        connection_mode: ConnectionMode::parse(&mode)
            .ok_or_else(|| corrupt("companies", "connection_mode", &mode))?,
        permission_given: D::get(row, at + 7)?,
        email_authorized: D::get(row, at + 8)?,
        calendar_authorized: D::get(row, at + 9)?,
        import_email: D::get(row, at + 10)?,
        import_calendar: D::get(row, at + 11)?,
        import_non_recorded_meetings: D::get(row, at + 12)?,
    };
    Ok((member, company))
}

/// A member's grant state (`member_grants.state`, `None` without a grant row).
fn parse_connection(state: Option<String>) -> Result<Option<MemberConnection>, StoreError> {
    state
        .map(|state| {
            MemberConnection::parse(&state).ok_or_else(|| corrupt("member_grants", "state", &state))
        })
        .transpose()
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

/// The members' contexts, sorted by member id (unknown ids are simply absent); on
/// PostgreSQL their rows are locked, in that order (see [`Dialect::LOCK_MEMBERS`]).
async fn member_contexts_in<D: Dialect>(
    tx: &mut Tx<D>,
    member_ids: &[&str],
) -> Result<Vec<MemberContext>, StoreError> {
    let mut contexts = Vec::with_capacity(member_ids.len());
    for chunk in member_ids.chunks(CHUNK) {
        let mut query = Builder::<D>::new(concat!(member_context_select!(), " WHERE "));
        query.push_in("m.id", chunk.iter().map(|id| (*id).to_owned()).collect());
        query.push(" ORDER BY m.id");
        query.push(D::LOCK_MEMBERS);
        for row in query.build().fetch_all(&mut *tx).await? {
            contexts.push(member_context::<D>(&row)?);
        }
    }
    contexts.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    Ok(contexts)
}

/// Fails with [`StoreError::UnknownMember`] unless `member_id` is a member's id (read in
/// the write transaction `tx`, which goes on to write for it).
async fn known_member_in<D: Dialect>(tx: &mut Tx<D>, member_id: &str) -> Result<(), StoreError> {
    let known: Option<(String,)> = query_as("SELECT id FROM members WHERE id = $1")
        .bind(member_id)
        .fetch_optional(&mut *tx)
        .await?;
    match known {
        Some(_) => Ok(()),
        None => Err(StoreError::UnknownMember {
            member_id: member_id.to_owned(),
        }),
    }
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}
