//! `examples/custom_gateway.rs`, a `main` of twenty lines that registers a guardrail type of its own,
//! runs a policy naming that type through `check`, `stdio` and `serve`; the stock binary refuses it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod processes;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// The policy of the example: rbac, the custom `require_argument` (a `ticket`), email redaction.
fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/custom_gateway/policy.json")
}

fn custom_gateway() -> PathBuf {
    support::workspace_example("cerberus-examples", "custom_gateway")
}

fn call(id: u64, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "lookup_customer", "arguments": arguments}})
}

fn check(binary: &Path, message: &Value) -> Output {
    let mut child = Command::new(binary)
        .arg("check")
        .arg("--policy")
        .arg(policy())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The stock binary refuses the policy before it reads the message: a broken pipe is expected.
    if let Err(e) = input.write_all(message.to_string().as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn check_runs_the_custom_type_and_the_stock_binary_refuses_it() {
    let binary = custom_gateway();
    let without = check(&binary, &call(1, json!({"name": "Jane"})));
    assert!(without.status.success(), "{without:?}");
    let report: Value = serde_json::from_slice(&without.stdout).unwrap();
    assert_eq!(report["decision"], "block");
    assert_eq!(report["guardrail"], "require_argument");
    assert_eq!(report["code"], "argument_missing");

    let with = check(
        &binary,
        &call(2, json!({"name": "Jane", "ticket": "CHG-7"})),
    );
    let report: Value = serde_json::from_slice(&with.stdout).unwrap();
    assert_eq!(report["decision"], "allow", "{report}");
    let trace: Vec<&str> = report["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["guardrail"].as_str().unwrap())
        .collect();
    assert_eq!(trace, ["rbac", "require_argument"]);

    // The stock binary knows the built-in types only, and says which it knows.
    let stock = check(
        &support::workspace_binary("cerberus-axum", "cerberus"),
        &call(3, json!({})),
    );
    assert_eq!(stock.status.code(), Some(2));
    let error = String::from_utf8_lossy(&stock.stderr);
    assert!(
        error.contains("guardrails[1].type: unknown guardrail type `require_argument`"),
        "{error}"
    );
}

#[test]
fn stdio_runs_the_custom_type_in_front_of_a_real_server() {
    let mut child = Command::new(custom_gateway())
        .arg("stdio")
        .arg("--policy")
        .arg(policy())
        .arg("--")
        .arg(support::example_server_binary())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut exchange = |message: Value| -> Value {
        writeln!(input, "{message}").unwrap();
        input.flush().unwrap();
        let mut line = String::new();
        assert_ne!(output.read_line(&mut line).unwrap(), 0, "an answer");
        serde_json::from_str(&line).unwrap()
    };
    let initialized = exchange(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "1"}}}));
    assert!(
        initialized["result"]["serverInfo"].is_object(),
        "{initialized}"
    );

    // Refused by the custom type, answered by the gateway: the server never sees it.
    let refused = exchange(call(1, json!({"name": "Jane"})));
    assert_eq!(refused["error"]["code"], -32050, "{refused}");
    assert_eq!(refused["error"]["data"]["guardrail"], "require_argument");

    // With a ticket the call reaches the server, and its answer is redacted.
    let answered = exchange(call(2, json!({"name": "Jane", "ticket": "CHG-7"})));
    let text = answered["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("[REDACTED:EMAIL]"), "{answered}");
    drop(input);
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_the_custom_type_from_its_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = processes::free_port();
    let key = "cbk_custom_gateway_test_key_0123456789";
    let hash = cerberus_axum::auth::KeyHash::of(key).to_hex();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[organisations]]\nname = \"acme\"\npolicy = \"{}\"\n\n\
             [[workspaces]]\nname = \"crm\"\norganisation = \"acme\"\n\
             upstream = {{ command = \"{}\" }}\n\n\
             [[agents]]\nname = \"bot\"\nworkspace = \"crm\"\nkey_sha256 = \"{hash}\"\n",
            policy().display(),
            support::example_server_binary().display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(custom_gateway())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    processes::wait_for(port, &mut child);
    let _running = processes::Running(child);

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let post = |body: Value, session: Option<String>| {
        let mut request = client
            .post(&url)
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let initialized = post(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "1"}}}),
        None,
    )
    .await
    .unwrap();
    assert!(initialized.status().is_success());
    let session = initialized.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer = |response: reqwest::Response| async move {
        let text = response.text().await.unwrap();
        // A JSON body, or the data of the event that answers.
        let data = text
            .lines()
            .find_map(|line| line.strip_prefix("data:"))
            .map_or(text.as_str(), str::trim);
        serde_json::from_str::<Value>(data).unwrap()
    };
    let refused = answer(
        post(call(1, json!({"name": "Jane"})), Some(session.clone()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32050, "{refused}");
    assert_eq!(refused["error"]["data"]["guardrail"], "require_argument");
    let answered = answer(
        post(
            call(2, json!({"name": "Jane", "ticket": "CHG-7"})),
            Some(session),
        )
        .await
        .unwrap(),
    )
    .await;
    let text = answered["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("[REDACTED:EMAIL]"), "{answered}");
}
