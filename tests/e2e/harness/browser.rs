//! The real browser: Debian's headless Chromium driven through chromedriver (WebDriver,
//! via fantoccini), for the tests that open the pages as people do, and the directory their
//! screenshots go to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use super::{KillOnDrop, eventually, free_port};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether Chromium and chromedriver are installed (.ci/run installs them). Without them
/// the caller skips with a message, except under `CI=true`, where that is a failure.
pub fn browser_installed() -> bool {
    if Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install chromium chromium-driver)"
    );
    #[allow(clippy::print_stderr)]
    {
        eprintln!("skipped: {CHROMEDRIVER} or {CHROMIUM} is missing");
    }
    false
}

/// A chromedriver of the test's own on a free port, listening; killed on drop.
pub struct Chromedriver {
    addr: SocketAddr,
    _process: KillOnDrop,
}

impl Chromedriver {
    pub fn start() -> Chromedriver {
        let addr = free_port();
        let process = KillOnDrop(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={}", addr.port()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        eventually("chromedriver listens", Duration::from_secs(60), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        Chromedriver {
            addr,
            _process: process,
        }
    }

    /// A headless Chromium session, its window 1400 × 1100.
    pub async fn session(&self) -> Client {
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
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://{}", self.addr))
            .await
            .expect("a chromium session")
    }
}

/// Types `token` into the sign-in form on the page and submits it.
pub async fn sign_in(client: &Client, token: &str) {
    let field = client
        .find(Locator::Id("token"))
        .await
        .expect("sign-in form");
    field.send_keys(token).await.unwrap();
    click(client, Locator::Css("form[action='/login'] button")).await;
}

/// Clicks the element at `locator` on the page.
pub async fn click(client: &Client, locator: Locator<'_>) {
    let element = client
        .find(locator)
        .await
        .unwrap_or_else(|error| panic!("no {locator:?} on the page: {error}"));
    element.click().await.unwrap();
}

/// Waits for the element at `locator` to appear on the page.
pub async fn wait_for(client: &Client, locator: Locator<'_>) -> Element {
    client
        .wait()
        .for_element(locator)
        .await
        .unwrap_or_else(|error| panic!("waiting for {locator:?}: {error}"))
}

/// Where screenshot `name` goes: `$CARGO_TARGET_TMPDIR/screenshots/`, made here when
/// missing (the tests that write there run in one process, in any order).
pub fn screenshot_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshots directory");
    dir.join(name)
}
