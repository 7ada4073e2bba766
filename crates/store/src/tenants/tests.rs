//! The tenants file's parsing and validation, through `parse_tenants` only: good files,
//! and bad ones checked for every problem with its line and field.

use super::*;

const GOOD: &str = include_str!("../../../../tests/fixtures/store/tenants-good.toml");

fn check_error(text: &str, expected: &str) {
    let error = parse_tenants(text).unwrap_err();
    assert_eq!(error.to_string(), expected, "for input:\n{text}");
}

#[test]
fn every_problem_is_listed_in_file_order() {
    let text = GOOD
        .replace("\"google_workspace\"", "\"gmail\"")
        .replace("seat = true", "seat = \"yes\"\nsaet = true")
        .replace("id = \"bob\"", "id = \"ana\"")
        .replace("bob@acme.test", "bob-at-acme")
        .replace("subject = ", "client_secret = ");
    check_error(
        &format!("{text}\n[extra]\nx = 1\n"),
        "5: companies[0].provider: unknown variant `gmail`, expected one of `google_workspace`, `microsoft_365`, `none`\n\
         8: companies[0].credentials.client_secret: inline secrets are not allowed; reference it with client_secret_file = \"/path\" or client_secret_env = \"VAR\"\n\
         13: companies[0].members[0].seat: invalid type: string \"yes\", expected a boolean\n\
         14: companies[0].members[0].saet: unknown field `saet`, expected one of `id`, `email`, `aliases`, `active`, `seat`, `recording_enabled`, `email_import`, `calendar_import`, `import_non_recorded_meetings`\n\
         18: companies[0].members[1].id: member id \"ana\" appears twice\n\
         19: companies[0].members[1].email: \"bob-at-acme\" is not an email address\n\
         21: extra: unknown field `extra`, expected `companies`",
    );
}

#[test]
fn a_missing_field_is_reported_once() {
    check_error(
        "[[companies]]\nprovider = \"none\"\nconnection_mode = \"company_wide\"\n\n[[companies]]\nid = \"b\"\nprovider = 3\nconnection_mode = \"company_wide\"\n",
        "1: companies[0]: missing field `id`\n7: companies[1].provider: wanted string or table",
    );
}

const HOOKS: &str = include_str!("../../../../tests/fixtures/store/tenants-webhooks.toml");

#[test]
fn webhooks_are_read_with_their_secret_reference_and_events() {
    let tenants = parse_tenants(&format!("{GOOD}{HOOKS}")).unwrap();
    let hooks = &tenants.companies[0].webhooks;
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0].id, "ops");
    assert_eq!(
        hooks[0].secret,
        SecretRef::File("/etc/datacap/acme-hook.secret".to_owned())
    );
    assert_eq!(hooks[0].events, EventType::ALL);
    assert_eq!(
        hooks[1].secret,
        SecretRef::Env("ACME_CHAT_HOOK_SECRET".to_owned())
    );
    assert_eq!(hooks[1].events, [EventType::CompanyBannerChanged]);
    // Members after the webhooks still belong to the company.
    assert_eq!(tenants.companies[0].members.len(), 2);
}

#[test]
fn bad_webhooks_name_their_line_and_field() {
    let check = |from: &str, to: &str, expected: &str| {
        check_error(&format!("{GOOD}{}", HOOKS.replace(from, to)), expected);
    };
    check(
        "https://hooks.acme.test/datacap",
        "ftp://hooks.acme.test/datacap",
        "22: companies[0].webhooks[0].url: \"ftp://hooks.acme.test/datacap\" is not an http:// or https:// url",
    );
    check(
        "https://hooks.acme.test/datacap",
        "https://user:pw@hooks.acme.test/",
        "22: companies[0].webhooks[0].url: must not carry a user or password; the endpoint authenticates us by the signature",
    );
    check(
        "https://hooks.acme.test/datacap",
        "https:///nohost",
        "22: companies[0].webhooks[0].url: \"https:///nohost\" has no host",
    );
    check(
        "secret_file = \"/etc/datacap/acme-hook.secret\"\n",
        "",
        "20: companies[0].webhooks[0]: missing secret: set secret_file = \"/path\" or secret_env = \"VAR\" (a whsec_ secret)",
    );
    check(
        "secret_file = \"/etc/datacap/acme-hook.secret\"",
        "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
        "20: companies[0].webhooks[0]: missing secret: set secret_file = \"/path\" or secret_env = \"VAR\" (a whsec_ secret)\n\
         23: companies[0].webhooks[0].secret: inline secrets are not allowed; reference it with secret_file = \"/path\" or secret_env = \"VAR\"",
    );
    check(
        "secret_env = \"ACME_CHAT_HOOK_SECRET\"",
        "secret_env = \"whsec_abc\"",
        "28: companies[0].webhooks[1].secret_env: must name an environment variable (A-Z, 0-9, _), got a value that looks like a secret; use secret_env = \"NAME_OF_VAR\"",
    );
    check(
        "[\"company.banner_changed\"]",
        "[\"company.banner_changed\", \"member.deleted\"]",
        "29: companies[0].webhooks[1].events: unknown event `member.deleted`, expected one of `member.status_changed`, `company.banner_changed`",
    );
    check(
        "[\"company.banner_changed\"]",
        "[]",
        "29: companies[0].webhooks[1].events: must name at least one event",
    );
    check(
        "id = \"chat\"",
        "id = \"ops\"",
        "26: companies[0].webhooks[1].id: webhook id \"ops\" appears twice in this company",
    );
    check(
        "id = \"chat\"",
        "id = \"chat\"\nretries = 3",
        "27: companies[0].webhooks[1].retries: unknown field `retries`, expected one of `id`, `url`, `secret_file`, `secret_env`, `events`",
    );
}

