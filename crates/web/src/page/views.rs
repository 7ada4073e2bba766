//! What the Team members page shows, as template views: banners with the members they
//! name, icons with their shape, label and explanation, the last import, filters, webhook
//! endpoints; shared by the company's page and a member's page.

use super::*;

/// A banner's members, named: "ada, bob and 2 more".
pub(super) fn named(ids: &[&str], count: usize) -> String {
    let shown: Vec<&str> = ids.iter().take(NAMED_PER_BANNER).copied().collect();
    let more = count.saturating_sub(shown.len());
    match (shown.as_slice(), more) {
        ([], _) => String::new(),
        ([one], 0) => (*one).to_owned(),
        (names, 0) => {
            let (last, rest) = names.split_last().unwrap_or((&"", &[]));
            format!("{} and {last}", rest.join(", "))
        }
        (names, more) => format!("{} and {more} more", names.join(", ")),
    }
}

/// How many members a banner names before "and N more".
pub(super) const NAMED_PER_BANNER: usize = 3;

pub(super) struct BannerView {
    pub(super) code: &'static str,
    pub(super) color: &'static str,
    /// The non-colour cue: "Problem" (red) or "Action needed" (yellow).
    pub(super) kind_word: &'static str,
    pub(super) shape: &'static str,
    pub(super) count: u32,
    pub(super) message: String,
    pub(super) resolution: String,
    /// "ada, bob and 2 more" (empty when none of them is on the page's data).
    pub(super) who: String,
    /// The page filtered to the banner's members.
    pub(super) filter_link: String,
}

pub(super) struct SelectOption {
    pub(super) value: &'static str,
    pub(super) label: String,
    pub(super) selected: bool,
}

/// A time as the server renders it: ISO 8601 for `<time datetime>` and a UTC fallback
/// that the page's script rewrites into the reader's zone with a relative form.
pub(super) struct TimeView {
    pub(super) iso: String,
    pub(super) text: String,
}

pub(super) fn time_view(at: OffsetDateTime) -> TimeView {
    let at = at.to_offset(time::UtcOffset::UTC);
    TimeView {
        iso: time_text(at),
        text: format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        ),
    }
}

/// What a red icon's admin reads beside it: the provider's answer, when, which attempt,
/// what to check and whom to hand it to.
pub(super) struct RedDetail {
    pub(super) attempt_id: Option<String>,
    pub(super) at: Option<TimeView>,
    pub(super) http_status: Option<String>,
    pub(super) error_code: Option<String>,
    pub(super) provider_message: Option<String>,
    /// The admin's own step (what to check at the provider).
    pub(super) admin_step: String,
    /// The catalogue's resolution: the engineer's step, shown to the operator only.
    pub(super) engineer_step: Option<String>,
}

/// An icon as both pages draw it: its channel with its glyph, its colour with the shape and
/// label that say it without colour, and its reason in words; `detail` is what the page
/// adds ([`RowIcon`] on the Team members page, the member page's since and last success).
pub(super) struct IconView<Detail> {
    pub(super) kind: &'static str,
    pub(super) kind_label: &'static str,
    pub(super) glyph: &'static str,
    pub(super) shape: &'static str,
    pub(super) color: &'static str,
    pub(super) color_label: &'static str,
    pub(super) reason: &'static str,
    pub(super) title: &'static str,
    pub(super) message: String,
    pub(super) resolution: String,
    pub(super) detail: Detail,
}

/// The icon view of `icon` on the `kind` channel (`capture`, `email` or `calendar`).
pub(super) fn icon_face<Detail>(
    kind: &'static str,
    icon: &IconReport,
    detail: Detail,
) -> IconView<Detail> {
    let (kind_label, glyph) = match kind {
        "capture" => ("Capture", MICROPHONE),
        "email" => ("Email", ENVELOPE),
        _ => ("Calendar", CALENDAR),
    };
    IconView {
        kind,
        kind_label,
        glyph,
        shape: shape(icon.color),
        color: icon.color.as_str(),
        color_label: color_label(icon.color),
        reason: icon.reason.as_str(),
        title: datacap_core::reason_title(icon.reason),
        message: icon.message.clone(),
        resolution: icon.resolution.clone(),
        detail,
    }
}

