//! Real processes for the tests: free ports, children killed on drop, waiting until they listen. A
//! test binary that uses this module declares `support` too.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    reason = "shared by several test binaries, each using part of it; a test fails loudly"
)]

use std::process::Child;
use std::time::{Duration, Instant};

/// The running Redis the tests use (no Redis is a failure, not a skip).
pub fn redis_url() -> String {
    std::env::var("CERBERUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed when the test is done with it.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port`; fails at once if `child` exits first.
pub fn wait_for(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the process exited");
        assert!(Instant::now() < deadline, "the process never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to `child`, as an orchestrator stops a container first.
pub fn terminate(child: &Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {} failed", child.id());
}

/// Waits (up to a minute) for `child` to exit.
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The example MCP server (`binary`) serving Streamable HTTP on a free port: the process and the port.
pub fn example_server_http(binary: &std::path::Path) -> (Running, u16) {
    let port = free_port();
    let mut child = Running(
        std::process::Command::new(binary)
            .args(["--http", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port, &mut child.0);
    (child, port)
}

/// POSTs one JSON-RPC message to the proxy on `port` in protocol `version`: the status, the
/// `Mcp-Session-Id` answered and the body.
pub async fn post_mcp(
    port: u16,
    key: &str,
    version: &str,
    session: Option<&str>,
    body: &serde_json::Value,
) -> (reqwest::StatusCode, Option<String>, String) {
    let url = format!("http://127.0.0.1:{port}/mcp");
    let response = crate::support::mcp_post(&url, key, version, session, body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, session, response.text().await.unwrap())
}
