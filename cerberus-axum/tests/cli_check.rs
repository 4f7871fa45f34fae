//! `cerberus check` driven as a user runs it: the real binary, real files, standard input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn cerberus(args: &[&str], stdin: Option<&str>) -> Output {
    let args: Vec<&str> = if args.first() == Some(&"check") {
        args.to_vec()
    } else {
        [&["check"][..], args].concat()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_cerberus"))
        .args(args)
        .current_dir(examples())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cerberus starts");
    let mut input = child.stdin.take().unwrap();
    // The command may exit before reading its input (a bad policy): a broken pipe is expected then.
    if let Err(e) = input.write_all(stdin.unwrap_or("").as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn report(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

const ALL_LEVELS: [&str; 6] = [
    "--policy",
    "policies/organisation.json",
    "--policy",
    "policies/workspace.toml",
    "--policy",
    "policies/agent.json",
];

#[test]
fn a_request_with_personal_data_is_redacted_per_the_merged_policy() {
    let output = cerberus(
        &[&ALL_LEVELS[..], &["messages/tools_call.json"]].concat(),
        None,
    );
    let out = report(&output);
    assert_eq!(out["decision"], "modify");
    // The agent switched the email guardrail off; the organisation's phone redaction still applies.
    assert_eq!(
        out["message"]["params"]["arguments"]["query"],
        "orders from jane.doe@example.com, phone [REDACTED:PHONE]"
    );
    assert_eq!(out["message"]["id"], 7);
    let trace = out["trace"].as_array().unwrap();
    assert_eq!(
        trace[0],
        json!({"guardrail": "rbac", "level": "workspace", "decision": "allow"})
    );
    assert!(
        trace
            .iter()
            .any(|e| e["guardrail"] == "pii_phone" && e["decision"] == "modify")
    );
    assert!(
        trace
            .iter()
            .any(|e| e["guardrail"] == "rate_limit_per_minute" && e["level"] == "agent")
    );
    assert_eq!(
        out["ignored"],
        json!([{"guardrail": "pii_ssn", "level": "agent", "mandatory_at": "organisation"}])
    );
    assert!(
        !output.stdout.windows(13).any(|w| w == b"+44 20 7946 0"),
        "the phone number is gone"
    );
}

#[test]
fn a_denied_tool_is_blocked() {
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_secret_key","arguments":{}}}"#;
    let out = report(&cerberus(&[&ALL_LEVELS[..], &["-"]].concat(), Some(call)));
    assert_eq!(out["decision"], "block");
    assert_eq!(out["guardrail"], "rbac");
    assert_eq!(out["code"], "rbac_denied");
    assert_eq!(
        out["reason"],
        "tool `get_secret_key` is not allowed for this agent"
    );
}

#[test]
fn a_tool_list_is_filtered_for_the_agent() {
    let out = report(&cerberus(
        &[
            &ALL_LEVELS[..],
            &["--method", "tools/list", "messages/tools_list_result.json"],
        ]
        .concat(),
        None,
    ));
    assert_eq!(out["decision"], "modify");
    assert_eq!(
        out["message"]["result"]["tools"],
        json!([{"name": "search_customers", "inputSchema": {"type": "object"}}])
    );
    assert_eq!(out["message"]["result"]["nextCursor"], "page-2");
}

#[test]
fn a_response_is_redacted_when_read_from_stdin() {
    let result =
        std::fs::read_to_string(examples().join("messages/tools_call_result.json")).unwrap();
    let out = report(&cerberus(
        &["--policy", "policies/organisation.json"],
        Some(&result),
    ));
    assert_eq!(
        out["message"]["result"]["content"][0]["text"],
        "Jane Doe <[REDACTED:EMAIL]>, [REDACTED:PHONE], last login from [REDACTED:IP_ADDRESS]"
    );
}

#[test]
fn the_direction_can_be_forced() {
    let notification = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"from 203.0.113.7"}}"#;
    let policy = ["--policy", "policies/organisation.json"];
    let as_request = report(&cerberus(&policy, Some(notification)));
    assert_eq!(
        as_request["decision"], "allow",
        "IP addresses are redacted in responses only"
    );
    let as_response = report(&cerberus(
        &[&policy[..], &["--direction", "response"]].concat(),
        Some(notification),
    ));
    assert_eq!(
        as_response["message"]["params"]["data"],
        "from [REDACTED:IP_ADDRESS]"
    );
}

fn fails_with(output: &Output, expected: &str) {
    assert_eq!(
        output.status.code(),
        Some(2),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(expected),
        "stderr {stderr:?} should contain {expected:?}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn malformed_input_exits_2_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let good_call = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

    let unknown = write(
        "unknown.json",
        r#"{"guardrails":[{"type":"pii_passport"}]}"#,
    );
    fails_with(
        &cerberus(&["--policy", &unknown], Some(good_call)),
        "guardrails[0].type: unknown guardrail type `pii_passport`",
    );

    let bad_setting = write(
        "bad.json",
        r#"{"guardrails":[{"type":"rate_limit_per_minute","limit":-5}]}"#,
    );
    fails_with(
        &cerberus(&["--policy", &bad_setting], Some(good_call)),
        "guardrails[0].limit",
    );

    let bad_toml = write("bad.toml", "[[guardrails]\ntype = ");
    fails_with(
        &cerberus(&["--policy", &bad_toml], Some(good_call)),
        "invalid TOML",
    );

    fails_with(
        &cerberus(
            &["--policy", "policies/organisation.json"],
            Some("{not json"),
        ),
        "message: invalid JSON",
    );
    fails_with(
        &cerberus(
            &["--policy", "policies/organisation.json"],
            Some(r#"{"jsonrpc":"2.0","id":1}"#),
        ),
        "message: a message needs",
    );
    fails_with(
        &cerberus(&["--policy", "missing.json"], Some(good_call)),
        "cannot read missing.json",
    );
    let four = ["--policy", "policies/agent.json"].repeat(4);
    fails_with(
        &cerberus(&four, Some(good_call)),
        "at most three --policy files",
    );
}

#[test]
fn usage_errors_are_explained() {
    let output = cerberus(&["check"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--policy <FILE>"));
}
