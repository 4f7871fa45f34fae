//! Whether one agent's large calls starve another's: the latency of a light agent's small calls
//! through the PII policy, alone and while a heavy agent sends large hostile bodies at once, in one
//! run, with the ratio.
//!
//! The heavy agent's body is `--heavy-mb` megabytes of `a:a:a:…` in one argument (the input that once
//! took seconds per call in the IPv6 pattern), `--heavy` calls at a time, again and again. The light
//! agent calls `echo` with a short text, one call after another. The upstream is this program's own
//! and answers at once, so the figures are the gateway's. Figures: the light calls' p50 and p99 alone
//! and under the heavy load, their ratio, and the heavy calls' median time and scan rate.
//!
//! `scripts/fairness-benchmark [--heavy 6] [--heavy-mb 3.9] [--light-calls 300]`

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cerberus_benches::{McpClient, Process, free_port, keygen, serve_upstream, wait_for_port};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The `cerberus` binary to measure.
    #[arg(long)]
    cerberus: PathBuf,
    /// Heavy calls at a time.
    #[arg(long, default_value_t = 6)]
    heavy: usize,
    /// The size of each heavy call's body, in megabytes.
    #[arg(long, default_value_t = 3.9)]
    heavy_mb: f64,
    /// Light calls in each phase.
    #[arg(long, default_value_t = 300)]
    light_calls: usize,
}

/// The light agent's calls, one after another: each one's latency.
async fn light_calls(client: &McpClient, calls: usize) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(calls);
    for n in 0..calls {
        let started = Instant::now();
        let answer = client
            .call(
                n + 1,
                "echo",
                json!({"text": "status of order 1234, please"}),
            )
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "light call: {}",
            answer.status()
        );
        answer.bytes().await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("cerberus-fairness-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // Every call is answered at once.
    let upstream_port =
        serve_upstream(|_| json!({"content": [{"type": "text", "text": "done"}]})).await?;
    let (heavy_key, heavy_hash) = keygen(&args.cerberus)?;
    let (light_key, light_hash) = keygen(&args.cerberus)?;
    let body_bytes = (args.heavy_mb * 1e6) as usize;
    let port = free_port()?;
    let config = dir.join("fairness.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = {}\n\n\
             [[organisations]]\nname = \"acme\"\npolicy = {{ guardrails = [\
             {{ type = \"pii_email\", action = \"redact\" }}, {{ type = \"pii_phone\", action = \"redact\" }}, \
             {{ type = \"pii_ip_address\", action = \"redact\" }}, {{ type = \"pii_ssn\", action = \"block\" }}, \
             {{ type = \"pii_credit_card\", action = \"block\" }}] }}\n\n\
             [[workspaces]]\nname = \"tools\"\norganisation = \"acme\"\n\
             upstream = {{ url = \"http://127.0.0.1:{upstream_port}/mcp\" }}\n\n\
             [[agents]]\nname = \"heavy\"\nworkspace = \"tools\"\nkey_sha256 = \"{}\"\n\n\
             [[agents]]\nname = \"light\"\nworkspace = \"tools\"\nkey_sha256 = \"{}\"\n",
            body_bytes + 4096,
            heavy_hash,
            light_hash
        ),
    )?;
    let mut gateway = Process(
        Command::new(&args.cerberus)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start cerberus")?,
    );
    wait_for_port(port, &mut gateway)?;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let heavy = Arc::new(McpClient::open(url.clone(), heavy_key).await?);
    let light = McpClient::open(url, light_key).await?;

    println!(
        "light agent: {} small calls one after another; heavy agent: {} calls at a time of {:.1} MB \
         of `a:a:…`; PII policy, all five kinds",
        args.light_calls, args.heavy, args.heavy_mb
    );
    light_calls(&light, 50).await?; // warm-up
    let alone = light_calls(&light, args.light_calls).await?;

    let text = "a:".repeat(body_bytes / 2);
    let running = Arc::new(AtomicBool::new(true));
    let mut heavy_tasks = tokio::task::JoinSet::new();
    for worker in 0..args.heavy {
        let (heavy, running, text) = (Arc::clone(&heavy), Arc::clone(&running), text.clone());
        heavy_tasks.spawn(async move {
            let mut times = Vec::new();
            let mut n = 0;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let answer = heavy
                    .call(worker * 1_000_000 + n, "echo", json!({ "text": text }))
                    .send()
                    .await?;
                anyhow::ensure!(
                    answer.status().is_success(),
                    "heavy call: {}",
                    answer.status()
                );
                answer.bytes().await?;
                times.push(started.elapsed());
            }
            anyhow::Ok(times)
        });
    }
    // Let every heavy worker have a call in flight before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = light_calls(&light, args.light_calls).await?;
    running.store(false, Ordering::Relaxed);
    let mut heavy_times = Vec::new();
    while let Some(worker) = heavy_tasks.join_next().await {
        heavy_times.extend(worker??);
    }
    heavy_times.sort();

    let (p50a, p99a) = (percentile(&alone, 0.5), percentile(&alone, 0.99));
    let (p50l, p99l) = (percentile(&loaded, 0.5), percentile(&loaded, 0.99));
    println!(
        "light calls alone:           p50 {:.2} ms, p99 {:.2} ms",
        ms(p50a),
        ms(p99a)
    );
    println!(
        "light calls under heavy load: p50 {:.2} ms, p99 {:.2} ms",
        ms(p50l),
        ms(p99l)
    );
    println!(
        "under load / alone: p50 {:.1}x, p99 {:.1}x",
        ms(p50l) / ms(p50a).max(f64::EPSILON),
        ms(p99l) / ms(p99a).max(f64::EPSILON)
    );
    let median = percentile(&heavy_times, 0.5);
    println!(
        "heavy calls: {} done, median {:.0} ms each ({:.0} MB/s per call, scan and forwarding)",
        heavy_times.len(),
        ms(median),
        args.heavy_mb / median.as_secs_f64().max(f64::EPSILON)
    );
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
