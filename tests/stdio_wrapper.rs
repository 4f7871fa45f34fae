//! `cerberus stdio` as a process, driven over its pipes: bad input, the end of either side, signals and
//! exit statuses. The real-client test is `tests/python/test_stdio_wrapper.py`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

const POLICY: &str = r#"{"guardrails": [
    {"type": "rbac", "allow": ["*"], "deny": ["delete_*"]},
    {"type": "pii_email", "action": "redact", "direction": "both"}
]}"#;

struct Wrapper {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
    audit: PathBuf,
}

impl Wrapper {
    fn start(extra: &[&str], command: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.json");
        std::fs::write(&policy, POLICY).unwrap();
        let audit = dir.path().join("audit.jsonl");
        let mut child = Command::new(support::workspace_binary("cerberus-axum", "cerberus"))
            .arg("stdio")
            .arg("--policy")
            .arg(&policy)
            .arg("--audit-log")
            .arg(&audit)
            .args(extra)
            .arg("--")
            .args(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            input: child.stdin.take(),
            output: BufReader::new(child.stdout.take().unwrap()),
            child,
            _dir: dir,
            audit,
        }
    }

    fn example_server(extra: &[&str]) -> Self {
        let server = support::example_server_binary();
        Self::start(extra, &[server.to_str().unwrap()])
    }

    fn send_line(&mut self, line: &str) {
        let input = self.input.as_mut().unwrap();
        input.write_all(line.as_bytes()).unwrap();
        input.write_all(b"\n").unwrap();
        input.flush().unwrap();
    }

    fn send(&mut self, message: Value) {
        self.send_line(&message.to_string());
    }

    fn receive(&mut self) -> Value {
        let mut line = String::new();
        assert_ne!(
            self.output.read_line(&mut line).unwrap(),
            0,
            "the wrapper's output ended"
        );
        serde_json::from_str(&line).unwrap()
    }

    fn output_ends(&mut self) -> bool {
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap() == 0
    }

    fn initialize(&mut self) {
        self.send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}));
        assert!(self.receive()["result"]["serverInfo"].is_object());
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    }

    /// Closes the wrapper's input, as a client does when it is done; its exit status.
    fn hang_up(&mut self) -> std::process::ExitStatus {
        drop(self.input.take());
        self.child.wait().unwrap()
    }

    fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

fn call(id: u64, tool: &str, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"text": text}}})
}

#[test]
fn bad_lines_get_json_rpc_errors_and_the_session_goes_on() {
    let mut wrapper = Wrapper::example_server(&["--max-message-bytes", "400"]);
    wrapper.initialize();

    wrapper.send_line("this is not JSON");
    let error = wrapper.receive();
    assert_eq!(error["error"]["code"], -32700);
    assert_eq!(error["id"], Value::Null);

    wrapper.send(json!({"jsonrpc": "2.0", "id": 3}));
    assert_eq!(wrapper.receive()["error"]["code"], -32600);

    wrapper.send(call(4, "echo", &"x".repeat(1000)));
    let error = wrapper.receive();
    assert_eq!(error["error"]["code"], -32600);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds 400 bytes")
    );

    wrapper.send(call(5, "delete_customer", "Jane"));
    let denied = wrapper.receive();
    assert_eq!(
        (denied["id"].clone(), denied["error"]["code"].clone()),
        (json!(5), json!(-32050))
    );

    wrapper.send(call(6, "echo", "mail ann@example.com"));
    let echoed = wrapper.receive();
    assert_eq!(echoed["id"], 6);
    assert_eq!(
        echoed["result"]["content"][0]["text"],
        "mail [REDACTED:EMAIL]"
    );

    assert!(
        wrapper.hang_up().success(),
        "the server exits cleanly when its input closes"
    );
    let records = wrapper.audit_records();
    let decisions: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["method"] == "tools/call")
        .map(|r| {
            (
                r["direction"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("request", "block"),
            ("request", "modify"),
            ("response", "allow")
        ],
        "malformed and oversized lines reach no pipeline; the others are all audited"
    );
}

#[test]
fn the_servers_exit_status_is_the_wrappers() {
    let mut wrapper = Wrapper::start(&[], &["sh", "-c", "exit 3"]);
    assert!(wrapper.output_ends());
    assert_eq!(wrapper.child.wait().unwrap().code(), Some(3));
}

#[test]
fn a_server_that_ignores_the_end_of_its_input_is_killed() {
    let mut wrapper = Wrapper::start(&[], &["sh", "-c", "exec sleep 600"]);
    let status = wrapper.hang_up();
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "killed after the grace period: {status:?}"
    );
}

#[test]
fn stray_server_output_is_dropped_and_messages_pass() {
    let script = r#"echo 'starting up'; echo '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"bob@example.org"}}'"#;
    let mut wrapper = Wrapper::start(&[], &["sh", "-c", script]);
    let notification = wrapper.receive();
    assert_eq!(notification["method"], "notifications/message");
    assert_eq!(notification["params"]["data"], "[REDACTED:EMAIL]");
    assert!(wrapper.output_ends(), "the text line was not passed on");
    assert!(wrapper.child.wait().unwrap().success());
}

#[test]
fn sigterm_stops_the_server_and_keeps_the_audit() {
    let mut wrapper = Wrapper::example_server(&[]);
    wrapper.initialize();
    wrapper.send(call(1, "echo", "hello"));
    assert_eq!(wrapper.receive()["result"]["content"][0]["text"], "hello");
    let pid = wrapper.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wrapper.child.wait().unwrap();
    assert!(status.success(), "the server stopped cleanly: {status:?}");
    let records = wrapper.audit_records();
    assert!(
        records
            .iter()
            .any(|r| r["method"] == "tools/call" && r["direction"] == "response"),
        "the last answer's record was flushed: {records:?}"
    );
    assert!(Path::new(&wrapper.audit).exists());
}
