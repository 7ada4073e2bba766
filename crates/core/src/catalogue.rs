//! The message catalogue: what every reason and banner tells an admin, and who can fix it.
//!
//! Kept in one place so the database, `datacap status`, `datacap classify`, the Team
//! members page and the API all say the same words. Provider display names and counts are
//! filled in here; nothing else formats these sentences.

use crate::model::{BannerCode, Provider, Reason};

/// An admin-facing explanation: what is wrong, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub message: String,
    pub resolution: String,
}

impl Text {
    fn new(message: impl Into<String>, resolution: impl Into<String>) -> Text {
        Text {
            message: message.into(),
            resolution: resolution.into(),
        }
    }
}

/// Google Workspace admins fix scopes in domain-wide delegation; say so only to them.
fn delegation_hint(provider: Provider, what: &str) -> String {
    match provider {
        Provider::GoogleWorkspace => format!(
            "; for Google Workspace, a super admin adds the {what} scope to the app's domain-wide delegation in the Google admin console"
        ),
        Provider::Microsoft365 => format!(
            "; for Microsoft 365, an admin grants the app's {what} permission and consents for the organisation in Entra ID"
        ),
        Provider::None => String::new(),
    }
}

/// The message and resolution for an icon with this reason.
pub fn reason_text(reason: Reason, provider: Provider) -> Text {
    let name = provider.display_name();
    match reason {
        Reason::ProviderNotConnected => Text::new(
            "Nothing is imported because no email and calendar provider is connected.",
            "A company admin connects Google Workspace or Microsoft 365 on the company's provider settings page.",
        ),
        Reason::CompanyPermissionMissing => Text::new(
            format!(
                "Permission to import was not given on the {name} page of the company settings."
            ),
            format!(
                "A company admin sets the import settings on the {name} page of the company settings."
            ),
        ),
        Reason::EmailNotAuthorized => Text::new(
            format!("The {name} grant does not allow reading mail, so email is not imported."),
            format!(
                "A company admin fixes the import settings (scopes) on the {name} page{}.",
                delegation_hint(provider, "mail")
            ),
        ),
        Reason::CalendarNotAuthorized => Text::new(
            format!(
                "The {name} grant does not allow reading calendars, so the calendar is not imported."
            ),
            format!(
                "A company admin fixes the import settings (scopes) on the {name} page{}.",
                delegation_hint(provider, "calendar")
            ),
        ),
        Reason::MemberNotConnected => Text::new(
            format!("This member has not yet connected their own {name} account."),
            format!(
                "The member signs in with {name} from their connect link; an admin can send them a reminder."
            ),
        ),
        Reason::MemberConnectionInvalid => Text::new(
            format!(
                "The member's own {name} connection was revoked, has expired or lacks the access datacap needs."
            ),
            format!(
                "The member connects to {name} again from their connect link and grants every requested permission."
            ),
        ),
        Reason::SeatMissing => Text::new(
            "Recording is switched on for this member, but they have no recording seat.",
            "A company admin assigns the member a recording seat, or switches recording off for them.",
        ),
        Reason::CompanyCalendarImportDisabled => Text::new(
            "The member asked for their calendar to be imported, but calendar import is switched off for the company.",
            "A company admin switches on calendar import in the company settings, or the member switches off their calendar import.",
        ),
        Reason::CompanyNonRecordedImportDisabled => Text::new(
            "The member asked for meetings that are not recorded to be imported, but the company does not allow it.",
            "A company admin allows importing non-recorded meetings in the company settings, or the member switches that setting off.",
        ),
        Reason::MailboxUnavailable => Text::new(
            format!(
                "{name} has no usable mailbox or calendar for this member: it is unlicensed, suspended, disabled, missing or hosted on-premises."
            ),
            format!(
                "A {name} admin gives the member an active, licensed mailbox; if the member has left, a company admin removes them from the team."
            ),
        ),
        Reason::AppCredentialInvalid => Text::new(
            format!(
                "{name} refused datacap's own credential: the client secret or service-account key is wrong, expired or deleted, or the host clock is off."
            ),
            "The datacap operator rotates the credential in the tenants file and checks the host clock; imports resume at the next poll.",
        ),
        Reason::ProviderPermissionDenied => Text::new(
            format!(
                "datacap is authorized, but a {name} admin policy refuses access to this member's data."
            ),
            format!(
                "A {name} admin allows the app for this member (application access policy, conditional access or API access for the member's unit); if that does not clear it, an engineer traces the attempt id in the logs."
            ),
        ),
        Reason::TechnicalFailure => Text::new(
            format!(
                "Imports from {name} keep failing because of a technical problem (rate limits, provider errors or the network)."
            ),
            "No setting needs changing; an engineer traces the last attempt id in the logs.",
        ),
        Reason::ImportStalled => Text::new(
            "No import has run for this channel within the expected time.",
            "An engineer checks that the datacap daemon is running and healthy, then traces the member's last attempt id in the logs.",
        ),
        Reason::Importing => Text::new(
            format!("Imports from {name} are working."),
            "Nothing to do.",
        ),
        Reason::AwaitingFirstImport => Text::new(
            "The first import has not completed yet.",
            "Nothing to do: the first import runs at the next poll.",
        ),
        Reason::Disabled => Text::new(
            "Import is switched off for this in the member's or the company's settings.",
            "Nothing to do, unless it should be imported: then switch the import on in the settings.",
        ),
    }
}

