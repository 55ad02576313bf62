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
    let page = http
        .get(format!("{}/projects/{}", h.base, p.id))
        .header(COOKIE, format!("phony_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
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
    let http = client();
    let form = |session: &str, body: &str| {
        http.post(format!("{}/projects/{}/settings/retention", h.base, p.id))
            .header(COOKIE, format!("phony_session={session}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
    };
    let admin = sign_in(&h.base, &h.admin, false).await;
    let page = http
        .get(format!("{}/projects/{}/settings", h.base, p.id))
        .header(COOKIE, format!("phony_session={admin}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();

    // Without the CSRF token, or with a number that is not one: refused, nothing changed.
    let refused = form(&admin, "days=45").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let bad = form(&admin, &format!("csrf={csrf}&days=-3")).await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let project = h.get(&format!("/api/v1/projects/{}", p.id), &h.admin).await;
    assert_eq!(project.ok(200)["retention_days"], json!(null));

    let saved = form(&admin, &format!("csrf={csrf}&days=45")).await.unwrap();
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let project = h.get(&format!("/api/v1/projects/{}", p.id), &h.admin).await;
    assert_eq!(project.ok(200)["retention_days"], json!(45));

    // A project's own token may not: the API's rule (admin only) answers.
    let own = sign_in(&h.base, &p.token, false).await;
    let page = http
        .get(format!("{}/projects/{}/settings", h.base, p.id))
        .header(COOKIE, format!("phony_session={own}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    assert!(!page.contains("/settings/retention"));
    let denied = form(&own, &format!("csrf={csrf}&days=10")).await.unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let project = h.get(&format!("/api/v1/projects/{}", p.id), &h.admin).await;
    assert_eq!(project.ok(200)["retention_days"], json!(45));
}
