//! The dashboard over plain HTTP (the browser tests drive it in chromium): the sign-in
//! cookie's attributes, CSRF refusals, sessions that end with their token, embedded assets.

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

use super::support;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `Set-Cookie` header setting `name`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

fn value(cookie: &str) -> String {
    cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap()
}

/// The CSRF token a dashboard page's forms carry.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

/// The page at `path`, as the browser signed in as `session` gets it.
async fn page_of(http: &reqwest::Client, base: &str, path: &str, session: &str) -> String {
    let resp = http
        .get(format!("{base}{path}"))
        .header(COOKIE, format!("phony_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.text().await.unwrap()
}

/// Signs in with `token` (over TLS, as a proxy says, when `tls`); the session cookie.
async fn sign_in(base: &str, token: &str, tls: bool) -> String {
    let http = client();
    let page = http.get(format!("{base}/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = value(&set_cookie(&page, "phony_sign_in"));
    let mut req = http
        .post(format!("{base}/sign-in"))
        .header(COOKIE, format!("phony_sign_in={csrf}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={token}&csrf={csrf}"));
    if tls {
        req = req.header("x-forwarded-proto", "https");
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/");
    let cookie = set_cookie(&resp, "phony_session");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Strict"), "{cookie}");
    assert_eq!(cookie.contains("; Secure"), tls, "{cookie}");
    value(&cookie)
}

#[tokio::test]
async fn signing_in_sets_a_strict_cookie_and_the_session_ends_with_its_token() {
    let h = support::start().await;
    let p = h.project("FREE", 3).await;
    let http = client();

    // Not signed in: every page leads to the sign-in page.
    let resp = http.get(format!("{}/", h.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/sign-in");

    // A wrong token is told so; a sign-in without its CSRF token is refused.
    let page = http
        .get(format!("{}/sign-in", h.base))
        .send()
        .await
        .unwrap();
    let csrf = value(&set_cookie(&page, "phony_sign_in"));
    let post = |body: String| {
        http.post(format!("{}/sign-in", h.base))
            .header(COOKIE, format!("phony_sign_in={csrf}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let wrong = post(format!("token=phony_nope&csrf={csrf}")).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.unwrap().contains("not valid"));
    let forged = post(format!("token={}", p.token)).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // Over TLS (behind a proxy) the cookie is Secure; over plain HTTP it cannot be.
    sign_in(&h.base, &p.token, true).await;
    let session = sign_in(&h.base, &p.token, false).await;
    let home = http
        .get(format!("{}/", h.base))
        .header(COOKIE, format!("phony_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    let csp = home.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(home.text().await.unwrap().contains(&p.id));
    let again = http
        .get(format!("{}/sign-in", h.base))
        .header(COOKIE, format!("phony_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER, "signed in already");
    assert_eq!(again.headers()[LOCATION], "/");

    // The token revoked: the session ends at the next request, back to the sign-in page.
    let tokens = h.get("/api/v1/tokens", &h.admin).await;
    let id = tokens.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["project_id"] == p.id.as_str())
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_owned();
    h.delete(&format!("/api/v1/tokens/{id}"), &h.admin)
        .await
        .ok(204);
    let after = http
        .get(format!("{}/projects/{}", h.base, p.id))
        .header(COOKIE, format!("phony_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()[LOCATION], "/sign-in?ended=1");
    // The script is told in JSON where to go.
    let polled = http
        .get(format!("{}/jobs/job_x/status", h.base))
        .header(COOKIE, format!("phony_session={session}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(polled.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn posts_without_the_session_csrf_token_do_nothing() {
    let h = support::start().await;
    let p = h.project("FREE", 3).await;
    let session = sign_in(&h.base, &p.token, false).await;
    let http = client();
    for body in ["name=x", "name=x&csrf=phony_stale"] {
        let resp = http
            .post(format!("{}/projects/{}/snapshots", h.base, p.id))
            .header(COOKIE, format!("phony_session={session}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{body}");
    }
    let jobs = h
        .get(&format!("/api/v1/projects/{}/jobs", p.id), &p.token)
        .await;
    assert_eq!(jobs.ok(200)["items"], json!([]));

    // With the session's token: a form is sent to the job's page, the script gets the job.
    let page = page_of(&http, &h.base, &format!("/projects/{}", p.id), &session).await;
    let csrf = csrf_of(&page);
    let post = |accept: &'static str, name: &'static str| {
        http.post(format!("{}/projects/{}/snapshots", h.base, p.id))
            .header(COOKIE, format!("phony_session={session}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("accept", accept)
            .body(format!("name={name}&csrf={csrf}"))
            .send()
    };
    let form = post("text/html", "first").await.unwrap();
    assert_eq!(form.status(), StatusCode::SEE_OTHER);
    let job_page = form.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(job_page.starts_with("/jobs/job_"), "{job_page}");
    let script = post("application/json", "second").await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    let queued: serde_json::Value = script.json().await.unwrap();
    let status = queued["status"].as_str().unwrap().to_owned();
    assert!(
        status.starts_with("/jobs/job_") && status.ends_with("/status"),
        "{queued}"
    );
    // A name taken is one clear line for the script to show.
    let job = status
        .trim_start_matches("/jobs/")
        .trim_end_matches("/status");
    h.wait_job(job, &p.token).await;
    let taken = post("application/json", "second").await.unwrap();
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let refused: serde_json::Value = taken.json().await.unwrap();
    assert!(
        refused["error"].as_str().unwrap().contains("second"),
        "{refused}"
    );
}

#[tokio::test]
async fn assets_come_from_the_binary_and_pages_stay_out_of_the_api_document() {
    let h = support::start().await;
    let http = client();
    for (file, media) in [
        ("style.css", "text/css"),
        ("app.js", "text/javascript"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let resp = http
            .get(format!("{}/assets/{file}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{file}");
        let ct = resp.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        assert!(ct.starts_with(media), "{file}: {ct}");
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains("http://") || file == "icon.svg",
            "{file} names another site"
        );
        assert!(!body.contains("https://"), "{file} names another site");
    }
    let missing = http
        .get(format!("{}/assets/nope.js", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let doc = h
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let paths = doc.ok(200)["paths"].as_object().unwrap().clone();
    assert!(
        paths.keys().all(|p| p.starts_with("/api/")
            || ["/docs", "/healthz", "/readyz", "/metrics"].contains(&p.as_str())),
        "{:?}",
        paths.keys()
    );
}

#[tokio::test]
async fn an_admin_sets_a_custom_retention_from_the_settings_page() {
    let h = support::start().await;
    let p = h.project("BUSINESS", 3).await;
    let retention_days = || async {
        let project = h.get(&format!("/api/v1/projects/{}", p.id), &h.admin).await;
        project.ok(200)["retention_days"].clone()
    };
    let admin = Settings::open(&h, &h.admin, &p.id).await;
    let csrf = admin.csrf().await;

    // Without the CSRF token, or with a number that is not one: refused, nothing changed.
    let (refused, _) = admin
        .post("/retention", &[("days", "45")], "text/html")
        .await;
    assert_eq!(refused, StatusCode::FORBIDDEN);
    let (bad, _) = admin
        .post(
            "/retention",
            &[("csrf", &csrf), ("days", "-3")],
            "text/html",
        )
        .await;
    assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(retention_days().await, json!(null));

    let (saved, _) = admin
        .post(
            "/retention",
            &[("csrf", &csrf), ("days", "45")],
            "text/html",
        )
        .await;
    assert_eq!(saved, StatusCode::SEE_OTHER);
    assert_eq!(retention_days().await, json!(45));

    // A project's own token may not: the API's rule (admin only) answers.
    let own = Settings::open(&h, &p.token, &p.id).await;
    let page = own.page().await;
    assert!(!page.contains("/settings/retention"));
    let (denied, _) = own
        .post(
            "/retention",
            &[("csrf", &csrf_of(&page)), ("days", "10")],
            "text/html",
        )
        .await;
    assert_eq!(denied, StatusCode::FORBIDDEN);
    assert_eq!(retention_days().await, json!(45));
}

/// A signed-in browser's view of one project's settings, over plain HTTP.
struct Settings<'a> {
    h: &'a support::Harness,
    project: String,
    session: String,
    http: reqwest::Client,
}

impl<'a> Settings<'a> {
    async fn open(h: &'a support::Harness, token: &str, project: &str) -> Settings<'a> {
        Settings {
            h,
            project: project.to_owned(),
            session: sign_in(&h.base, token, false).await,
            http: client(),
        }
    }

    async fn page(&self) -> String {
        let path = format!("/projects/{}/settings", self.project);
        page_of(&self.http, &self.h.base, &path, &self.session).await
    }

    async fn csrf(&self) -> String {
        csrf_of(&self.page().await)
    }

    /// Posts the form `body` to `/projects/{id}/settings{rest}`: the status and the page.
    async fn post(&self, rest: &str, body: &[(&str, &str)], accept: &str) -> (StatusCode, String) {
        let resp = self
            .http
            .post(format!(
                "{}/projects/{}/settings{rest}",
                self.h.base, self.project
            ))
            .header(COOKIE, format!("phony_session={}", self.session))
            .header("accept", accept)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(body))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    async fn preview(&self, cron: &str, zone: &str) -> (StatusCode, serde_json::Value) {
        let resp = self
            .http
            .get(format!(
                "{}/projects/{}/settings/schedules/preview?{}",
                self.h.base,
                self.project,
                encode(&[("cron", cron), ("timezone", zone)])
            ))
            .header(COOKIE, format!("phony_session={}", self.session))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap())
    }
}

/// `pairs` as a form body (or a query string).
fn encode(pairs: &[(&str, &str)]) -> String {
    let one = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", one(k), one(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The JSON at `path` (200).
async fn api(h: &support::Harness, path: &str, token: &str) -> serde_json::Value {
    h.get(path, token).await.ok(200).clone()
}

/// The one line a refused form shows beside it.
fn error_line(page: &str) -> String {
    let after = page
        .split("data-error=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no error line on the page"));
    let text = after.split_once('>').unwrap().1;
    text.split("</p>").next().unwrap().to_owned()
}

const HTML: &str = "text/html";

#[tokio::test]
async fn schedules_are_previewed_saved_and_deleted_from_the_settings_page() {
    let h = support::start().await;
    let p = h.project("TEAM", 3).await;
    let s = Settings::open(&h, &p.token, &p.id).await;
    let path = format!("/api/v1/projects/{}/schedules", p.id);
    let listed = |h| api(h, &path, &p.token);
    let weekly = [
        ("cron", "0 0 * * FRI"),
        ("timezone", "Europe/Paris"),
        ("name", "weekly-{date}"),
    ];

    // Without the CSRF token: refused, nothing saved.
    let (status, _) = s.post("/schedules", &weekly, HTML).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(listed(&h).await["items"], json!([]));

    // The script's preview: five Fridays at midnight in Paris, Thursdays in UTC; a bad
    // field is named.
    let (status, runs) = s.preview("0 0 * * FRI", "Europe/Paris").await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    let runs = runs["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 5);
    assert!(
        runs.iter().all(|r| {
            let r = r.as_str().unwrap();
            r.starts_with("Fri ")
                && r.contains(" 00:00 Europe/Paris (Thu ")
                && r.ends_with(":00 UTC)")
        }),
        "{runs:?}"
    );
    let (status, bad) = s.preview("0 0 * * FRUIT", "UTC").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        bad["error"].as_str().unwrap().contains("day-of-week"),
        "{bad}"
    );
    let (status, bad) = s.preview("0 0 * * FRI", "Mars/Olympus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        bad["error"].as_str().unwrap().contains("Mars/Olympus"),
        "{bad}"
    );

    // "Preview" without the script: the page with the five times, the form as typed.
    let csrf = s.csrf().await;
    let mut form = weekly.to_vec();
    form.push(("csrf", &csrf));
    let mut preview = form.clone();
    preview.push(("action", "preview"));
    let (status, page) = s.post("/schedules", &preview, HTML).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("data-run").count(), 5, "{page}");
    assert!(page.contains("value=\"weekly-{date}\""));
    assert_eq!(
        listed(&h).await["items"],
        json!([]),
        "a preview saves nothing"
    );

    // A bad cron saved: one line naming the field, what was typed kept, nothing saved.
    let mut bad = vec![
        ("cron", "61 0 * * *"),
        ("timezone", "UTC"),
        ("csrf", csrf.as_str()),
    ];
    bad.push(("action", "save"));
    let (status, page) = s.post("/schedules", &bad, HTML).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let line = error_line(&page);
    assert!(line.contains("minute") && !line.contains('\n'), "{line}");
    assert!(page.contains("value=\"61 0 * * *\""));
    assert_eq!(listed(&h).await["items"], json!([]));

    // Saved: listed by the API and on the page, with its next runs; then deleted.
    let mut save = form.clone();
    save.push(("action", "save"));
    save.push(("pin", "1"));
    let (status, _) = s.post("/schedules", &save, HTML).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let items = listed(&h).await["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(items[0]["timezone"], "Europe/Paris");
    assert_eq!(items[0]["pin"], true);
    let id = items[0]["id"].as_str().unwrap().to_owned();
    let page = s.page().await;
    assert!(page.contains(&format!("data-schedule=\"{id}\"")));
    let (status, _) = s.post(&format!("/schedules/{id}/delete"), &[], HTML).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(listed(&h).await["items"].as_array().unwrap().len(), 1);
    let (status, _) = s
        .post(&format!("/schedules/{id}/delete"), &[("csrf", &csrf)], HTML)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(listed(&h).await["items"], json!([]));
    let (status, page) = s
        .post(&format!("/schedules/{id}/delete"), &[("csrf", &csrf)], HTML)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        error_line(&page).contains("schedule"),
        "{}",
        error_line(&page)
    );

    // Below TEAM: the section is disabled naming TEAM, and the API's gate answers a post.
    let free = h.project("FREE", 1).await;
    let f = Settings::open(&h, &free.token, &free.id).await;
    let page = f.page().await;
    assert!(page.contains("data-plan-required=\"TEAM\""), "{page}");
    let csrf = f.csrf().await;
    let (status, page) = f
        .post(
            "/schedules",
            &[("cron", "0 0 * * FRI"), ("csrf", &csrf), ("action", "save")],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error_line(&page).contains("TEAM"), "{}", error_line(&page));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sync_source_masking_rules_and_sync_now_from_the_settings_page() {
    let h = support::start().await;
    let source = phony_tests::TestDb::new("web_sync_src").await;
    source
        .exec(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'prod ' || g FROM generate_series(1, 20) g;",
        )
        .await;
    let secret_url = source
        .url()
        .replacen("postgres@", "postgres:hunter2-secret@", 1);
    let p = h.project("TEAM", 5).await;
    let s = Settings::open(&h, &p.token, &p.id).await;
    let path = format!("/api/v1/projects/{}", p.id);
    let project = |h| api(h, &path, &p.token);

    // Without the CSRF token: refused, nothing set.
    let (status, _) = s
        .post("/sync", &[("source_url", secret_url.as_str())], HTML)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(project(&h).await["sync_source"], json!(null));

    // A URL that is not one, and a bad masking line: one line each, the password never
    // shown back, the rules as typed kept.
    let csrf = s.csrf().await;
    let (status, page) = s
        .post(
            "/sync",
            &[
                ("source_url", "mysql://u:hunter2-secret@db/x"),
                ("csrf", &csrf),
            ],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error_line(&page).contains("postgres://"),
        "{}",
        error_line(&page)
    );
    assert!(!page.contains("hunter2"));
    let rules = "public.items.name name\npublic.items.id shred\n";
    let (status, page) = s
        .post(
            "/sync",
            &[
                ("source_url", secret_url.as_str()),
                ("masking_rules", rules),
                ("csrf", &csrf),
            ],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let line = error_line(&page);
    assert!(line.contains("line 2") || line.contains("shred"), "{line}");
    assert!(
        page.contains("public.items.id shred"),
        "the rules typed are kept"
    );
    assert!(!page.contains("hunter2"));
    assert_eq!(project(&h).await["sync_source"], json!(null));

    // Saved: the page shows the source without its password.
    let (status, _) = s
        .post(
            "/sync",
            &[
                ("source_url", secret_url.as_str()),
                ("masking_rules", "public.items.name name\n"),
                ("csrf", &csrf),
            ],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let saved = project(&h).await;
    assert!(saved["sync_source"]
        .as_str()
        .unwrap()
        .contains("web_sync_src"));
    assert_eq!(saved["masking_rules"], "public.items.name name\n");
    let page = s.page().await;
    assert!(page.contains("web_sync_src") && !page.contains("hunter2"));
    // An empty URL keeps the source (its password too).
    let (status, _) = s
        .post(
            "/sync",
            &[
                ("source_url", ""),
                ("masking_rules", "public.items.name name"),
                ("csrf", &csrf),
            ],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(project(&h).await["sync_source"].is_string());

    // Sync now: refused without the token; then a job, followed; the timeline shows it.
    let json_accept = "application/json";
    let (status, _) = s.post("/sync/run", &[("before", "1")], json_accept).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, queued) = s
        .post(
            "/sync/run",
            &[("before", "1"), ("after", "1"), ("csrf", &csrf)],
            json_accept,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    let queued: serde_json::Value = serde_json::from_str(&queued).unwrap();
    let job = h.wait_job(queued["job"].as_str().unwrap(), &p.token).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let job_page = s
        .http
        .get(format!("{}/jobs/{}", h.base, job["id"].as_str().unwrap()))
        .header(COOKIE, format!("phony_session={}", s.session))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(job_page.contains("data-synced") && job_page.contains("web_sync_src"));
    assert!(
        job_page.contains("data-sync-snapshot=\"before\"")
            && job_page.contains("data-sync-snapshot=\"after\"")
    );
    assert!(!job_page.contains("hunter2"));
    let masked: i64 =
        p.db.value("SELECT count(*) FROM items WHERE name LIKE 'prod %'")
            .await;
    assert_eq!(masked, 0, "names are masked");
    let timeline = s
        .http
        .get(format!("{}/projects/{}", h.base, p.id))
        .header(COOKIE, format!("phony_session={}", s.session))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        timeline.contains("Before Sync #1") && timeline.contains(">Sync #1"),
        "{timeline}"
    );

    // STARTER takes no snapshot before a sync: its box is disabled naming TEAM, and asking
    // for it anyway is the API's refusal, one line.
    let starter = h.project("STARTER", 1).await;
    h.patch(
        &format!("/api/v1/projects/{}", starter.id),
        &starter.token,
        json!({ "sync_source_url": source.url() }),
    )
    .await
    .ok(200);
    let st = Settings::open(&h, &starter.token, &starter.id).await;
    let page = st.page().await;
    let before = page.split("data-side=\"before\"").nth(1).unwrap();
    let before = before.split("</div>").next().unwrap();
    assert!(
        before.contains("disabled") && before.contains("needs TEAM"),
        "{before}"
    );
    let csrf = st.csrf().await;
    let (status, page) = st
        .post("/sync/run", &[("before", "1"), ("csrf", &csrf)], HTML)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error_line(&page).contains("TEAM"), "{}", error_line(&page));
    let jobs = h
        .get(
            &format!("/api/v1/projects/{}/jobs", starter.id),
            &starter.token,
        )
        .await;
    assert_eq!(jobs.ok(200)["items"], json!([]));

    // FREE takes no snapshot around a sync: the timeline shows the sync itself, from the
    // timeline API.
    let free = h.project("FREE", 1).await;
    h.patch(
        &format!("/api/v1/projects/{}", free.id),
        &free.token,
        json!({ "sync_source_url": source.url() }),
    )
    .await
    .ok(200);
    let fr = Settings::open(&h, &free.token, &free.id).await;
    let csrf = fr.csrf().await;
    let (status, queued) = fr.post("/sync/run", &[("csrf", &csrf)], json_accept).await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    let queued: serde_json::Value = serde_json::from_str(&queued).unwrap();
    let job = h
        .wait_job(queued["job"].as_str().unwrap(), &free.token)
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let timeline = fr
        .http
        .get(format!("{}/projects/{}", h.base, free.id))
        .header(COOKIE, format!("phony_session={}", fr.session))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let event = timeline.split("item k-event").nth(1).unwrap_or_default();
    assert!(event.contains("Sync #1"), "{timeline}");
}

#[tokio::test]
async fn a_webhook_secret_is_shown_once_with_its_hook_url() {
    let h = support::start().await;
    let p = h.project("FREE", 1).await;
    let s = Settings::open(&h, &p.token, &p.id).await;

    // Without the CSRF token: refused, nothing set (a delivery is still refused).
    let (status, _) = s.post("/webhooks/jira", &[("secret", "x")], HTML).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(s.page().await.contains("No secret"));

    // Left empty: the server makes one, 256 bits in hex, shown with the hook URL once.
    let csrf = s.csrf().await;
    let (status, page) = s
        .post("/webhooks/jira", &[("secret", ""), ("csrf", &csrf)], HTML)
        .await;
    assert_eq!(status, StatusCode::OK);
    let secret = page
        .split("data-secret>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 64, "{secret}");
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(page.contains(&format!("/api/v1/hooks/jira/{}", p.id)));
    assert!(
        page.contains("http://127.0.0.1"),
        "the hook URL is absolute"
    );
    let again = s.page().await;
    assert!(!again.contains(&secret), "a secret is shown once");
    assert!(again.contains("A secret is set"));

    // One of the user's own, for Linear: shown that once too.
    let (status, page) = s
        .post(
            "/webhooks/linear",
            &[("secret", "my-own-linear-secret"), ("csrf", &csrf)],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("my-own-linear-secret"));
    assert!(!s.page().await.contains("my-own-linear-secret"));

    // A sync on sprint end without a sync source, and a tracker that is not one: one line.
    let (status, page) = s
        .post(
            "/webhooks/jira",
            &[
                ("secret", "x"),
                ("sync_on_sprint_end", "1"),
                ("csrf", &csrf),
            ],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        error_line(&page).contains("sync source"),
        "{}",
        error_line(&page)
    );
    let (status, _) = s
        .post(
            "/webhooks/trello",
            &[("secret", "x"), ("csrf", &csrf)],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn retention_keep_last_and_days_stay_within_the_plans_caps() {
    let h = support::start().await;
    let p = h.project("TEAM", 1).await;
    let s = Settings::open(&h, &h.admin, &p.id).await;
    let (status, _) = s.post("/retention", &[("keep", "5")], HTML).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = s.csrf().await;
    let (status, page) = s
        .post(
            "/retention",
            &[("keep", "51"), ("days", "30"), ("csrf", &csrf)],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_line(&page).contains("TEAM"), "{}", error_line(&page));
    let (status, page) = s
        .post("/retention", &[("keep", "two"), ("csrf", &csrf)], HTML)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_line(&page).contains("two"), "{}", error_line(&page));
    let project = h.get(&format!("/api/v1/projects/{}", p.id), &h.admin).await;
    assert_eq!(project.ok(200)["keep_last"], json!(null));
    let (status, _) = s
        .post(
            "/retention",
            &[("keep", "5"), ("days", "30"), ("csrf", &csrf)],
            HTML,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let project = h.get(&format!("/api/v1/projects/{}", p.id), &h.admin).await;
    assert_eq!(project.ok(200)["keep_last"], json!(5));
    assert_eq!(project.ok(200)["retention_days"], json!(30));
    assert!(s.page().await.contains("value=\"5\""));
}
