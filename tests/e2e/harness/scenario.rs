//! The sim scenarios and the matching tenants files the end-to-end tests run: company-wide
//! Google and Microsoft tenants with one member per answer we check ([`SCENARIO`]),
//! user-by-user ones ([`USER_BY_USER_SCENARIO`]), both read from tests/fixtures/e2e, and
//! generated ones with many members.

use std::path::Path;

use super::Harness;

/// Google and Microsoft company-wide tenants with one member per answer we check.
pub const SCENARIO: &str = include_str!("../../fixtures/e2e/scenario.toml");

pub fn tenants(key_file: &Path) -> String {
    let member = |id: &str, domain: &str| {
        format!(
            "[[companies.members]]\nid = \"{id}\"\nemail = \"{id}@{domain}\"\nseat = true\nrecording_enabled = true\n\n"
        )
    };
    let mut text = format!(
        "[[companies]]\nid = \"globex\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\n\
         settings = {{ permission_given = true, email_authorized = true, calendar_authorized = true }}\n\
         credentials = {{ service_account_key_file = \"{}\", subject = \"admin@globex.example\" }}\n\n",
        key_file.display()
    );
    for id in [
        "admin",
        "ada",
        "nodwd",
        "policy",
        "unlicensed",
        "badsig",
        "flaky",
    ] {
        text.push_str(&member(id, "globex.example"));
    }
    text.push_str(
        "[[companies]]\nid = \"fabrikam\"\nprovider = \"microsoft_365\"\nconnection_mode = \"company_wide\"\n\
         settings = { permission_given = true, email_authorized = true, calendar_authorized = true }\n\
         credentials = { tenant_id = \"0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9\", client_id = \"aa11bb22-cc33-4d44-8e55-ff6677889900\", client_secret_env = \"FABRIKAM_SECRET\" }\n\n",
    );
    for id in ["megan", "raop", "nolicence"] {
        text.push_str(&member(id, "fabrikam.example"));
    }
    text
}

/// `count` members with a little mail each, in one Google tenant.
pub fn many_members_scenario(count: usize) -> (String, Vec<String>) {
    let mut scenario = SCENARIO.split("[[tenant.user]]").next().unwrap().to_owned();
    let mut ids = Vec::new();
    for index in 0..count {
        let id = format!("m{index:03}");
        scenario.push_str(&format!(
            "[[tenant.user]]\nemail = \"{id}@globex.example\"\nmessages = 2\nevents = 1\n\
             [[tenant.user.fault]]\nfault = \"latency\"\nlatency_ms = 100\n\n"
        ));
        ids.push(id);
    }
    (scenario, ids)
}

/// A scenario with a Google tenant (`globex`, domain-wide delegation; the first of
/// `google` is the Directory admin) and a Microsoft tenant (`fabrikam`, app-only), whose
/// users are `google` and `microsoft` (local parts) followed by `google_user` and
/// `microsoft_user` (scenario lines: data sizes, faults).
pub fn two_tenant_scenario(
    google: &[String],
    microsoft: &[String],
    google_user: &str,
    microsoft_user: &str,
) -> String {
    let mut scenario = SCENARIO.split("[[tenant.user]]").next().unwrap().to_owned();
    for (index, id) in google.iter().enumerate() {
        scenario.push_str(&format!(
            "[[tenant.user]]\nemail = \"{id}@globex.example\"\nadmin = {}\n{google_user}\n",
            index == 0
        ));
    }
    let fabrikam = &SCENARIO[SCENARIO.find("[[tenant]]\nname = \"fabrikam\"").unwrap()..];
    scenario.push_str(fabrikam.split("[[tenant.user]]").next().unwrap());
    for id in microsoft {
        scenario.push_str(&format!(
            "[[tenant.user]]\nemail = \"{id}@fabrikam.example\"\n{microsoft_user}\n"
        ));
    }
    scenario
}

/// The tenants file for [`two_tenant_scenario`]'s members (member id = local part).
pub fn two_tenant_file(h: &Harness, google: &[String], microsoft: &[String]) -> String {
    let mut text = String::new();
    if let Some(admin) = google.first() {
        text.push_str(&format!(
            "[[companies]]\nid = \"globex\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\n\
             settings = {{ permission_given = true, email_authorized = true, calendar_authorized = true }}\n\
             credentials = {{ service_account_key_file = \"{}\", subject = \"{admin}@globex.example\" }}\n\n",
            h.dir.path().join("globex-service-account.json").display()
        ));
    }
    for id in google {
        text.push_str(&format!(
            "[[companies.members]]\nid = \"{id}\"\nemail = \"{id}@globex.example\"\n\n"
        ));
    }
    if !microsoft.is_empty() {
        text.push_str(
            "[[companies]]\nid = \"fabrikam\"\nprovider = \"microsoft_365\"\nconnection_mode = \"company_wide\"\n\
             settings = { permission_given = true, email_authorized = true, calendar_authorized = true }\n\
             credentials = { tenant_id = \"0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9\", client_id = \"aa11bb22-cc33-4d44-8e55-ff6677889900\", client_secret_env = \"FABRIKAM_SECRET\" }\n\n",
        );
    }
    for id in microsoft {
        text.push_str(&format!(
            "[[companies.members]]\nid = \"{id}\"\nemail = \"{id}@fabrikam.example\"\n\n"
        ));
    }
    text
}

/// `count` ids `{prefix}00`, `{prefix}01`, …
pub fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:02}")).collect()
}

/// Google and Microsoft tenants whose members connect one by one (our OAuth clients), one
/// member per member-level answer. Faults on API calls are here; faults at the token
/// endpoint are added once the members have connected (they would refuse the code
/// exchange of the connect flow too).
pub const USER_BY_USER_SCENARIO: &str =
    include_str!("../../fixtures/e2e/user-by-user-scenario.toml");

/// The tenants file of [`USER_BY_USER_SCENARIO`], plus a company whose permission is not
/// given and one without a provider (the reasons settings give).
pub const USER_BY_USER_TENANTS: &str = include_str!("../../fixtures/e2e/user-by-user-tenants.toml");
