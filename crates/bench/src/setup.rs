//! What the worker runs on: the tenants file of N members and the credentials every
//! company gets (the sim's FAKE, test-only service account).

use std::sync::Arc;

use datacap_connector::{Auth, ServiceAccountKey};
use datacap_core::{CompanySettings, ConnectionMode, MemberSettings, Provider};
use datacap_store::{TenantCompany, TenantMember, Tenants};
use datacap_worker::{CompanyCredentials, CredentialError, CredentialResolver};
use secrecy::SecretString;

pub(crate) const SIM_PUBLIC_KEY: &str =
    include_str!("../../../config/sim/keys/FAKE-TEST-ONLY-google-service-account.pub.pem");
pub(crate) const SIM_PRIVATE_KEY: &str =
    include_str!("../../../config/sim/keys/FAKE-TEST-ONLY-google-service-account.key.pem");
pub(crate) const CLIENT_EMAIL: &str = "datacap@bench-sim.iam.gserviceaccount.com";
pub(crate) const DOMAIN: &str = "bench.example";

/// The company of the sim's mailboxes, built directly (no tenants file to parse: at
/// half a million members that would cost seconds and hundreds of MiB of peak RSS that
/// the worker's figure would then include).
pub(crate) fn tenants(members: usize) -> Tenants {
    // The tenants file's defaults (no seat, recording off, both imports on).
    let member_settings = MemberSettings {
        has_recording_seat: false,
        recording_enabled: false,
        ..MemberSettings::importing(None)
    };
    Tenants {
        companies: vec![TenantCompany {
            id: "bench".to_owned(),
            name: "bench".to_owned(),
            settings: CompanySettings::importing(
                Provider::GoogleWorkspace,
                ConnectionMode::CompanyWide,
            ),
            credentials: [("service_account_key_file".to_owned(), "/unused".to_owned())].into(),
            webhooks: Vec::new(),
            members: (0..members)
                .map(|index| TenantMember {
                    id: format!("u{index}"),
                    email: format!("u{index}@{DOMAIN}"),
                    aliases: Vec::new(),
                    settings: member_settings,
                    active: true,
                })
                .collect(),
        }],
    }
}

pub(crate) fn service_account() -> ServiceAccountKey {
    ServiceAccountKey {
        client_email: CLIENT_EMAIL.to_owned(),
        private_key_pem: SecretString::from(SIM_PRIVATE_KEY),
        private_key_id: None,
        directory_admin: None,
    }
}

/// Every company gets the sim's FAKE service account.
pub(crate) struct BenchResolver;

impl CredentialResolver for BenchResolver {
    fn resolve(&self, _company: &CompanyCredentials<'_>) -> Result<Auth, CredentialError> {
        Ok(Auth::GoogleServiceAccount(Arc::new(service_account())))
    }
}
