//! Reading `datacap status --format json` reports: one member, its reasons, every reason
//! seen.

use serde_json::Value;

/// `member` of `company` in a status report.
pub fn member_status<'a>(status: &'a Value, company: &str, member: &str) -> &'a Value {
    let company = status["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == company)
        .unwrap_or_else(|| panic!("company {company}"));
    company["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == member)
        .unwrap_or_else(|| panic!("member {member}"))
}

/// The (email, calendar) reasons of `member` of `company`.
pub fn reasons(status: &Value, company: &str, member: &str) -> (String, String) {
    let member = member_status(status, company, member);
    (
        member["email"]["reason"].as_str().unwrap().to_owned(),
        member["calendar"]["reason"].as_str().unwrap().to_owned(),
    )
}

/// The microphone icon's reason of `member` of `company`.
pub fn capture_reason(status: &Value, company: &str, member: &str) -> String {
    member_status(status, company, member)["capture"]["reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Asserts that each of `members` of `company` has the (email, calendar) reasons
/// `expected`; `why` ends the failure message.
pub fn assert_reasons(
    status: &Value,
    company: &str,
    members: &[String],
    expected: (&str, &str),
    why: &str,
) {
    for member in members {
        assert_eq!(
            reasons(status, company, member),
            (expected.0.to_owned(), expected.1.to_owned()),
            "{company}/{member}{why}"
        );
    }
}

pub fn email_reason(status: &Value, company: &str, member: &str) -> String {
    reasons(status, company, member).0
}

/// Every reason (email, calendar and capture) of every member in a status report.
pub fn reasons_seen(status: &Value) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for company in status["companies"].as_array().unwrap() {
        for member in company["members"].as_array().unwrap() {
            for icon in ["capture", "email", "calendar"] {
                if let Some(reason) = member[icon]["reason"].as_str() {
                    seen.insert(reason.to_owned());
                }
            }
        }
    }
    seen
}
