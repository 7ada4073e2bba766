//! The declarative tenants file behind `datacap apply`: companies, their settings and
//! credential references, and their members, in TOML.
//!
//! Parsing and validation are pure (text in, [`Tenants`] or [`TenantsErrors`] out, every
//! problem of the file and not only the first) so the whole file is checked before
//! anything is written, and every problem names its line and field. The binary reads the
//! file; the store writes the validated result in one transaction. The format is
//! documented in `config/tenants.example.toml`.
//!
//! `parse` reads the TOML (every bad key set aside and the rest read again, each problem
//! located in the text), `raw` holds the shapes it reads into, `validate` checks what
//! the shapes cannot say (ids, addresses, URLs, credential references, duplicates) and
//! builds the [`Tenants`] below.

mod parse;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use datacap_core::{CompanySettings, MemberSettings};

use crate::webhooks::{EventType, SecretRef};

pub use parse::parse_tenants;
/// A bad tenants file: where, which field, and what is wrong. Displays as
/// `LINE: FIELD: DETAIL`; the binary puts the file name in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {field}: {detail}")]
pub struct TenantsError {
    /// 1-based line of the offending value (or of its table when the value is missing).
    pub line: usize,
    /// The field path, like `companies[0].members[3].email`.
    pub field: String,
    pub detail: String,
}

/// Every problem of a bad tenants file, in file order (at least one). Displays as one
/// [`TenantsError`] per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct TenantsErrors {
    pub problems: Vec<TenantsError>,
}

/// A validated tenants file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenants {
    pub companies: Vec<TenantCompany>,
}

/// One company of a tenants file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCompany {
    pub id: String,
    pub name: String,
    pub settings: CompanySettings,
    /// Credential references by name (`client_id`, `client_secret_env`, `key_file`, …);
    /// never a secret value.
    pub credentials: BTreeMap<String, String>,
    pub members: Vec<TenantMember>,
    /// The company's webhook endpoints (`[[companies.webhooks]]`).
    pub webhooks: Vec<TenantWebhook>,
}

/// One webhook endpoint of a company: where its events go, where the signing secret is
/// read from (never the secret), and which events it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantWebhook {
    /// Unique within the company; stable, so deliveries keep their endpoint across applies.
    pub id: String,
    /// An `http://` or `https://` URL without user or password.
    pub url: String,
    pub secret: SecretRef,
    /// At least one, each once, in the file's order.
    pub events: Vec<EventType>,
}

/// One member of a tenants file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMember {
    pub id: String,
    pub email: String,
    /// Other addresses of the member's own mailbox (`aliases = [...]`): the connect flow
    /// accepts an account that signs in under one of them as the member's.
    pub aliases: Vec<String>,
    /// `connection` is always `None` here: a member's own grant is stored by the OAuth
    /// connect flow, not declared.
    pub settings: MemberSettings,
    pub active: bool,
}
