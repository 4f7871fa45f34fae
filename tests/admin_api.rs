//! The admin API on SQLite and on the running PostgreSQL: a tenant set up end to end and used through
//! the proxy, keys rotated and revoked, policies changed, refresh tokens rotated, and bad input refused
//! with the field named.
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

use std::time::{Duration, SystemTime};

use admin_support::{Admin, AdminGateway, call_echo, proxy_status, tool_names};
use base64::Engine;
use cerberus_axum::admin::credentials::TokenIssuer;
use cerberus_core::store::{Role, User, UserId};
use databases::BACKENDS;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_set_up_through_the_api_and_governs_the_proxy() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let gateway = AdminGateway::start(backend).await;
        let upstream = support::start_upstream().await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let org = owner.organisation.clone();

        // The API describes itself, without a token.
        let document: serde_json::Value = reqwest::get(format!("{}/openapi.json", gateway.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(document["paths"]["/api/v1/agent-accesses/{id}/rotate"]["post"].is_object());
        let page = reqwest::get(format!("{}/docs", gateway.base))
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("/openapi.json"));

        let workspace = owner.workspace("crm", &upstream).await;
        let listed = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("/api/v1/organisations/{org}/mcp-server-workspaces"),
                None,
            )
            .await;
        assert_eq!(listed["items"][0]["environment"], "staging");
        let (agent, key) = owner.agent(&workspace, "support-bot").await;
        assert!(key.starts_with("cbk_"));
        let shown = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("/api/v1/agent-accesses/{agent}"),
                None,
            )
            .await;
        assert_eq!(
            shown["key_prefix"],
            key.chars().take(12).collect::<String>()
        );
        assert!(
            shown.get("key").is_none() && !shown.to_string().contains(&key),
            "the key is shown once"
        );

        // No policy yet: every tool. Then an organisation policy hides one, effective at once.
        assert_eq!(
            tool_names(&gateway.mcp(), &key).await,
            [
                "ask_model",
                "delete_everything",
                "echo",
                "progress_then_wait",
                "whoami"
            ]
        );
        let policy = owner
            .policy(
                "organisation",
                &org,
                json!({"guardrails": [
                    {"type": "rbac", "allow": ["*"], "deny": ["delete_*"]},
                    {"type": "pii_email", "action": "redact"}
                ]}),
            )
            .await;
        assert!(
            !tool_names(&gateway.mcp(), &key)
                .await
                .contains(&"delete_everything".to_owned())
        );
        // The agent's own policy narrows it further.
        owner
            .policy(
                "agent",
                &agent,
                json!({"guardrails": [{"type": "rbac", "allow": ["echo"]}]}),
            )
            .await;
        assert_eq!(tool_names(&gateway.mcp(), &key).await, ["echo"]);
        let effective = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("/api/v1/policies/mcp-server-workspaces/{workspace}/effective-policies"),
                None,
            )
            .await;
        assert_eq!(
            effective["workspace"]["entries"][0]["level"],
            "organisation"
        );
        assert_eq!(effective["agents"][0]["name"], "support-bot");
        assert_eq!(
            effective["agents"][0]["effective"]["entries"][0]["level"],
            "agent"
        );
        assert_eq!(
            effective["agents"][0]["effective"]["entries"][0]["allow"],
            json!(["echo"])
        );
        // Changing the organisation policy applies too.
        owner
            .expect(
                StatusCode::OK,
                "PUT",
                &format!("/api/v1/policies/{policy}"),
                Some(
                    json!({"document": {"guardrails": [{"type": "pii_email", "action": "block"}]}}),
                ),
            )
            .await;
        let policies = owner
            .expect(StatusCode::OK, "GET", "/api/v1/policies", None)
            .await;
        assert_eq!(policies["items"].as_array().unwrap().len(), 2);

        // Rotation: with a grace period both keys work; without one the old key stops at once.
        let rotated = owner
            .expect(
                StatusCode::OK,
                "POST",
                &format!("/api/v1/agent-accesses/{agent}/rotate"),
                Some(json!({"grace_period_secs": 600})),
            )
            .await;
        let second = rotated["key"].as_str().unwrap().to_owned();
        assert_eq!(proxy_status(&gateway.mcp(), &key).await, StatusCode::OK);
        assert_eq!(proxy_status(&gateway.mcp(), &second).await, StatusCode::OK);
        let rotated = owner
            .expect(
                StatusCode::OK,
                "POST",
                &format!("/api/v1/agent-accesses/{agent}/rotate"),
                None,
            )
            .await;
        let third = rotated["key"].as_str().unwrap().to_owned();
        assert_eq!(
            proxy_status(&gateway.mcp(), &second).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(proxy_status(&gateway.mcp(), &third).await, StatusCode::OK);

        // Revocation stops the key at the proxy at once (the proxy's cache lives a minute here).
        let revoked = owner
            .expect(
                StatusCode::OK,
                "POST",
                &format!("/api/v1/agent-accesses/{agent}/revoke"),
                None,
            )
            .await;
        assert!(revoked["revoked_at"].is_string());
        assert_eq!(
            proxy_status(&gateway.mcp(), &third).await,
            StatusCode::UNAUTHORIZED
        );

        // A deleted workspace takes its agents with it.
        let (_, fourth) = owner.agent(&workspace, "second-bot").await;
        assert_eq!(proxy_status(&gateway.mcp(), &fourth).await, StatusCode::OK);
        owner
            .expect(
                StatusCode::NO_CONTENT,
                "DELETE",
                &format!("/api/v1/organisations/{org}/mcp-server-workspaces/{workspace}"),
                None,
            )
            .await;
        assert_eq!(
            proxy_status(&gateway.mcp(), &fourth).await,
            StatusCode::UNAUTHORIZED
        );
        let audit = serde_json::to_string(&gateway.audit.events()).unwrap();
        assert!(
            !audit.contains(&key) && !audit.contains(&third),
            "keys never reach the audit"
        );
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_a_reused_one_ends_the_login() {
    for backend in BACKENDS {
        let gateway = AdminGateway::start(backend).await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let anonymous = Admin::anonymous(&gateway.base);
        let refreshed = anonymous
            .expect(
                StatusCode::OK,
                "POST",
                "/api/v1/auth/refresh",
                Some(json!({"refresh_token": owner.refresh_token})),
            )
            .await;
        let next = refreshed["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(next, owner.refresh_token);
        let fresh = owner.with_token(refreshed["access_token"].as_str().unwrap());
        fresh
            .expect(StatusCode::OK, "GET", "/api/v1/organisations", None)
            .await;

        // The spent token used again: refused, and the token rotated from it dies too.
        let (status, _) = anonymous
            .call(
                "POST",
                "/api/v1/auth/refresh",
                Some(json!({"refresh_token": owner.refresh_token})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = anonymous
            .call(
                "POST",
                "/api/v1/auth/refresh",
                Some(json!({"refresh_token": next})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Logout ends a login the same way.
        let again = gateway.login("owner@acme.example").await;
        anonymous
            .expect(
                StatusCode::NO_CONTENT,
                "POST",
                "/api/v1/auth/logout",
                Some(json!({"refresh_token": again.refresh_token})),
            )
            .await;
        let (status, _) = anonymous
            .call(
                "POST",
                "/api/v1/auth/refresh",
                Some(json!({"refresh_token": again.refresh_token})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Wrong passwords and unknown users get the same answer; so does an email no database
        // could hold (PostgreSQL's text cannot hold a NUL: it used to be 503 "storage unavailable").
        for (email, password) in [
            ("owner@acme.example", "wrong password!"),
            ("nobody@acme.example", "whatever it is"),
            ("owner\u{0}@acme.example", "whatever it is"),
        ] {
            let (status, body) = anonymous
                .call(
                    "POST",
                    "/api/v1/auth/login",
                    Some(json!({"email": email, "password": password})),
                )
                .await;
            assert_eq!(
                (status, body["error"]["message"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("wrong email or password"))
            );
        }
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_field_named() {
    for backend in BACKENDS {
        let gateway = AdminGateway::start(backend).await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let org = owner.organisation.clone();
        let workspaces = format!("/api/v1/organisations/{org}/mcp-server-workspaces");

        let raw = |body: &'static str, content_type: &'static str| {
            let request = reqwest::Client::new()
                .post(format!("{}{workspaces}", gateway.base))
                .bearer_auth(owner.token.clone().unwrap())
                .header("content-type", content_type)
                .body(body);
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                (
                    status,
                    response
                        .json::<serde_json::Value>()
                        .await
                        .unwrap_or_default(),
                )
            }
        };
        assert_eq!(
            raw("{\"name\": ", "application/json").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            raw("{}", "text/plain").await.0,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let (status, body) = raw(
            r#"{"name": 7, "upstream": {"url": "http://x"}}"#,
            "application/json",
        )
        .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("name"))
        );

        let cases = [
            (
                json!({"name": "x".repeat(101), "upstream": {"url": "http://127.0.0.1:1/mcp"}}),
                "name",
            ),
            (
                json!({"name": "  ", "upstream": {"url": "http://127.0.0.1:1/mcp"}}),
                "name",
            ),
            (
                json!({"name": "crm", "upstream": {"url": "ftp://x"}}),
                "upstream.url",
            ),
            (
                json!({"name": "crm", "upstream": {"url": "http://x", "headers": {"bad header": "v"}}}),
                "upstream.headers.bad header",
            ),
            (
                json!({"name": "crm", "upstream": {"command": "/bin/sh", "args": ["-c", "id"]}}),
                "upstream.command",
            ),
            (
                json!({"name": "crm", "environment": "qa", "upstream": {"url": "http://x"}}),
                "environment",
            ),
            (
                json!({"name": "crm", "upstream": {"url": "http://x"}, "colour": "red"}),
                ".",
            ),
        ];
        for (body, field) in cases {
            let (status, answer) = owner.call("POST", &workspaces, Some(body.clone())).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
            let named = answer["error"]["field"].as_str().unwrap_or_default();
            assert!(
                named.contains(field) || field == ".",
                "{body}: expected {field}, got {answer}"
            );
        }

        // SQL metacharacters are just characters.
        let odd = "crm'; DROP TABLE workspaces; --";
        let created = owner
            .expect(StatusCode::CREATED, "POST", &workspaces, Some(json!({"name": odd, "upstream": {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer upstream-secret"}}})))
            .await;
        assert_eq!(created["name"], odd);
        assert_eq!(
            created["upstream"]["headers"]["Authorization"], "********",
            "upstream credentials are write-only"
        );
        let (status, _) = owner
            .call(
                "POST",
                &workspaces,
                Some(json!({"name": odd, "upstream": {"url": "http://x"}})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);

        // A policy document is checked as the proxy would build it.
        let (status, answer) = owner
            .call(
                "POST",
                "/api/v1/policies",
                Some(json!({"level": "organisation", "target_id": org,
                "document": {"guardrails": [{"type": "rate_limit_per_minute", "limit": 0}]}})),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("document.guardrails[0].limit")
            )
        );
        // A rule that cannot work is refused when saved, with the column of the fault.
        let (status, answer) = owner
            .call(
                "POST",
                "/api/v1/policies",
                Some(json!({"level": "organisation", "target_id": org,
                "document": {"guardrails": [
                    {"type": "rule", "name": "cap", "when": "tool == 'transfer' && arguments.amount > 1000"},
                    {"type": "rule", "name": "typo", "when": "agent.nmae == 'ci'"}
                ]}})),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("document.guardrails[1].when")
            ),
            "{answer}"
        );
        assert!(
            answer.to_string().contains("column 6: no field `nmae`"),
            "{answer}"
        );
        let (status, _) = owner
            .call(
                "POST",
                "/api/v1/policies",
                Some(json!({"level": "galaxy", "target_id": org, "document": {"guardrails": []}})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        // Pagination is bounded.
        let (status, _) = owner
            .call("GET", &format!("{workspaces}?limit=0"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _) = owner
            .call("GET", &format!("{workspaces}?limit=abc"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        // An offset no database can take (past i64::MAX) is refused, not clamped.
        let (status, body) = owner
            .call(
                "GET",
                &format!("{workspaces}?offset=9223372036854775808"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["field"], "offset", "{body}");
        let (status, _) = owner
            .call(
                "GET",
                &format!("{workspaces}?offset=9223372036854775807"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        for n in 0..3 {
            owner
                .workspace(&format!("ws-{n}"), "http://127.0.0.1:1/mcp")
                .await;
        }
        let first = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{workspaces}?limit=2"),
                None,
            )
            .await;
        assert_eq!(
            (
                first["items"].as_array().unwrap().len(),
                first["next_offset"].as_u64()
            ),
            (2, Some(2))
        );
        let last = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("{workspaces}?limit=2&offset=2"),
                None,
            )
            .await;
        assert_eq!(last["items"].as_array().unwrap().len(), 2);
        assert_ne!(first["items"][0]["id"], last["items"][0]["id"]);

        // Tokens: none, garbage, forged, expired, alg none.
        let anonymous = Admin::anonymous(&gateway.base);
        assert_eq!(
            anonymous.call("GET", "/api/v1/organisations", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        let user = User {
            id: UserId(uuid::Uuid::new_v4()),
            organisation: cerberus_core::OrganisationId(org.parse().unwrap()),
            email: "owner@acme.example".into(),
            role: Role::Owner,
            created_at: SystemTime::now(),
            updated_at: SystemTime::now(),
        };
        let forged = TokenIssuer::new(&[1; 40], Duration::from_secs(600), Duration::from_secs(600))
            .access_token(&user, SystemTime::now())
            .unwrap();
        let expired = TokenIssuer::new(
            &[b's'; 40],
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
        .access_token(&user, SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
        let real = owner.token.clone().unwrap();
        let payload = real.split('.').nth(1).unwrap();
        let unsigned = format!(
            "{}.{payload}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        for token in [
            "garbage",
            forged.as_str(),
            expired.as_str(),
            unsigned.as_str(),
        ] {
            let (status, body) = owner
                .with_token(token)
                .call("GET", "/api/v1/organisations", None)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}: {body}");
        }
        let (_, body) = owner
            .with_token(&expired)
            .call("GET", "/api/v1/organisations", None)
            .await;
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expired")
        );

        // Unknown routes and malformed ids are 404 with a JSON error.
        assert_eq!(
            owner.call("GET", "/api/v1/nothing-here", None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            owner
                .call("GET", "/api/v1/agent-accesses/not-a-uuid", None)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_reaches_another_within_its_cache_time() {
    for backend in BACKENDS {
        let gateway = AdminGateway::start(backend).await;
        let upstream = support::start_upstream().await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let workspace = owner.workspace("crm", &upstream).await;
        let (agent, key) = owner.agent(&workspace, "bot").await;
        // The other instance shares the database, not this instance's cache (the default: half a second).
        let other = gateway.second_instance(500).await;
        assert_eq!(proxy_status(&other, &key).await, StatusCode::OK);
        owner
            .expect(
                StatusCode::OK,
                "POST",
                &format!("/api/v1/agent-accesses/{agent}/revoke"),
                None,
            )
            .await;
        assert_eq!(
            proxy_status(&gateway.mcp(), &key).await,
            StatusCode::UNAUTHORIZED
        );
        let revoked = std::time::Instant::now();
        // Poll until the other instance refuses too; the deadline only turns a hang into a failure.
        while proxy_status(&other, &key).await != StatusCode::UNAUTHORIZED {
            assert!(
                revoked.elapsed() < Duration::from_secs(30),
                "the other instance never saw it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "{backend:?}: the other instance refused the key {:?} after the revocation",
            revoked.elapsed()
        );
        gateway.stop().await;
    }
}

/// What an initialize through the proxy with `key` gets: the status and the JSON-RPC error.
async fn initialize_error(mcp: &str, key: &str) -> (StatusCode, serde_json::Value) {
    let response = support::mcp_post(
        mcp,
        key,
        "2025-11-25",
        None,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .send()
    .await
    .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["error"].clone())
}

/// A tenant's upstream URL cannot point the gateway at its own machine or private network: loopback by
/// address, as IPv4 in IPv6 or by a name that resolves to it, and the metadata address, are refused
/// when connecting, with the answer a closed port gets; framing and hop-by-hop headers are refused
/// when the workspace is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_set_through_the_api_reach_only_public_addresses() {
    let gateway = AdminGateway::start_with_server(databases::BACKENDS[0], "").await;
    let upstream = support::start_upstream().await;
    let port = upstream
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let owner = gateway.tenant("acme", "owner@acme.example").await;
    let mut answers = Vec::new();
    for (name, url) in [
        ("loopback", upstream.clone()),
        ("mapped", format!("http://[::ffff:127.0.0.1]:{port}/mcp")),
        ("named", format!("http://localhost:{port}/mcp")),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data".to_owned(),
        ),
    ] {
        let workspace = owner.workspace(name, &url).await;
        let (_, key) = owner.agent(&workspace, "bot").await;
        answers.push((name, initialize_error(&gateway.mcp(), &key).await));
    }
    // A closed port on an address the gateway may reach: the same answer.
    let allowed = AdminGateway::start(databases::BACKENDS[0]).await;
    let allowed_owner = allowed.tenant("acme", "owner@acme.example").await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("http://127.0.0.1:{closed_port}/mcp");
    let workspace = allowed_owner.workspace("closed", &closed).await;
    let (_, key) = allowed_owner.agent(&workspace, "bot").await;
    let reference = initialize_error(&allowed.mcp(), &key).await;
    assert_eq!(reference.1["code"], -32052, "{reference:?}");
    for (name, answer) in answers {
        assert_eq!(answer, reference, "{name}");
    }
    // The same loopback upstream is reached where the operator allows loopback.
    let workspace = allowed_owner.workspace("allowed", &upstream).await;
    let (_, key) = allowed_owner.agent(&workspace, "bot").await;
    assert_eq!(proxy_status(&allowed.mcp(), &key).await, StatusCode::OK);

    // Headers the gateway sets itself cannot be set for an upstream.
    for header in [
        "Host",
        "Transfer-Encoding",
        "Content-Length",
        "Connection",
        "Mcp-Session-Id",
    ] {
        let (status, body) = owner
            .call(
                "POST",
                &format!(
                    "/api/v1/organisations/{}/mcp-server-workspaces",
                    owner.organisation
                ),
                Some(json!({"name": format!("h-{header}"), "upstream": {
                    "url": "https://mcp.example.com/mcp", "headers": {header: "x"}}})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{header}: {body}");
        assert_eq!(
            body["error"]["field"],
            format!("upstream.headers.{header}"),
            "{body}"
        );
    }
    allowed.stop().await;
    gateway.stop().await;
}

/// Ten failed logins for one account within the window (the default) and the eleventh attempt, even
/// with the right password, gets 429 with `Retry-After`, before any password is hashed; other
/// accounts log in as before. Easily guessed passwords are refused for new users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_and_weak_passwords_refused() {
    let gateway = AdminGateway::start(BACKENDS[0]).await;
    let owner = gateway.tenant("acme", "owner@acme.example").await;
    gateway.tenant("globex", "owner@globex.example").await;
    let login = |email: &'static str, password: &'static str| {
        let url = format!("{}/api/v1/auth/login", gateway.base);
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap();
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (response.status(), retry)
        }
    };
    for _ in 0..10 {
        assert_eq!(
            login("owner@acme.example", "not the password").await,
            (StatusCode::UNAUTHORIZED, None)
        );
    }
    let (status, retry) = login("OWNER@acme.example", admin_support::PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some_and(|s| (800..=900).contains(&s)), "{retry:?}");
    assert_eq!(
        login("owner@globex.example", admin_support::PASSWORD)
            .await
            .0,
        StatusCode::OK
    );

    for weak in [
        "aaaaaaaaaaaa",
        "password1234",
        "qwertyuiop123",
        "new@acme.example1",
    ] {
        let (status, body) = owner
            .call(
                "POST",
                &format!("/api/v1/organisations/{}/users", owner.organisation),
                Some(json!({"email": "new@acme.example", "role": "viewer", "password": weak})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{weak}: {body}");
        assert_eq!(body["error"]["field"], "password", "{body}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_set_through_the_api_reach_the_rules_of_the_proxy() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let gateway = AdminGateway::start(backend).await;
        let upstream = support::start_upstream().await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let org = owner.organisation.clone();
        let workspace = owner.workspace("crm", &upstream).await;
        let (agent, key) = owner.agent(&workspace, "deployer").await;
        let set = |path: String, labels: serde_json::Value| {
            let owner = &owner;
            async move {
                owner
                    .call("PUT", &path, Some(json!({"labels": labels})))
                    .await
            }
        };
        let org_labels = format!("/api/v1/organisations/{org}/labels");
        let workspace_labels =
            format!("/api/v1/organisations/{org}/mcp-server-workspaces/{workspace}/labels");
        let agent_labels = format!("/api/v1/agent-accesses/{agent}/labels");
        assert_eq!(
            set(org_labels.clone(), json!({"region": "eu"})).await.0,
            StatusCode::OK
        );
        assert_eq!(
            set(workspace_labels.clone(), json!({"kind": "crm"}))
                .await
                .0,
            StatusCode::OK
        );
        let (status, body) = set(agent_labels.clone(), json!({"role": "release"})).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"labels": {"role": "release"}}))
        );
        let shown = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("/api/v1/agent-accesses/{agent}"),
                None,
            )
            .await;
        assert_eq!(shown["labels"], json!({"role": "release"}));
        let shown = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("/api/v1/organisations/{org}"),
                None,
            )
            .await;
        assert_eq!(shown["labels"], json!({"region": "eu"}));

        // A rule reads all three levels' labels and the organisation's name.
        owner
            .policy(
                "organisation",
                &org,
                json!({"guardrails": [{"type": "rule", "name": "release-only",
                    "when": "tool == 'echo' && !(agent.labels.role == 'release' \
                             && workspace.labels.kind == 'crm' \
                             && organisation.labels.region == 'eu' && organisation.name == 'acme')",
                    "reason": "only release agents of the EU CRM"}]}),
            )
            .await;
        assert_eq!(
            call_echo(&gateway.mcp(), &key, "ship it").await.unwrap(),
            "ship it"
        );
        // A change of labels takes effect at once (the route cache is cleared).
        assert_eq!(
            set(agent_labels.clone(), json!({"role": "intern"})).await.0,
            StatusCode::OK
        );
        let refused = call_echo(&gateway.mcp(), &key, "ship it")
            .await
            .unwrap_err();
        assert!(refused.contains("only release agents"), "{refused}");

        // Bad labels are refused with the label named; another tenant's ids are not found.
        let (status, body) = set(agent_labels.clone(), json!({"a b": "x"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "labels.a b", "{body}");
        let (status, _) = set(agent_labels.clone(), json!({"note": "line\nbreak"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let many: serde_json::Map<String, serde_json::Value> =
            (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
        let (status, body) = set(agent_labels.clone(), json!(many)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["field"], "labels", "{body}");
        let (status, _) = set(agent_labels.clone(), json!({"team": 7})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let other = gateway.tenant("globex", "owner@globex.example").await;
        for path in [&org_labels, &workspace_labels, &agent_labels] {
            let (status, _) = other.call("PUT", path, Some(json!({"labels": {}}))).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
        let still = call_echo(&gateway.mcp(), &key, "ship it")
            .await
            .unwrap_err();
        assert!(
            still.contains("only release"),
            "the other tenant changed nothing: {still}"
        );
        gateway.stop().await;
    }
}
