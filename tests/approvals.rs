//! Calls held for an admin's approval, between a real rmcp client and server through the gateway: an
//! approved call completes, a denied one and a timed-out one are refused with their reasons, a call
//! held on one instance is released by an answer given through another, and every held call's
//! audit record names who answered or the timeout.
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

use admin_support::{Admin, AdminGateway, call_echo};
use axum::http::StatusCode;
use cerberus_sqlx::Backend;
use serde_json::{Value, json};

/// `echo` needs approval for each call; everything else is allowed.
fn policy() -> Value {
    json!({"guardrails": [
        {"type": "rbac", "allow": ["*"], "approve": ["echo"]},
        {"type": "pii_email", "action": "redact"}
    ]})
}

/// A tenant with a workspace in front of the test upstream under [`policy`]; returns the admin
/// and an agent key.
async fn tenant(gateway: &AdminGateway) -> (Admin, String) {
    let admin = gateway.tenant("acme", "owner@acme.example").await;
    let upstream = support::start_upstream().await;
    let workspace = admin.workspace("payments", &upstream).await;
    let (_, key) = admin.agent(&workspace, "assistant").await;
    admin.policy("workspace", &workspace, policy()).await;
    (admin, key)
}

fn approvals_path(admin: &Admin) -> String {
    format!("/api/v1/organisations/{}/approvals", admin.organisation)
}

