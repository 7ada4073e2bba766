//! Status derivation: what recomputing one member decides, given what the store holds.
//!
//! The classifier says which reason each icon has; this module says what that means for
//! the stored status: which attempt each icon points at (the microphone follows the worse
//! channel's attempt), since when it has held (`since` stays while colour and reason do),
//! which icons changed (a history row each), which changes are news (only a change of an
//! icon that was stored before: a member's first status is history, not news), and how
//! the company's banner counts move. The store only reads its rows, calls
//! [`derive_member`] and writes what it decided. Pure: `now` is an argument.

use time::OffsetDateTime;

use crate::classify::{MemberStatus, banner_for, classify_member};
use crate::model::{
    AttemptSummary, BannerCode, Channel, Color, CompanySettings, Icon, MemberSettings, Outcome,
    Reason, Thresholds,
};

/// How many banners a company has (the length of a banner delta).
pub const BANNER_COUNT: usize = BannerCode::ALL.len();

/// One of the member's recent attempts, as the store read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecentAttempt<'a> {
    pub id: &'a str,
    pub channel: Channel,
    pub finished_at: OffsetDateTime,
    pub outcome: Outcome,
}

/// An icon as the store holds it. `reason` and `color` are `None` when the stored text is
/// none of ours (a corrupt row reads as changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredIcon {
    pub color: Option<Color>,
    pub reason: Option<Reason>,
    pub since: OffsetDateTime,
}

/// What the stored icons of a member were before this recompute (`None`: no row yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredIcons {
    pub capture: Option<StoredIcon>,
    pub email: Option<StoredIcon>,
    pub calendar: Option<StoredIcon>,
}

impl StoredIcons {
    fn get(&self, icon: Icon) -> Option<&StoredIcon> {
        match icon {
            Icon::Capture => self.capture.as_ref(),
            Icon::Email => self.email.as_ref(),
            Icon::Calendar => self.calendar.as_ref(),
        }
    }
}

/// What the recompute decided for one icon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IconUpdate<'a> {
    pub icon: Icon,
    pub reason: Reason,
    /// Since when the icon has had this colour and reason.
    pub since: OffsetDateTime,
    /// The attempt that explains the icon (its channel's latest; for the microphone, the
    /// worse channel's).
    pub attempt_id: Option<&'a str>,
    /// Colour or reason differ from the stored icon (or there was none): a history row.
    pub changed: bool,
    /// A change of an icon that was stored before: news for subscribers.
    pub announce: bool,
}

/// What recomputing one member decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberUpdate<'a> {
    pub status: MemberStatus,
    /// Capture, email, calendar.
    pub icons: [IconUpdate<'a>; 3],
    /// How each banner's count moves (in [`BannerCode::ALL`]'s order); all zero for a
    /// member the banners do not count.
    pub banner_delta: [i64; BANNER_COUNT],
}

/// Recomputes one member: classifies `attempts` (both channels, any order) and compares
/// the answer with `stored`. `counted`: the member counts towards the company's banners.
pub fn derive_member<'a>(
    company: &CompanySettings,
    member: &MemberSettings,
    attempts: &[RecentAttempt<'a>],
    stored: &StoredIcons,
    counted: bool,
    now: OffsetDateTime,
    thresholds: &Thresholds,
) -> MemberUpdate<'a> {
    let summaries: Vec<AttemptSummary> = attempts
        .iter()
        .map(|attempt| AttemptSummary {
            channel: attempt.channel,
            at: attempt.finished_at,
            outcome: attempt.outcome,
        })
        .collect();
    let status = classify_member(company, member, &summaries, now, thresholds);
    let latest = |channel: Option<Channel>| {
        attempts
            .iter()
            .filter(|attempt| channel.is_none_or(|wanted| attempt.channel == wanted))
            .max_by_key(|attempt| attempt.finished_at)
            .map(|attempt| attempt.id)
    };
    // The microphone takes the worse channel's reason, so it points at that channel's
    // attempt (a later success of the other channel explains nothing).
    let capture_attempt = if status.capture == status.email {
        latest(Some(Channel::Email))
    } else if status.capture == status.calendar {
        latest(Some(Channel::Calendar))
    } else {
        latest(None)
    };
    let update = |icon: Icon, reason: Reason, attempt_id: Option<&'a str>| {
        let before = stored.get(icon);
        let unchanged = before.is_some_and(|before| {
            before.color == Some(reason.color()) && before.reason == Some(reason)
        });
        IconUpdate {
            icon,
            reason,
            since: match before {
                Some(before) if unchanged => before.since,
                _ => now,
            },
            attempt_id,
            changed: !unchanged,
            announce: !unchanged && before.is_some(),
        }
    };
    let icons = [
        update(Icon::Capture, status.capture, capture_attempt),
        update(Icon::Email, status.email, latest(Some(Channel::Email))),
        update(
            Icon::Calendar,
            status.calendar,
            latest(Some(Channel::Calendar)),
        ),
    ];
    // A member without a stored icon counts as awaiting its first import, as the full
    // recount reads it; seats never change here.
    let was = |icon: Icon| {
        stored
            .get(icon)
            .and_then(|before| before.reason)
            .unwrap_or(Reason::AwaitingFirstImport)
    };
    let banner_delta = if counted {
        banner_delta(
            [was(Icon::Email), was(Icon::Calendar)],
            [status.email, status.calendar],
        )
    } else {
        [0; BANNER_COUNT]
    };
    MemberUpdate {
        status,
        icons,
        banner_delta,
    }
}

