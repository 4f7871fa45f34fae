//! The admin API reference at `/docs` in a real browser: headless chromium, driven by playwright-core
//! (both installed by `scripts/node/install`), renders the document with RapiDoc served by the
//! gateway itself, loads nothing from another origin and breaks no rule of the page's
//! Content-Security-Policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod admin_support;
mod databases;
mod support;

use admin_support::AdminGateway;
use cerberus_sqlx::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_renders_with_nothing_from_elsewhere() {
    let gateway = AdminGateway::start(Backend::Sqlite).await;

    let client = reqwest::Client::builder().no_gzip().build().unwrap();
    let page = client
        .get(format!("{}/docs", gateway.base))
        .send()
        .await
        .unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("http"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http"),
        "the page names no other origin: {html}"
    );

    // The renderer is sent compressed, to clients that accept it.
    let asset = format!("{}/docs/rapidoc-9.3.8.min.js", gateway.base);
    let refused = client.get(&asset).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::NOT_ACCEPTABLE);
    let sent = client
        .get(&asset)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["content-encoding"], "gzip");
    assert!(
        sent.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );

    let report = support::browser::run("docs_page.cjs", vec![gateway.base.clone().into()]).await;
    assert_eq!(report["rendered"], true, "{report}");
    assert_eq!(report["outside"], serde_json::json!([]), "{report}");
    assert_eq!(report["violations"], serde_json::json!([]), "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    gateway.stop().await;
}
