//! Faults in force: added from the scenario or the control endpoint, chosen for a request
//! (the user's before the tenant's), consumed one firing at a time (`times`), and the
//! quirks that stay set until cleared.

use super::{Effect, Endpoint, FaultKind};
use crate::scenario::FaultSpec;
use crate::state::World;

/// A fault that is active, with how many more times it fires.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFault {
    pub id: u64,
    pub spec: FaultSpec,
    pub remaining: Option<u32>,
}

/// Paging quirks active for a request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Quirks {
    pub empty_pages: bool,
    pub duplicate_items: bool,
    pub refresh_scope_missing: bool,
}

impl World {
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
}