/// Whether the settings allow importing `channel` at all: STATUS_MODEL.md rules 1–8 give
/// no reason (the classifier, with no attempts, says `awaiting_first_import`). `active`:
/// both the member and its company are active.
pub fn may_import(
    company: &CompanySettings,
    member: &MemberSettings,
    active: bool,
    channel: Channel,
    now: OffsetDateTime,
    thresholds: &Thresholds,
) -> bool {
    active
        && classify_member(company, member, &[], now, thresholds).channel(channel)
            == Reason::AwaitingFirstImport
}

/// The banners a member's channels put it in: each at most once, whichever channel has
/// its reason (STATUS_MODEL.md, "Banners"). The one rule both the full tally
/// ([`crate::BannerTally`]) and the delta count by.
pub(crate) fn channel_banners(reasons: [Reason; 2]) -> [bool; BANNER_COUNT] {
    let mut seen = [false; BANNER_COUNT];
    for code in reasons.into_iter().filter_map(banner_for) {
        seen[code as usize] = true;
    }
    seen
}

/// How a member's move from `before` to `after` (its email and calendar reasons) changes
/// each banner's count; the seat banner does not move (an attempt changes no seat).
pub fn banner_delta(before: [Reason; 2], after: [Reason; 2]) -> [i64; BANNER_COUNT] {
    let (before, after) = (channel_banners(before), channel_banners(after));
    let mut delta = [0; BANNER_COUNT];
    for ((change, was), is) in delta.iter_mut().zip(before).zip(after) {
        *change = i64::from(is) - i64::from(was);
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnectionMode, MemberConnection, Provider};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

    fn company() -> CompanySettings {
        CompanySettings {
            import_non_recorded_meetings: true,
            ..CompanySettings::importing(Provider::GoogleWorkspace, ConnectionMode::CompanyWide)
        }
    }

    fn member() -> MemberSettings {
        MemberSettings {
            import_non_recorded_meetings: true,
            ..MemberSettings::importing(Some(MemberConnection::Connected))
        }
    }

    fn attempt(
        id: &'static str,
        channel: Channel,
        minutes_ago: i64,
        outcome: Outcome,
    ) -> RecentAttempt<'static> {
        RecentAttempt {
            id,
            channel,
            finished_at: NOW - time::Duration::minutes(minutes_ago),
            outcome,
        }
    }

    fn stored(reason: Reason, since: OffsetDateTime) -> Option<StoredIcon> {
        Some(StoredIcon {
            color: Some(reason.color()),
            reason: Some(reason),
            since,
        })
    }

    /// [`derive_member`] for the fixture's company and member, now, with the default
    /// thresholds.
    fn derive<'a>(
        attempts: &[RecentAttempt<'a>],
        stored: &StoredIcons,
        counted: bool,
    ) -> MemberUpdate<'a> {
        derive_member(
            &company(),
            &member(),
            attempts,
            stored,
            counted,
            NOW,
            &Thresholds::default(),
        )
    }

    #[test]
    fn icons_point_at_their_channels_latest_attempt_and_the_microphone_at_the_worse() {
        let attempts = [
            attempt("e1", Channel::Email, 30, Outcome::Success),
            attempt("c1", Channel::Calendar, 20, Outcome::MailboxUnavailable),
            attempt("e2", Channel::Email, 10, Outcome::Success),
        ];
        let update = derive(&attempts, &StoredIcons::default(), true);
        let [capture, email, calendar] = update.icons;
        assert_eq!(email.attempt_id, Some("e2"));
        assert_eq!(calendar.attempt_id, Some("c1"));
        assert_eq!(calendar.reason, Reason::MailboxUnavailable);
        // The worse channel decides the microphone, and so its attempt explains it.
        assert_eq!(capture.reason, Reason::MailboxUnavailable);
        assert_eq!(capture.attempt_id, Some("c1"));
        // Nothing was stored: every icon is a history row and none is news.
        assert!(
            update
                .icons
                .iter()
                .all(|icon| icon.changed && !icon.announce)
        );
        assert!(update.icons.iter().all(|icon| icon.since == NOW));
    }

    #[test]
    fn since_holds_while_an_icon_stays_and_a_change_of_a_stored_icon_is_news() {
        let earlier = NOW - time::Duration::hours(5);
        let attempts = [
            attempt("e1", Channel::Email, 10, Outcome::Success),
            attempt("c1", Channel::Calendar, 10, Outcome::GrantInvalid),
        ];
        let before = StoredIcons {
            capture: stored(Reason::Importing, earlier),
            email: stored(Reason::Importing, earlier),
            calendar: stored(Reason::Importing, earlier),
        };
        let update = derive(&attempts, &before, true);
        let [capture, email, calendar] = update.icons;
        assert_eq!(
            (email.reason, email.since, email.changed),
            (Reason::Importing, earlier, false)
        );
        assert!(!email.announce);
        assert_ne!(calendar.reason, Reason::Importing);
        assert_eq!(
            (calendar.since, calendar.changed, calendar.announce),
            (NOW, true, true)
        );
        assert_eq!(capture.reason, calendar.reason);
        assert!(capture.announce);
        // A stored row whose text is none of ours reads as changed.
        let corrupt = StoredIcons {
            email: Some(StoredIcon {
                color: Some(Color::Green),
                reason: None,
                since: earlier,
            }),
            ..before
        };
        let update = derive(&attempts, &corrupt, false);
        assert!(update.icons[1].changed && update.icons[1].announce);
        assert_eq!(update.banner_delta, [0; BANNER_COUNT], "not counted");
    }

    #[test]
    fn a_banner_counts_a_member_once_and_moves_only_for_counted_members() {
        let code = |reason| banner_for(reason).expect("a banner reason") as usize;
        let unavailable = code(Reason::MailboxUnavailable);
        let delta = banner_delta(
            [Reason::Importing, Reason::Importing],
            [Reason::MailboxUnavailable, Reason::MailboxUnavailable],
        );
        assert_eq!(delta[unavailable], 1, "both channels: one member");
        assert_eq!(delta.iter().sum::<i64>(), 1);
        let delta = banner_delta(
            [Reason::MailboxUnavailable, Reason::TechnicalFailure],
            [Reason::Importing, Reason::TechnicalFailure],
        );
        assert_eq!(delta[unavailable], -1);
        assert_eq!(delta[code(Reason::TechnicalFailure)], 0);
        // A member with no stored icons moves from awaiting its first import.
        let attempts = [
            attempt("e1", Channel::Email, 10, Outcome::MailboxUnavailable),
            attempt("c1", Channel::Calendar, 10, Outcome::MailboxUnavailable),
        ];
        let update = derive(&attempts, &StoredIcons::default(), true);
        let expected = banner_delta(
            [Reason::AwaitingFirstImport, Reason::AwaitingFirstImport],
            [Reason::MailboxUnavailable, Reason::MailboxUnavailable],
        );
        assert_eq!(update.banner_delta, expected);
        assert_eq!(update.banner_delta[unavailable], 1);
    }
}
