//! The Team members page in a real browser: `datacap demo` (the sim, every reason code,
//! auth on) serves it, headless Chromium driven through chromedriver (WebDriver, via
//! fantoccini) signs in with the operator token from the demo's state directory, checks
//! the icons' colours, visible labels and accessible names, the tooltip on focus and Esc,
//! the red-first order, the banners (members named, filter link) and the colour filter,
//! the webhook endpoints' health, a member's page and the operator's full resync, and a
//! status change written to the database showing without a reload while focus stays.
//!
//! axe-core runs in every page visited (sign-in, companies list, Team members, a member's
//! page, a message page) at 1400 px and 390 px: no `serious` or `critical` violation; the
//! page never scrolls sideways at 390 px and 320 px. Screenshots at both widths go to
//! `$CARGO_TARGET_TMPDIR/screenshots/` (`team-members-1400.png`, `team-members-390.png`,
//! `member-1400.png`, `member-390.png`).
//!
//! Needs Debian's `chromium` and `chromium-driver`, and axe-core from npm
//! (`/var/tmp/datacap-axe/node_modules/axe-core/axe.min.js`, or `DATACAP_AXE_JS`); .ci/run
//! installs them. Without them the test is skipped with a message, except under `CI=true`,
//! where that is a failure.

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

use crate::harness::Demo;
use crate::harness::browser::{
    Chromedriver, browser_installed, click, screenshot_path, sign_in, wait_for,
};

/// Where .ci/run installs axe-core (`DATACAP_AXE_JS` overrides).
const AXE_JS: &str = "/var/tmp/datacap-axe/node_modules/axe-core/axe.min.js";

/// The two widths every page is checked at, then the narrowest supported one.
const WIDE: u32 = 1400;
const NARROW: u32 = 390;
const NARROWEST: u32 = 320;

/// Resizes the window; headless Chromium's viewport is then exactly `width` wide.
async fn set_width(client: &Client, width: u32) {
    client
        .set_window_size(width, 1000)
        .await
        .expect("the window's size");
    let inner = client
        .execute("return window.innerWidth", Vec::new())
        .await
        .unwrap();
    assert_eq!(
        inner.as_u64(),
        Some(u64::from(width)),
        "the viewport is {width} px"
    );
}

/// The page never scrolls sideways at this width.
async fn assert_no_sideways_scroll(client: &Client, page: &str, width: u32) {
    set_width(client, width).await;
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth]",
            Vec::new(),
        )
        .await
        .unwrap();
    let scroll = widths[0].as_u64().unwrap();
    let inner = widths[1].as_u64().unwrap();
    assert!(
        scroll <= inner,
        "{page} at {width} px: {scroll} px wide, scrolls sideways"
    );
}

