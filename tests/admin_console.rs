//! The admin console in a real browser: headless chromium, driven by playwright-core (both installed
//! by `scripts/node/install`) through `tests/browser/console.cjs`, signs in, creates a workspace and
//! an agent access, has a bad policy refused and a good one saved and tried, finds a governed MCP
//! call in the audit log with its trace, sees the analytics drawn, approves a held call and a
//! changed tool definition, and trusts an identity provider with a person's policy, with no
//! unlabelled control,
//! no request to another origin and no Content-Security-Policy violation. The screenshots it takes
//! go to `target/console-screenshots`, or to `$CERBERUS_CONSOLE_SCREENSHOTS` (`docs/console` to
//! renew the ones `docs/console.md` shows).
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

use std::path::PathBuf;

use admin_support::{AdminGateway, PASSWORD};
use cerberus_sqlx::Backend;
use reqwest::StatusCode;
use serde_json::json;
use support::changing::{POISONED, REVIEWED, listed, start_changing_upstream};

fn screenshots() -> PathBuf {
    std::env::var_os("CERBERUS_CONSOLE_SCREENSHOTS")
        .map(|dir| support::browser::root().join(dir))
        .unwrap_or_else(|| support::browser::root().join("target/console-screenshots"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_its_files_under_a_strict_policy() {
    let gateway = AdminGateway::start(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    let moved = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/console", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(moved.headers()["location"], "/console/");

    let page = client
        .get(format!("{}/console/", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(
        !policy.contains("unsafe") && !policy.contains("http"),
        "{policy}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cross-origin-opener-policy"], "same-origin");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(r#"<script type="module" src="app.js">"#)
    );

    let script = client
        .get(format!("{}/console/pages/audit.js", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(script.headers()["x-content-type-options"], "nosniff");
    for missing in [
        "/console/nothing.js",
        "/console/../Cargo.toml",
        "/console/pages/",
    ] {
        let answer = client
            .get(format!("{}{missing}", gateway.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_is_checked_and_tried_without_being_stored() {
    let gateway = AdminGateway::start(Backend::Sqlite).await;
    let upstream = support::start_upstream().await;
    let owner = gateway.tenant("acme", "owner@acme.example").await;
    let other = gateway.tenant("globex", "owner@globex.example").await;
    let org = owner.organisation.clone();
    let workspace = owner.workspace("crm", &upstream).await;
    let (agent, key) = owner.agent(&workspace, "bot").await;
    owner
        .policy(
            "organisation",
            &org,
            json!({"guardrails": [{"type": "rbac", "allow": ["echo"], "mandatory": true}]}),
        )
        .await;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "mail jane@example.com"}}});

    // A bad document is refused, naming the entry.
    let (status, body) = owner
        .call(
            "POST",
            "/api/v1/policies/check",
            Some(json!({"level": "agent", "target_id": agent,
                "document": {"guardrails": [{"type": "pii_email"}, {"type": "rate_limit_per_minute", "limit": 0}]}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "document.guardrails[1].limit");

    // A good one alone is valid; with a message it runs with the stored organisation policy above it.
    let document = json!({"guardrails": [{"type": "pii_email", "action": "redact"}]});
    let checked = owner
        .expect(
            StatusCode::OK,
            "POST",
            "/api/v1/policies/check",
            Some(json!({"level": "agent", "target_id": agent, "document": document})),
        )
        .await;
    assert_eq!(checked, json!({"valid": true}));
    let tried = owner
        .expect(
            StatusCode::OK,
            "POST",
            "/api/v1/policies/check",
            Some(json!({"level": "agent", "target_id": agent, "document": document, "message": call})),
        )
        .await;
    let result = &tried["result"];
    assert_eq!(result["decision"], "modify", "{tried}");
    assert_eq!(
        result["message"]["params"]["arguments"]["text"],
        "mail [REDACTED:EMAIL]"
    );
    let levels: Vec<(&str, &str)> = result["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["guardrail"].as_str().unwrap(),
                e["level"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(levels, [("rbac", "organisation"), ("pii_email", "agent")]);
    let refused = owner
        .expect(
            StatusCode::OK,
            "POST",
            "/api/v1/policies/check",
            Some(json!({"level": "workspace", "target_id": workspace, "document": document,
                "message": {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "drop_tables"}}})),
        )
        .await;
    assert_eq!(refused["result"]["decision"], "block", "{refused}");

    // Nothing was stored: the agent's calls are as before, and no policy was added.
    let policies = owner
        .expect(StatusCode::OK, "GET", "/api/v1/policies", None)
        .await;
    assert_eq!(policies["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        admin_support::call_echo(&gateway.mcp(), &key, "mail jane@example.com").await,
        Ok("mail jane@example.com".to_owned())
    );

    // A limit of one call a minute, tried three times, spends nothing of the agent's quota.
    let limited = json!({"guardrails": [{"type": "rate_limit_per_minute", "limit": 1}]});
    for _ in 0..3 {
        owner
            .expect(
                StatusCode::OK,
                "POST",
                "/api/v1/policies/check",
                Some(json!({"level": "agent", "target_id": agent, "document": limited, "message": call})),
            )
            .await;
    }
    owner.policy("agent", &agent, limited).await;
    assert!(
        admin_support::call_echo(&gateway.mcp(), &key, "once")
            .await
            .is_ok()
    );

    // Another tenant's target is not found; a viewer may not try; a bad message names itself.
    let (status, _) = other
        .call(
            "POST",
            "/api/v1/policies/check",
            Some(json!({"level": "agent", "target_id": agent, "document": document})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = other
        .call(
            "POST",
            "/api/v1/policies/check",
            Some(json!({"level": "organisation", "target_id": org, "document": document})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = owner
        .call(
            "POST",
            "/api/v1/policies/check",
            Some(json!({"level": "agent", "target_id": agent, "document": document, "message": {"id": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "message");

    let types = owner
        .expect(StatusCode::OK, "GET", "/api/v1/guardrail-types", None)
        .await;
    let types: Vec<&str> = types["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"pii_email") && types.contains(&"rule"),
        "{types:?}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_governs_a_gateway_from_the_console() {
    // Access tokens live a second, so that the console renews one on the way; the audit log keeps
    // redacted payloads (the `[audit]` section follows `[admin]`).
    let gateway = AdminGateway::start_audited_with_admin(
        Backend::Sqlite,
        "access_token_ttl_secs = 1\n\n[audit]\npayloads = \"redacted\"\n\n\
         [oauth]\npublic_url = \"http://localhost\"",
    )
    .await;
    let upstream = support::start_upstream().await;
    let admin = gateway.tenant("acme", "owner@acme.example").await;
    admin
        .expect(
            StatusCode::CREATED,
            "POST",
            &format!("/api/v1/organisations/{}/users", admin.organisation),
            Some(json!({"email": "auditor@acme.example", "role": "viewer", "password": PASSWORD})),
        )
        .await;

    // A second workspace whose server's `search` changed since it was pinned, and whose agent's
    // `echo` calls wait for an administrator.
    let (changing, description) = start_changing_upstream().await;
    let knowledge = admin.workspace("knowledge", &changing).await;
    let (_, held_key) = admin.agent(&knowledge, "assistant").await;
    admin
        .policy(
            "workspace",
            &knowledge,
            json!({"guardrails": [
                {"type": "rbac", "allow": ["*"], "approve": ["echo"]},
                {"type": "tool_pinning", "mode": "enforce"}
            ]}),
        )
        .await;
    assert_eq!(listed(&gateway.mcp(), &held_key).await.len(), 2);
    *description.lock().unwrap() = POISONED.to_owned();
    let hidden = listed(&gateway.mcp(), &held_key).await;
    assert_eq!(hidden.len(), 1, "the changed tool is held back: {hidden:?}");

    let args = [
        gateway.base.as_str(),
        "owner@acme.example",
        PASSWORD,
        upstream.as_str(),
    ]
    .map(PathBuf::from)
    .into_iter()
    .chain([
        screenshots(),
        PathBuf::from(&held_key),
        PathBuf::from("auditor@acme.example"),
    ])
    .collect();
    let report = support::browser::run("console.cjs", args).await;
    assert_eq!(report["errors"], json!([]), "{report:#}");
    assert_eq!(
        report["steps"],
        json!([
            "a wrong password is refused",
            "signed in",
            "workspace created",
            "agent access created",
            "labels are set",
            "a bad policy is refused",
            "a good policy is saved",
            "the policy is tried",
            "governed calls made",
            "the audit log shows the calls",
            "the analytics are drawn",
            "a held call is approved",
            "a changed tool definition is approved",
            "an identity provider is trusted",
            "a person's policy is attached",
            "every page opens",
            "readable on a phone",
            "a key is rotated and revoked",
            "signed out",
            "a viewer is offered nothing to change"
        ]),
        "{report:#}"
    );
    assert_eq!(
        report["tabOrder"],
        json!(["Skip to content", "email", "password", "Sign in"]),
        "{report:#}"
    );
    assert_eq!(report["keyShown"], true);
    assert_eq!(report["keyCopied"], true);
    assert_eq!(report["snippetHasKey"], true);
    let bad = report["badPolicyMessage"].as_str().unwrap();
    assert!(bad.contains("document.guardrails[1].limit"), "{bad}");
    let trial = report["trial"].as_str().unwrap();
    assert!(
        trial.contains("modify") && trial.contains("[REDACTED:EMAIL]"),
        "{trial}"
    );
    assert_eq!(
        report["callAnswer"]["result"]["content"][0]["text"], "mail [REDACTED:EMAIL]",
        "{report:#}"
    );
    assert_eq!(report["deniedAnswer"]["error"]["data"]["guardrail"], "rbac");
    assert_eq!(report["auditFound"], true);
    let trace = report["auditTrace"].as_str().unwrap();
    assert!(
        trace.contains("rbac")
            && trace.contains("organisation level")
            && trace.contains("rbac_denied"),
        "{trace}"
    );
    let payload = report["auditPayload"].as_str().unwrap();
    assert!(
        payload.contains("mail [REDACTED:EMAIL]") && !payload.contains("jane@example.com"),
        "{payload}"
    );
    let by_guardrail = report["byGuardrail"].as_array().unwrap();
    assert!(
        !by_guardrail.is_empty()
            && by_guardrail
                .iter()
                .all(|row| row.as_str().unwrap().contains("pii_email")),
        "{by_guardrail:?}"
    );
    assert!(report["analyticsBars"].as_u64().unwrap() > 0);
    assert_eq!(
        report["latencyBars"], 8,
        "four percentiles of two latencies: {report:#}"
    );
    let card = report["heldCard"].as_str().unwrap();
    assert!(
        card.contains("assistant")
            && card.contains("needs approval")
            && card.contains("[REDACTED:EMAIL]"),
        "{card}"
    );
    let diff = report["toolDiff"].as_str().unwrap();
    assert!(diff.contains(REVIEWED) && diff.contains(POISONED), "{diff}");
    assert_eq!(
        report["heldAnswer"]["result"]["content"][0]["text"], "echo ran",
        "{report:#}"
    );
    let search = listed(&gateway.mcp(), &held_key).await;
    assert!(
        search
            .iter()
            .any(|(name, said)| name == "search" && said == POISONED),
        "the approved definition is served: {search:?}"
    );
    assert_eq!(
        report["phoneOverflow"],
        json!([]),
        "pages wider than a phone"
    );
    assert!(
        report["refreshesBefore"].as_u64().unwrap() < report["refreshes"].as_u64().unwrap(),
        "an expired access token was renewed: {report:#}"
    );
    assert_eq!(report["exportName"], "audit-log.csv");
    let exported = report["exported"].as_str().unwrap();
    assert!(
        exported.lines().count() > 1 && exported.contains("pii_email"),
        "{exported}"
    );
    assert_eq!(report["rotatedKeyDiffers"], true);
    assert_eq!(
        report["oldKeyInGrace"], 200,
        "the old key works in its grace period"
    );
    assert_eq!(report["newKeyWorks"], 200);
    assert_eq!(report["revokedKey"], 401);
    assert!(
        report["providerConnects"]
            .as_str()
            .unwrap()
            .starts_with("crm: /mcp/"),
        "{report:#}"
    );
    assert_eq!(report["viewerOffered"], json!([]), "{report:#}");
    assert_eq!(report["viewerPolicyReadonly"], "");
    assert_eq!(report["unlabelled"], json!([]), "{report:#}");
    assert_eq!(report["outside"], json!([]));
    assert_eq!(report["violations"], json!([]));
    assert_eq!(report["screenshots"].as_array().unwrap().len(), 9);
    gateway.stop().await;
}
