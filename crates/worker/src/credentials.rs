//! How the worker gets a company's credentials without reading files or the environment:
//! the binary implements [`CredentialResolver`] (reading the key files and variables that
//! the company's credential references name) and hands it in. The worker only ever sees
//! the references and the resolved `secrecy` values, never where they came from.

use std::collections::BTreeMap;

use datacap_connector::Auth;
use datacap_core::{ConnectionMode, Provider};

/// A company's provider connection and its credential references, as `apply` stored them.
#[derive(Clone, Copy, Debug)]
pub struct CompanyCredentials<'a> {
    pub company_id: &'a str,
    pub provider: Provider,
    pub connection_mode: ConnectionMode,
    /// Names of key files and variables, client ids, tenant ids: never secret values.
    pub refs: &'a BTreeMap<String, String>,
}

/// A company's credentials could not be resolved (a missing key file, an unset variable, a
/// missing reference). The message names the reference, never a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("credentials of company {company_id}: {detail}")]
pub struct CredentialError {
    pub company_id: String,
    pub detail: String,
}

/// Turns a company's credential references into credentials. Implemented by the binary,
/// the only crate that reads files and the environment.
pub trait CredentialResolver: Send + Sync {
    /// Resolves `company`'s credentials; called at most once per company per
    /// [`crate::WorkerConfig::credentials_ttl`].
    fn resolve(&self, company: &CompanyCredentials<'_>) -> Result<Auth, CredentialError>;
}
