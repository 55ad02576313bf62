//! How the pages look where people read them: in dark mode, at a phone's width.

use serde_json::json;

use super::driver;
use super::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_follow_a_dark_system_and_fit_a_phone() {
    let h = support::start().await;
    let p = h.project("TEAM", 10).await;
    h.snapshot(&p, json!({ "name": "clean-state", "pin": true }))
        .await;
    h.snapshot(&p, json!({})).await;
    let Some(b) = driver::open_dark(&h.base).await else {
        return;
    };
    b.sign_in(&p.token).await;
    b.goto(&format!("/projects/{}", p.id)).await;
    b.wait("a.marker[data-snapshot]", 10).await;
    let dark = b
        .run(
            "return [matchMedia('(prefers-color-scheme: dark)').matches,
                     getComputedStyle(document.body).backgroundColor];",
            vec![],
        )
        .await;
    assert_eq!(dark, json!([true, "rgb(17, 21, 28)"]));
    b.screenshots(
        "timeline-dark",
        &format!("/projects/{}", p.id),
        "a.marker[data-snapshot]",
    )
    .await;
    // At a phone's width the list of items is there, with its actions.
    b.client.set_window_size(390, 844).await.unwrap();
    b.goto(&format!("/projects/{}", p.id)).await;
    let item = b.wait("li[data-item] .item-actions a", 10).await;
    assert!(item.is_displayed().await.unwrap());
    b.close().await;
}
