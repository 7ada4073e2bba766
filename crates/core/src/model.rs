//! The domain vocabulary of STATUS_MODEL.md: providers, connection modes, channels,
//! outcomes, colours, reasons and banners, plus the settings the classifier reads.
//!
//! Every enum here is public API: its `snake_case` spelling is what admins query from the
//! database and what `datacap classify` reads and writes, so each has one `as_str` and one
//! `parse` that agree with serde.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Declares a closed, `snake_case` enum with `ALL`, `as_str` and `parse`.
macro_rules! closed_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The public, `snake_case` spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// Parses the public spelling; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

closed_enum! {
    /// The email and calendar provider a company connected.
    pub enum Provider {
        GoogleWorkspace => "google_workspace",
        Microsoft365 => "microsoft_365",
        /// The company has not connected a provider.
        None => "none",
    }
}

impl Provider {
    /// The name admins see ("Google Workspace", "Microsoft 365").
    pub const fn display_name(self) -> &'static str {
        match self {
            Provider::GoogleWorkspace => "Google Workspace",
            Provider::Microsoft365 => "Microsoft 365",
            Provider::None => "your email and calendar provider",
        }
    }
}

closed_enum! {
    /// How the company connected its provider.
    pub enum ConnectionMode {
        /// An admin granted access for the whole company (Google domain-wide delegation,
        /// Microsoft admin consent for an app-only client).
        CompanyWide => "company_wide",
        /// Each member signs in and grants access to their own mailbox and calendar.
        UserByUser => "user_by_user",
    }
}

closed_enum! {
    /// A user-by-user member's own grant.
    pub enum MemberConnection {
        Connected => "connected",
        NotConnected => "not_connected",
        Invalid => "invalid",
    }
}

closed_enum! {
    /// A channel that is imported from the provider; attempts belong to one of these.
    pub enum Channel {
        Email => "email",
        Calendar => "calendar",
    }
}

closed_enum! {
    /// One of the three icons per member on the Team members page.
    pub enum Icon {
        /// The microphone: the member's overall data capture.
        Capture => "capture",
        Email => "email",
        Calendar => "calendar",
    }
}

impl From<Channel> for Icon {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::Email => Icon::Email,
            Channel::Calendar => Icon::Calendar,
        }
    }
}

closed_enum! {
    /// The closed set of import attempt outcomes; connectors map every provider answer to one.
    pub enum Outcome {
        Success => "success",
        NotAuthorized => "not_authorized",
        GrantInvalid => "grant_invalid",
        AccessDenied => "access_denied",
        MailboxUnavailable => "mailbox_unavailable",
        CredentialRejected => "credential_rejected",
        RateLimited => "rate_limited",
        ProviderError => "provider_error",
        NetworkError => "network_error",
    }
}

impl Outcome {
    /// `rate_limited`, `provider_error` and `network_error` are transient: they say nothing
    /// about settings and only turn red when they persist.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Outcome::RateLimited | Outcome::ProviderError | Outcome::NetworkError
        )
    }
}

closed_enum! {
    /// An icon's colour. Declared from best to worst.
    pub enum Color {
        Gray => "gray",
        Green => "green",
        Yellow => "yellow",
        Red => "red",
    }
}

impl Color {
    /// Higher is worse: red > yellow > green > gray.
    pub const fn severity(self) -> u8 {
        match self {
            Color::Gray => 0,
            Color::Green => 1,
            Color::Yellow => 2,
            Color::Red => 3,
        }
    }
}

closed_enum! {
    /// Why an icon has its colour. Declared in STATUS_MODEL.md's tie-break order: among
    /// reasons of the same colour, the one declared first wins.
    pub enum Reason {
        ProviderNotConnected => "provider_not_connected",
        CompanyPermissionMissing => "company_permission_missing",
        EmailNotAuthorized => "email_not_authorized",
        CalendarNotAuthorized => "calendar_not_authorized",
        MemberNotConnected => "member_not_connected",
        MemberConnectionInvalid => "member_connection_invalid",
        SeatMissing => "seat_missing",
        CompanyCalendarImportDisabled => "company_calendar_import_disabled",
        CompanyNonRecordedImportDisabled => "company_non_recorded_import_disabled",
        MailboxUnavailable => "mailbox_unavailable",
        AppCredentialInvalid => "app_credential_invalid",
        ProviderPermissionDenied => "provider_permission_denied",
        TechnicalFailure => "technical_failure",
        ImportStalled => "import_stalled",
        Importing => "importing",
        AwaitingFirstImport => "awaiting_first_import",
        Disabled => "disabled",
    }
}

impl Reason {
    /// Every reason has exactly one colour.
    pub const fn color(self) -> Color {
        match self {
            Reason::ProviderNotConnected
            | Reason::CompanyPermissionMissing
            | Reason::EmailNotAuthorized
            | Reason::CalendarNotAuthorized
            | Reason::MemberNotConnected
            | Reason::MemberConnectionInvalid
            | Reason::SeatMissing
            | Reason::CompanyCalendarImportDisabled
            | Reason::CompanyNonRecordedImportDisabled
            | Reason::MailboxUnavailable => Color::Yellow,
            Reason::AppCredentialInvalid
            | Reason::ProviderPermissionDenied
            | Reason::TechnicalFailure
            | Reason::ImportStalled => Color::Red,
            Reason::Importing => Color::Green,
            Reason::AwaitingFirstImport | Reason::Disabled => Color::Gray,
        }
    }

