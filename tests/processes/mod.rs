//! Real processes for the tests: free ports, children killed on drop, waiting until they listen.
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
