//! The Team members page in a real browser: `datacap demo` (the sim, every reason code,
//! auth on) serves it, headless Chromium driven through chromedriver (WebDriver, via
//! fantoccini) signs in with the operator token from the demo's state directory, checks
//! the icons' colours, visible labels and accessible names, the tooltip on focus, the
//! banners and the colour filter, the webhook endpoints' health, a member's page and the
//! operator's full resync, and saves screenshots to `target/tmp/screenshots/team-members.png`
//! and `target/tmp/screenshots/member.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them). Without them
//! the test is skipped with a message, except under `CI=true`, where that is a failure.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Kills a child process when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {deadline:?}");
}

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots/team-members.png")
}

fn member_screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots/member.png")
}

#[test]
fn team_members_page_in_headless_chromium() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install chromium chromium-driver)"
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!("skipped: {CHROMEDRIVER} or {CHROMIUM} is missing");
        }
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let listen = free_port();
    let stdout = state.path().join("demo.out");
    let demo = Process(
        Command::new(env!("CARGO_BIN_EXE_datacap"))
            .args(["demo", "--listen", &listen.to_string(), "--state-dir"])
            .arg(state.path())
            .env_clear()
            .env("DATACAP_LOG__LEVEL", "warn")
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("datacap demo starts"),
    );
    let read = |path: &Path| {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    };
    wait_until("the demo serves its page", Duration::from_secs(240), || {
        read(&stdout).contains("polling on")
    });
    let token = std::fs::read_to_string(state.path().join("web-operator-token")).unwrap();
    assert!(
        !read(&stdout).contains(token.trim()),
        "the demo prints where the token is, never the token"
    );

    let driver_addr = free_port();
    let _driver = Process(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", driver_addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    wait_until("chromedriver listens", Duration::from_secs(60), || {
        std::net::TcpStream::connect(driver_addr).is_ok()
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1100"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://{driver_addr}"))
            .await
            .expect("a chromium session");
        let base = format!("http://{listen}");

        // Signed out: the page is the sign-in form; sign in with the operator token.
        client
            .goto(&format!("{base}/companies/globex/members"))
            .await
            .unwrap();
        let field = client.find(Locator::Id("token")).await.expect("sign-in form");
        field.send_keys(token.trim()).await.unwrap();
        client
            .find(Locator::Css("form[action='/login'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
            .wait()
            .for_element(Locator::Css("a[href='/companies/globex/members']"))
            .await
            .expect("the operator's index lists globex");
        client
            .goto(&format!("{base}/companies/globex/members"))
            .await
            .unwrap();
        client
            .wait()
            .for_element(Locator::Id("members"))
            .await
            .expect("the members table");

        // Screenshot of the page as it loads: banners, filters and the first rows.
        let png = client.screenshot().await.unwrap();
        let path = screenshot_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");

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
        assert!(technical.text().await.unwrap().contains(&count.to_string()));

        // Each icon: a colour, a visible text label and an accessible name.
        let mut colors = std::collections::BTreeSet::new();
        for icon in client.find_all(Locator::Css("#members .icon")).await.unwrap() {
            let color = icon.attr("data-color").await.unwrap().unwrap();
            let label = icon.find(Locator::Css(".label")).await.unwrap();
            assert!(label.is_displayed().await.unwrap(), "the label is visible");
            assert!(!label.text().await.unwrap().trim().is_empty());
            let glyph = icon.find(Locator::Css("svg[role='img']")).await.unwrap();
            let name = glyph.attr("aria-label").await.unwrap().unwrap();
            assert!(name.contains(&format!(": {color}, ")), "{name}");
            colors.insert(color);
        }
        for color in ["green", "yellow", "red", "gray"] {
            assert!(colors.contains(color), "a {color} icon on the page: {colors:?}");
        }
        let admin_email = client
            .find(Locator::Css("tr[data-member='admin'] .icon[data-icon='email'] svg"))
            .await
            .unwrap();
        assert_eq!(
            admin_email.attr("aria-label").await.unwrap().as_deref(),
            Some("Email: green, importing")
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
        // Red rows carry the attempt id, HTTP status and provider error code.
        let details = client
            .find(Locator::Css("tr[data-member='policy'] .details[data-attempt]"))
            .await
            .unwrap();
        let text = details.text().await.unwrap();
        assert!(text.contains("HTTP 4") && text.contains("attempt"), "{text}");

        // The colour filter: only members with a red icon remain.
        client
            .find(Locator::Id("color"))
            .await
            .unwrap()
            .select_by_value("red")
            .await
            .unwrap();
        client
            .find(Locator::Css("form.filters button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
            .wait()
            .for_element(Locator::Css("#color option[value='red'][selected]"))
            .await
            .expect("the filtered page");
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
        client
            .find(Locator::Css("a[href='/companies/globex/members/policy']"))
            .await
            .expect("a link to the member's page")
            .click()
            .await
            .unwrap();
        client
            .wait()
            .for_element(Locator::Id("history"))
            .await
            .expect("the member's page");
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
        let png = client.screenshot().await.unwrap();
        let path = member_screenshot_path();
        std::fs::write(&path, &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        client
            .find(Locator::Css("#operator button"))
            .await
            .expect("the operator's action")
            .click()
            .await
            .unwrap();
        client
            .wait()
            .for_element(Locator::Id("resynced"))
            .await
            .expect("the resync is confirmed");

        // A user-by-user member's page carries their grant state and a connect link.
        client
            .goto(&format!("{base}/companies/initech/members/revoked"))
            .await
            .unwrap();
        let connection = client
            .wait()
            .for_element(Locator::Id("connection"))
            .await
            .expect("the connection section");
        assert!(connection.attr("data-connection").await.unwrap().is_some());
        client.close().await.unwrap();
    });
    drop(demo);
}
