//! The real `cerberus serve`, logging at its most verbose, in front of the example server whose answers
//! hold personal data: after calls that are redacted, blocked, refused and malformed, neither its log
//! output, nor the JSON-lines audit file, nor the bytes of its SQLite database (audit with redacted
//! payloads) hold a raw personal-data value or the agent's key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "cbk_logtest_0123456789abcdefghijklmnopqrstuv";
const VERSION: &str = "2025-11-25";

/// Every value planted in a request or returned by the example server, and the key.
const SECRETS: [&str; 9] = [
    "jane@example.com",
    "jane.doe@example.com",
    "555) 234-5678",
    "203.0.113.7",
    "4111 1111 1111 1111",
    "536-22-1234",
    "078-05-1121",
    "bob@corp.example",
    KEY,
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the process exited");
        assert!(Instant::now() < deadline, "the process never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds the example MCP server of this workspace; returns its path.
fn example_server() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "cerberus-example-server"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "the example server builds");
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("debug")
        .join("cerberus-example-server")
}

async fn post(
    url: &str,
    key: &str,
    session: Option<&str>,
    body: String,
) -> (Option<String>, String) {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", VERSION)
        .body(body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (session, response.text().await.unwrap())
}

fn call(id: u32, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_audit_files_and_the_database_hold_no_raw_personal_data_or_keys() {
    let directory = tempfile::tempdir().unwrap();
    let upstream_port = free_port();
    let mut upstream = Running(
        Command::new(example_server())
            .args(["--http", &format!("127.0.0.1:{upstream_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(upstream_port, &mut upstream.0);

    let port = free_port();
    let hash = cerberus_axum::auth::KeyHash::of(KEY).to_hex();
    let database = directory.path().join("cerberus.db");
    let config = directory.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [database]\nurl = \"sqlite://{}?mode=rwc\"\n\n\
             [audit]\npayloads = \"redacted\"\n\n\
             [[organisations]]\nname = \"acme\"\npolicy = {{ guardrails = [\n\
             {{ type = \"rbac\", allow = [\"*\"], deny = [\"delete_*\"] }},\n\
             {{ type = \"pii_email\", action = \"redact\" }},\n\
             {{ type = \"pii_phone\", action = \"redact\" }},\n\
             {{ type = \"pii_ip_address\", action = \"redact\" }},\n\
             {{ type = \"pii_ssn\", action = \"block\" }},\n\
             {{ type = \"pii_credit_card\", action = \"block\" }}\n] }}\n\n\
             [[workspaces]]\nname = \"crm\"\norganisation = \"acme\"\n\
             upstream = {{ url = \"http://127.0.0.1:{upstream_port}/mcp\" }}\n\n\
             [[agents]]\nname = \"bot\"\nworkspace = \"crm\"\nkey_sha256 = \"{hash}\"\n",
            database.display()
        ),
    )
    .unwrap();
    let audit_file = directory.path().join("audit.jsonl");
    let log_file = directory.path().join("cerberus.log");
    let log = std::fs::File::create(&log_file).unwrap();
    let mut gateway = Running(
        Command::new(env!("CARGO_BIN_EXE_cerberus"))
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--audit-log")
            .arg(&audit_file)
            .env(
                "RUST_LOG",
                "cerberus=trace,cerberus_axum=trace,cerberus_core=trace,cerberus_sqlx=trace,info",
            )
            .env("CERBERUS_JWT_SECRET", "s".repeat(40))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for(port, &mut gateway.0);

    let url = format!("http://127.0.0.1:{port}/mcp");
    let (session, _) = post(
        &url,
        KEY,
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "logs", "version": "1"}}})
        .to_string(),
    )
    .await;
    let session = session.expect("a session");
    let session = Some(session.as_str());
    post(
        &url,
        KEY,
        session,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
    )
    .await;
    let mut answers = Vec::new();
    for body in [
        // Redacted both ways: an email in the request, email, phone and IP in the answer.
        call(1, "lookup_customer", json!({"name": "jane@example.com"})),
        // Blocked on the way back: a card number and an SSN in the answer.
        call(2, "billing_record", json!({"name": "bob@corp.example"})),
        // Blocked on the way in.
        call(3, "echo", json!({"text": "my SSN is 078-05-1121"})),
        // Denied by rbac, with personal data in its arguments.
        call(4, "delete_customer", json!({"name": "jane@example.com"})),
        // Malformed JSON holding personal data.
        "{\"jsonrpc\": \"2.0\", \"id\": 5, \"method\": \"tools/call\", \"params\": {\"name\": \"jane@example.com".to_owned(),
    ] {
        answers.push(post(&url, KEY, session, body).await.1);
    }
    // A wrong key, and the right key's look-alike.
    let (_, refused) = post(
        &url,
        "cbk_wrong_078-05-1121",
        None,
        call(6, "echo", json!({})),
    )
    .await;
    answers.push(refused);
    assert!(answers[0].contains("[REDACTED:EMAIL]"), "{}", answers[0]);
    assert!(answers[1].contains("pii_detected"), "{}", answers[1]);
    assert!(answers[2].contains("pii_detected"), "{}", answers[2]);
    assert!(answers[3].contains("rbac"), "{}", answers[3]);

    // A graceful stop flushes the audit to the database and the file.
    let status = Command::new("kill")
        .args(["-TERM", &gateway.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while gateway.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "cerberus serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }

    let logs = std::fs::read_to_string(&log_file).unwrap();
    let audit = std::fs::read_to_string(&audit_file).unwrap();
    assert!(
        logs.contains("shutting down"),
        "the gateway logged:\n{logs}"
    );
    // initialize and its answer, the notification, lookup and its answer, billing and its
    // blocked answer, the blocked echo, the denied delete; the malformed body and the wrong key
    // reach no pipeline.
    assert_eq!(
        audit.lines().count(),
        9,
        "every message was audited:\n{audit}"
    );
    assert!(audit.contains("[REDACTED:CREDIT_CARD]"), "{audit}");
    // The database's bytes, its write-ahead log included, raw.
    let mut stored = Vec::new();
    for suffix in ["", "-wal"] {
        let path = PathBuf::from(format!("{}{suffix}", database.display()));
        if let Ok(bytes) = std::fs::read(&path) {
            stored.extend(bytes);
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains("[REDACTED:SSN]"), "the payloads are stored");
    for (place, text) in [
        ("log", &logs),
        ("audit file", &audit),
        ("database", &stored.to_string()),
    ] {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} is in the {place}");
        }
    }
}