/// What a Team members page row adds to an icon: the element ids of the button and of its
/// tip (its description), and a red icon's details.
pub(super) struct RowIcon {
    pub(super) id: String,
    pub(super) tip_id: String,
    pub(super) red: Option<RedDetail>,
}

/// A non-green icon that no banner explains: its row says what is wrong, visibly.
pub(super) struct Explanation {
    pub(super) kind_label: &'static str,
    pub(super) title: &'static str,
    pub(super) message: String,
    pub(super) resolution: String,
}

pub(super) struct LastImport {
    /// The channel's latest attempt: when and how it ended.
    pub(super) latest: Option<(TimeView, &'static str)>,
    /// Its last successful import and the items it brought ("1 item", "12 items").
    pub(super) success: Option<(TimeView, String)>,
}

pub(super) struct MemberRow {
    pub(super) id: String,
    /// The id as a URL path segment.
    pub(super) path: String,
    pub(super) email_address: String,
    /// The row's worst colour (red first on the page).
    pub(super) worst: &'static str,
    pub(super) icons: Vec<IconView<RowIcon>>,
    pub(super) explanations: Vec<Explanation>,
    /// `email` and `calendar`: each channel's latest attempt and last success.
    pub(super) lasts: Vec<(&'static str, LastImport)>,
}

/// One webhook endpoint's health, as the company's admin sees it.
pub(super) struct EndpointView {
    pub(super) id: String,
    pub(super) url: String,
    /// `ok`, `failing` (the last try failed), `dead` (events given up on) or `idle`.
    pub(super) health: &'static str,
    pub(super) backlog: u64,
    pub(super) dead: u64,
    pub(super) last_success: Option<TimeView>,
    pub(super) last_failure: Option<(TimeView, String)>,
}

pub(super) fn endpoint_view(endpoint: &datacap_store::EndpointReport) -> EndpointView {
    let failing = match (endpoint.last_failure_at, endpoint.last_success_at) {
        (Some(failure), Some(success)) => failure > success,
        (Some(_), None) => true,
        _ => false,
    };
    let health = if endpoint.dead > 0 {
        "dead"
    } else if failing {
        "failing"
    } else if endpoint.last_success_at.is_some() {
        "ok"
    } else {
        "idle"
    };
    EndpointView {
        id: endpoint.endpoint_id.clone(),
        url: endpoint.url.clone(),
        health,
        backlog: endpoint.backlog,
        dead: endpoint.dead,
        last_success: endpoint.last_success_at.map(time_view),
        last_failure: match (endpoint.last_failure_at, &endpoint.last_failure) {
            (Some(at), Some(what)) => Some((time_view(at), what.clone())),
            _ => None,
        },
    }
}

#[derive(Template)]
#[template(path = "members.html")]
pub(super) struct MembersPage {
    pub(super) operator: bool,
    pub(super) company_name: String,
    pub(super) provider: &'static str,
    pub(super) mode: &'static str,
    pub(super) banners: Vec<BannerView>,
    pub(super) colors: Vec<SelectOption>,
    pub(super) reasons: Vec<SelectOption>,
    pub(super) members: Vec<MemberRow>,
    pub(super) shown: usize,
    pub(super) total: usize,
    pub(super) generated_at: TimeView,
    pub(super) refresh_seconds: u32,
    pub(super) endpoints: Vec<EndpointView>,
    /// The company id as a URL path segment.
    pub(super) company_path: String,
    /// Whom an admin hands a red icon to.
    pub(super) support: String,
}

/// Material Design icon paths (Apache-2.0): microphone, envelope, calendar.
pub(super) const MICROPHONE: &str = "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5.3-3A5.3 5.3 0 0 1 12 16.1 5.3 5.3 0 0 1 6.7 11H5c0 3.4 2.7 6.2 6 6.7V21h2v-3.3c3.3-.5 6-3.3 6-6.7h-1.7z";
pub(super) const ENVELOPE: &str = "M20 4H4a2 2 0 0 0-2 2v12a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2zm0 4-8 5-8-5V6l8 5 8-5v2z";
pub(super) const CALENDAR: &str = "M19 3h-1V1h-2v2H8V1H6v2H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V5a2 2 0 0 0-2-2zm0 16H5V8h14v11zM7 10h5v5H7z";

/// The non-colour cue of each colour, a shape that reads in greyscale (Material Design
/// paths, Apache-2.0): an octagon with "!" (red), a triangle with "!" (yellow), a tick
/// (green), a dash in a circle (gray).
pub(super) fn shape(color: Color) -> &'static str {
    match color {
        Color::Red => {
            "M15.73 3H8.27L3 8.27v7.46L8.27 21h7.46L21 15.73V8.27L15.73 3zM13 17h-2v-2h2v2zm0-4h-2V7h2v6z"
        }
        Color::Yellow => "M1 21h22L12 2 1 21zm12-3h-2v-2h2v2zm0-4h-2v-4h2v4z",
        Color::Green => "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4z",
        Color::Gray => "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm5 11H7v-2h10v2z",
    }
}

pub(super) fn color_label(color: Color) -> &'static str {
    match color {
        Color::Green => "Green",
        Color::Yellow => "Yellow",
        Color::Red => "Red",
        Color::Gray => "Gray",
    }
}

