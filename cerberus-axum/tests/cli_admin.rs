//! `cerberus migrate`, `cerberus admin create-user` and the first owner from the environment, driven as
//! an operator runs them: the real binary, a real SQLite file, then a login over HTTP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cerberus_core::store::UserStore;

const PASSWORD: &str = "a long enough passphrase";

fn config(directory: &Path, port: u16) -> std::path::PathBuf {
    let path = directory.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[database]\nurl = \"sqlite://{}?mode=rwc\"\n",
            directory.join("cerberus.db").display()
        ),
    )
    .unwrap();
    path
}

fn cerberus(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cerberus"))
        .args(args)
        .env_remove("CERBERUS_ADMIN_PASSWORD")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn login(port: u16, email: &str, password: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(serde_json::json!({"email": email, "password": password}).to_string())
        .send()
        .await
        .unwrap()
        .status()
}

/// Polls until the port accepts connections; a deadline only turns a hang into a failure.
fn wait_for(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "cerberus serve exited");
        assert!(Instant::now() < deadline, "cerberus serve never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_migrates_creates_the_first_owner_and_logs_in() {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(directory.path(), port);
    let config = config.to_str().unwrap();

    let migrated = cerberus(&["migrate", "--config", config], &[]);
    assert!(migrated.status.success(), "{migrated:?}");
    let again = cerberus(&["migrate", "--config", config], &[]);
    assert!(again.status.success(), "migrating twice is harmless");

    let create = |email: &str, password: &str| {
        cerberus(
            &[
                "admin",
                "create-user",
                "--config",
                config,
                "--organisation",
                "acme",
                "--email",
                email,
            ],
            &[("CERBERUS_ADMIN_PASSWORD", password)],
        )
    };
    let short = create("owner@acme.example", "short");
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"));
    let created = create("owner@acme.example", PASSWORD);
    assert!(created.status.success(), "{created:?}");
    let twice = create("owner@acme.example", PASSWORD);
    assert_eq!(
        twice.status.code(),
        Some(2),
        "the organisation exists already"
    );

    // Only an argon2id hash is stored.
    let store = cerberus_sqlx::SqlStore::connect(&format!(
        "sqlite://{}",
        directory.path().join("cerberus.db").display()
    ))
    .await
    .unwrap();
    let credentials = store
        .credentials("owner@acme.example")
        .await
        .unwrap()
        .unwrap();
    assert!(credentials.password_hash.starts_with("$argon2id$"));
    assert!(!credentials.password_hash.contains(PASSWORD));
    store.pool().close().await;

    // The first owner of another deployment comes from the environment at its first start.
    let mut serving = Serving(
        Command::new(env!("CARGO_BIN_EXE_cerberus"))
            .args(["serve", "--config", config])
            .env("CERBERUS_BOOTSTRAP_ORGANISATION", "globex")
            .env("CERBERUS_BOOTSTRAP_EMAIL", "owner@globex.example")
            .env("CERBERUS_BOOTSTRAP_PASSWORD", PASSWORD)
            .env("CERBERUS_JWT_SECRET", "x".repeat(40))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port, &mut serving.0);
    assert_eq!(login(port, "owner@acme.example", PASSWORD).await, 200);
    assert_eq!(login(port, "owner@globex.example", PASSWORD).await, 200);
    assert_eq!(
        login(port, "owner@globex.example", "not the password").await,
        401
    );
}

#[test]
fn a_short_jwt_secret_is_refused_at_start_up() {
    let directory = tempfile::tempdir().unwrap();
    let config = config(directory.path(), free_port());
    let out = cerberus(
        &["serve", "--config", config.to_str().unwrap()],
        &[("CERBERUS_JWT_SECRET", "short")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 characters"));
}

#[test]
fn an_unusable_upstream_authority_file_is_refused_at_start_up() {
    let directory = tempfile::tempdir().unwrap();
    let config = config(directory.path(), free_port());
    std::fs::write(directory.path().join("empty.pem"), "no certificate here\n").unwrap();
    for (file, why) in [
        ("missing.pem", "cannot read"),
        ("empty.pem", "no PEM certificate"),
    ] {
        let out = cerberus(
            &["serve", "--config", config.to_str().unwrap()],
            &[("CERBERUS_SERVER__UPSTREAM_CA_FILE", file)],
        );
        assert_eq!(out.status.code(), Some(2), "{file}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("server.upstream_ca_file"), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    }
}