/// "1 member" / "3 members".
fn members(count: u32) -> String {
    if count == 1 {
        "1 member".to_owned()
    } else {
        format!("{count} members")
    }
}

/// The verb form that agrees with `count`.
fn agree(count: u32, singular: &'static str, plural: &'static str) -> &'static str {
    if count == 1 { singular } else { plural }
}

/// The message and resolution for a banner with its count.
pub fn banner_text(code: BannerCode, provider: Provider, count: u32) -> Text {
    let name = provider.display_name();
    let who = members(count);
    match code {
        BannerCode::ProviderNotConnected => Text::new(
            format!(
                "Nothing is imported for {who} because no email and calendar provider is connected."
            ),
            "Connect Google Workspace or Microsoft 365 on the company's provider settings page.",
        ),
        BannerCode::CompanyPermissionMissing => Text::new(
            format!(
                "Permission was not given on the {name} page of the company settings, so nothing is imported for {who}."
            ),
            format!("Set the import settings on the {name} page of the company settings."),
        ),
        BannerCode::EmailNotAuthorized => Text::new(
            format!(
                "The {name} grant does not allow reading mail, so email is not imported for {who}."
            ),
            format!(
                "Fix the import settings (scopes) on the {name} page{}.",
                delegation_hint(provider, "mail")
            ),
        ),
        BannerCode::CalendarNotAuthorized => Text::new(
            format!(
                "The {name} grant does not allow reading calendars, so calendars are not imported for {who}."
            ),
            format!(
                "Fix the import settings (scopes) on the {name} page{}.",
                delegation_hint(provider, "calendar")
            ),
        ),
        BannerCode::MembersNotConnected => Text::new(
            format!(
                "{who} {} one by one and {} not connected to {name} yet.",
                agree(count, "connects", "connect"),
                agree(count, "has", "have")
            ),
            "Send them a reminder to connect.",
        ),
        BannerCode::MembersConnectionInvalid => Text::new(
            format!(
                "The {name} connection of {who} was revoked, has expired or lacks the access datacap needs."
            ),
            format!("Ask them to connect to {name} again."),
        ),
        BannerCode::MembersMailboxUnavailable => Text::new(
            format!("{name} has no usable mailbox or calendar for {who}."),
            format!(
                "A {name} admin licenses or re-enables their mailboxes; remove members who have left."
            ),
        ),
        BannerCode::MembersSeatMissing => Text::new(
            format!(
                "{who} {} recording switched on but no recording seat.",
                agree(count, "has", "have")
            ),
            "Assign them recording seats, or switch their recording off.",
        ),
        BannerCode::MembersTechnicalProblem => Text::new(
            format!(
                "Email or calendar data of {who} is not imported because of a technical problem."
            ),
            format!(
                "It can come from permissions set at {name}{}; if that does not clear it, engineers trace it from the attempt id in the logs.",
                match provider {
                    Provider::GoogleWorkspace =>
                        " (an admin must fix the app's settings in the Google admin console)",
                    Provider::Microsoft365 =>
                        " (an admin checks the app's consent and access policies in Entra ID and Exchange)",
                    Provider::None => "",
                }
            ),
        ),
    }
}

