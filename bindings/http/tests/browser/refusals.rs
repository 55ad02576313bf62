//! What the dashboard refuses or survives: a form posted without its CSRF token or with a
//! stale one (403, nothing done), a token revoked mid-session (back to the sign-in page, no
//! error page), a project whose database is down (the page loads and says so), two tabs
//! restoring at once (the second sees its job queued).

use serde_json::{json, Value};

use super::driver;
use super::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_their_csrf_token_are_refused_and_do_nothing() {
    let h = support::start().await;
    let p = h.project("TEAM", 10).await;
    let snap = h.snapshot(&p, json!({ "name": "base" })).await;
    let Some(b) = driver::open(&h.base).await else {
        return;
    };
    b.sign_in(&p.token).await;
    b.goto(&format!("/projects/{}", p.id)).await;
    b.wait("#timeline", 10).await;

    // From the page's own script: no token, then another session's (stale) token.
    let post = r#"
        const [url, body, done] = arguments;
        fetch(url, { method: "POST", body: new URLSearchParams(body),
                     headers: { Accept: "application/json" }, credentials: "same-origin" })
          .then(r => done(r.status)).catch(e => done(String(e)));
    "#;
    let snapshots = format!("/projects/{}/snapshots", p.id);
    for body in [
        json!({ "name": "sneaky" }),
        json!({ "name": "sneaky", "csrf": "phony_0123" }),
    ] {
        let status = b.run_async(post, vec![json!(snapshots), body]).await;
        assert_eq!(status, json!(403));
    }
    let restore = format!("/snapshots/{snap}/restore");
    let status = b.run_async(post, vec![json!(restore), json!({})]).await;
    assert_eq!(status, json!(403));

    // A real form without the field, submitted by the browser: the refusal is a page.
    b.run(
        r#"const f = document.createElement("form");
           f.method = "post"; f.action = arguments[0];
           document.body.appendChild(f); f.submit();"#,
        vec![json!(restore)],
    )
    .await;
    b.wait("section.error", 10).await;
    assert!(b.text("section.error").await.contains("Nothing was done"));

    // Nothing was done: the one job is the first snapshot's.
    let jobs = h
        .get(&format!("/api/v1/projects/{}/jobs", p.id), &p.token)
        .await;
    let items = jobs.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "create");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_signs_out_and_a_down_database_still_shows() {
    let h = support::start().await;
    let p = h.project("FREE", 10).await;
    let down = h
        .project_on("FREE", "postgres://postgres@127.0.0.1:1/nowhere")
        .await;
    let Some(b) = driver::open(&h.base).await else {
        return;
    };

    // Signed in with the project's token, which an admin then revokes.
    b.sign_in(&p.token).await;
    b.goto(&format!("/projects/{}", p.id)).await;
    b.wait("#timeline", 10).await;
    let tokens = h.get("/api/v1/tokens", &h.admin).await;
    let token_id = tokens.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["project_id"] == p.id.as_str())
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_owned();
    h.delete(&format!("/api/v1/tokens/{token_id}"), &h.admin)
        .await
        .ok(204);
    b.goto(&format!("/projects/{}", p.id)).await;
    b.wait("#token", 10).await;
    assert_eq!(b.path().await, "/sign-in?ended=1");
    assert!(b.text("[role=alert]").await.contains("session ended"));

    // An admin sees both projects; the one whose database is down still shows, and says so.
    b.sign_in(&h.admin).await;
    assert_eq!(b.count("tr[data-project]").await, 2);
    b.goto(&format!("/projects/{}", down.id)).await;
    b.wait("[data-database-down]", 20).await;
    b.wait("#timeline svg.timeline", 5).await;
    // FREE does not compare snapshots: the form says which plan does.
    assert!(b.text("[data-plan-required]").await.contains("TEAM"));
    b.goto(&format!("/projects/{}/settings", down.id)).await;
    b.wait("[data-database-down]", 20).await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_restore_from_another_tab_is_queued() {
    let h = support::start_with(|c| c.workers = 0).await;
    let p = h.project("TEAM", 10).await;
    // A snapshot taken by a server with workers, then only the one without runs.
    let worker = h.another(|c| c.workers = 1).await;
    let snap = h.snapshot(&p, json!({})).await;
    worker.stop().await.unwrap();
    let Some(b) = driver::open(&h.base).await else {
        return;
    };
    b.sign_in(&p.token).await;

    // Two tabs confirm a restore: with no worker free, both jobs wait; the second says it
    // waits for the first. (The dry run of the confirmation page waits too, so the tabs
    // post the confirmed form directly.)
    b.goto(&format!("/projects/{}", p.id)).await;
    let csrf: Value = b
        .run(
            "return document.querySelector('input[name=csrf]').value;",
            vec![],
        )
        .await;
    let submit = r#"const f = document.createElement("form");
        f.method = "post"; f.action = arguments[0];
        const i = document.createElement("input"); i.type = "hidden"; i.name = "csrf"; i.value = arguments[1];
        f.appendChild(i); document.body.appendChild(f); f.submit();"#;
    let restore = json!(format!("/snapshots/{snap}/restore"));
    b.run(submit, vec![restore.clone(), csrf.clone()]).await;
    b.wait("[data-status=queued]", 10).await;
    let first = b.path().await;
    b.client.new_window(true).await.unwrap();
    let windows = b.client.windows().await.unwrap();
    b.client.switch_to_window(windows[1].clone()).await.unwrap();
    b.goto(&format!("/projects/{}", p.id)).await;
    b.run(submit, vec![restore, csrf]).await;
    b.wait("[data-status=queued]", 10).await;
    assert_ne!(b.path().await, first);
    let first_id = first.trim_start_matches("/jobs/");
    let status = b.text("[data-job-status]").await;
    assert!(status.contains(first_id), "{status}");
    b.close().await;
}
