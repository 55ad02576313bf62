//! The settings page's automation in the browser: a schedule whose next five runs show
//! before it is saved, a webhook secret seen once, and a sync from a second database
//! started with "Sync now", whose markers then show on the timeline; screenshots of the
//! page at both widths.

use phony_tests::TestDb;

use super::driver;
use super::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_webhook_secrets_and_sync_now_in_the_browser() {
    let h = support::start().await;
    let p = h.project("TEAM", 10).await;
    let source = TestDb::new("web_browser_src").await;
    source
        .exec(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'prod ' || g FROM generate_series(1, 40) g;",
        )
        .await;
    let Some(b) = driver::open(&h.base).await else {
        return;
    };
    b.sign_in(&p.token).await;
    let settings = format!("/projects/{}/settings", p.id);
    b.goto(&settings).await;
    b.wait("#schedules form[data-schedule-form]", 10).await;

    // A schedule: the next five runs appear as it is typed, before anything is saved.
    b.find("#cron")
        .await
        .send_keys("0 0 * * FRI")
        .await
        .unwrap();
    b.wait("[data-schedule-preview] li[data-run]", 10).await;
    assert_eq!(b.count("[data-schedule-preview] li[data-run]").await, 5);
    assert!(b.text("[data-schedule-preview]").await.contains("Fri 20"));
    assert_eq!(b.count("tr[data-schedule]").await, 0, "nothing saved yet");
    b.click("form[data-schedule-form] button[value=save]").await;
    b.wait("tr[data-schedule]", 10).await;
    assert!(b.text("tr[data-schedule]").await.contains("0 0 * * FRI"));

    // A webhook secret made by the server: shown once, with the URL to paste.
    b.click("form[data-webhook-form=jira] button[type=submit]")
        .await;
    let secret = b.wait("[data-secret]", 10).await.text().await.unwrap();
    assert_eq!(secret.len(), 64, "{secret}");
    assert!(b
        .text("[data-hook-url]")
        .await
        .ends_with(&format!("/api/v1/hooks/jira/{}", p.id)));
    b.goto(&settings).await;
    b.wait("#webhooks", 10).await;
    assert_eq!(b.count("[data-secret]").await, 0, "a secret is shown once");

    // The sync source (its password never shown back), then "Sync now", followed live.
    let url = source
        .url()
        .replacen("postgres@", "postgres:hunter2-secret@", 1);
    b.find("#sync-source").await.send_keys(&url).await.unwrap();
    b.click("form[data-sync-form] button[type=submit]").await;
    b.wait("[data-saved=sync]", 10).await;
    assert!(b
        .text("[data-sync-source]")
        .await
        .contains("web_browser_src"));
    let html = b
        .run("return document.documentElement.outerHTML;", vec![])
        .await;
    assert!(!html.as_str().unwrap().contains("hunter2"));
    b.screenshots("settings-automation", &settings, "tr[data-schedule]")
        .await;
    b.goto(&settings).await;
    b.click("form.sync-now button[type=submit]").await;
    b.wait("[data-job-status][data-state=succeeded]", 120).await;
    let rows: i64 =
        p.db.value("SELECT count(*) FROM items WHERE name LIKE 'prod %'")
            .await;
    assert_eq!(rows, 40, "the project's database is the source's now");

    // The timeline: the sync's markers either side, labelled with its number.
    b.goto(&format!("/projects/{}", p.id)).await;
    b.wait("a.marker.o-sync-after", 10).await;
    assert_eq!(b.count("a.marker.o-sync-before").await, 1);
    let items = b.text("ol.items").await;
    assert!(
        items.contains("Before Sync #1") && items.contains("Sync #1"),
        "{items}"
    );
    b.close().await;
}
