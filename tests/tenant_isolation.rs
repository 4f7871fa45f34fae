//! Tenant isolation and roles, on SQLite and on the running PostgreSQL: for every admin endpoint that
//! takes an id, another organisation's owner gets 404 and nothing changes; viewers cannot write; admins
//! cannot manage the organisation or its users; the last owner stays an owner.
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

use admin_support::{Admin, AdminGateway, PASSWORD, proxy_status};
use databases::BACKENDS;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Everything acme owns, by id.
struct Acme {
    org: String,
    workspace: String,
    agent: String,
    key: String,
    policy: String,
    viewer: String,
}

async fn acme(gateway: &AdminGateway, owner: &Admin, upstream: &str) -> Acme {
    let org = owner.organisation.clone();
    let workspace = owner.workspace("crm", upstream).await;
    let (agent, key) = owner.agent(&workspace, "bot").await;
    let policy = owner
        .policy(
            "workspace",
            &workspace,
            json!({"guardrails": [{"type": "rbac", "allow": ["*"]}]}),
        )
        .await;
    let viewer = owner
        .expect(
            StatusCode::CREATED,
            "POST",
            &format!("/api/v1/organisations/{org}/users"),
            Some(json!({"email": "viewer@acme.example", "role": "viewer", "password": PASSWORD})),
        )
        .await;
    let _ = gateway;
    Acme {
        org,
        workspace,
        agent,
        key,
        policy,
        viewer: viewer["id"].as_str().unwrap().to_owned(),
    }
}

