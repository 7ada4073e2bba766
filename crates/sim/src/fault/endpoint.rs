//! Where a fault applies: the endpoint a request hit, and the selectors a scenario or a
//! control request names.

use serde::Deserialize;

/// Where a fault applies. `Api` is every data endpoint (not token, not authorize).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointSel {
    /// Every endpoint.
    Any,
    /// Token endpoint.
    Token,
    /// Authorize endpoint.
    Authorize,
    /// Every data endpoint.
    Api,
    /// Gmail (all calls).
    Gmail,
    /// Gmail `history.list` only.
    GmailHistory,
    /// Calendar `events.list`.
    Calendar,
    /// Directory `users.list`.
    Directory,
    /// Graph `/users`.
    GraphUsers,
    /// Graph mail delta.
    GraphMail,
    /// Graph calendarView delta.
    GraphCalendar,
    /// Mail and calendar calls (either provider).
    Mailbox,
}

/// The concrete endpoint a request hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Token,
    Authorize,
    GmailProfile,
    GmailMessages,
    GmailMessage,
    GmailHistory,
    CalendarEvents,
    Directory,
    GraphUsers,
    /// Graph `/me` (delegated tokens only).
    GraphMe,
    GraphMail,
    GraphCalendar,
}

impl Endpoint {
    /// The stats key of this endpoint.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Authorize => "authorize",
            Endpoint::GmailProfile => "gmail.profile",
            Endpoint::GmailMessages => "gmail.messages.list",
            Endpoint::GmailMessage => "gmail.messages.get",
            Endpoint::GmailHistory => "gmail.history.list",
            Endpoint::CalendarEvents => "calendar.events.list",
            Endpoint::Directory => "directory.users.list",
            Endpoint::GraphUsers => "graph.users",
            Endpoint::GraphMe => "graph.me",
            Endpoint::GraphMail => "graph.messages.delta",
            Endpoint::GraphCalendar => "graph.calendarView.delta",
        }
    }

    fn is_api(self) -> bool {
        !matches!(self, Endpoint::Token | Endpoint::Authorize)
    }

    fn is_mailbox(self) -> bool {
        matches!(
            self,
            Endpoint::GmailProfile
                | Endpoint::GmailMessages
                | Endpoint::GmailMessage
                | Endpoint::GmailHistory
                | Endpoint::CalendarEvents
                | Endpoint::GraphMail
                | Endpoint::GraphCalendar
        )
    }
}

impl EndpointSel {
    /// Whether a request to `endpoint` is selected.
    pub(crate) fn matches(self, endpoint: Endpoint) -> bool {
        match self {
            EndpointSel::Any => true,
            EndpointSel::Token => endpoint == Endpoint::Token,
            EndpointSel::Authorize => endpoint == Endpoint::Authorize,
            EndpointSel::Api => endpoint.is_api(),
            EndpointSel::Gmail => matches!(
                endpoint,
                Endpoint::GmailProfile
                    | Endpoint::GmailMessages
                    | Endpoint::GmailMessage
                    | Endpoint::GmailHistory
            ),
            EndpointSel::GmailHistory => endpoint == Endpoint::GmailHistory,
            EndpointSel::Calendar => endpoint == Endpoint::CalendarEvents,
            EndpointSel::Directory => endpoint == Endpoint::Directory,
            EndpointSel::GraphUsers => {
                matches!(endpoint, Endpoint::GraphUsers | Endpoint::GraphMe)
            }
            EndpointSel::GraphMail => endpoint == Endpoint::GraphMail,
            EndpointSel::GraphCalendar => endpoint == Endpoint::GraphCalendar,
            EndpointSel::Mailbox => endpoint.is_mailbox(),
        }
    }
}
