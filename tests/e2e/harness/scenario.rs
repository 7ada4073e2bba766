//! The sim scenarios and the matching tenants files the end-to-end tests run: company-wide
//! Google and Microsoft tenants with one member per answer we check ([`SCENARIO`]),
//! user-by-user ones ([`USER_BY_USER_SCENARIO`]), and generated ones with many members.

use std::path::Path;

use super::Harness;

/// Google and Microsoft company-wide tenants with one member per answer we check.
pub const SCENARIO: &str = r#"
seed = 11

[[tenant]]
name = "globex"
provider = "google"
domain = "globex.example"

[tenant.service_account]
client_email = "datacap@globex-sim.iam.gserviceaccount.com"
client_id = "100000000000000000042"
public_key = "keys/FAKE-TEST-ONLY-google-service-account.pub.pem"
delegated_scopes = [
  "https://www.googleapis.com/auth/gmail.readonly",
  "https://www.googleapis.com/auth/calendar.readonly",
  "https://www.googleapis.com/auth/admin.directory.user.readonly",
]

[[tenant.user]]
email = "admin@globex.example"
admin = true
messages = 6
events = 3

[[tenant.user]]
email = "ada@globex.example"
messages = 9
events = 4

[[tenant.user]]
email = "nodwd@globex.example"
[[tenant.user.fault]]
fault = "delegation_unauthorized_client"

[[tenant.user]]
email = "policy@globex.example"
[[tenant.user.fault]]
fault = "domain_policy"

[[tenant.user]]
email = "unlicensed@globex.example"
licensed = false

[[tenant.user]]
email = "badsig@globex.example"
[[tenant.user.fault]]
fault = "invalid_jwt_signature"

[[tenant.user]]
email = "flaky@globex.example"
messages = 3
[[tenant.user.fault]]
fault = "server_error"

[[tenant]]
name = "fabrikam"
provider = "microsoft"
domain = "fabrikam.example"
tenant_id = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"

[tenant.app]
client_id = "aa11bb22-cc33-4d44-8e55-ff6677889900"
client_secret = "fabrikam-secret"
roles = ["User.Read.All", "Mail.Read", "Calendars.Read"]

[[tenant.user]]
email = "megan@fabrikam.example"
messages = 7
events = 2

[[tenant.user]]
email = "raop@fabrikam.example"
[[tenant.user.fault]]
fault = "application_access_policy"

[[tenant.user]]
email = "nolicence@fabrikam.example"
licensed = false
"#;

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
pub const USER_BY_USER_SCENARIO: &str = r#"
seed = 13

[[tenant]]
name = "initech"
provider = "google"
domain = "initech.example"

[tenant.oauth_client]
client_id = "initech-client.apps.googleusercontent.com"
client_secret = "initech-secret"

[[tenant.user]]
email = "peter@initech.example"
messages = 3
events = 1

[[tenant.user]]
email = "newbie@initech.example"

[[tenant.user]]
email = "revoked@initech.example"

[[tenant.user]]
email = "scopeless@initech.example"

[[tenant.user]]
email = "badclient@initech.example"

[[tenant.user]]
email = "policy@initech.example"
[[tenant.user.fault]]
fault = "domain_policy"

[[tenant.user]]
email = "nomail@initech.example"
[[tenant.user.fault]]
fault = "mailbox_not_enabled"

[[tenant.user]]
email = "flaky@initech.example"
messages = 2
[[tenant.user.fault]]
fault = "server_error"

[[tenant.user]]
email = "singer@initech.example"
messages = 1

[[tenant.user]]
email = "nonrec@initech.example"
messages = 1

[[tenant.user]]
email = "quiet@initech.example"

[[tenant]]
name = "contoso"
provider = "microsoft"
domain = "contoso.example"
tenant_id = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"

[tenant.app]
client_id = "cc11dd22-ee33-4f44-8a55-bb6677889900"
client_secret = "contoso-secret"
roles = []

[[tenant.user]]
email = "megan@contoso.example"
messages = 4
events = 2

[[tenant.user]]
email = "adele@contoso.example"

[[tenant.user]]
email = "rex@contoso.example"

[[tenant.user]]
email = "nora@contoso.example"

[[tenant.user]]
email = "sam@contoso.example"

[[tenant.user]]
email = "pat@contoso.example"
[[tenant.user.fault]]
fault = "application_access_policy"

[[tenant.user]]
email = "nolicence@contoso.example"
[[tenant.user.fault]]
fault = "mailbox_not_enabled"
"#;

/// The tenants file of [`USER_BY_USER_SCENARIO`], plus a company whose permission is not
/// given and one without a provider (the reasons settings give).
pub const USER_BY_USER_TENANTS: &str = r#"
[[companies]]
id = "initech"
provider = "google_workspace"
connection_mode = "user_by_user"
settings = { permission_given = true, import_calendar = @IMPORT_CALENDAR@ }
credentials = { client_id = "initech-client.apps.googleusercontent.com", client_secret_env = "INITECH_SECRET" }

[[companies.members]]
id = "peter"
email = "peter@initech.example"
seat = true
recording_enabled = true

[[companies.members]]
id = "newbie"
email = "newbie@initech.example"

[[companies.members]]
id = "revoked"
email = "revoked@initech.example"

[[companies.members]]
id = "scopeless"
email = "scopeless@initech.example"

[[companies.members]]
id = "badclient"
email = "badclient@initech.example"

[[companies.members]]
id = "policy"
email = "policy@initech.example"

[[companies.members]]
id = "nomail"
email = "nomail@initech.example"

[[companies.members]]
id = "flaky"
email = "flaky@initech.example"

[[companies.members]]
id = "singer"
email = "singer@initech.example"
recording_enabled = true

[[companies.members]]
id = "nonrec"
email = "nonrec@initech.example"
import_non_recorded_meetings = true

[[companies.members]]
id = "quiet"
email = "quiet@initech.example"
email_import = false
calendar_import = false

[[companies]]
id = "contoso"
provider = "microsoft_365"
connection_mode = "user_by_user"
settings = { permission_given = true }
credentials = { tenant_id = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", client_id = "cc11dd22-ee33-4f44-8a55-bb6677889900", client_secret_env = "CONTOSO_SECRET" }

[[companies.members]]
id = "megan"
email = "megan@contoso.example"

[[companies.members]]
id = "adele"
email = "adele@contoso.example"

[[companies.members]]
id = "rex"
email = "rex@contoso.example"

[[companies.members]]
id = "nora"
email = "nora@contoso.example"

[[companies.members]]
id = "sam"
email = "sam@contoso.example"

[[companies.members]]
id = "pat"
email = "pat@contoso.example"

[[companies.members]]
id = "nolicence"
email = "nolicence@contoso.example"

[[companies]]
id = "hooli"
provider = "microsoft_365"
connection_mode = "user_by_user"
settings = { permission_given = false }

[[companies.members]]
id = "gavin"
email = "gavin@hooli.example"

[[companies]]
id = "umbrella"
provider = "none"
connection_mode = "user_by_user"

[[companies.members]]
id = "alice"
email = "alice@umbrella.example"
"#;
