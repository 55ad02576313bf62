//! The dashboard's main path: sign in, the projects, "Snapshot now" with its marker
//! appearing live, a restore through its confirmation (the database really goes back), a
//! diff with rows a page at a time, the settings, sign out; screenshots on the way.

use serde_json::json;

use super::driver;
use super::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_now_restore_and_compare_in_the_browser() {
    let h = support::start().await;
    let p = h.project("TEAM", 120).await;
    let clean = h
        .snapshot(&p, json!({ "name": "clean-state", "pin": true }))
        .await;
    let Some(b) = driver::open(&h.base).await else {
        return;
    };

    // Sign in with the project's token: its project is listed.
    b.screenshots("sign-in", "/sign-in", "#token").await;
    b.sign_in(&p.token).await;
    b.wait(&format!("tr[data-project='{}']", p.id), 10).await;
    assert_eq!(
        b.count("tr[data-project]").await,
        1,
        "a project token sees its project only"
    );

    // The timeline holds the pinned snapshot and Current; "Snapshot now" queues a job,
    // shows its progress and the marker appears, all without leaving the page.
    b.click(&format!("tr[data-project='{}'] a", p.id)).await;
    b.wait("#timeline svg.timeline", 10).await;
    assert_eq!(b.count("a.marker[data-snapshot]").await, 1);
    assert!(b
        .text(&format!("li[data-item='{clean}']"))
        .await
        .contains("pinned"));
    assert_eq!(b.count(".marker.k-current").await, 1);
    b.run("window.stillHere = true;", vec![]).await;
    b.find("#snapshot-name")
        .await
        .send_keys("before-demo")
        .await
        .unwrap();
    b.click("form.snapshot-now button[type=submit]").await;
    let marker = b
        .wait(
            &format!("a.marker[data-snapshot]:not([data-snapshot='{clean}'])"),
            90,
        )
        .await;
    let snap = marker.attr("data-snapshot").await.unwrap().unwrap();
    assert_eq!(
        b.run("return window.stillHere === true;", vec![]).await,
        json!(true),
        "the page reloaded"
    );
    b.wait("[data-job-status][data-state=succeeded]", 30).await;
    assert!(b
        .text(&format!("li[data-item='{snap}']"))
        .await
        .contains("before-demo"));
    let before = p.db.fingerprint().await;

    // The database changes after the snapshot.
    p.db.exec(
        "DELETE FROM items WHERE id > 60;
         UPDATE items SET name = 'renamed' WHERE id = 1;",
    )
    .await;
    b.screenshots(
        "timeline",
        &format!("/projects/{}", p.id),
        "a.marker[data-snapshot]",
    )
    .await;

    // From the marker to its restore: the confirmation shows what will be rewritten.
    b.goto(&format!("/projects/{}", p.id)).await;
    b.click(&format!("a.marker[data-snapshot='{snap}']")).await;
    b.wait("a.button.primary", 10).await;
    b.click("a.button.primary").await;
    let row = b.wait("tr[data-table='public.items']", 60).await;
    let cells = row.text().await.unwrap();
    assert!(cells.contains("60") && cells.contains('1'), "{cells}");
    b.find("[data-schema=same]").await;
    b.screenshots("restore", &b.path().await, "tr[data-table='public.items']")
        .await;
    b.click("button.danger").await;

    // Live progress, then the safety snapshot that undoes it; the database is back.
    let safety = b.wait("[data-safety]", 90).await;
    let safety = safety.attr("data-safety").await.unwrap().unwrap();
    phony_tests::assert_same(&p.db.fingerprint().await, &before, "the database restored");
    let rows: i64 = p.db.value("SELECT count(*) FROM items").await;
    assert_eq!(rows, 120);

    // The timeline now shows the safety snapshot and the restore too.
    b.screenshots(
        "timeline",
        &format!("/projects/{}", p.id),
        &format!("a.marker[data-snapshot='{safety}']"),
    )
    .await;
    assert_eq!(b.count(".marker.k-restore").await, 1);

    // Compare the snapshot with the database after a schema change: a coloured DDL diff.
    p.db.exec("ALTER TABLE items ADD COLUMN note text").await;
    let diff = format!("/projects/{}/diff?from={snap}&to=now", p.id);
    b.goto(&diff).await;
    b.wait("[data-diff]", 60).await;
    assert!(
        b.count("pre.ddl .add").await >= 1,
        "no added DDL line shown"
    );
    b.screenshots("diff", &diff, "[data-diff]").await;

    // Two snapshots compared, rows on demand, a page at a time (50 per page).
    b.goto(&format!("/projects/{}/diff?from={snap}&to={safety}", p.id))
        .await;
    let t = b.wait("tr[data-table='public.items']", 60).await;
    let text = t.text().await.unwrap();
    assert!(text.contains("60"), "{text}");
    b.click("tr[data-table='public.items'] a").await;
    b.wait("[data-rows]", 60).await;
    assert_eq!(b.count("table.rows tbody tr").await, 50);
    b.click("a[rel=next]").await;
    b.wait("a[rel=prev]", 60).await;
    assert_eq!(b.count("table.rows tbody tr").await, 11);

    // Settings: usage, and features outside TEAM disabled, naming the plan.
    b.screenshots(
        "settings",
        &format!("/projects/{}/settings", p.id),
        "fieldset.feature",
    )
    .await;
    let export = b.find("fieldset[data-feature='Export as SQL']").await;
    assert!(export.attr("disabled").await.unwrap().is_some());
    assert!(export.text().await.unwrap().contains("BUSINESS"));
    b.screenshots("projects", "/", "tr[data-project]").await;

    // Signing out ends the session: the pages ask for a sign-in again.
    b.click("header form button").await;
    b.wait("#token", 10).await;
    b.goto(&format!("/projects/{}", p.id)).await;
    b.wait("#token", 10).await;
    assert!(b.path().await.starts_with("/sign-in"));
    b.close().await;
}
