//! The sim's mutable world: mailboxes, calendars, issued grants, active faults and counters.
//!
//! Everything a request can change lives here behind one mutex, held only for the few
//! microseconds a handler needs (never across an await). Generation is deterministic: the
//! same scenario seed gives the same ids, subjects and times on every run, so tests and the
//! demo can name items.

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use crate::fault::{Effect, Endpoint, FaultKind};
use crate::scenario::{FaultSpec, Provider, Scenario, Tenant, User};

/// A fault that is active, with how many more times it fires.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFault {
    pub id: u64,
    pub spec: FaultSpec,
    pub remaining: Option<u32>,
}

/// One generated mail message (Gmail and Graph views of the same thing).
#[derive(Clone, Debug)]
pub(crate) struct MailMessage {
    pub id: String,
    pub graph_id: String,
    pub thread_id: String,
    pub subject: String,
    pub from_name: String,
    pub from_address: String,
    pub received: OffsetDateTime,
    /// History id of the last change (add or delete); also the Graph delta sequence.
    pub changed: u64,
    pub deleted: bool,
    pub size: u32,
}

/// One Gmail history record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HistoryRecord {
    pub id: u64,
    pub added: bool,
    pub message: usize,
}

/// A mailbox with Gmail history and Graph delta state.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    pub messages: Vec<MailMessage>,
    pub history: Vec<HistoryRecord>,
    pub history_id: u64,
    /// `startHistoryId` below this answers 404.
    pub floor: u64,
    /// Bumped to invalidate Graph delta tokens.
    pub epoch: u32,
    pub generated: u64,
}

/// One calendar event.
#[derive(Clone, Debug)]
pub(crate) struct CalEvent {
    pub id: String,
    pub graph_id: String,
    pub summary: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
    pub seq: u64,
    pub cancelled: bool,
}

/// A primary calendar with sync-token state.
#[derive(Debug, Default)]
pub(crate) struct Calendar {
    pub events: Vec<CalEvent>,
    pub seq: u64,
    /// Bumped to invalidate sync and delta tokens.
    pub epoch: u32,
    pub generated: u64,
}

/// A user and its data.
#[derive(Debug)]
pub(crate) struct UserState {
    pub cfg: User,
    /// Google numeric id or Microsoft object id (GUID).
    pub id: String,
    pub mail: Mailbox,
    pub cal: Calendar,
    pub faults: Vec<ActiveFault>,
    /// Graph requests for this mailbox being answered right now.
    pub in_flight: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

/// Holds one slot of a mailbox's concurrency until the answer is written.
#[derive(Debug)]
pub(crate) struct InFlight(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl InFlight {
    /// Takes a slot, or `None` when `limit` (non-zero) slots are taken.
    pub(crate) fn acquire(
        counter: &std::sync::Arc<std::sync::atomic::AtomicU32>,
        limit: u32,
    ) -> Option<InFlight> {
        use std::sync::atomic::Ordering;
        let previous = counter.fetch_add(1, Ordering::AcqRel);
        if limit != 0 && previous >= limit {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight(counter.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A tenant and its users.
#[derive(Debug)]
pub(crate) struct TenantState {
    pub cfg: Tenant,
    pub users: Vec<UserState>,
    pub faults: Vec<ActiveFault>,
    /// Each user's position in `users` by lower-cased address and by lower-cased id, so a
    /// request finds its mailbox in constant time however many users the tenant has.
    by_key: HashMap<String, usize>,
}

/// An issued access token.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub tenant: usize,
    pub user: Option<usize>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub expires_at: i64,
    pub app_only: bool,
}

/// An issued refresh token.
#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    pub tenant: usize,
    pub user: usize,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub rotated: bool,
}

/// An issued authorization code.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub tenant: usize,
    pub user: usize,
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub challenge: Option<(String, String)>,
    /// The authorization request's `nonce`, echoed in the `id_token`.
    pub nonce: Option<String>,
    pub used: bool,
}

/// Paging quirks active for a request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Quirks {
    pub empty_pages: bool,
    pub duplicate_items: bool,
    pub refresh_scope_missing: bool,
}

/// The world.
#[derive(Debug)]
pub(crate) struct World {
    pub seed: u64,
    pub epoch: OffsetDateTime,
    pub token_lifetime: i64,
    pub tenants: Vec<TenantState>,
    pub tokens: HashMap<String, Grant>,
    pub refresh: HashMap<String, RefreshGrant>,
    pub codes: HashMap<String, CodeGrant>,
    pub requests_total: u64,
    pub by_endpoint: BTreeMap<&'static str, u64>,
    pub faults_fired: BTreeMap<String, u64>,
    /// Gmail and Calendar calls per `quotaUser` (the empty key: calls without one). Google
    /// charges per-user quota to this value when a service account calls on behalf of
    /// many users (providers/google.md, quotas).
    pub quota_users: BTreeMap<String, u64>,
    next_fault_id: u64,
}

// ---- deterministic generation ---------------------------------------------------------

/// FNV-1a then splitmix64: a small, stable hash so generated data never depends on the
/// standard library's hasher.
pub(crate) fn mix(seed: u64, parts: &[&str], index: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let mut z = hash ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<'a>(list: &[&'a str], value: u64) -> &'a str {
    let len = u64::try_from(list.len()).unwrap_or(1).max(1);
    list.get(usize::try_from(value % len).unwrap_or(0))
        .copied()
        .unwrap_or("")
}

