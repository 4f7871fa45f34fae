//! The audit log through the admin API, on SQLite and on the running PostgreSQL: filters, cursor pages
//! newest first, exports as JSON lines and CSV, and another organisation's log out of reach.
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

use admin_support::{AdminGateway, tool_names};
use cerberus_core::audit::AuditSink;
use databases::BACKENDS;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Calls a tool through the proxy in a fresh session; returns the JSON-RPC answer.
async fn call(mcp: &str, key: &str, tool: &str, arguments: Value) -> Value {
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::{ClientLifecycleMode, ClientServiceExt};
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(mcp).auth_header(key),
    );
    let client = ().serve_with_lifecycle(transport, ClientLifecycleMode::Initialize).await.unwrap();
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(arguments.as_object().unwrap().clone());
    let answer = match client.call_tool(params).await {
        Ok(result) => json!({"result": result}),
        Err(e) => json!({"error": e.to_string()}),
    };
    client.cancel().await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_filtered_paged_and_exported_per_organisation() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let gateway = AdminGateway::start_audited(backend).await;
        let upstream = support::start_upstream().await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let intruder = gateway.tenant("globex", "owner@globex.example").await;
        let org = owner.organisation.clone();
        let workspace = owner.workspace("crm", &upstream).await;
        let (agent, key) = owner.agent(&workspace, "bot").await;
        owner
            .policy(
                "organisation",
                &org,
                json!({"guardrails": [
                    {"type": "rbac", "allow": ["echo", "whoami"]},
                    {"type": "pii_email", "action": "redact"}
                ]}),
            )
            .await;
        assert_eq!(tool_names(&gateway.mcp(), &key).await, ["echo", "whoami"]);
        call(
            &gateway.mcp(),
            &key,
            "echo",
            json!({"text": "mail jane@example.com"}),
        )
        .await;
        let denied = call(&gateway.mcp(), &key, "delete_everything", json!({})).await;
        assert!(denied["error"].is_string());
        // Everything the proxy recorded is in the database once the writer has flushed.
        let stored = gateway.stored_audit.clone().unwrap();
        stored.flush().await;
        let recorded = gateway.audit.events().len();
        assert!(recorded > 10);

        let logs = format!("/api/v1/organisations/{org}/audit-logs");
        let all = owner
            .expect(StatusCode::OK, "GET", &format!("{logs}?limit=500"), None)
            .await;
        let items = all["items"].as_array().unwrap();
        assert_eq!(items.len(), recorded, "one record per message");
        assert!(all["next_cursor"].is_null());
        assert!(
            items
                .iter()
                .all(|r| r["identity"]["organisation"] == org.as_str())
        );
        let times: Vec<u64> = items.iter().map(|r| r["time"].as_u64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        assert!(
            !all.to_string().contains("jane@example.com"),
            "no raw personal data"
        );

        // Filters.
        let blocked = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{logs}?decision=block"),
                None,
            )
            .await;
        let blocked = blocked["items"].as_array().unwrap();
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0]["target"], "delete_everything");
        let modified = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{logs}?decision=modify&tool=echo&method=tools/call"),
                None,
            )
            .await;
        assert_eq!(modified["items"].as_array().unwrap().len(), 1);
        // By the guardrail that changed or refused the message.
        for (guardrail, target) in [("rbac", "delete_everything"), ("pii_email", "echo")] {
            let acted = owner
                .expect(
                    StatusCode::OK,
                    "GET",
                    &format!("{logs}?guardrail={guardrail}&method=tools/call"),
                    None,
                )
                .await;
            let acted = acted["items"].as_array().unwrap();
            assert_eq!(acted.len(), 1, "{guardrail}: {acted:?}");
            assert_eq!(acted[0]["target"], target);
        }
        let none = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{logs}?guardrail=pii_ssn"),
                None,
            )
            .await;
        assert_eq!(none["items"].as_array().unwrap().len(), 0);
        // A filter no database could hold as it is (a NUL) finds nothing, and fails nothing.
        let nothing = owner
            .expect(StatusCode::OK, "GET", &format!("{logs}?tool=ec%00ho"), None)
            .await;
        assert_eq!(nothing["items"].as_array().unwrap().len(), 0);
        let by_agent = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{logs}?agent_id={agent}&workspace_id={workspace}"),
                None,
            )
            .await;
        assert_eq!(
            by_agent["items"].as_array().unwrap().len(),
            recorded.min(100)
        );
        let future = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{logs}?from=2999-01-01T00:00:00Z"),
                None,
            )
            .await;
        assert!(future["items"].as_array().unwrap().is_empty());

        // Pages of 3 with the cursor give every record once, in the same order.
        let mut paged = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("{logs}?limit=3&cursor={c}"),
                None => format!("{logs}?limit=3"),
            };
            let page = owner.expect(StatusCode::OK, "GET", &path, None).await;
            paged.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].clone()),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let ids: Vec<Value> = items.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(paged, ids);

        // Exports: every record, as JSON lines and as CSV.
        let export = |format: &str| {
            let request = reqwest::Client::new()
                .get(format!("{}{logs}/export?format={format}", gateway.base))
                .bearer_auth(owner.token.clone().unwrap());
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let media = response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                (media, response.text().await.unwrap())
            }
        };
        let (media, lines) = export("jsonl").await;
        assert_eq!(media, "application/x-ndjson");
        assert_eq!(lines.lines().count(), recorded);
        assert!(
            lines
                .lines()
                .all(|l| serde_json::from_str::<Value>(l).is_ok())
        );
        let (media, csv) = export("csv").await;
        assert!(media.starts_with("text/csv"));
        assert!(csv.starts_with("id,time,organisation_id"));
        assert_eq!(
            csv.split("\r\n").filter(|l| !l.is_empty()).count(),
            recorded + 1
        );

        // Bad queries are 422 with the field named.
        for (query, field) in [
            ("decision=maybe", "decision"),
            ("limit=0", "limit"),
            ("cursor=forged", "cursor"),
            ("from=yesterday", "from"),
            ("format=xml", "format"),
        ] {
            let (status, body) = owner.call("GET", &format!("{logs}?{query}"), None).await;
            assert_eq!(
                (status, body["error"]["field"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
                "{query}"
            );
        }

        // Another organisation sees none of it.
        assert_eq!(
            intruder.call("GET", &logs, None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            intruder
                .call("GET", &format!("{logs}/export"), None)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        let theirs = intruder
            .expect(
                StatusCode::OK,
                "GET",
                &format!("/api/v1/organisations/{}/audit-logs", intruder.organisation),
                None,
            )
            .await;
        assert!(theirs["items"].as_array().unwrap().is_empty());

        // Analytics over the same records (the exact counts are checked against a known mix in
        // audit_log.rs; here, the endpoint).
        let analytics = format!("/api/v1/organisations/{org}/analytics");
        let requests = items.iter().filter(|r| r["direction"] == "request").count();
        let answer = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{analytics}?bucket=1m&top=5"),
                None,
            )
            .await;
        assert_eq!(answer["totals"]["total"], requests, "{answer}");
        assert_eq!(answer["totals"]["block"], 1);
        assert_eq!(answer["totals"]["modify"], 1);
        assert_eq!(answer["over_time"].as_array().unwrap().len(), 24 * 60 + 1);
        let echo = answer["by_tool"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == "echo")
            .unwrap();
        assert_eq!(
            (echo["total"].as_u64(), echo["modify"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(answer["by_agent"][0]["key"], agent.as_str());
        let guardrails = answer["guardrails"].as_array().unwrap();
        for (guardrail, direction, decision) in [
            ("rbac", "request", "block"),
            ("pii_email", "request", "modify"),
        ] {
            assert!(
                guardrails.iter().any(|g| g["guardrail"] == guardrail
                    && g["direction"] == direction
                    && g["decision"] == decision
                    && g["count"] == 1),
                "{guardrail}: {guardrails:?}"
            );
        }
        let overhead = &answer["latency"]["gateway_overhead_us"];
        assert_eq!(overhead["count"], requests);
        assert!(overhead["p50"].as_u64() <= overhead["p99"].as_u64());
        assert!(answer["latency"]["upstream_us"]["count"].as_u64().unwrap() > 0);
        let start = answer["over_time"][0]["start"].as_str().unwrap();
        assert!(
            start.ends_with(":00.000Z"),
            "{start}: a whole minute, RFC 3339"
        );
        for (query, field) in [
            ("bucket=1ms", "bucket"),
            ("from=2020-01-01T00:00:00Z&bucket=1s", "bucket"),
            ("from=2999-01-01T00:00:00Z", "from"),
            ("direction=up", "direction"),
            ("top=5000", "top"),
            ("colour=red", "query"),
        ] {
            let (status, body) = owner
                .call("GET", &format!("{analytics}?{query}"), None)
                .await;
            assert_eq!(
                (status, body["error"]["field"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
                "{query}"
            );
        }
        assert_eq!(
            intruder.call("GET", &analytics, None).await.0,
            StatusCode::NOT_FOUND
        );
        gateway.stop().await;
    }
}
