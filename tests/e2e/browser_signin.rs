//! Sign-in, reminders and the member's connect pages in a real browser (issue 20 §4):
//! `datacap demo` serves them, headless Chromium (chromedriver, fantoccini) opens a
//! filtered Team members page signed out, signs in on the form it is sent to and lands on
//! that page; follows the "not connected" banner to the company's reminders page (the demo
//! has no mail relay: the page lists whom it would mail and says mail is not set up); and
//! opens a broken connect link as a member would (a page for the member, no way into the
//! operator's sign-in). Screenshots go to `$CARGO_TARGET_TMPDIR/screenshots/`
//! (`reminders.png`, `connect-refused.png`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them). Without them
//! the test is skipped with a message, except under `CI=true`, where that is a failure.

use fantoccini::Locator;

use crate::harness::browser::{
    Chromedriver, browser_installed, click, screenshot_path, sign_in, wait_for,
};
use crate::harness::{Demo, block_on};

#[test]
fn a_deep_link_signs_in_to_its_page_and_admins_reach_the_reminders() {
    if !browser_installed() {
        return;
    }
    let demo = Demo::start();
    let token = &demo.token;
    let driver = Chromedriver::start();
    block_on(async {
        let client = driver.session().await;
        let base = demo.base();

        // Signed out, a filtered page: the sign-in form, then that very page.
        let deep = format!("{base}/companies/initech/members?color=yellow");
        client.goto(&deep).await.unwrap();
        wait_for(&client, Locator::Id("token")).await;
        assert!(
            client
                .current_url()
                .await
                .unwrap()
                .as_str()
                .starts_with(&format!("{base}/login?next=")),
            "sent to sign-in"
        );
        sign_in(&client, token.trim()).await;
        wait_for(&client, Locator::Id("members")).await;
        assert_eq!(client.current_url().await.unwrap().as_str(), deep);

        // The "not connected" banner leads to the reminders page.
        click(&client, Locator::Css("a.remind")).await;
        wait_for(&client, Locator::Id("reminders")).await;
        assert_eq!(
            client.current_url().await.unwrap().as_str(),
            format!("{base}/companies/initech/reminders")
        );
        let newbie = client
            .find(Locator::Css("#reminders tr[data-member='newbie']"))
            .await
            .expect("newbie is to be reminded");
        assert!(newbie.text().await.unwrap().contains("not connected"));
        let cannot = client
            .find(Locator::Id("cannot-send"))
            .await
            .expect("the page says why it cannot mail");
        assert!(cannot.text().await.unwrap().contains("Mail is not set up"));
        let png = client.screenshot().await.unwrap();
        std::fs::write(screenshot_path("reminders.png"), &png).unwrap();

        // A member with a broken link gets a page meant for them.
        client
            .goto(&format!("{base}/connect/google/start?invite=broken"))
            .await
            .unwrap();
        let result = wait_for(&client, Locator::Id("connect-result")).await;
        assert_eq!(
            result.attr("data-outcome").await.unwrap().as_deref(),
            Some("refused")
        );
        let text = result.text().await.unwrap();
        assert!(text.contains("contact your datacap admin"), "{text}");
        // Its one link is the skip link to its own text: nothing to the operator's sign-in.
        let mut hrefs = Vec::new();
        for link in client.find_all(Locator::Css("a")).await.unwrap() {
            hrefs.push(link.attr("href").await.unwrap().unwrap_or_default());
        }
        assert_eq!(hrefs, ["#main"], "no link to the operator's sign-in");
        assert!(
            client.find(Locator::Css("main#main")).await.is_ok(),
            "the skip link's target"
        );
        let png = client.screenshot().await.unwrap();
        std::fs::write(screenshot_path("connect-refused.png"), &png).unwrap();
        client.close().await.unwrap();
    });
}