const SENDERS: &[(&str, &str)] = &[
    ("Ada Lovelace", "ada@analytical.example"),
    ("Grace Hopper", "grace@cobol.example"),
    ("Alan Turing", "alan@bletchley.example"),
    ("Katherine Johnson", "katherine@nasa.example"),
    ("Edsger Dijkstra", "edsger@eindhoven.example"),
];
const TOPICS: &[&str] = &[
    "Quarterly report",
    "Invoice",
    "Team offsite",
    "Contract renewal",
    "Release notes",
    "Customer feedback",
    "Hiring plan",
    "Budget review",
    "Security notice",
    "Lunch",
];
const MEETINGS: &[&str] = &[
    "Standup",
    "1:1",
    "Planning",
    "Customer call",
    "Design review",
    "Retro",
    "All hands",
];

/// A Graph-style opaque id (`AAMkAD…`) from a number.
fn graph_id(prefix: &str, value: u64, index: u64) -> String {
    use base64::Engine;
    let mut raw = Vec::with_capacity(24);
    raw.extend_from_slice(&value.to_be_bytes());
    raw.extend_from_slice(&index.to_be_bytes());
    raw.extend_from_slice(&value.rotate_left(17).to_be_bytes());
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

impl Mailbox {
    fn add(&mut self, seed: u64, email: &str, received: OffsetDateTime) -> usize {
        let index = self.generated;
        self.generated += 1;
        let value = mix(seed, &["mail", email], index);
        let (from_name, from_address) = SENDERS
            .get(usize::try_from(value % 5).unwrap_or(0))
            .copied()
            .unwrap_or(("", ""));
        self.history_id += 1 + (value >> 8) % 4;
        let id = format!("{:016x}", value | (1 << 60));
        let thread_id = if index % 3 == 2 {
            self.messages
                .last()
                .map_or_else(|| id.clone(), |m| m.thread_id.clone())
        } else {
            id.clone()
        };
        self.messages.push(MailMessage {
            graph_id: graph_id("AAMkAD", value, index),
            thread_id,
            subject: format!("{} #{}", pick(TOPICS, value >> 16), index + 1),
            from_name: from_name.to_owned(),
            from_address: from_address.to_owned(),
            received,
            changed: self.history_id,
            deleted: false,
            size: 2_000 + u32::try_from((value >> 24) % 40_000).unwrap_or(0),
            id,
        });
        let message = self.messages.len() - 1;
        self.history.push(HistoryRecord {
            id: self.history_id,
            added: true,
            message,
        });
        message
    }

    /// Deletes a message by Gmail or Graph id; false when unknown or already gone.
    pub(crate) fn delete(&mut self, id: &str) -> bool {
        let Some(index) = self
            .messages
            .iter()
            .position(|m| !m.deleted && (m.id == id || m.graph_id == id))
        else {
            return false;
        };
        self.history_id += 1;
        if let Some(message) = self.messages.get_mut(index) {
            message.deleted = true;
            message.changed = self.history_id;
        }
        self.history.push(HistoryRecord {
            id: self.history_id,
            added: false,
            message: index,
        });
        true
    }
}

impl Calendar {
    fn add(&mut self, seed: u64, email: &str, epoch: OffsetDateTime, now: OffsetDateTime) -> usize {
        let index = self.generated;
        self.generated += 1;
        let value = mix(seed, &["event", email], index);
        let day = i64::try_from(index % 28).unwrap_or(0) - 7;
        let hour = 8 + i64::try_from((value >> 8) % 9).unwrap_or(0);
        let start = epoch + time::Duration::days(day) + time::Duration::hours(hour);
        let minutes = if value.is_multiple_of(2) { 30 } else { 60 };
        self.seq += 1;
        self.events.push(CalEvent {
            id: format!("{:026x}", u128::from(value) << 40 | u128::from(index)),
            graph_id: graph_id("AAMkAGE", value, index),
            summary: format!("{} ({})", pick(MEETINGS, value >> 20), index + 1),
            start,
            end: start + time::Duration::minutes(minutes),
            created: now,
            updated: now,
            seq: self.seq,
            cancelled: false,
        });
        self.events.len() - 1
    }

    /// Cancels an event by Google or Graph id; false when unknown or already cancelled.
    pub(crate) fn cancel(&mut self, id: &str, now: OffsetDateTime) -> bool {
        let Some(event) = self
            .events
            .iter_mut()
            .find(|e| !e.cancelled && (e.id == id || e.graph_id == id))
        else {
            return false;
        };
        self.seq += 1;
        event.cancelled = true;
        event.seq = self.seq;
        event.updated = now;
        true
    }
}

impl World {
    pub(crate) fn new(scenario: Scenario) -> World {
        let mut next_fault_id = 1;
        let mut activate = |specs: &[FaultSpec]| -> Vec<ActiveFault> {
            specs
                .iter()
                .map(|spec| {
                    next_fault_id += 1;
                    ActiveFault {
                        id: next_fault_id - 1,
                        spec: spec.clone(),
                        remaining: spec.times,
                    }
                })
                .collect()
        };
        let seed = scenario.seed;
        let epoch = scenario.epoch;
        let mut tenants = Vec::with_capacity(scenario.tenants.len());
        for tenant in scenario.tenants {
            let mut users = Vec::with_capacity(tenant.users.len());
            for (index, user) in tenant.users.iter().enumerate() {
                let value = mix(seed, &["user", &tenant.name, &user.email], 0);
                let id = match tenant.provider {
                    Provider::Google => format!("1{:020}", value % 10_000_000_000_000_000_000),
                    Provider::Microsoft => uuid::Builder::from_random_bytes(
                        (u128::from(value) << 64 | index as u128).to_be_bytes(),
                    )
                    .into_uuid()
                    .to_string(),
                };
                let mut mail = Mailbox {
                    history_id: 1000 + value % 100_000,
                    floor: 1,
                    ..Mailbox::default()
                };
                for i in 0..u64::from(user.messages) {
                    let minutes = i64::try_from((u64::from(user.messages) - i) * 37).unwrap_or(0);
                    mail.add(seed, &user.email, epoch - time::Duration::minutes(minutes));
                }
                let mut cal = Calendar::default();
                let created = user.created_at.max(epoch - time::Duration::days(30));
                for _ in 0..user.events {
                    cal.add(seed, &user.email, epoch, created);
                }
                users.push(UserState {
                    in_flight: std::sync::Arc::default(),
                    faults: activate(&user.faults),
                    cfg: user.clone(),
                    id,
                    mail,
                    cal,
                });
            }
            let faults = activate(&tenant.faults);
            let mut by_key = HashMap::with_capacity(users.len() * 2);
            for (index, user) in users.iter().enumerate() {
                // The first user wins a shared key, as the linear scan it replaces did.
                by_key
                    .entry(user.cfg.email.to_ascii_lowercase())
                    .or_insert(index);
            }
            for (index, user) in users.iter().enumerate() {
                by_key.entry(user.id.to_ascii_lowercase()).or_insert(index);
            }
            tenants.push(TenantState {
                cfg: Tenant {
                    users: Vec::new(),
                    faults: Vec::new(),
                    ..tenant
                },
                users,
                faults,
                by_key,
            });
        }
        World {
            seed,
            epoch,
            // At most ten years, so `now + lifetime` can never overflow.
            token_lifetime: i64::try_from(scenario.access_token_lifetime_secs.min(315_360_000))
                .unwrap_or(3599),
            tenants,
            tokens: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            requests_total: 0,
            by_endpoint: BTreeMap::new(),
            faults_fired: BTreeMap::new(),
            quota_users: BTreeMap::new(),
            next_fault_id,
        }
    }

    /// Counts a request.
    pub(crate) fn count(&mut self, endpoint: Endpoint) {
        self.requests_total += 1;
        *self.by_endpoint.entry(endpoint.name()).or_insert(0) += 1;
    }

    pub(crate) fn tenant_by_name(&self, name: &str) -> Option<usize> {
        self.tenants.iter().position(|t| t.cfg.name == name)
    }

    pub(crate) fn user_by_email(&self, tenant: usize, email: &str) -> Option<usize> {
        let tenant = self.tenants.get(tenant)?;
        let index = *tenant.by_key.get(&email.to_ascii_lowercase())?;
        // The index holds ids too: only an address match counts here.
        tenant
            .users
            .get(index)
            .filter(|u| u.cfg.email.eq_ignore_ascii_case(email))
            .map(|_| index)
    }

    /// Finds a user by object id or address (Graph accepts both in paths).
    pub(crate) fn user_by_key(&self, tenant: usize, key: &str) -> Option<usize> {
        self.tenants
            .get(tenant)?
            .by_key
            .get(&key.to_ascii_lowercase())
            .copied()
    }

    pub(crate) fn user(&self, tenant: usize, user: usize) -> Option<&UserState> {
        self.tenants.get(tenant)?.users.get(user)
    }

    pub(crate) fn user_mut(&mut self, tenant: usize, user: usize) -> Option<&mut UserState> {
        self.tenants.get_mut(tenant)?.users.get_mut(user)
    }

    /// Adds a fault; returns its id.
    pub(crate) fn add_fault(
        &mut self,
        tenant: usize,
        user: Option<usize>,
        spec: FaultSpec,
    ) -> Option<u64> {
        let id = self.next_fault_id;
        let fault = ActiveFault {
            id,
            remaining: spec.times,
            spec,
        };
        let list = match user {
            Some(user) => &mut self.user_mut(tenant, user)?.faults,
            None => &mut self.tenants.get_mut(tenant)?.faults,
        };
        list.push(fault);
        self.next_fault_id += 1;
        Some(id)
    }

    /// Removes faults: one by id, or all of a tenant / user, or everything.
    pub(crate) fn clear_faults(
        &mut self,
        tenant: Option<usize>,
        user: Option<usize>,
        id: Option<u64>,
    ) -> usize {
        let mut removed = 0;
        for (t_index, tenant_state) in self.tenants.iter_mut().enumerate() {
            if tenant.is_some_and(|t| t != t_index) {
                continue;
            }
            let keep = |fault: &ActiveFault| id.is_some_and(|id| fault.id != id);
            if user.is_none() {
                let before = tenant_state.faults.len();
                tenant_state.faults.retain(keep);
                removed += before - tenant_state.faults.len();
            }
            for (u_index, user_state) in tenant_state.users.iter_mut().enumerate() {
                if user.is_some_and(|u| u != u_index) {
                    continue;
                }
                let before = user_state.faults.len();
                user_state.faults.retain(keep);
                removed += before - user_state.faults.len();
            }
        }
        removed
    }

    /// The first fault of `effect` (answer or transport) that applies, consumed once.
    pub(crate) fn take_fault(
        &mut self,
        tenant: usize,
        user: Option<usize>,
        endpoint: Endpoint,
        incremental: bool,
        effect: Effect,
    ) -> Option<FaultSpec> {
        let applies = |fault: &ActiveFault| {
            fault.spec.fault.effect() == effect
                && fault.spec.selector().matches(endpoint)
                && (incremental || !fault.spec.fault.needs_incremental())
        };
        let tenant_state = self.tenants.get_mut(tenant)?;
        let (list, position) = match user
            .and_then(|u| tenant_state.users.get_mut(u))
            .and_then(|u| u.faults.iter().position(applies).map(|p| (p, u)))
        {
            Some((position, user_state)) => (&mut user_state.faults, position),
            None => {
                let position = tenant_state.faults.iter().position(applies)?;
                (&mut tenant_state.faults, position)
            }
        };
        let fault = list.get_mut(position)?;
        let spec = fault.spec.clone();
        if let Some(remaining) = &mut fault.remaining {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                list.remove(position);
            }
        }
        *self.faults_fired.entry(spec.fault.label()).or_insert(0) += 1;
        Some(spec)
    }

    /// Quirks set for a tenant or user on an endpoint.
    pub(crate) fn quirks(&self, tenant: usize, user: Option<usize>, endpoint: Endpoint) -> Quirks {
        let mut quirks = Quirks::default();
        let Some(tenant_state) = self.tenants.get(tenant) else {
            return quirks;
        };
        let user_faults = user
            .and_then(|u| tenant_state.users.get(u))
            .map(|u| u.faults.as_slice())
            .unwrap_or_default();
        for fault in tenant_state.faults.iter().chain(user_faults) {
            if !fault.spec.selector().matches(endpoint)
                && fault.spec.fault != FaultKind::RefreshScopeMissing
            {
                continue;
            }
            match fault.spec.fault {
                FaultKind::EmptyPages => quirks.empty_pages = true,
                FaultKind::DuplicateItems => quirks.duplicate_items = true,
                FaultKind::RefreshScopeMissing => quirks.refresh_scope_missing = true,
                _ => {}
            }
        }
        quirks
    }

    /// Adds `count` new messages now; returns their indexes.
    pub(crate) fn add_mail(&mut self, tenant: usize, user: usize, count: u32) -> Vec<usize> {
        let seed = self.seed;
        let now = OffsetDateTime::now_utc();
        let Some(user_state) = self.user_mut(tenant, user) else {
            return Vec::new();
        };
        let email = user_state.cfg.email.clone();
        (0..count.min(crate::scenario::MAX_GENERATED))
            .map(|_| user_state.mail.add(seed, &email, now))
            .collect()
    }

    /// Adds `count` new events; returns their indexes.
    pub(crate) fn add_events(&mut self, tenant: usize, user: usize, count: u32) -> Vec<usize> {
        let seed = self.seed;
        let epoch = self.epoch;
        let now = OffsetDateTime::now_utc();
        let Some(user_state) = self.user_mut(tenant, user) else {
            return Vec::new();
        };
        let email = user_state.cfg.email.clone();
        (0..count.min(crate::scenario::MAX_GENERATED))
            .map(|_| user_state.cal.add(seed, &email, epoch, now))
            .collect()
    }

    /// Makes every existing cursor of a user stale (Gmail 404, Calendar 410, Graph 410).
    pub(crate) fn expire_cursors(&mut self, tenant: usize, user: usize) {
        if let Some(user_state) = self.user_mut(tenant, user) {
            user_state.mail.history_id += 1;
            user_state.mail.floor = user_state.mail.history_id;
            user_state.mail.epoch += 1;
            user_state.cal.epoch += 1;
        }
    }

    /// Expires every access token issued for a tenant (or one user of it).
    pub(crate) fn expire_tokens(&mut self, tenant: usize, user: Option<usize>) -> usize {
        let mut expired = 0;
        for grant in self.tokens.values_mut() {
            if grant.tenant == tenant && (user.is_none() || grant.user == user) {
                grant.expires_at = 0;
                expired += 1;
            }
        }
        expired
    }

    /// Records an access token.
    pub(crate) fn issue(&mut self, token: String, grant: Grant) {
        // Bound the table: a long benchmark or demo must not grow memory without limit.
        // The bound grows with the world (a token per scope per user, as a client that
        // caches its tokens holds), so such a client never sees a valid token forgotten:
        // a real provider honours a token until it expires, and forgetting them all at
        // once would turn a large benchmark's cached tokens into a storm of 401s.
        let bound = self.token_bound();
        if self.tokens.len() >= bound {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            self.tokens.retain(|_, g| g.expires_at > now);
            if self.tokens.len() >= bound {
                self.tokens.clear();
            }
        }
        self.tokens.insert(token, grant);
    }

    /// Access tokens held at most: 100,000, or four per user in larger worlds.
    pub(crate) fn token_bound(&self) -> usize {
        let users: usize = self.tenants.iter().map(|tenant| tenant.users.len()).sum();
        users.saturating_mul(TOKENS_PER_USER).max(MIN_TOKEN_BOUND)
    }
}

