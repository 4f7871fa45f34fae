//! Scripts in `tests/browser/` that drive headless chromium with playwright-core (both installed by
//! `scripts/node/install`) and print one JSON report.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The workspace's root, where `scripts/node` and `tests/browser` are.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
}

/// Runs `tests/browser/{script}` with `args` and returns the report it printed; fails the test if
/// the browser or playwright-core is missing or the script does not finish.
pub async fn run(script: &str, args: Vec<PathBuf>) -> Value {
    let modules = root().join("scripts/node/node_modules");
    assert!(
        modules.join("playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs playwright-core and chromium: run scripts/node/install"
    );
    let script = root().join("tests/browser").join(script);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .env("NODE_PATH", modules)
            .output()
            .expect("node runs")
    })
    .await
    .expect("the browser script's task ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("the script prints one JSON report")
}
