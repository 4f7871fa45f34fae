//! What operators watch, on the real binary: `/health`, `/ready` (database, Redis, upstreams) and the
//! content of `/metrics` after real traffic, on SQLite, the running Redis and the example server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod processes;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use processes::{Running, example_server_http, free_port, post_mcp, redis_url, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "cbk_operations_test_key_0123456789abcdef";

const POLICY: &str = r#"{ guardrails = [
  { type = "rbac", allow = ["*"], deny = ["delete_*"] },
  { type = "pii_email", action = "redact", direction = "both" },
  { type = "rate_limit_per_minute", limit = 1000 },
] }"#;

/// `cerberus serve` with `sections` (TOML) and one agent whose workspace reaches `upstream`.
fn serve(directory: &Path, sections: &str, upstream: &str) -> (Running, u16) {
    let port = free_port();
    let hash = cerberus_axum::auth::KeyHash::of(KEY).to_hex();
    let config = directory.join(format!("gateway-{port}.toml"));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{sections}\n\n\
             [[organisations]]\nname = \"acme\"\npolicy = {POLICY}\n\n\
             [[workspaces]]\nname = \"tools\"\norganisation = \"acme\"\nupstream = {upstream}\n\n\
             [[agents]]\nname = \"bot\"\nworkspace = \"tools\"\nkey_sha256 = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let mut child = Running(
        Command::new(support::workspace_binary("cerberus-axum", "cerberus"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port, &mut child.0);
    (child, port)
}

fn example_server() -> (Running, String) {
    let (child, port) = example_server_http(&support::example_server_binary());
    (
        child,
        format!("{{ url = \"http://127.0.0.1:{port}/mcp\" }}"),
    )
}

async fn get(port: u16, path: &str) -> (StatusCode, String) {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn post(
    port: u16,
    key: &str,
    session: Option<&str>,
    body: &Value,
) -> (StatusCode, Option<String>) {
    let (status, session, _) = post_mcp(port, key, "2025-11-25", session, body).await;
    (status, session)
}

fn call(id: u64, tool: &str, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"text": text, "name": text}}})
}

