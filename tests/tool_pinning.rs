//! Pinned tool definitions through the gateway, between a real rmcp client and an upstream whose
//! `search` tool changes its description between two listings: `enforce` hides and refuses the
//! changed tool until an admin approves the new definition through the admin API (on SQLite and
//! PostgreSQL, with the approval made through one instance serving every other), and `warn` reports
//! it in the audit trail while serving it; a stdio upstream's changed tool is held back as well.
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

use admin_support::{Admin, AdminGateway};
use axum::http::StatusCode;
use databases::BACKENDS;
use rmcp::model::CallToolRequestParams;
use serde_json::json;
use support::changing::{POISONED, REVIEWED, connect, listed, start_changing_upstream};

/// What a client gets calling `search`: its text, or the error's message.
async fn call_search(mcp: &str, key: &str) -> Result<String, String> {
    let client = connect(mcp, key).await;
    let result = match client
        .call_tool(
            CallToolRequestParams::new("search")
                .with_arguments(json!({"q": "holidays"}).as_object().unwrap().clone()),
        )
        .await
    {
        Ok(result) => Ok(serde_json::to_value(&result.content).unwrap()[0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()),
        Err(e) => Err(e.to_string()),
    };
    client.cancel().await.unwrap();
    result
}

fn names(tools: &[(String, String)]) -> Vec<&str> {
    tools.iter().map(|(name, _)| name.as_str()).collect()
}

fn pins_path(admin: &Admin, workspace: &str) -> String {
    format!(
        "/api/v1/organisations/{}/mcp-server-workspaces/{workspace}/tool-pins",
        admin.organisation
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_hides_a_changed_tool_until_an_admin_approves_it() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let gateway = AdminGateway::start(backend).await;
        let (upstream, description) = start_changing_upstream().await;
        let admin = gateway.tenant("acme", "owner@acme.example").await;
        let workspace = admin.workspace("kb", &upstream).await;
        let (_, key) = admin.agent(&workspace, "assistant").await;
        admin
            .policy(
                "workspace",
                &workspace,
                json!({"guardrails": [
                    {"type": "rbac", "allow": ["*"]},
                    {"type": "tool_pinning", "mode": "enforce"}
                ]}),
            )
            .await;
        let other_instance = gateway.second_instance(0).await;
        let mcp = gateway.mcp();

        // The first complete listing pins both tools as first seen.
        assert_eq!(names(&listed(&mcp, &key).await), ["echo", "search"]);
        assert_eq!(call_search(&mcp, &key).await.unwrap(), "search ran");

        // The server changes the description: the tool is hidden and refused, on every instance.
        *description.lock().unwrap() = POISONED.to_owned();
        assert_eq!(names(&listed(&mcp, &key).await), ["echo"]);
        let refused = call_search(&mcp, &key).await.unwrap_err();
        assert!(
            refused.contains("the definition of tool `search` changed since it was pinned"),
            "{refused}"
        );
        let elsewhere = call_search(&other_instance, &key).await.unwrap_err();
        assert!(
            elsewhere.contains("changed since it was pinned"),
            "{elsewhere}"
        );

        // The admin sees what changed.
        let path = pins_path(&admin, &workspace);
        let pending = admin
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{path}?status=unapproved"),
                None,
            )
            .await;
        let tools = pending["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 1, "{pending}");
        let search = &tools[0];
        assert_eq!(search["tool"], "search");
        assert_eq!(search["status"], "changed");
        assert_eq!(search["definition"]["description"], POISONED);
        assert_eq!(
            search["changes"],
            json!([{"member": "description", "pinned": REVIEWED, "listed": POISONED}])
        );
        assert!(search.get("approved_by").is_none(), "pinned as first seen");
        let reviewed_fingerprint = search["fingerprint"].as_str().unwrap().to_owned();
        let all = admin.expect(StatusCode::OK, "GET", &path, None).await;
        assert_eq!(all["tools"].as_array().unwrap().len(), 2);
        admin
            .expect(
                StatusCode::UNPROCESSABLE_ENTITY,
                "GET",
                &format!("{path}?status=maybe"),
                None,
            )
            .await;

        // The server changes it again before the admin approves: the approval is refused as stale.
        *description.lock().unwrap() = format!("{POISONED} Also mail it.");
        assert_eq!(names(&listed(&mcp, &key).await), ["echo"]);
        let approve = format!("{path}/approve");
        let stale = admin
            .expect(
                StatusCode::CONFLICT,
                "POST",
                &approve,
                Some(json!({"tool": "search", "fingerprint": reviewed_fingerprint})),
            )
            .await;
        assert!(
            stale["error"]["message"]
                .as_str()
                .unwrap()
                .contains("has listed another definition"),
            "{stale}"
        );
        let pending = admin
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{path}?status=changed"),
                None,
            )
            .await;
        let latest = pending["tools"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned();

        // Another tenant can neither see nor approve this workspace's pins.
        let rival = gateway.tenant("rival", "owner@rival.example").await;
        let theirs = Admin {
            organisation: rival.organisation.clone(),
            ..admin.clone()
        };
        let foreign = format!(
            "/api/v1/organisations/{}/mcp-server-workspaces/{workspace}/tool-pins",
            rival.organisation
        );
        rival
            .expect(StatusCode::NOT_FOUND, "GET", &foreign, None)
            .await;
        rival
            .expect(
                StatusCode::NOT_FOUND,
                "POST",
                &format!("{foreign}/approve"),
                Some(json!({"tool": "search", "fingerprint": latest})),
            )
            .await;
        theirs
            .expect(StatusCode::NOT_FOUND, "GET", &foreign, None)
            .await;
        admin
            .expect(
                StatusCode::UNPROCESSABLE_ENTITY,
                "POST",
                &approve,
                Some(json!({"tool": "search", "fingerprint": "not-hex"})),
            )
            .await;
        admin
            .expect(
                StatusCode::NOT_FOUND,
                "POST",
                &approve,
                Some(json!({"tool": "never_listed", "fingerprint": latest})),
            )
            .await;

        // Approved through this instance: served by both.
        let approved = admin
            .expect(
                StatusCode::OK,
                "POST",
                &approve,
                Some(json!({"tool": "search", "fingerprint": latest})),
            )
            .await;
        assert_eq!(approved["status"], "approved");
        assert_eq!(approved["changes"], json!([]));
        assert_eq!(approved["approved_by"], admin.user.as_str());
        // At once, though this instance trusts what it read for a minute (`cache_ttl_ms`).
        assert_eq!(call_search(&mcp, &key).await.unwrap(), "search ran");
        for endpoint in [&mcp, &other_instance] {
            let tools = listed(endpoint, &key).await;
            assert_eq!(names(&tools), ["echo", "search"]);
            assert_eq!(tools[1].1, format!("{POISONED} Also mail it."));
            assert_eq!(call_search(endpoint, &key).await.unwrap(), "search ran");
        }

        // The audit trail and the metrics name what was held back.
        let events = gateway.audit.events();
        let codes: Vec<&str> = events
            .iter()
            .flat_map(|e| e.trace.entries())
            .filter_map(|entry| entry.code.as_deref())
            .collect();
        assert!(codes.contains(&"tool_definition_changed"), "{codes:?}");
        assert!(codes.contains(&"tool_unapproved"), "{codes:?}");
        let metrics = reqwest::get(format!("{}/metrics", gateway.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in [
            r#"cerberus_tool_pin_reports_total{report="changed",decision="modify"} 2"#,
            r#"cerberus_tool_pin_reports_total{report="unapproved_call",decision="block"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_reports_a_changed_tool_and_serves_it() {
    let (upstream, description) = start_changing_upstream().await;
    let gateway = support::start_gateway(
        &upstream,
        r#"{ guardrails = [
            { type = "rbac", allow = ["*"] },
            { type = "tool_pinning", mode = "warn" }
        ] }"#,
    )
    .await;
    let key = support::KEY;
    assert_eq!(names(&listed(&gateway.url, key).await), ["echo", "search"]);
    *description.lock().unwrap() = POISONED.to_owned();
    let tools = listed(&gateway.url, key).await;
    assert_eq!(tools[1], ("search".to_owned(), POISONED.to_owned()));
    assert_eq!(call_search(&gateway.url, key).await.unwrap(), "search ran");
    let reasons: Vec<(String, String)> = gateway
        .audit
        .events()
        .iter()
        .flat_map(|e| e.trace.entries().to_vec())
        .filter_map(|entry| Some((entry.code?, entry.reason?)))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "tool_definition_changed".to_owned(),
                "tool `search` changed since pinned, awaiting approval".to_owned()
            ),
            (
                "tool_unapproved".to_owned(),
                "the definition of tool `search` changed since it was pinned and awaits approval"
                    .to_owned()
            )
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_holds_back_a_changed_tool_of_a_stdio_upstream_too() {
    let directory = std::env::temp_dir().join(format!("cerberus-pins-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let description = directory.join("description.txt");
    std::fs::write(&description, REVIEWED).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/changing_tools.py");
    let upstream = format!(
        "{{ command = \"python3\", args = [\"{}\", \"{}\"] }}",
        script.display(),
        description.display()
    );
    let gateway = support::start_gateway_for(
        &upstream,
        r#"{ guardrails = [
            { type = "rbac", allow = ["*"] },
            { type = "tool_pinning", mode = "enforce" }
        ] }"#,
    )
    .await;
    let key = support::KEY;
    assert_eq!(names(&listed(&gateway.url, key).await), ["search"]);
    assert_eq!(call_search(&gateway.url, key).await.unwrap(), "search ran");
    std::fs::write(&description, POISONED).unwrap();
    assert!(listed(&gateway.url, key).await.is_empty());
    let refused = call_search(&gateway.url, key).await.unwrap_err();
    assert!(refused.contains("changed since it was pinned"), "{refused}");
    // Back to the reviewed definition: served again, with no approval needed.
    std::fs::write(&description, REVIEWED).unwrap();
    assert_eq!(names(&listed(&gateway.url, key).await), ["search"]);
    assert_eq!(call_search(&gateway.url, key).await.unwrap(), "search ran");
    std::fs::remove_dir_all(&directory).unwrap();
}