/// Waits for the organisation's one pending approval and returns it.
async fn pending(admin: &Admin) -> Value {
    let path = format!("{}?status=pending", approvals_path(admin));
    tokio::time::timeout(support::HANG, async {
        loop {
            let page = admin.expect(StatusCode::OK, "GET", &path, None).await;
            if let Some(approval) = page["items"].as_array().and_then(|items| items.first()) {
                return approval.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a call is held")
}

/// The reason of the last `approval` entry the gateway audited.
fn audited_answer(gateway: &AdminGateway) -> String {
    gateway
        .audit
        .events()
        .iter()
        .flat_map(|e| e.trace.entries().to_vec())
        .rev()
        .find(|entry| entry.guardrail == "approval")
        .and_then(|entry| entry.reason)
        .expect("an approval entry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_call_completes_and_a_denied_one_is_refused() {
    for backend in databases::BACKENDS {
        println!("{backend:?}");
        let gateway = AdminGateway::start(backend).await;
        let (admin, key) = tenant(&gateway).await;
        let me = admin.user.clone();
        let mcp = gateway.mcp();

        // Held: the admin sees who asked, for which tool, with which (redacted) arguments, and why.
        let call = tokio::spawn({
            let (mcp, key) = (mcp.clone(), key.clone());
            async move { call_echo(&mcp, &key, "pay jane@example.com 5 EUR").await }
        });
        let held = pending(&admin).await;
        assert_eq!(held["status"], "pending");
        assert_eq!(held["method"], "tools/call");
        assert_eq!(held["target"], "echo");
        assert_eq!(
            held["arguments"],
            json!({"text": "pay [REDACTED:EMAIL] 5 EUR"})
        );
        assert_eq!(held["guardrail"], "rbac");
        assert_eq!(
            held["reason"],
            "tool `echo` needs approval for each request"
        );
        assert!(!call.is_finished(), "the call waits");
        let id = held["id"].as_str().unwrap();

        // A viewer may read but not answer; another tenant sees nothing.
        admin
            .expect(
                StatusCode::CREATED,
                "POST",
                &format!("/api/v1/organisations/{}/users", admin.organisation),
                Some(json!({"email": "viewer@acme.example", "role": "viewer",
                    "password": admin_support::PASSWORD})),
            )
            .await;
        let viewer = gateway.login("viewer@acme.example").await;
        viewer
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{}/{id}", approvals_path(&admin)),
                None,
            )
            .await;
        viewer
            .expect(
                StatusCode::FORBIDDEN,
                "POST",
                &format!("{}/{id}/approve", approvals_path(&admin)),
                Some(json!({})),
            )
            .await;
        let rival = gateway.tenant("rival", "owner@rival.example").await;
        rival
            .expect(
                StatusCode::NOT_FOUND,
                "GET",
                &format!("{}/{id}", approvals_path(&admin)),
                None,
            )
            .await;
        let approved = admin
            .expect(
                StatusCode::OK,
                "POST",
                &format!("{}/{id}/approve", approvals_path(&admin)),
                Some(json!({"note": "expected payment"})),
            )
            .await;
        assert_eq!(approved["status"], "approved");
        assert_eq!(approved["decided_by"], me.as_str());
        assert_eq!(
            call.await.unwrap().unwrap(),
            "pay [REDACTED:EMAIL] 5 EUR",
            "the approved call goes on as the pipeline left it"
        );
        assert_eq!(audited_answer(&gateway), format!("approved by admin {me}"));
        // Answered once: a second answer is refused.
        admin
            .expect(
                StatusCode::CONFLICT,
                "POST",
                &format!("{}/{id}/deny", approvals_path(&admin)),
                Some(json!({})),
            )
            .await;

        // Denied, with a reason the caller gets.
        let call = tokio::spawn({
            let (mcp, key) = (mcp.clone(), key.clone());
            async move { call_echo(&mcp, &key, "pay again").await }
        });
        let held = pending(&admin).await;
        let id = held["id"].as_str().unwrap();
        admin
            .expect(
                StatusCode::OK,
                "POST",
                &format!("{}/{id}/deny", approvals_path(&admin)),
                Some(json!({"reason": "not this week"})),
            )
            .await;
        let refused = call.await.unwrap().unwrap_err();
        assert!(
            refused.contains(&format!("denied by admin {me}: not this week")),
            "{refused}"
        );
        assert_eq!(
            audited_answer(&gateway),
            format!("denied by admin {me}: not this week")
        );
        let all = admin
            .expect(StatusCode::OK, "GET", &approvals_path(&admin), None)
            .await;
        let statuses: Vec<&str> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["denied", "approved"]);

        let metrics = reqwest::get(format!("{}/metrics", gateway.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in [
            r#"cerberus_approvals_total{outcome="approved"} 1"#,
            r#"cerberus_approvals_total{outcome="denied"} 1"#,
            "cerberus_approvals_waiting 0",
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_through_one_instance_releases_a_call_held_on_another() {
    let gateway = AdminGateway::start(Backend::Postgres).await;
    let (admin, key) = tenant(&gateway).await;
    let other = gateway.second_instance(0).await;
    let call = tokio::spawn(async move { call_echo(&other, &key, "held elsewhere").await });
    let held = pending(&admin).await;
    admin
        .expect(
            StatusCode::OK,
            "POST",
            &format!(
                "{}/{}/approve",
                approvals_path(&admin),
                held["id"].as_str().unwrap()
            ),
            Some(json!({})),
        )
        .await;
    assert_eq!(call.await.unwrap().unwrap(), "held elsewhere");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_nobody_answers_is_refused_when_its_time_is_up() {
    let gateway =
        AdminGateway::start_with_admin(Backend::Sqlite, "approval_timeout_secs = 1").await;
    let (admin, key) = tenant(&gateway).await;
    let refused = call_echo(&gateway.mcp(), &key, "anyone?")
        .await
        .unwrap_err();
    assert!(refused.contains("nobody answered within 1 s"), "{refused}");
    assert_eq!(audited_answer(&gateway), "nobody answered within 1 s");
    let all = admin
        .expect(StatusCode::OK, "GET", &approvals_path(&admin), None)
        .await;
    let approval = &all["items"][0];
    assert_eq!(approval["status"], "timed_out");
    assert!(approval["decided_by"].is_null());
    let late = admin
        .expect(
            StatusCode::CONFLICT,
            "POST",
            &format!(
                "{}/{}/approve",
                approvals_path(&admin),
                approval["id"].as_str().unwrap()
            ),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        late["error"]["message"],
        "the approval is already timed_out"
    );
    gateway.stop().await;
}

/// Approves the organisation's one pending approval once `after` has passed.
async fn approve_after(admin: &Admin, after: std::time::Duration) {
    let held = pending(admin).await;
    tokio::time::sleep(after).await;
    admin
        .expect(
            StatusCode::OK,
            "POST",
            &format!(
                "{}/{}/approve",
                approvals_path(admin),
                held["id"].as_str().unwrap()
            ),
            Some(json!({})),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_keeps_its_event_stream_alive_in_both_eras() {
    let gateway =
        AdminGateway::start_with_admin(Backend::Sqlite, "approval_keep_alive_secs = 1").await;
    let (admin, key) = tenant(&gateway).await;
    let wait = std::time::Duration::from_millis(2500);

    // The bytes a client gets: an event stream at once, comments while it waits, then the answer.
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "held"}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}});
    let post = support::mcp_post(&gateway.mcp(), &key, "2026-07-28", None, &call)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .send();
    let (response, ()) = tokio::join!(post, approve_after(&admin, wait));
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(
        text.matches(": keep-alive\n\n").count() >= 2,
        "comments while the call waited: {text:?}"
    );
    let event = text
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .expect("the answer as an event");
    let answer: Value = serde_json::from_str(event).unwrap();
    assert_eq!(answer["id"], 7, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "held", "{answer}");

    // A real client of either era reads that stream and gets its answer.
    for (era, lifecycle) in support::eras() {
        println!("{era}");
        use rmcp::ClientServiceExt;
        let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                gateway.mcp(),
            )
            .auth_header(key.clone()),
        );
        let client = ().serve_with_lifecycle(transport, lifecycle).await.unwrap();
        let arguments = json!({"text": era});
        let call = client.call_tool(
            rmcp::model::CallToolRequestParams::new("echo")
                .with_arguments(arguments.as_object().unwrap().clone()),
        );
        let (result, ()) = tokio::join!(call, approve_after(&admin, wait));
        let result = serde_json::to_value(result.unwrap().content).unwrap();
        assert_eq!(result[0]["text"], era);
        client.cancel().await.unwrap();
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_system_hears_of_each_held_call_in_a_signed_notice() {
    use cerberus_axum::webhook::{SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};
    use std::sync::{Arc, Mutex};
    const SECRET: &str = "an-approval-notice-secret";
    let notices: Arc<Mutex<Vec<(axum::http::HeaderMap, bytes::Bytes)>>> = Arc::default();
    let receiver = axum::Router::new().route(
        "/hooks/approvals",
        axum::routing::post({
            let notices = Arc::clone(&notices);
            move |headers: axum::http::HeaderMap, body: bytes::Bytes| async move {
                notices.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let address = support::listen(receiver).await;
    let gateway = AdminGateway::start_with_admin(
        Backend::Sqlite,
        &format!(
            "approval_webhook_url = \"http://{address}/hooks/approvals\"\n\
             approval_webhook_secret = \"{SECRET}\""
        ),
    )
    .await;
    let (admin, key) = tenant(&gateway).await;
    let call = tokio::spawn({
        let mcp = gateway.mcp();
        async move { call_echo(&mcp, &key, "refund jane@example.com").await }
    });
    let held = pending(&admin).await;
    let id = held["id"].as_str().unwrap();
    let (headers, body) = tokio::time::timeout(support::HANG, async {
        loop {
            if let Some(notice) = notices.lock().unwrap().first().cloned() {
                return notice;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a notice arrives");
    let signer = Signer::new(SECRET.as_bytes()).unwrap();
    assert!(signer.verify(
        headers[TIMESTAMP_HEADER].to_str().unwrap(),
        &body,
        headers[SIGNATURE_HEADER].to_str().unwrap(),
    ));
    let notice: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(notice["type"], "approval.pending");
    assert_eq!(notice["approval"]["id"], id);
    assert_eq!(notice["approval"]["target"], "echo");
    assert_eq!(
        notice["approval"]["arguments"],
        json!({"text": "refund [REDACTED:EMAIL]"})
    );
    assert_eq!(
        notice["approve"],
        format!("{}/{id}/approve", approvals_path(&admin))
    );
    admin
        .expect(
            StatusCode::OK,
            "POST",
            &format!("{}/{id}/deny", approvals_path(&admin)),
            Some(json!({})),
        )
        .await;
    assert!(call.await.unwrap().is_err());
    gateway.stop().await;
}

/// A client whose user answers every question with `approve`, remembering what it was asked.
struct Person {
    approve: bool,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl rmcp::ClientHandler for Person {
    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _: rmcp::service::RequestContext<rmcp::RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        let asked = serde_json::to_value(&request).unwrap();
        self.asked
            .lock()
            .unwrap()
            .push(asked["message"].as_str().unwrap_or_default().to_owned());
        Ok(
            rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
                .with_content(json!({"approve": self.approve})),
        )
    }

    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut info = rmcp::model::ClientConfig::default();
        info.capabilities = rmcp::model::ClientCapabilities::builder()
            .enable_elicitation()
            .build();
        info
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_person_at_the_client_confirms_a_call_in_both_eras() {
    use rmcp::ClientServiceExt;
    let upstream = support::start_upstream().await;
    let gateway = support::start_gateway(
        &upstream,
        r#"{ guardrails = [
            { type = "rbac", allow = ["*"], approve = ["echo"], approve_by = "user" },
            { type = "pii_email", action = "redact" }
        ] }"#,
    )
    .await;
    for (era, lifecycle) in support::eras() {
        println!("{era}");
        for approve in [true, false] {
            let asked = std::sync::Arc::default();
            let person = Person {
                approve,
                asked: std::sync::Arc::clone(&asked),
            };
            let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    gateway.url.as_str(),
                )
                .auth_header(support::KEY),
            );
            let client = person
                .serve_with_lifecycle(transport, lifecycle.clone())
                .await
                .unwrap();
            let arguments = json!({"text": "pay jane@example.com"});
            let result = client
                .call_tool(
                    rmcp::model::CallToolRequestParams::new("echo")
                        .with_arguments(arguments.as_object().unwrap().clone()),
                )
                .await;
            let asked = asked.lock().unwrap().clone();
            assert_eq!(asked.len(), 1, "the person was asked once");
            assert!(
                asked[0].contains("`echo`") && asked[0].contains("[REDACTED:EMAIL]"),
                "{}",
                asked[0]
            );
            assert!(!asked[0].contains("jane@"), "{}", asked[0]);
            if approve {
                let text = serde_json::to_value(result.unwrap().content).unwrap()[0]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert_eq!(text, "pay [REDACTED:EMAIL]");
            } else {
                let refused = result.unwrap_err().to_string();
                assert!(refused.contains("denied by the user"), "{refused}");
            }
            client.cancel().await.unwrap();
        }
    }
    let answers: Vec<String> = gateway
        .audit
        .events()
        .iter()
        .flat_map(|e| e.trace.entries().to_vec())
        .filter(|entry| entry.guardrail == "approval")
        .filter_map(|entry| entry.reason)
        .collect();
    assert_eq!(
        answers,
        [
            "approved by the user",
            "denied by the user",
            "approved by the user",
            "denied by the user"
        ]
    );

    // A client that declared no elicitation cannot be asked: under `user`, the call is refused.
    let refused = call_echo(&gateway.url, support::KEY, "x")
        .await
        .unwrap_err();
    assert!(refused.contains("the client cannot be asked"), "{refused}");
}