/// Red first, then yellow, green and gray.
pub(super) fn color_rank(color: Color) -> u8 {
    match color {
        Color::Red => 0,
        Color::Yellow => 1,
        Color::Green => 2,
        Color::Gray => 3,
    }
}

/// "1 item", "12 items".
pub(super) fn items_text(items: u64) -> String {
    if items == 1 {
        "1 item".to_owned()
    } else {
        format!("{items} items")
    }
}

/// An attempt's outcome in words.
pub(super) fn outcome_label(outcome: datacap_core::Outcome) -> &'static str {
    use datacap_core::Outcome;
    match outcome {
        Outcome::Success => "succeeded",
        Outcome::NotAuthorized => "not authorized",
        Outcome::GrantInvalid => "the member's grant is invalid",
        Outcome::AccessDenied => "refused by a provider policy",
        Outcome::MailboxUnavailable => "no usable mailbox",
        Outcome::CredentialRejected => "the app's credential was refused",
        Outcome::RateLimited => "throttled by the provider",
        Outcome::ProviderError => "the provider failed",
        Outcome::NetworkError => "no answer from the provider",
    }
}

/// Which members the page shows: any of whose icons has this colour and reason.
#[derive(Default)]
pub(super) struct Filter {
    pub(super) color: Option<Color>,
    pub(super) reason: Option<Reason>,
}

impl Filter {
    /// The `color` and `reason` query parameters (empty means any); anything else, or
    /// an unknown value, is an error an admin can read.
    pub(super) fn parse(query: &HashMap<String, String>) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for (name, value) in query {
            match (name.as_str(), value.as_str()) {
                (_, "") => {}
                ("color", value) => {
                    filter.color = Some(Color::parse(value).ok_or_else(|| {
                        format!(
                            "There is no colour {value:?}. Choose red, yellow, green or gray in the Colour list, or any colour."
                        )
                    })?);
                }
                ("reason", value) => {
                    filter.reason = Some(Reason::parse(value).ok_or_else(|| {
                        format!(
                            "There is no reason {value:?}. Choose one in the Reason list, or any reason."
                        )
                    })?);
                }
                (other, _) => {
                    return Err(format!(
                        "The page has no filter {other:?}: filter by colour or by reason."
                    ));
                }
            }
        }
        Ok(filter)
    }

    pub(super) fn keeps(&self, icons: [&IconReport; 3]) -> bool {
        icons.iter().any(|icon| {
            self.color.is_none_or(|color| icon.color == color)
                && self.reason.is_none_or(|reason| icon.reason == reason)
        })
    }
}

/// The banner that explains an icon with this reason, if any (STATUS_MODEL.md's table).
pub(super) fn banner_of(reason: Reason) -> Option<BannerCode> {
    Some(match reason {
        Reason::ProviderNotConnected => BannerCode::ProviderNotConnected,
        Reason::CompanyPermissionMissing => BannerCode::CompanyPermissionMissing,
        Reason::EmailNotAuthorized => BannerCode::EmailNotAuthorized,
        Reason::CalendarNotAuthorized => BannerCode::CalendarNotAuthorized,
        Reason::MemberNotConnected => BannerCode::MembersNotConnected,
        Reason::MemberConnectionInvalid => BannerCode::MembersConnectionInvalid,
        Reason::MailboxUnavailable => BannerCode::MembersMailboxUnavailable,
        Reason::SeatMissing => BannerCode::MembersSeatMissing,
        Reason::AppCredentialInvalid
        | Reason::ProviderPermissionDenied
        | Reason::TechnicalFailure
        | Reason::ImportStalled => BannerCode::MembersTechnicalProblem,
        _ => return None,
    })
}