/// The value of the sample `series` (name and labels exactly as exposed); 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_of_a_running_gateway() {
    let directory = tempfile::tempdir().unwrap();
    let (_upstream, upstream) = example_server();
    let database = format!(
        "sqlite://{}?mode=rwc",
        directory.path().join("cerberus.db").display()
    );
    let prefix = format!("cerberus-test-{}:", uuid::Uuid::new_v4());
    let sections = format!(
        "[database]\nurl = \"{database}\"\n\n[audit]\nlinger_ms = 5\n\n[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"",
        redis_url()
    );
    let (_gateway, port) = serve(directory.path(), &sections, &upstream);

    let (status, body) = get(port, "/health").await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (status, body) = get(port, "/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ready", "checks": {
            "database": {"status": "ok"},
            "redis": {"status": "ok"},
            "upstreams": {"acme/tools": {"status": "ok"}},
        }})
    );

    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "ops", "version": "1"}}});
    let (status, session) = post(port, KEY, None, &initialize).await;
    assert_eq!(status, StatusCode::OK);
    let session = session.unwrap();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        post(port, KEY, Some(&session), &initialized).await.0,
        StatusCode::ACCEPTED
    );
    post(port, KEY, Some(&session), &call(1, "echo", "plain")).await;
    post(
        port,
        KEY,
        Some(&session),
        &call(2, "echo", "to ann@example.com"),
    )
    .await;
    post(
        port,
        KEY,
        Some(&session),
        &call(3, "delete_customer", "Jane"),
    )
    .await;
    assert_eq!(
        post(port, "cbk_wrong_key", Some(&session), &call(4, "echo", "x"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // Requests: initialize, initialized, three calls. Responses: initialize's and two calls' (the
    // blocked call never went upstream).
    let (status, metrics) = get(port, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let requests = |decision: &str| {
        sample(
            &metrics,
            &format!(r#"cerberus_messages_total{{direction="request",decision="{decision}"}}"#),
        )
    };
    assert_eq!(
        (requests("allow"), requests("modify"), requests("block")),
        (3.0, 1.0, 1.0),
        "{metrics}"
    );
    let responses = |decision: &str| {
        sample(
            &metrics,
            &format!(r#"cerberus_messages_total{{direction="response",decision="{decision}"}}"#),
        )
    };
    assert_eq!(responses("allow") + responses("modify"), 3.0, "{metrics}");
    let decisions = |guardrail: &str, decision: &str| {
        sample(
            &metrics,
            &format!(
                r#"cerberus_guardrail_decisions_total{{guardrail="{guardrail}",direction="request",decision="{decision}"}}"#
            ),
        )
    };
    assert_eq!(decisions("rbac", "block"), 1.0);
    assert_eq!(
        decisions("rbac", "allow"),
        2.0,
        "rbac decides on tool calls only"
    );
    assert_eq!(decisions("pii_email", "modify"), 1.0);
    assert_eq!(
        decisions("rate_limit_per_minute", "allow"),
        2.0,
        "the calls rbac let through were counted"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cerberus_gateway_overhead_seconds_count{direction="request"}"#
        ),
        5.0
    );
    assert_eq!(
        sample(&metrics, "cerberus_upstream_latency_seconds_count"),
        3.0
    );
    assert_eq!(
        sample(&metrics, "cerberus_sessions_open"),
        0.0,
        "sessions live in Redis here: this instance keeps none in memory while Redis answers"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cerberus_http_requests_total{path="/mcp",status="401"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cerberus_http_requests_total{path="/mcp",status="202"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cerberus_http_requests_total{path="/ready",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&metrics, "cerberus_rate_limiter_backend_errors_total"),
        0.0
    );
    assert_eq!(sample(&metrics, "cerberus_rate_limiter_breaker_open"), 0.0);
    assert!(metrics.contains("cerberus_audit_queue_depth "), "{metrics}");
    assert_eq!(sample(&metrics, "cerberus_audit_events_dropped_total"), 0.0);
    assert!(metrics.contains("cerberus_stdio_sessions 0"));
    for secret in [KEY, "ann@example.com", "delete_customer", "acme", &session] {
        assert!(!metrics.contains(secret), "{secret} is exposed in /metrics");
    }

    // Every message's record is stored, and the writer's count says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = get(port, "/metrics").await.1;
        if sample(&metrics, "cerberus_audit_events_stored_total") == 8.0 {
            assert_eq!(sample(&metrics, "cerberus_audit_events_unwritten"), 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the audit records were not stored: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_what_is_down_and_metrics_count_limiter_errors() {
    let directory = tempfile::tempdir().unwrap();
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let closed_upstream = format!("{{ url = \"http://127.0.0.1:{}/mcp\" }}", free_port());

    // Redis down with the default fail_closed, and the upstream down: not ready, both named.
    let (_gateway, port) = serve(
        directory.path(),
        &format!("[redis]\nurl = \"{nowhere}\"\ntimeout_ms = 200"),
        &closed_upstream,
    );
    let (status, body) = get(port, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "not ready");
    assert_eq!(report["checks"]["redis"]["status"], "failed");
    assert_eq!(
        report["checks"]["upstreams"]["acme/tools"]["status"],
        "failed"
    );
    assert!(
        report["checks"].get("database").is_none(),
        "no database is configured"
    );
    assert_eq!(
        get(port, "/health").await.0,
        StatusCode::OK,
        "alive all the same"
    );

    // With fail_open, the rate limiter admits calls without Redis, but sessions live there: still
    // not ready. A stdio upstream whose command exists is reachable.
    let (_gateway, port) = serve(
        directory.path(),
        &format!("[redis]\nurl = \"{nowhere}\"\ntimeout_ms = 200\nfailure_mode = \"fail_open\""),
        &format!(
            "{{ command = \"{}\" }}",
            support::example_server_binary().display()
        ),
    );
    let (status, body) = get(port, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["checks"]["redis"]["status"], "failed");
    assert_eq!(report["checks"]["upstreams"]["acme/tools"]["status"], "ok");

    // A sessionless (2026-07-28) call meets the unreachable limiter: the error is counted and, with
    // fail_open, the call admitted.
    post_mcp(port, KEY, "2026-07-28", None, &call(1, "echo", "hello")).await;
    let metrics = get(port, "/metrics").await.1;
    assert!(
        sample(&metrics, "cerberus_rate_limiter_backend_errors_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cerberus_guardrail_decisions_total{guardrail="rate_limit_per_minute",direction="request",decision="allow"}"#
        ),
        1.0,
        "fail_open admits the call"
    );
}

/// A configuration file listening on `port`, with no agents.
fn bare_config(directory: &Path, port: u16) -> std::path::PathBuf {
    let config = directory.join("bare.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    config
}

#[test]
fn settings_come_from_the_file_then_the_environment_then_the_command_line() {
    let directory = tempfile::tempdir().unwrap();
    let cerberus = support::workspace_binary("cerberus-axum", "cerberus");
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let config = bare_config(directory.path(), file_port);
    let start = |envs: &[(&str, String)]| {
        let mut command = Command::new(&cerberus);
        command
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in envs {
            command.env(name, value);
        }
        Running(command.spawn().unwrap())
    };

    let mut from_env = start(&[("CERBERUS_SERVER__LISTEN", format!("127.0.0.1:{env_port}"))]);
    wait_for(env_port, &mut from_env.0);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err(),
        "the environment wins over the file"
    );
    drop(from_env);

    let mut from_flag = start(&[
        ("CERBERUS_SERVER__LISTEN", format!("127.0.0.1:{env_port}")),
        ("CERBERUS_LISTEN", format!("127.0.0.1:{flag_port}")),
    ]);
    wait_for(flag_port, &mut from_flag.0);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", env_port)).is_err(),
        "--listen wins over both"
    );
}

#[test]
fn a_bad_setting_stops_the_start_with_its_name() {
    let directory = tempfile::tempdir().unwrap();
    let config = bare_config(directory.path(), free_port());
    let output = Command::new(support::workspace_binary("cerberus-axum", "cerberus"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("CERBERUS_SERVER__MAX_BODY_BYTES", "plenty")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CERBERUS_SERVER__MAX_BODY_BYTES: invalid type"),
        "{stderr}"
    );

    std::fs::write(&config, "[server]\nmax_body_bytes = \"plenty\"\n").unwrap();
    let output = Command::new(support::workspace_binary("cerberus-axum", "cerberus"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bare.toml: config: invalid type"),
        "{stderr}"
    );
}

#[test]
fn logs_are_json_when_asked() {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = bare_config(directory.path(), port);
    let mut child = Command::new(support::workspace_binary("cerberus-axum", "cerberus"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(port, &mut child);
    processes::terminate(&child);
    let output = child.wait_with_output().unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "cerberus is serving" && l["level"] == "INFO"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l["message"] == "shutting down"));
}