#[test]
fn a_secret_value_never_appears_in_an_error() {
    let text = format!(
        "{GOOD}{}",
        HOOKS.replace(
            "secret_file = \"/etc/datacap/acme-hook.secret\"",
            "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\""
        )
    );
    let error = parse_tenants(&text).unwrap_err().to_string();
    assert!(!error.contains("MfKQ9r8"), "{error}");
}

#[test]
fn aliases_are_addresses_by_the_same_rules() {
    let with = |aliases: &str| {
        GOOD.replace(
            "email = \"ana@acme.test\"",
            &format!("email = \"ana@acme.test\"\naliases = {aliases}"),
        )
    };
    let tenants = parse_tenants(&with("[\"Ana.Lopez@acme.test\", \"ana@acme-old.test\"]")).unwrap();
    assert_eq!(
        tenants.companies[0].members[0].aliases,
        ["Ana.Lopez@acme.test", "ana@acme-old.test"]
    );
    assert!(
        parse_tenants(GOOD).unwrap().companies[0].members[1]
            .aliases
            .is_empty()
    );
    check_error(
        &with("[\"ana.lopez\"]"),
        "13: companies[0].members[0].aliases[0]: \"ana.lopez\" is not an email address",
    );
    check_error(
        &with("[\"ANA@acme.test\"]"),
        "13: companies[0].members[0].aliases[0]: alias \"ANA@acme.test\" is the member's own email",
    );
    // A colleague's address, or the same alias twice, would make two members of one
    // mailbox (the later of the two is named).
    check_error(
        &with("[\"a@acme.test\", \"Bob@acme.test\"]"),
        "19: companies[0].members[1].email: email \"bob@acme.test\" appears twice in this company",
    );
    check_error(
        &GOOD.replace(
            "email = \"bob@acme.test\"",
            "email = \"bob@acme.test\"\naliases = [\"ANA@acme.test\"]",
        ),
        "19: companies[0].members[1].aliases[0]: address \"ANA@acme.test\" appears twice in this company",
    );
    check_error(
        &with("[\"a@acme.test\", \"A@acme.test\"]"),
        "13: companies[0].members[0].aliases[1]: address \"A@acme.test\" appears twice in this company",
    );
    check_error(
        &with("\"a@acme.test\""),
        "13: companies[0].members[0].aliases: invalid type: string \"a@acme.test\", expected a sequence",
    );
}

#[test]
fn parses_a_good_file() {
    let tenants = parse_tenants(GOOD).unwrap();
    assert_eq!(tenants.companies.len(), 1);
    let acme = &tenants.companies[0];
    assert_eq!(acme.members.len(), 2);
    assert!(acme.settings.permission_given);
    assert!(acme.members[0].settings.has_recording_seat);
    assert!(acme.members[1].active);
}

#[test]
fn the_shipped_example_is_valid() {
    let text = include_str!("../../../../config/tenants.example.toml");
    let tenants = parse_tenants(text).unwrap();
    let ids: Vec<_> = tenants.companies.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["acme", "globex", "initech"]);
}

#[test]
fn errors_name_line_and_field() {
    check_error(
        &GOOD.replace("bob@acme.test", "bob-at-acme"),
        "18: companies[0].members[1].email: \"bob-at-acme\" is not an email address",
    );
    check_error(
        &GOOD.replace("\"google_workspace\"", "\"gmail\""),
        "5: companies[0].provider: unknown variant `gmail`, expected one of `google_workspace`, `microsoft_365`, `none`",
    );
    check_error(
        &GOOD.replace("id = \"bob\"", "id = \"ana\""),
        "17: companies[0].members[1].id: member id \"ana\" appears twice",
    );
    check_error(
        &GOOD.replace("subject = ", "client_secret = "),
        "8: companies[0].credentials.client_secret: inline secrets are not allowed; reference it with client_secret_file = \"/path\" or client_secret_env = \"VAR\"",
    );
    check_error(
        &GOOD.replace("seat = true", "seat = \"yes\""),
        "13: companies[0].members[0].seat: invalid type: string \"yes\", expected a boolean",
    );
    check_error(
        &GOOD.replace(
            "[[companies.members]]\nid = \"bob\"",
            "[[companies.members]]\nidd = \"bob\"",
        ),
        "16: companies[0].members[1]: missing field `id`\n17: companies[0].members[1].idd: unknown field `idd`, expected one of `id`, `email`, `aliases`, `active`, `seat`, `recording_enabled`, `email_import`, `calendar_import`, `import_non_recorded_meetings`",
    );
    check_error(
        "[[companies]]\nid = \"x\"\nprovider = ",
        "3: file: string values must be quoted, expected literal string",
    );
}