/// The filter that shows a banner's members, and whether a member belongs to it.
pub(super) fn banner_filter(code: BannerCode) -> (&'static str, &'static str) {
    match code {
        BannerCode::MembersTechnicalProblem => ("color", "red"),
        BannerCode::ProviderNotConnected => ("reason", "provider_not_connected"),
        BannerCode::CompanyPermissionMissing => ("reason", "company_permission_missing"),
        BannerCode::EmailNotAuthorized => ("reason", "email_not_authorized"),
        BannerCode::CalendarNotAuthorized => ("reason", "calendar_not_authorized"),
        BannerCode::MembersNotConnected => ("reason", "member_not_connected"),
        BannerCode::MembersConnectionInvalid => ("reason", "member_connection_invalid"),
        BannerCode::MembersMailboxUnavailable => ("reason", "mailbox_unavailable"),
        BannerCode::MembersSeatMissing => ("reason", "seat_missing"),
    }
}

pub(super) fn in_banner(code: BannerCode, member: &MemberReport) -> bool {
    let channels = [&member.email, &member.calendar];
    match code {
        BannerCode::MembersTechnicalProblem => channels.iter().any(|i| i.color == Color::Red),
        // A candidate of the capture icon; the page sees it when it is the capture's reason.
        BannerCode::MembersSeatMissing => member.capture.reason == Reason::SeatMissing,
        other => channels
            .iter()
            .any(|icon| banner_of(icon.reason) == Some(other)),
    }
}

pub(super) struct IconContext<'a> {
    pub(super) attempts: &'a BTreeMap<&'a str, &'a AttemptReport>,
    pub(super) provider: datacap_core::Provider,
    pub(super) operator: bool,
}

pub(super) fn icon_view(
    member: &str,
    kind: &'static str,
    icon: &IconReport,
    cx: &IconContext,
) -> IconView<RowIcon> {
    // The capture icon summarises email and calendar: their rows carry the details.
    let red = (icon.color == Color::Red && kind != "capture").then(|| {
        let attempt = icon
            .last_attempt_id
            .as_deref()
            .and_then(|id| cx.attempts.get(id));
        RedDetail {
            attempt_id: icon.last_attempt_id.clone(),
            at: attempt.map(|a| time_view(a.finished_at)),
            http_status: attempt.and_then(|a| a.http_status).map(|s| s.to_string()),
            error_code: attempt.and_then(|a| a.provider_error_code.clone()),
            provider_message: attempt.and_then(|a| a.provider_error_message.clone()),
            admin_step: datacap_core::admin_step(icon.reason, cx.provider)
                .unwrap_or_else(|| icon.resolution.clone()),
            engineer_step: cx.operator.then(|| icon.resolution.clone()),
        }
    });
    let segment = encode_segment(member);
    let detail = RowIcon {
        id: format!("icon-{segment}-{kind}"),
        tip_id: format!("tip-{segment}-{kind}"),
        red,
    };
    icon_face(kind, icon, detail)
}

/// An icon's latest attempt and its channel's last successful import.
pub(super) fn last_import(
    icon: &IconReport,
    attempts: &BTreeMap<&str, &AttemptReport>,
) -> LastImport {
    LastImport {
        latest: icon
            .last_attempt_id
            .as_deref()
            .and_then(|id| attempts.get(id))
            .map(|attempt| {
                (
                    time_view(attempt.finished_at),
                    outcome_label(attempt.outcome),
                )
            }),
        success: icon
            .last_success
            .map(|success| (time_view(success.at), items_text(success.items))),
    }
}

/// Whom an admin hands a problem to: `[web] support_contact`, or the operator.
pub(crate) fn support_of(app: &App) -> String {
    app.support_contact
        .clone()
        .unwrap_or_else(|| DEFAULT_SUPPORT.to_owned())
}

/// Whom the page names when `[web] support_contact` is not set.
pub const DEFAULT_SUPPORT: &str = "your datacap operator";