/// Runs axe-core in the page at `width`; returns its violations as
/// `(id, impact, nodes, help, first targets)`.
async fn axe_violations(
    client: &Client,
    axe: &str,
    width: u32,
) -> Vec<(String, String, u64, String, String)> {
    set_width(client, width).await;
    let loaded = client
        .execute("return typeof window.axe", Vec::new())
        .await
        .unwrap();
    if loaded.as_str() != Some("object") {
        client
            .execute(axe, Vec::new())
            .await
            .expect("axe-core loads");
    }
    let found = client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               axe.run(document, {resultTypes: ["violations"]}).then(
                 (r) => done(r.passes.length === 0 ? [["axe-ran-no-rule", "critical", 0, "no rule passed", ""]] : r.violations.map((v) => [v.id, v.impact || "", v.nodes.length, v.help,
                   v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")])),
                 (e) => done([["axe-error", "critical", 0, String(e), ""]]));"#,
            Vec::new(),
        )
        .await
        .expect("axe runs");
    found
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v[0].as_str().unwrap_or_default().to_owned(),
                v[1].as_str().unwrap_or_default().to_owned(),
                v[2].as_u64().unwrap_or_default(),
                v[3].as_str().unwrap_or_default().to_owned(),
                v[4].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// axe at both widths and the sideways-scroll check at 390 and 320 px, for one page; every
/// violation is printed, serious and critical ones are kept for the final assertion.
async fn check_page(client: &Client, axe: &str, page: &str, serious: &mut Vec<String>) {
    for width in [WIDE, NARROW] {
        let violations = axe_violations(client, axe, width).await;
        #[allow(clippy::print_stderr)]
        {
            eprintln!("axe: {page} @{width}px: {} violations", violations.len());
        }
        for (id, impact, nodes, help, targets) in violations {
            let line =
                format!("{page} @{width}px: {id} ({impact}, {nodes} nodes): {help} [{targets}]");
            #[allow(clippy::print_stderr)]
            {
                eprintln!("axe: {line}");
            }
            if impact == "serious" || impact == "critical" {
                serious.push(line);
            }
        }
    }
    assert_no_sideways_scroll(client, page, NARROW).await;
    assert_no_sideways_scroll(client, page, NARROWEST).await;
    set_width(client, WIDE).await;
}

async fn screenshot(client: &Client, name: &str, width: u32) {
    set_width(client, width).await;
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshot_path(&format!("{name}-{width}.png")), &png).unwrap();
}

/// axe-core's script: `DATACAP_AXE_JS`, else where .ci/run installs it.
fn axe_source() -> Option<String> {
    let path = std::env::var("DATACAP_AXE_JS").unwrap_or_else(|_| AXE_JS.to_owned());
    std::fs::read_to_string(path).ok()
}

#[test]
fn team_members_page_in_headless_chromium() {
    if !browser_installed() {
        return;
    }
    let Some(axe) = axe_source() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but axe-core is missing: {AXE_JS} (npm install --prefix /var/tmp/datacap-axe axe-core, as .ci/run does) or DATACAP_AXE_JS"
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!("skipped: axe-core is missing ({AXE_JS} or DATACAP_AXE_JS)");
        }
        return;
    };
    let demo = Demo::start();
    let token = &demo.token;
    assert!(
        !std::fs::read_to_string(&demo.stdout)
            .unwrap_or_default()
            .contains(token.trim()),
        "the demo prints where the token is, never the token"
    );

    let driver = Chromedriver::start();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = driver.session().await;
        let base = demo.base();
        let mut serious = Vec::new();

        // Signed out: the page is the sign-in form; sign in with the operator token.
        client
            .goto(&format!("{base}/companies/globex/members"))
            .await
            .unwrap();
        client.find(Locator::Id("token")).await.expect("sign-in form");
        check_page(&client, &axe, "sign-in", &mut serious).await;
        sign_in(&client, token.trim()).await;
        wait_for(&client, Locator::Css("a[href='/companies/globex/members']")).await;
        check_page(&client, &axe, "companies", &mut serious).await;
        client
            .goto(&format!("{base}/companies/globex/members"))
            .await
            .unwrap();
        wait_for(&client, Locator::Id("members")).await;
        check_page(&client, &axe, "team-members", &mut serious).await;

        // Screenshots of the page as it loads: banners, filters and the first rows.
        screenshot(&client, "team-members", NARROW).await;
        screenshot(&client, "team-members", WIDE).await;

        // Red rows first, then yellow, then green (gray last).
        let rank = |color: &str| match color {
            "red" => 0,
            "yellow" => 1,
            "green" => 2,
            _ => 3,
        };
        let mut order = Vec::new();
        for row in client.find_all(Locator::Css("#members tbody tr")).await.unwrap() {
            order.push(row.attr("class").await.unwrap().unwrap_or_default());
        }
        assert!(order.len() > 3, "{order:?}");
        assert_eq!(order[0], "red", "a red row first: {order:?}");
        assert!(
            order.windows(2).all(|pair| rank(&pair[0]) <= rank(&pair[1])),
            "red, then yellow, then green: {order:?}"
        );

        // The company's webhook endpoints with their health (issue 19 §5).
        let endpoint = client
            .find(Locator::Css("#webhooks tr[data-endpoint='example']"))
            .await
            .expect("the demo's webhook endpoint on the page");
        assert!(endpoint.is_displayed().await.unwrap());
        let health = endpoint.attr("data-health").await.unwrap().unwrap();
        assert!(!health.is_empty(), "a health word");

        // Banners with counts above the table.
        let banners = client.find_all(Locator::Css("#banners .banner")).await.unwrap();
        assert!(!banners.is_empty(), "banners");
        let technical = client
            .find(Locator::Css(".banner[data-code='members_technical_problem']"))
            .await
            .expect("the red banner");
        assert!(technical.is_displayed().await.unwrap());
        let count: u32 = technical.attr("data-count").await.unwrap().unwrap().parse().unwrap();
        assert!(count >= 1);
        let text = technical.text().await.unwrap();
        assert!(text.contains(&count.to_string()));
        assert_eq!(
            text.matches(&count.to_string()).count(),
            1,
            "the count once: {text}"
        );
        assert_eq!(
            banners[0].attr("data-code").await.unwrap().as_deref(),
            Some("members_technical_problem"),
            "the red banner first"
        );
        assert!(text.starts_with("Problem:"), "a word besides the colour: {text}");
        // It names its members (policy is one) and links to the page filtered to them.
        let who = technical
            .find(Locator::Css(".who a"))
            .await
            .expect("the banner's members");
        let names = who.text().await.unwrap();
        assert!(names.contains("policy"), "{names}");
        assert_eq!(
            who.attr("href").await.unwrap().as_deref(),
            Some("/companies/globex/members?color=red")
        );
        let named = names.split([',', ' ']).filter(|word| !word.is_empty()).count();
        assert!(named >= 1, "{names}");

        // Each icon: a button with a colour, a visible text label, one accessible name (its
        // content) and a description (its tip) that is not the name again.
        let names_and_descriptions = r##"return [...document.querySelectorAll("#members .icon")].map((b) => {
              const tip = document.getElementById(b.getAttribute("aria-describedby"));
              const name = [...b.childNodes].filter((n) => n !== tip && !(n.getAttribute && n.getAttribute("aria-hidden")))
                .map((n) => n.textContent).join("").trim();
              return [b.tagName, b.getAttribute("aria-label"), name, tip ? tip.textContent.trim() : ""]; })"##;
        let described = client.execute(names_and_descriptions, Vec::new()).await.unwrap();
        let mut colors = std::collections::BTreeSet::new();
        for (icon, facts) in client
            .find_all(Locator::Css("#members .icon"))
            .await
            .unwrap()
            .iter()
            .zip(described.as_array().unwrap())
        {
            let color = icon.attr("data-color").await.unwrap().unwrap();
            let label = icon.find(Locator::Css(".label")).await.unwrap();
            assert!(label.is_displayed().await.unwrap(), "the label is visible");
            assert!(!label.text().await.unwrap().trim().is_empty());
            assert_eq!(facts[0].as_str(), Some("BUTTON"), "icons are buttons");
            assert!(facts[1].is_null(), "named by its content, not an aria-label");
            let name = facts[2].as_str().unwrap();
            let description = facts[3].as_str().unwrap();
            let mut word = color.clone();
            word[..1].make_ascii_uppercase();
            assert!(name.contains(&format!(": {word} · ")), "{name}");
            assert!(!description.is_empty() && description != name, "{name} / {description}");
            assert!(!description.contains(name), "not read twice: {name} / {description}");
            colors.insert(color);
        }
        for color in ["green", "yellow", "red", "gray"] {
            assert!(colors.contains(color), "a {color} icon on the page: {colors:?}");
        }
        let admin_email = client
            .find(Locator::Css(
                "tr[data-member='admin'] .icon[data-icon='email'] .label",
            ))
            .await
            .unwrap();
        assert_eq!(
            admin_email.text().await.unwrap().trim(),
            "Green · Importing",
            "the visible label (the channel's name is for screen readers)"
        );

        // The reason's message and resolution show on focus (keyboard users), not before.
        let red = client
            .find(Locator::Css("tr[data-member='policy'] .icon[data-icon='email']"))
            .await
            .unwrap();
        let tip = red.find(Locator::Css(".tip")).await.unwrap();
        assert!(!tip.is_displayed().await.unwrap(), "hidden until focus");
        client
            .execute(
                "document.querySelector(\"tr[data-member='policy'] .icon[data-icon='email']\").focus()",
                Vec::new(),
            )
            .await
            .unwrap();
        assert!(tip.is_displayed().await.unwrap(), "shown on focus");
        assert!(!tip.text().await.unwrap().trim().is_empty());
        // Esc closes it, focus staying on the icon.
        red.send_keys("\u{E00C}").await.unwrap();
        assert!(!tip.is_displayed().await.unwrap(), "Esc closes the tip");
        let focused = client
            .execute("return document.activeElement.id", Vec::new())
            .await
            .unwrap();
        assert_eq!(focused.as_str(), red.attr("id").await.unwrap().as_deref());
        // Red rows carry the provider's answer, the time, the attempt id linked to the
        // member's page, the admin's own step and whom to hand it to.
        let details = client
            .find(Locator::Css("tr[data-member='policy'] .details[data-attempt]"))
            .await
            .unwrap();
        let text = details.text().await.unwrap();
        assert!(text.contains("HTTP 4") && text.contains("attempt"), "{text}");
        assert!(
            text.contains("Google Workspace answered: “"),
            "the provider's message: {text}"
        );
        assert!(
            text.contains("hand it to your datacap operator"),
            "whom to hand it to: {text}"
        );
        assert!(text.contains("Engineer's step (operators only)"), "{text}");
        let attempt = details.attr("data-attempt").await.unwrap().unwrap();
        let link = details.find(Locator::Css("a")).await.unwrap();
        assert_eq!(
            link.attr("href").await.unwrap(),
            Some(format!("/companies/globex/members/policy#attempt-{attempt}"))
        );
        let when = details
            .find(Locator::Css("time[datetime]"))
            .await
            .unwrap();
        let shown = when.text().await.unwrap();
        assert!(
            shown.contains(" ago)") || shown.contains("(just now)"),
            "a local time with a relative form: {shown}"
        );

        // The colour filter: only members with a red icon remain.
        client
            .find(Locator::Id("color"))
            .await
            .unwrap()
            .select_by_value("red")
            .await
            .unwrap();
        click(&client, Locator::Css("form.filters button")).await;
        wait_for(&client, Locator::Css("#color option[value='red'][selected]")).await;
        assert!(client.current_url().await.unwrap().as_str().contains("color=red"));
        let rows = client.find_all(Locator::Css("#members tbody tr")).await.unwrap();
        assert!(!rows.is_empty());
        for row in &rows {
            let red = row.find_all(Locator::Css(".icon[data-color='red']")).await.unwrap();
            assert!(!red.is_empty(), "a row without a red icon under color=red");
        }
        assert!(
            client
                .find_all(Locator::Css("tr[data-member='admin']"))
                .await
                .unwrap()
                .is_empty(),
            "the green admin is filtered out"
        );

        // A member's page (issue 19 §7), from the Team members page's link: icons with
        // the last successful import, status history, recent attempts with the provider's
        // answer; the operator sees the full-resync action and uses it.
        client
            .goto(&format!("{base}/companies/globex/members"))
            .await
            .unwrap();
        click(&client, Locator::Css("a[href='/companies/globex/members/policy']")).await;
        wait_for(&client, Locator::Id("history")).await;
        let email = client
            .find(Locator::Css("#icons tr[data-icon='email']"))
            .await
            .unwrap();
        assert_eq!(
            email.attr("data-color").await.unwrap().as_deref(),
            Some("red"),
            "policy's email is red"
        );
        let attempts = client
            .find_all(Locator::Css("#attempts tr[data-attempt]"))
            .await
            .unwrap();
        assert!(!attempts.is_empty(), "recent attempts");
        let mut texts = Vec::new();
        for attempt in &attempts {
            texts.push(attempt.text().await.unwrap());
        }
        assert!(
            texts
                .iter()
                .any(|text| text.contains("403") && text.contains("domainPolicy")),
            "the refused email attempt with its HTTP status and provider error: {texts:?}"
        );
        check_page(&client, &axe, "member", &mut serious).await;
        screenshot(&client, "member", NARROW).await;
        screenshot(&client, "member", WIDE).await;
        click(&client, Locator::Css("#operator button")).await;
        wait_for(&client, Locator::Id("resynced")).await;

        // A user-by-user member's page carries their grant state and a connect link.
        client
            .goto(&format!("{base}/companies/initech/members/revoked"))
            .await
            .unwrap();
        let connection = wait_for(&client, Locator::Id("connection")).await;
        assert!(connection.attr("data-connection").await.unwrap().is_some());

        // A yellow icon no banner explains says what is wrong in its row: peter asked for
        // his calendar, which initech does not import.
        client
            .goto(&format!("{base}/companies/initech/members"))
            .await
            .unwrap();
        let explained = client
            .find(Locator::Css("tr[data-member='peter'] .explain"))
            .await
            .expect("peter's row explains his yellow calendar");
        let text = explained.text().await.unwrap();
        assert!(
            text.starts_with("Calendar: Calendar import off for the company."),
            "{text}"
        );
        for banner in client.find_all(Locator::Css("#banners .banner")).await.unwrap() {
            let code = banner.attr("data-code").await.unwrap().unwrap();
            assert_ne!(code, "company_calendar_import_disabled", "no such banner");
        }

        // A message page: a bad filter says so in words.
        client
            .goto(&format!("{base}/companies/globex/members?reason=bogus"))
            .await
            .unwrap();
        let said = client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
        assert!(
            said.contains("There is no reason \"bogus\"") && !said.contains("STATUS_MODEL"),
            "{said}"
        );
        check_page(&client, &axe, "message", &mut serious).await;

        // Live: a status change written to the database shows without a reload, focus and
        // an unsubmitted filter staying as they were.
        client
            .goto(&format!("{base}/companies/globex/members"))
            .await
            .unwrap();
        wait_for(&client, Locator::Id("members")).await;
        let admin_email = "tr[data-member='admin'] .icon[data-icon='email']";
        let before = client.find(Locator::Css(admin_email)).await.unwrap();
        assert_eq!(before.attr("data-color").await.unwrap().as_deref(), Some("green"));
        let focus_id = before.attr("id").await.unwrap().unwrap();
        client
            .execute(
                "window.notReloaded = true; document.getElementById(arguments[0]).focus();",
                vec![serde_json::json!(focus_id)],
            )
            .await
            .unwrap();
        client
            .find(Locator::Id("color"))
            .await
            .unwrap()
            .select_by_value("yellow")
            .await
            .unwrap();
        client
            .execute(
                "document.getElementById(arguments[0]).focus();",
                vec![serde_json::json!(focus_id)],
            )
            .await
            .unwrap();
        refuse_admins_credential(&demo.state.path().join("demo.sqlite")).await;
        let start = Instant::now();
        loop {
            let color = client
                .find(Locator::Css(admin_email))
                .await
                .unwrap()
                .attr("data-color")
                .await
                .unwrap();
            if color.as_deref() == Some("red") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the change did not show without a reload: {color:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let after = client
            .execute(
                "return [window.notReloaded === true, document.activeElement.id, document.getElementById('color').value, document.querySelector('#members tbody tr').getAttribute('class')]",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(after[0], serde_json::json!(true), "no reload");
        assert_eq!(after[1].as_str(), Some(focus_id.as_str()), "focus stays");
        assert_eq!(after[2].as_str(), Some("yellow"), "the unsubmitted filter stays");
        assert_eq!(after[3].as_str(), Some("red"), "still red first");
        // Paused, the page stops asking.
        client.find(Locator::Id("pause")).await.unwrap().click().await.unwrap();
        let pressed = client.find(Locator::Id("pause")).await.unwrap();
        assert_eq!(pressed.attr("aria-pressed").await.unwrap().as_deref(), Some("true"));

        client.close().await.unwrap();
        assert!(
            serious.is_empty(),
            "axe-core found serious or critical violations:\n{}",
            serious.join("\n")
        );
    });
    drop(demo);
}

/// Writes a refused-credential attempt for globex's admin's email into the demo's
/// database, as a worker would: the icon turns red (`app_credential_invalid`).
async fn refuse_admins_credential(database: &Path) {
    let store = datacap_store::Store::connect(
        &format!("sqlite://{}", database.display()),
        datacap_store::StoreOptions::default(),
    )
    .await
    .expect("the demo's database");
    let now = time::OffsetDateTime::now_utc();
    let record = datacap_store::AttemptRecord {
        attempt_id: uuid::Uuid::now_v7(),
        member_id: "admin".to_owned(),
        channel: datacap_core::Channel::Email,
        started_at: now,
        finished_at: now,
        outcome: datacap_core::Outcome::CredentialRejected,
        http_status: Some(400),
        provider_error_code: Some("invalid_grant".to_owned()),
        provider_error_message: Some("Invalid JWT Signature.".to_owned()),
        provider_request_id: None,
        email_items: Vec::new(),
        calendar_items: Vec::new(),
        next_cursor: None,
        next_due_at: now + time::Duration::days(1),
        lease_owner: None,
    };
    store
        .record_attempt(&record, now, &datacap_store::WriteOptions::default())
        .await
        .expect("the attempt is written");
    store.close().await;
}
