//! The web dashboard end to end, in a real headless browser: Debian's chromium driven
//! through chromedriver (WebDriver), against a real phony-server on a bound port and the
//! real PostgreSQL. Each test starts its own chromedriver and its own server.
//!
//! Without chromedriver the tests print a line and pass, unless `CI` is set: then they must
//! run (`.ci/run` installs chromium and chromium-driver).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser {
    #[allow(dead_code)]
    #[path = "../integration/support.rs"]
    pub mod support;

    pub mod driver;

    mod dashboard;
    mod looks;
    mod refusals;
    mod settings;
}
