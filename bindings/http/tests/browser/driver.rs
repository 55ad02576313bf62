//! A headless chromium of a test's own, through a chromedriver on a free port.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// Browsers open at once: chromium is heavy, and the machine runs other tests beside.
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The browser of one test; the driver process ends with it.
pub struct Browser {
    pub client: Client,
    pub base: String,
    driver: Child,
    _profile: tempfile::TempDir,
    _slot: tokio::sync::SemaphorePermit<'static>,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A browser pointed at `base`, or `None` (with a line saying so) when chromedriver is not
/// installed and `CI` is not set.
pub async fn open(base: &str) -> Option<Browser> {
    open_with(base, &[]).await
}

/// A browser whose system prefers dark pages.
pub async fn open_dark(base: &str) -> Option<Browser> {
    open_with(base, &["--blink-settings=preferredColorScheme=0"]).await
}

async fn open_with(base: &str, extra: &[&str]) -> Option<Browser> {
    let Some(chromedriver) = on_path("chromedriver") else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
            panic!("chromedriver is not installed: the browser tests must run in CI (apt-get install chromium chromium-driver)");
        }
        println!("skipping the browser test: chromedriver is not installed (apt-get install chromium chromium-driver)");
        return None;
    };
    let slot = SLOTS.acquire().await.unwrap();
    let port = free_port();
    let driver = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--hide-scrollbars",
    ]
    .iter()
    .chain(extra)
    .map(|a| (*a).to_owned())
    .collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({ "args": args }));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    Some(Browser {
        client,
        base: base.to_owned(),
        driver,
        _profile: profile,
        _slot: slot,
    })
}

impl Browser {
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// The path (and query) the browser is at.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The element `css` matches, waiting up to `secs` for it.
    pub async fn wait(&self, css: &str, secs: u64) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(secs))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding {css}: {e}"))
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Runs `script` (with `arguments`) in the page.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// Runs asynchronous `script`: it ends by calling `arguments[arguments.length - 1]`.
    pub async fn run_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute_async(script, args).await.unwrap()
    }

    /// Signs in with `token`; lands on the projects.
    pub async fn sign_in(&self, token: &str) {
        self.goto("/sign-in").await;
        self.find("#token").await.send_keys(token).await.unwrap();
        self.click("form[action='/sign-in'] button[type=submit]")
            .await;
        // Only a signed-in page has the main navigation.
        self.wait("nav[aria-label=Main]", 20).await;
        assert_eq!(
            self.path().await,
            "/",
            "signing in did not land on the projects"
        );
    }

    /// Writes screenshots of the page at `path` at 1280 and 390 px wide to
    /// `target/screenshots/NAME-WIDTH.png`, waiting for `ready` to show each time. With
    /// `PHONY_UPDATE_SCREENSHOTS=1`, the ones the README shows (the timeline's) are
    /// written to `docs/screenshots/` too; a plain test run leaves the checkout as it was.
    pub async fn screenshots(&self, name: &str, path: &str, ready: &str) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let docs = (std::env::var_os("PHONY_UPDATE_SCREENSHOTS").is_some() && name == "timeline")
            .then(|| root.join("docs/screenshots"));
        for (width, height) in [(1280u32, 900u32), (390, 844)] {
            self.client.set_window_size(width, height).await.unwrap();
            self.goto(path).await;
            self.wait(ready, 30).await;
            // Nothing makes the page wider than the window (wide parts scroll inside it).
            let widths = self
                .run(
                    "return [window.innerWidth, document.documentElement.scrollWidth];",
                    vec![],
                )
                .await;
            let (inner, scroll) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
            assert!(
                inner <= u64::from(width),
                "a {inner} px viewport in a {width} px window"
            );
            if scroll > inner {
                let wide = self
                    .run(
                        "return [...document.querySelectorAll('body *')]
                           .filter(e => e.getBoundingClientRect().right > window.innerWidth)
                           .map(e => e.tagName + '.' + e.className).slice(0, 8);",
                        vec![],
                    )
                    .await;
                panic!("{path} is {scroll} px wide in a {inner} px window: {wide}");
            }
            let png = self.client.screenshot().await.unwrap();
            let file = format!("{name}-{width}.png");
            std::fs::write(dir.join(&file), &png).unwrap();
            if let Some(docs) = &docs {
                std::fs::write(docs.join(&file), &png).unwrap();
            }
        }
        self.client.set_window_size(1280, 900).await.unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