/// A reason's short human title, the label the Team members page shows beside an icon
/// and in its filter ("Imports keep failing", never `technical_failure`).
pub fn reason_title(reason: Reason) -> &'static str {
    match reason {
        Reason::ProviderNotConnected => "No provider connected",
        Reason::CompanyPermissionMissing => "Permission not given",
        Reason::EmailNotAuthorized => "Mail access not granted",
        Reason::CalendarNotAuthorized => "Calendar access not granted",
        Reason::MemberNotConnected => "Not connected yet",
        Reason::MemberConnectionInvalid => "Connection broken",
        Reason::SeatMissing => "No recording seat",
        Reason::CompanyCalendarImportDisabled => "Calendar import off for the company",
        Reason::CompanyNonRecordedImportDisabled => "Unrecorded meetings not allowed",
        Reason::MailboxUnavailable => "No usable mailbox",
        Reason::AppCredentialInvalid => "App credential refused",
        Reason::ProviderPermissionDenied => "Blocked by a provider policy",
        Reason::TechnicalFailure => "Imports keep failing",
        Reason::ImportStalled => "Imports stalled",
        Reason::Importing => "Importing",
        Reason::AwaitingFirstImport => "Waiting for the first import",
        Reason::Disabled => "Switched off",
    }
}

/// For a red reason, the step that is a company admin's: what to check at the provider
/// before handing the problem on (the reason's resolution is the engineer's step). `None`
/// for the other colours, whose resolution already is the admin's.
pub fn admin_step(reason: Reason, provider: Provider) -> Option<String> {
    let name = provider.display_name();
    let text = match (reason, provider) {
        (Reason::AppCredentialInvalid, Provider::GoogleWorkspace) => {
            "In the Google admin console, check that datacap's service account still has its domain-wide delegation (Security › Access and data control › API controls); the key itself is the operator's.".to_owned()
        }
        (Reason::AppCredentialInvalid, Provider::Microsoft365) => {
            "In Entra ID, check that datacap's app registration still exists and that its admin consent was not removed; the client secret itself is the operator's.".to_owned()
        }
        (Reason::AppCredentialInvalid, Provider::None) => {
            "Nothing to check on your side: the app's own credential is the operator's.".to_owned()
        }
        (Reason::ProviderPermissionDenied, Provider::GoogleWorkspace) => {
            "In the Google admin console, check that API access is allowed for this member's organisational unit and that no Gmail or Calendar policy blocks the app.".to_owned()
        }
        (Reason::ProviderPermissionDenied, _) => format!(
            "At {name}, check the application access policy and the conditional access rules that apply to this member."
        ),
        (Reason::TechnicalFailure, _) => format!(
            "Check {name}'s service status page for an outage; no setting of yours needs changing."
        ),
        (Reason::ImportStalled, _) => format!(
            "Nothing to check at {name}: imports stopped on datacap's side."
        ),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod title_tests {
    use super::*;
    use crate::model::Color;

    #[test]
    fn every_reason_has_its_own_human_title() {
        let mut seen = std::collections::BTreeSet::new();
        for &reason in Reason::ALL {
            let title = reason_title(reason);
            assert!(!title.contains('_'), "{title}");
            assert!(title.starts_with(|c: char| c.is_uppercase()), "{title}");
            assert!(seen.insert(title), "{title} twice");
        }
    }

    #[test]
    fn red_reasons_and_only_they_have_an_admin_step() {
        for &reason in Reason::ALL {
            for provider in [
                Provider::GoogleWorkspace,
                Provider::Microsoft365,
                Provider::None,
            ] {
                let step = admin_step(reason, provider);
                assert_eq!(step.is_some(), reason.color() == Color::Red, "{reason:?}");
                if let Some(step) = step {
                    assert!(!step.contains("tenants file"), "not an admin's: {step}");
                    assert!(!step.contains("logs"), "not an admin's: {step}");
                }
            }
        }
    }
}
