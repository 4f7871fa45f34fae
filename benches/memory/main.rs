//! The gateway's memory under large answers: resident memory (RSS) of a `cerberus serve` process,
//! read from `/proc`, while clients pull large upstream answers through it, round after round, and
//! while slow clients leave large answers unread.
//!
//! The upstream is this program's own: it answers `tools/call` with a text of `--answer-mb` megabytes
//! (an email address at its start, so that the PII policy redacts something), as a tenant's upstream
//! may. The gateway keeps redacted payloads in its SQLite audit table (`payloads = "redacted"`), its
//! heaviest setting. Figures: RSS after start-up, after each round of `--concurrency` calls at once,
//! after `--slow-clients` calls whose answers are not read, and once idle. Memory that keeps growing
//! round after round, or stays up when idle, is what this measures.
//!
//! `scripts/memory-benchmark [--answer-mb 60] [--concurrency 8] [--rounds 5] [--slow-clients 50]
//! [--mimalloc-purge-delay MS]`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cerberus_benches::{McpClient, Process, free_port, keygen, serve_upstream, wait_for_port};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The `cerberus` binary to measure.
    #[arg(long)]
    cerberus: PathBuf,
    /// The size of each upstream answer's text, in megabytes.
    #[arg(long, default_value_t = 60)]
    answer_mb: usize,
    /// Calls at once in each round.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Rounds of calls.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Calls whose answers (of 3 MB) are left unread, all at once.
    #[arg(long, default_value_t = 50)]
    slow_clients: usize,
    /// `MIMALLOC_PURGE_DELAY` for the gateway, in milliseconds (mimalloc's default is 1000; the
    /// Dockerfile and the quickstart set 0).
    #[arg(long, value_name = "MS")]
    mimalloc_purge_delay: Option<u64>,
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no VmRSS in /proc")?
        .parse()?;
    Ok(kib / 1024.0)
}

/// The upstream's answer to a call: a text as large as the argument `mb` says, an email address at
/// its start.
fn large_answer(call: &Value) -> Value {
    let mb = call
        .pointer("/params/arguments/mb")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let size = usize::try_from(mb).unwrap_or(1) << 20;
    let mut text = String::with_capacity(size + 32);
    text.push_str("reply to jane.doe@example.com ");
    while text.len() < size {
        text.push_str("lorem ipsum dolor sit amet, consectetur adipiscing elit. ");
    }
    json!({"content": [{"type": "text", "text": text}]})
}

/// RSS after the process has had `pause` to settle.
async fn settled(pid: u32, pause: Duration) -> anyhow::Result<f64> {
    tokio::time::sleep(pause).await;
    rss_mib(pid)
}

fn config(dir: &Path, port: u16, upstream_port: u16, hash: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("memory.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [database]\nurl = \"sqlite://{}/memory.db?mode=rwc\"\n\n\
             [audit]\npayloads = \"redacted\"\n\n\
             [[organisations]]\nname = \"acme\"\npolicy = {{ guardrails = [{{ type = \"pii_email\", action = \"redact\" }}] }}\n\n\
             [[workspaces]]\nname = \"large\"\norganisation = \"acme\"\nupstream = {{ url = \"http://127.0.0.1:{upstream_port}/mcp\" }}\n\n\
             [[agents]]\nname = \"reader\"\nworkspace = \"large\"\nkey_sha256 = \"{hash}\"\n",
            dir.display()
        ),
    )?;
    Ok(path)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("cerberus-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let upstream_port = serve_upstream(large_answer).await?;
    let (key, hash) = keygen(&args.cerberus)?;
    let port = free_port()?;
    let config = config(&dir, port, upstream_port, &hash)?;
    let mut command = Command::new(&args.cerberus);
    command
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env_remove("MIMALLOC_PURGE_DELAY")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(delay) = args.mimalloc_purge_delay {
        command.env("MIMALLOC_PURGE_DELAY", delay.to_string());
    }
    let mut gateway = Process(command.spawn().context("cannot start cerberus")?);
    wait_for_port(port, &mut gateway)?;
    let pid = gateway.0.id();
    let url = format!("http://127.0.0.1:{port}/mcp");

    println!(
        "{} MB answers, {} at once, {} rounds; payloads = \"redacted\" in SQLite; \
         MIMALLOC_PURGE_DELAY {}",
        args.answer_mb,
        args.concurrency,
        args.rounds,
        args.mimalloc_purge_delay
            .map_or("unset (1000 ms)".to_owned(), |ms| format!("{ms} ms"))
    );
    println!(
        "started: {:.0} MiB",
        settled(pid, Duration::from_secs(1)).await?
    );
    let client = Arc::new(McpClient::open(url.clone(), key.clone()).await?);
    let mut after_rounds = Vec::new();
    for round in 1..=args.rounds {
        let started = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..args.concurrency {
            let client = Arc::clone(&client);
            let mb = args.answer_mb;
            calls.spawn(async move {
                let answer = client
                    .call(n + 1, "large", json!({"mb": mb}))
                    .send()
                    .await?
                    .bytes()
                    .await?;
                anyhow::Ok(answer.len())
            });
        }
        let mut received = 0;
        while let Some(call) = calls.join_next().await {
            received += call??;
        }
        let rss = settled(pid, Duration::from_secs(2)).await?;
        after_rounds.push(rss);
        println!(
            "round {round}: {:.0} MB received in {:.1} s; RSS {rss:.0} MiB",
            received as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }

    // Slow clients: each sends a call and never reads its 3 MB answer.
    let mut streams = Vec::new();
    for n in 0..args.slow_clients {
        let response = client
            .call(10_000 + n, "large", json!({"mb": 3}))
            .send()
            .await?;
        streams.push(response);
    }
    let slow = settled(pid, Duration::from_secs(3)).await?;
    println!(
        "{} clients not reading 3 MB answers: RSS {slow:.0} MiB",
        args.slow_clients
    );
    drop(streams);
    let idle = settled(pid, Duration::from_secs(5)).await?;
    println!("idle after: RSS {idle:.0} MiB");
    let first = after_rounds.first().copied().unwrap_or_default();
    let last = after_rounds.last().copied().unwrap_or_default();
    println!(
        "last round / first round: {:.2}",
        last / first.max(f64::EPSILON)
    );
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
