//! The sim's mutable world: tenants, users and their mailboxes and calendars, issued
//! grants, active faults and counters.
//!
//! Everything a request can change lives here behind one mutex, held only for the few
//! microseconds a handler needs (never across an await). Generation is deterministic
//! ([`mailbox`]): the same scenario seed gives the same ids, subjects and times on every
//! run, so tests and the demo can name items. The grant tables' rules live in
//! `oauth/grants.rs`, the fault lists' in `fault/active.rs`.

mod mailbox;

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use mailbox::mix;
pub(crate) use mailbox::{CalEvent, MailMessage};
pub(crate) use mailbox::{Calendar, Mailbox};

use crate::fault::{ActiveFault, Endpoint};
use crate::oauth::code::CodeGrant;
use crate::oauth::grants::{Grant, RefreshGrant};
use crate::scenario::{FaultSpec, Provider, Scenario, Tenant, User};

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
    pub(crate) next_fault_id: u64,
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
}