/// The token table's bound in small worlds.
const MIN_TOKEN_BOUND: usize = 100_000;
/// Tokens a user may hold at once: Gmail, Calendar, Graph and one spare.
const TOKENS_PER_USER: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn mix_is_stable_and_spreads() {
        assert_eq!(mix(1, &["a"], 0), mix(1, &["a"], 0));
        assert_ne!(mix(1, &["a"], 0), mix(1, &["a"], 1));
        assert_ne!(mix(1, &["a"], 0), mix(2, &["a"], 0));
    }

    /// A world of `users` Google users with no mail (the token table's bound scales).
    fn world_of(users: usize) -> World {
        let mut text = String::from(
            "[[tenant]]\nname = \"big\"\nprovider = \"google\"\ndomain = \"big.example\"\n",
        );
        for index in 0..users {
            text.push_str(&format!(
                "[[tenant.user]]\nemail = \"u{index}@big.example\"\nmessages = 0\nevents = 0\n"
            ));
        }
        let scenario = Scenario::from_toml(&text, "big", Path::new(".")).expect("scenario");
        World::new(scenario)
    }

    fn grant(expires_at: i64) -> Grant {
        Grant {
            tenant: 0,
            user: Some(0),
            scopes: Vec::new(),
            roles: Vec::new(),
            expires_at,
            app_only: false,
        }
    }

    #[test]
    fn a_large_world_keeps_every_valid_token_a_caching_client_holds() {
        // 40,000 users holding a Gmail and a Calendar token each, plus a first batch
        // issued earlier: 120,000 valid tokens, above the small-world bound of 100,000.
        // The old table forgot them all at 100,000 (a storm of 401s at 1M member-channels).
        let mut world = world_of(40_000);
        assert_eq!(world.token_bound(), 160_000);
        let valid = OffsetDateTime::now_utc().unix_timestamp() + 3_600;
        for index in 0..120_000 {
            world.issue(format!("t{index}"), grant(valid));
        }
        assert_eq!(world.tokens.len(), 120_000);
        assert!(world.tokens.contains_key("t0"));
        // Small worlds keep the old bound, and expired tokens go first when it is reached.
        let mut small = world_of(1);
        assert_eq!(small.token_bound(), 100_000);
        for index in 0..100_000 {
            small.issue(format!("old{index}"), grant(0));
        }
        small.issue("new".to_owned(), grant(valid));
        assert_eq!(small.tokens.len(), 1);
    }

    #[test]
    fn deleting_records_history_and_advances() {
        let mut mailbox = Mailbox {
            history_id: 100,
            floor: 1,
            ..Mailbox::default()
        };
        let epoch = OffsetDateTime::UNIX_EPOCH;
        mailbox.add(1, "a@x", epoch);
        let id = mailbox.messages[0].id.clone();
        let before = mailbox.history_id;
        assert!(mailbox.delete(&id));
        assert!(!mailbox.delete(&id));
        assert!(mailbox.history_id > before);
        assert_eq!(mailbox.history.len(), 2);
        assert!(!mailbox.history[1].added);
    }
}