    /// Position in the tie-break order (lower wins among equal colours).
    pub const fn precedence(self) -> u8 {
        self as u8
    }

    /// True when `self` is a worse status than `other`: worse colour first, then the
    /// tie-break order.
    pub const fn is_worse_than(self, other: Reason) -> bool {
        let (mine, theirs) = (self.color().severity(), other.color().severity());
        mine > theirs || (mine == theirs && self.precedence() < other.precedence())
    }
}

closed_enum! {
    /// A company-level banner above the Team members page, in display order.
    pub enum BannerCode {
        ProviderNotConnected => "provider_not_connected",
        CompanyPermissionMissing => "company_permission_missing",
        EmailNotAuthorized => "email_not_authorized",
        CalendarNotAuthorized => "calendar_not_authorized",
        MembersNotConnected => "members_not_connected",
        MembersConnectionInvalid => "members_connection_invalid",
        MembersMailboxUnavailable => "members_mailbox_unavailable",
        MembersSeatMissing => "members_seat_missing",
        MembersTechnicalProblem => "members_technical_problem",
    }
}

impl BannerCode {
    /// The banner's colour.
    pub const fn color(self) -> Color {
        match self {
            BannerCode::MembersTechnicalProblem => Color::Red,
            _ => Color::Yellow,
        }
    }
}

/// The company's provider connection and import settings (STATUS_MODEL.md, "Company").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompanySettings {
    pub provider: Provider,
    pub connection_mode: ConnectionMode,
    /// The company's own import permission on its provider settings page.
    pub permission_given: bool,
    /// Company-wide only: the provider grant covers mail.
    pub email_authorized: bool,
    /// Company-wide only: the provider grant covers calendars.
    pub calendar_authorized: bool,
    pub import_email: bool,
    pub import_calendar: bool,
    pub import_non_recorded_meetings: bool,
}

/// A member's seat and import settings (STATUS_MODEL.md, "Member").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberSettings {
    pub has_recording_seat: bool,
    pub recording_enabled: bool,
    pub email_import: bool,
    pub calendar_import: bool,
    pub import_non_recorded_meetings: bool,
    /// The member's own grant; only read for user-by-user companies, where `None` is
    /// treated as `not_connected`.
    pub connection: Option<MemberConnection>,
}

impl CompanySettings {
    /// A company set up to import both channels from `provider`: its permission given,
    /// mail and calendars authorized, meetings that are not recorded left out. The
    /// company that tests, fixtures and the bench start from and change a field of.
    pub const fn importing(provider: Provider, connection_mode: ConnectionMode) -> Self {
        CompanySettings {
            provider,
            connection_mode,
            permission_given: true,
            email_authorized: true,
            calendar_authorized: true,
            import_email: true,
            import_calendar: true,
            import_non_recorded_meetings: false,
        }
    }
}

impl MemberSettings {
    /// A member importing both channels, with a recording seat and recording on, meetings
    /// that are not recorded left out, and `connection` as their own grant: the member
    /// that tests, fixtures and the bench start from and change a field of.
    pub const fn importing(connection: Option<MemberConnection>) -> Self {
        MemberSettings {
            has_recording_seat: true,
            recording_enabled: true,
            email_import: true,
            calendar_import: true,
            import_non_recorded_meetings: false,
            connection,
        }
    }
}

/// What the classifier needs to know of one import attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptSummary {
    pub channel: Channel,
    pub at: OffsetDateTime,
    pub outcome: Outcome,
}

/// Configurable thresholds; `Thresholds::default()` gives STATUS_MODEL.md's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// A run of this many transient outcomes turns a channel red (at least 1).
    pub red_after_consecutive_failures: u32,
    /// A channel whose latest attempt is older than this is stalled (at least 1 s).
    pub stall_after: time::Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            red_after_consecutive_failures: 3,
            stall_after: time::Duration::hours(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde, `as_str` and `parse` agree on every public spelling.
    fn check_spellings<T>(
        all: &[T],
        as_str: impl Fn(&T) -> &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        for value in all {
            let text = as_str(value);
            let json = serde_json::to_string(value).expect("serialize");
            assert_eq!(json, format!("\"{text}\""));
            let back: T = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(&back, value);
            assert_eq!(parse(text).as_ref(), Some(value));
        }
    }

    #[test]
    fn public_spellings_agree() {
        check_spellings(Provider::ALL, |v| v.as_str(), Provider::parse);
        check_spellings(ConnectionMode::ALL, |v| v.as_str(), ConnectionMode::parse);
        check_spellings(
            MemberConnection::ALL,
            |v| v.as_str(),
            MemberConnection::parse,
        );
        check_spellings(Channel::ALL, |v| v.as_str(), Channel::parse);
        check_spellings(Icon::ALL, |v| v.as_str(), Icon::parse);
        check_spellings(Outcome::ALL, |v| v.as_str(), Outcome::parse);
        check_spellings(Color::ALL, |v| v.as_str(), Color::parse);
        check_spellings(Reason::ALL, |v| v.as_str(), Reason::parse);
        check_spellings(BannerCode::ALL, |v| v.as_str(), BannerCode::parse);
        assert_eq!(Provider::Microsoft365.as_str(), "microsoft_365");
        assert_eq!(Reason::ALL.len(), 17);
        assert_eq!(Outcome::ALL.len(), 9);
        assert_eq!(BannerCode::ALL.len(), 9);
    }
}
