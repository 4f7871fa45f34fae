//! Distributed mode with real processes: three `cerberus serve` instances on their own loopback ports,
//! sharing one PostgreSQL database and the running Redis (127.0.0.1:6379 or CERBERUS_TEST_REDIS_URL;
//! no Redis is a failure), in front of the example MCP server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod admin_support;
mod databases;
mod processes;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use admin_support::{Admin, PASSWORD};
use cerberus_sqlx::{Backend, SqlStore};
use databases::TestDatabase;
use processes::{Running, example_server_http, free_port, post_mcp, redis_url, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

const VERSION: &str = "2025-11-25";
const LIMIT: usize = 10;

/// One `cerberus serve` on `port`.
fn instance(cerberus: &Path, directory: &Path, port: u16, database: &str, prefix: &str) -> Running {
    let config = directory.join(format!("gateway-{port}.toml"));
    // A one-minute cache: only the invalidation through Redis can make a revocation visible sooner.
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_upstream_allow = [\"127.0.0.0/8\"]\n\n\
             [database]\nurl = \"{database}\"\ncache_ttl_ms = 60000\n\n\
             [audit]\nlinger_ms = 50\n\n\
             [redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n",
            redis_url()
        ),
    )
    .unwrap();
    let mut child = Running(
        Command::new(cerberus)
            .args(["serve", "--config"])
            .arg(&config)
            .env("CERBERUS_BOOTSTRAP_ORGANISATION", "acme")
            .env("CERBERUS_BOOTSTRAP_EMAIL", "owner@acme.example")
            .env("CERBERUS_BOOTSTRAP_PASSWORD", PASSWORD)
            .env(
                "CERBERUS_JWT_SECRET",
                "a shared secret of at least 32 characters",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port, &mut child.0);
    child
}

/// POSTs one JSON-RPC message to an instance's proxy.
async fn post(
    port: u16,
    key: &str,
    session: Option<&str>,
    body: &Value,
) -> (StatusCode, Option<String>, String) {
    post_mcp(port, key, VERSION, session, body).await
}

fn echo(id: u64, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_act_as_one() {
    let cerberus = support::workspace_binary("cerberus-axum", "cerberus");
    let example = support::example_server_binary();
    let database = TestDatabase::create(Backend::Postgres).await;
    let directory = tempfile::tempdir().unwrap();
    let prefix = format!("cerberus-test-{}:", uuid::Uuid::new_v4());

    let (_upstream, upstream_port) = example_server_http(&example);

    // The first instance migrates and creates the owner; the others find both done.
    let ports = [free_port(), free_port(), free_port()];
    let mut instances = vec![instance(
        &cerberus,
        directory.path(),
        ports[0],
        &database.url,
        &prefix,
    )];
    for port in &ports[1..] {
        instances.push(instance(
            &cerberus,
            directory.path(),
            *port,
            &database.url,
            &prefix,
        ));
    }

    // Set up through instance 0's admin API.
    let (status, body) = Admin::anonymous(&format!("http://127.0.0.1:{}", ports[0]))
        .call(
            "POST",
            "/api/v1/auth/login",
            Some(json!({"email": "owner@acme.example", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let owner = Admin::anonymous(&format!("http://127.0.0.1:{}", ports[0]))
        .with_token(body["access_token"].as_str().unwrap());
    let organisation = body["user"]["organisation"].as_str().unwrap().to_owned();
    let owner = Admin {
        organisation: organisation.clone(),
        ..owner
    };
    let workspace = owner
        .workspace("crm", &format!("http://127.0.0.1:{upstream_port}/mcp"))
        .await;
    let (agent, key) = owner.agent(&workspace, "bot").await;
    owner
        .policy(
            "organisation",
            &organisation,
            json!({"guardrails": [{"type": "rate_limit_per_minute", "limit": LIMIT}]}),
        )
        .await;

    // A session opened through instance 0 continues through 1 and 2.
    let (status, session, _) = post(
        ports[0],
        &key,
        None,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "dist", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let session = session.expect("a session");
    let (status, _, _) = post(
        ports[1],
        &key,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // 30 calls spread over the three instances, in the one session: exactly LIMIT pass.
    let mut passed = 0;
    let mut throttled = 0;
    for n in 0..30_u64 {
        let port = ports[usize::try_from(n).unwrap() % 3];
        let (status, _, text) = post(port, &key, Some(&session), &echo(n + 1, "hello")).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        if text.contains("\"hello\"") {
            passed += 1;
        } else if text.contains("-32051") {
            throttled += 1;
        } else {
            panic!("unexpected answer from instance {port}: {text}");
        }
    }
    assert_eq!(
        (passed, throttled),
        (LIMIT, 30 - LIMIT),
        "one count for all instances"
    );

    // A revocation through instance 1 reaches 0 and 2 long before their one-minute cache expires.
    let before_revocation = Instant::now();
    Admin {
        organisation: organisation.clone(),
        ..Admin::anonymous(&format!("http://127.0.0.1:{}", ports[1]))
            .with_token(owner.token.as_deref().unwrap())
    }
    .expect(
        StatusCode::OK,
        "POST",
        &format!("/api/v1/agent-accesses/{agent}/revoke"),
        None,
    )
    .await;
    for port in [ports[0], ports[2]] {
        loop {
            let (status, _, _) = post(port, &key, Some(&session), &echo(99, "late")).await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(
                before_revocation.elapsed() < Duration::from_secs(30),
                "instance {port} still admits a revoked key"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!(
            "instance {port} refuses the revoked key {:?} after the revocation",
            before_revocation.elapsed()
        );
    }
    assert!(
        before_revocation.elapsed() < Duration::from_secs(5),
        "seen through Redis, not through the 60 s cache expiry"
    );

    // A fresh key; instance 2 answers calls under load and is stopped mid-run: every call it answered
    // has its records in the database once it has exited.
    let (_, key) = owner.agent(&workspace, "bot-2").await;
    owner
        .call(
            "DELETE",
            &format!(
                "/api/v1/policies/{}",
                owner
                    .expect(StatusCode::OK, "GET", "/api/v1/policies", None)
                    .await["items"][0]["id"]
                    .as_str()
                    .unwrap()
            ),
            None,
        )
        .await;
    let (_, session, _) = post(
        ports[2],
        &key,
        None,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "dist", "version": "1"}}}),
    )
    .await;
    let session = session.expect("a session");
    let mut callers = Vec::new();
    for worker in 0..4_u64 {
        let (key, session) = (key.clone(), session.clone());
        let port = ports[2];
        callers.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for n in 0..200_u64 {
                let id = 1000 + worker * 1000 + n;
                let request = reqwest::Client::new()
                    .post(format!("http://127.0.0.1:{port}/mcp"))
                    .bearer_auth(&key)
                    .header("accept", "application/json, text/event-stream")
                    .header("content-type", "application/json")
                    .header("mcp-protocol-version", VERSION)
                    .header("mcp-session-id", &session)
                    .body(echo(id, "hello").to_string())
                    .send()
                    .await;
                let Ok(response) = request else { break };
                match response.text().await {
                    Ok(text) if text.contains("\"hello\"") => answered.push(id),
                    _ => break,
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    processes::terminate(&instances[2].0);
    let mut answered = BTreeSet::new();
    for caller in callers {
        answered.extend(caller.await.unwrap());
    }
    processes::wait_exit(&mut instances[2].0);
    assert!(
        !answered.is_empty(),
        "instance 2 answered calls before it stopped"
    );
    let store = SqlStore::connect(&database.url).await.unwrap();
    let stored: BTreeSet<u64> = sqlx::query(
        "SELECT jsonrpc_id FROM audit_logs WHERE direction = 'response' AND jsonrpc_id IS NOT NULL",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .filter_map(|row| row.get::<String, _>(0).parse().ok())
    .collect();
    let lost: Vec<&u64> = answered.difference(&stored).collect();
    println!(
        "instance 2 answered {} calls before it stopped; {} of their answers are not in the audit log",
        answered.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "answered but not audited: {lost:?}");
    store.pool().close().await;
    drop(instances);
    database.drop_database().await;
}