/// Every request that names one of acme's ids, with a body where it needs one.
fn requests_naming(acme: &Acme) -> Vec<(&'static str, String, Option<Value>)> {
    let Acme {
        org,
        workspace,
        agent,
        policy,
        viewer,
        ..
    } = acme;
    let ws_body = json!({"name": "stolen", "upstream": {"url": "http://127.0.0.1:1/mcp"}});
    vec![
        ("GET", format!("/api/v1/organisations/{org}"), None),
        (
            "PATCH",
            format!("/api/v1/organisations/{org}"),
            Some(json!({"name": "stolen"})),
        ),
        ("DELETE", format!("/api/v1/organisations/{org}"), None),
        ("GET", format!("/api/v1/organisations/{org}/users"), None),
        (
            "POST",
            format!("/api/v1/organisations/{org}/users"),
            Some(json!({"email": "spy@globex.example", "role": "owner", "password": PASSWORD})),
        ),
        (
            "PATCH",
            format!("/api/v1/organisations/{org}/users/{viewer}"),
            Some(json!({"role": "owner"})),
        ),
        (
            "DELETE",
            format!("/api/v1/organisations/{org}/users/{viewer}"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/organisations/{org}/mcp-server-workspaces"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/organisations/{org}/mcp-server-workspaces"),
            Some(ws_body.clone()),
        ),
        (
            "GET",
            format!("/api/v1/organisations/{org}/mcp-server-workspaces/{workspace}"),
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/organisations/{org}/mcp-server-workspaces/{workspace}"),
            Some(json!({"name": "stolen"})),
        ),
        (
            "DELETE",
            format!("/api/v1/organisations/{org}/mcp-server-workspaces/{workspace}"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/mcp-server-workspaces/{workspace}/agent-accesses"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/mcp-server-workspaces/{workspace}/agent-accesses"),
            Some(json!({"name": "spy"})),
        ),
        ("GET", format!("/api/v1/agent-accesses/{agent}"), None),
        (
            "POST",
            format!("/api/v1/agent-accesses/{agent}/rotate"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/agent-accesses/{agent}/revoke"),
            None,
        ),
        ("DELETE", format!("/api/v1/agent-accesses/{agent}"), None),
        ("GET", format!("/api/v1/policies/{policy}"), None),
        (
            "PUT",
            format!("/api/v1/policies/{policy}"),
            Some(json!({"document": {"guardrails": []}})),
        ),
        ("DELETE", format!("/api/v1/policies/{policy}"), None),
        (
            "GET",
            format!("/api/v1/policies/mcp-server-workspaces/{workspace}/effective-policies"),
            None,
        ),
        (
            "POST",
            "/api/v1/policies".to_owned(),
            Some(
                json!({"level": "workspace", "target_id": workspace, "document": {"guardrails": []}}),
            ),
        ),
        (
            "POST",
            "/api/v1/policies".to_owned(),
            Some(json!({"level": "agent", "target_id": agent, "document": {"guardrails": []}})),
        ),
        (
            "POST",
            "/api/v1/policies".to_owned(),
            Some(
                json!({"level": "organisation", "target_id": org, "document": {"guardrails": []}}),
            ),
        ),
    ]
}

/// What acme can see of its own things: unchanged by anything another tenant tried.
async fn snapshot(owner: &Admin, acme: &Acme) -> Vec<Value> {
    let mut seen = Vec::new();
    for path in [
        format!("/api/v1/organisations/{}", acme.org),
        format!("/api/v1/organisations/{}/users", acme.org),
        format!("/api/v1/organisations/{}/mcp-server-workspaces", acme.org),
        format!(
            "/api/v1/mcp-server-workspaces/{}/agent-accesses",
            acme.workspace
        ),
        "/api/v1/policies".to_owned(),
    ] {
        seen.push(owner.expect(StatusCode::OK, "GET", &path, None).await);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisation_gets_404_for_every_id_and_changes_nothing() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let gateway = AdminGateway::start(backend).await;
        let upstream = support::start_upstream().await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let intruder = gateway.tenant("globex", "owner@globex.example").await;
        let acme = acme(&gateway, &owner, &upstream).await;
        let before = snapshot(&owner, &acme).await;

        // Another tenant's viewer gets 404 too, never 403: the answer does not depend on the role.
        intruder
            .expect(
                StatusCode::CREATED,
                "POST",
                &format!("/api/v1/organisations/{}/users", intruder.organisation),
                Some(json!({"email": "viewer@globex.example", "role": "viewer", "password": PASSWORD})),
            )
            .await;
        let intruding_viewer = gateway.login("viewer@globex.example").await;
        for (method, path, body) in requests_naming(&acme) {
            for caller in [&intruder, &intruding_viewer] {
                let (status, answer) = caller.call(method, &path, body.clone()).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
                assert_eq!(answer["error"]["status"], 404);
            }
        }
        assert_eq!(
            snapshot(&owner, &acme).await,
            before,
            "nothing of acme changed"
        );
        assert_eq!(
            proxy_status(&gateway.mcp(), &acme.key).await,
            StatusCode::OK
        );

        // Lists show each tenant its own only.
        let theirs = intruder
            .expect(StatusCode::OK, "GET", "/api/v1/organisations", None)
            .await;
        assert_eq!(theirs["items"].as_array().unwrap().len(), 1);
        assert_eq!(theirs["items"][0]["name"], "globex");
        let policies = intruder
            .expect(StatusCode::OK, "GET", "/api/v1/policies", None)
            .await;
        assert!(policies["items"].as_array().unwrap().is_empty());
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_each_user_may_do() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let gateway = AdminGateway::start(backend).await;
        let upstream = support::start_upstream().await;
        let owner = gateway.tenant("acme", "owner@acme.example").await;
        let acme = acme(&gateway, &owner, &upstream).await;
        let viewer = gateway.login("viewer@acme.example").await;
        let before = snapshot(&owner, &acme).await;

        // A viewer reads everything and writes nothing.
        for (method, path, body) in requests_naming(&acme) {
            let (status, answer) = viewer.call(method, &path, body).await;
            let expected = if method == "GET" {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(status, expected, "viewer {method} {path}: {answer}");
        }
        assert_eq!(snapshot(&owner, &acme).await, before);

        // An admin manages workspaces, agents and policies, not the organisation or its users.
        owner
            .expect(
                StatusCode::OK,
                "PATCH",
                &format!("/api/v1/organisations/{}/users/{}", acme.org, acme.viewer),
                Some(json!({"role": "admin"})),
            )
            .await;
        let admin = viewer.with_token(
            gateway
                .login("viewer@acme.example")
                .await
                .token
                .as_deref()
                .unwrap(),
        );
        admin.workspace("billing", &upstream).await;
        for (method, path, body) in [
            (
                "PATCH",
                format!("/api/v1/organisations/{}", acme.org),
                Some(json!({"name": "x"})),
            ),
            (
                "DELETE",
                format!("/api/v1/organisations/{}", acme.org),
                None,
            ),
            (
                "POST",
                format!("/api/v1/organisations/{}/users", acme.org),
                Some(json!({"email": "x@acme.example", "role": "owner", "password": PASSWORD})),
            ),
            (
                "POST",
                "/api/v1/organisations".to_owned(),
                Some(
                    json!({"name": "new", "owner": {"email": "n@new.example", "password": PASSWORD}}),
                ),
            ),
        ] {
            let (status, answer) = admin.call(method, &path, body).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "admin {method} {path}: {answer}"
            );
        }

        // A role change applies to tokens already issued: demoted, the user cannot write any more.
        owner
            .expect(
                StatusCode::OK,
                "PATCH",
                &format!("/api/v1/organisations/{}/users/{}", acme.org, acme.viewer),
                Some(json!({"role": "viewer"})),
            )
            .await;
        let (status, _) = admin
            .call(
                "POST",
                &format!("/api/v1/organisations/{}/mcp-server-workspaces", acme.org),
                Some(json!({"name": "late", "upstream": {"url": "http://127.0.0.1:1/mcp"}})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // The last owner cannot be demoted or removed; a removed user's token stops working.
        let me = owner
            .expect(
                StatusCode::OK,
                "GET",
                &format!("/api/v1/organisations/{}/users", acme.org),
                None,
            )
            .await;
        let owner_id = me["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["role"] == "owner")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, answer) = owner
            .call(
                "PATCH",
                &format!("/api/v1/organisations/{}/users/{owner_id}", acme.org),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("role"))
        );
        let (status, _) = owner
            .call(
                "DELETE",
                &format!("/api/v1/organisations/{}/users/{owner_id}", acme.org),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        owner
            .expect(
                StatusCode::NO_CONTENT,
                "DELETE",
                &format!("/api/v1/organisations/{}/users/{}", acme.org, acme.viewer),
                None,
            )
            .await;
        assert_eq!(
            admin.call("GET", "/api/v1/organisations", None).await.0,
            StatusCode::UNAUTHORIZED
        );

        // An owner may provision another tenant, which it then cannot see.
        let created = owner
            .expect(StatusCode::CREATED, "POST", "/api/v1/organisations",
                Some(json!({"name": "initech", "owner": {"email": "o@initech.example", "password": PASSWORD}})))
            .await;
        let initech = created["organisation"]["id"].as_str().unwrap();
        assert_eq!(
            owner
                .call("GET", &format!("/api/v1/organisations/{initech}"), None)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        gateway.login("o@initech.example").await;

        // Deleting the organisation ends its keys and logins.
        owner
            .expect(
                StatusCode::NO_CONTENT,
                "DELETE",
                &format!("/api/v1/organisations/{}", acme.org),
                None,
            )
            .await;
        assert_eq!(
            proxy_status(&gateway.mcp(), &acme.key).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            owner.call("GET", "/api/v1/organisations", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        gateway.stop().await;
    }
}
