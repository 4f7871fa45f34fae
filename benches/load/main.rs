//! The load benchmark: the same MCP load directly against the example server and through `cerberus
//! serve` in one run, alternating rounds so that both see the same machine, and the figures side by side.
//!
//! Each target gets one session (initialize once), then `concurrency` clients each make `calls`
//! `tools/call` requests in a row. Latency is from sending a request to having read its whole answer.
//! Everything runs on loopback, bounded in calls.
//!
//! `scripts/load-benchmark` builds everything in release mode and runs this.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "MCP load directly and through the gateway, in one run")]
struct Args {
    /// The `cerberus` binary.
    #[arg(long)]
    cerberus: PathBuf,
    /// The `cerberus-example-server` binary.
    #[arg(long)]
    example_server: PathBuf,
    /// The gateway's organisation policy.
    #[arg(long)]
    policy: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Calls per client per round.
    #[arg(long, default_value_t = 400)]
    calls: usize,
    /// Rounds; each runs the direct load, then the gateway load.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also run a second gateway that stores every audit event in a SQLite database, and compare.
    #[arg(long)]
    audit_database: bool,
}

/// A child process that is stopped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for_port(port: u16, process: &mut Process) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = process.0.try_wait()? {
            bail!("the process exited with {status} before listening on {port}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on port {port}")
}

/// One target: an endpoint, and the key it needs.
struct Target {
    name: &'static str,
    url: String,
    key: Option<String>,
}

#[derive(Default)]
struct Figures {
    latencies: Vec<Duration>,
    elapsed: Duration,
    calls: usize,
    errors: usize,
}

impl Figures {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

fn request(
    client: &reqwest::Client,
    target: &Target,
    session: Option<&str>,
    body: String,
) -> reqwest::RequestBuilder {
    let mut request = client
        .post(&target.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body);
    if let Some(key) = &target.key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request
}

async fn open_session(client: &reqwest::Client, target: &Target) -> anyhow::Result<String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "load", "version": "1"}}});
    let response = request(client, target, None, init.to_string())
        .send()
        .await?;
    let session = response
        .headers()
        .get("mcp-session-id")
        .context("no session id")?
        .to_str()?
        .to_owned();
    response.bytes().await?;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    request(client, target, Some(&session), initialized.to_string())
        .send()
        .await?
        .bytes()
        .await?;
    Ok(session)
}

async fn load(target: &Target, concurrency: usize, calls: usize) -> anyhow::Result<Figures> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()?;
    let session = open_session(&client, target).await?;
    // About 1 KB of prose, as a search query or a note would be: every guardrail reads it.
    let text = "The quarterly report shows steady growth in every region; the team will review the figures \
                on Monday and send the summary to the board before the release of version 2.4. "
        .repeat(6);
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let client = client.clone();
        let session = session.clone();
        let text = text.clone();
        let target = Target {
            name: target.name,
            url: target.url.clone(),
            key: target.key.clone(),
        };
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(calls);
            let mut errors = 0;
            for call in 0..calls {
                let id = worker * calls + call + 1;
                let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": text}}})
                .to_string();
                let sent = Instant::now();
                let answer = match request(&client, &target, Some(&session), body).send().await {
                    Ok(response) => response.bytes().await.ok(),
                    Err(_) => None,
                };
                latencies.push(sent.elapsed());
                let ok = answer.is_some_and(|a| a.windows(9).any(|w| w == b"\"result\":"));
                errors += usize::from(!ok);
            }
            (latencies, errors)
        }));
    }
    let mut figures = Figures::default();
    for worker in workers {
        let (latencies, errors) = worker.await?;
        figures.calls += latencies.len();
        figures.latencies.extend(latencies);
        figures.errors += errors;
    }
    figures.elapsed = started.elapsed();
    Ok(figures)
}

fn merge(into: &mut Figures, from: Figures) {
    into.latencies.extend(from.latencies);
    into.elapsed += from.elapsed;
    into.calls += from.calls;
    into.errors += from.errors;
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`, in clock ticks of
/// 10 ms; `None` where there is no procfs.
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |pid| format!("/proc/{pid}/stat"),
    );
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time used by the load client, the upstream and the gateway.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client: Duration,
    upstream: Duration,
    gateway: Duration,
}

impl Cpu {
    fn now(upstream: &Process, gateway: &Process) -> Self {
        Self {
            client: cpu_time(None).unwrap_or_default(),
            upstream: cpu_time(Some(upstream.0.id())).unwrap_or_default(),
            gateway: cpu_time(Some(gateway.0.id())).unwrap_or_default(),
        }
    }

    fn add_since(&mut self, start: Self, end: Self) {
        self.client += end.client.saturating_sub(start.client);
        self.upstream += end.upstream.saturating_sub(start.upstream);
        self.gateway += end.gateway.saturating_sub(start.gateway);
    }
}

fn micros_per_call(cpu: Duration, calls: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / calls.max(1) as f64
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = std::env::temp_dir().join(format!("cerberus-load-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    let upstream_port = free_port()?;
    let mut upstream = Process(
        Command::new(&args.example_server)
            .args(["--http", &format!("127.0.0.1:{upstream_port}")])
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the example server")?,
    );
    wait_for_port(upstream_port, &mut upstream)?;

    let keygen = Command::new(&args.cerberus).arg("keygen").output()?;
    let keygen = String::from_utf8(keygen.stdout)?;
    let field = |name: &str| {
        keygen
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::to_owned)
    };
    let (key, hash) = (
        field("key: ").context("no key")?,
        field("key_sha256: ").context("no hash")?,
    );
    let policy = std::fs::canonicalize(&args.policy)?;
    let start_gateway = |name: &str, database: bool| -> anyhow::Result<(Process, u16)> {
        let port = free_port()?;
        let config = work.join(format!("{name}.toml"));
        let database = if database {
            format!(
                "[database]\nurl = \"sqlite://{}?mode=rwc\"\n\n",
                work.join(format!("{name}.db")).display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{database}[[organisations]]\nname = \"load\"\npolicy = \"{}\"\n\n\
                 [[workspaces]]\nname = \"example\"\norganisation = \"load\"\nupstream = {{ url = \"http://127.0.0.1:{upstream_port}/mcp\" }}\n\n\
                 [[agents]]\nname = \"load\"\nworkspace = \"example\"\nkey_sha256 = \"{hash}\"\n",
                policy.display()
            ),
        )?;
        let mut process = Process(
            Command::new(&args.cerberus)
                .args(["serve", "--config"])
                .arg(&config)
                .env("RUST_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start cerberus")?,
        );
        wait_for_port(port, &mut process)?;
        Ok((process, port))
    };
    let (gateway, gateway_port) = start_gateway("gateway", false)?;
    let audited = if args.audit_database {
        Some(start_gateway("audited", true)?)
    } else {
        None
    };

    let direct = Target {
        name: "direct",
        url: format!("http://127.0.0.1:{upstream_port}/mcp"),
        key: None,
    };
    let through = Target {
        name: "gateway",
        url: format!("http://127.0.0.1:{gateway_port}/mcp"),
        key: Some(key.clone()),
    };
    let audited_target = audited.as_ref().map(|(_, port)| Target {
        name: "gateway+db",
        url: format!("http://127.0.0.1:{port}/mcp"),
        key: Some(key.clone()),
    });

    // A short warm-up of each, so that connection pools and caches are as they will be.
    load(&direct, 2, 20).await?;
    load(&through, 2, 20).await?;
    if let Some(target) = &audited_target {
        load(target, 2, 20).await?;
    }

    let (mut direct_figures, mut gateway_figures) = (Figures::default(), Figures::default());
    let (mut direct_cpu, mut gateway_cpu) = (Cpu::default(), Cpu::default());
    let (mut audited_figures, mut audited_cpu) = (Figures::default(), Cpu::default());
    for round in 1..=args.rounds {
        let before = Cpu::now(&upstream, &gateway);
        let d = load(&direct, args.concurrency, args.calls).await?;
        let between = Cpu::now(&upstream, &gateway);
        let g = load(&through, args.concurrency, args.calls).await?;
        let after = Cpu::now(&upstream, &gateway);
        direct_cpu.add_since(before, between);
        gateway_cpu.add_since(between, after);
        println!(
            "round {round}: direct {:.0} calls/s, gateway {:.0} calls/s",
            d.throughput(),
            g.throughput()
        );
        merge(&mut direct_figures, d);
        merge(&mut gateway_figures, g);
        if let (Some(target), Some((process, _))) = (&audited_target, &audited) {
            let before = Cpu::now(&upstream, process);
            let a = load(target, args.concurrency, args.calls).await?;
            audited_cpu.add_since(before, Cpu::now(&upstream, process));
            println!(
                "round {round}: gateway with the database audit {:.0} calls/s",
                a.throughput()
            );
            merge(&mut audited_figures, a);
        }
    }

    println!();
    println!(
        "{} clients x {} tools/call x {} rounds per target; ~1 KB arguments; policy {}",
        args.concurrency,
        args.calls,
        args.rounds,
        args.policy.display()
    );
    println!(
        "{:<8} {:>12} {:>10} {:>10} {:>8}",
        "target", "calls/s", "p50 ms", "p99 ms", "errors"
    );
    let mut rows = vec![(&direct, &direct_figures), (&through, &gateway_figures)];
    if let Some(target) = &audited_target {
        rows.push((target, &audited_figures));
    }
    for (target, figures) in rows {
        println!(
            "{:<8} {:>12.0} {:>10.3} {:>10.3} {:>8}",
            target.name,
            figures.throughput(),
            millis(figures.percentile(0.50)),
            millis(figures.percentile(0.99)),
            figures.errors
        );
    }
    let ratio = gateway_figures.throughput() / direct_figures.throughput().max(f64::EPSILON);
    println!();
    println!(
        "throughput through the gateway: {:.1}% of direct",
        ratio * 100.0
    );
    println!(
        "added latency: p50 {:+.3} ms, p99 {:+.3} ms",
        millis(gateway_figures.percentile(0.50)) - millis(direct_figures.percentile(0.50)),
        millis(gateway_figures.percentile(0.99)) - millis(direct_figures.percentile(0.99))
    );
    if audited_target.is_some() {
        let audited_ratio =
            audited_figures.throughput() / gateway_figures.throughput().max(f64::EPSILON);
        println!(
            "with the database audit: {:.1}% of the gateway's throughput without it; p99 {:+.3} ms",
            audited_ratio * 100.0,
            millis(audited_figures.percentile(0.99)) - millis(gateway_figures.percentile(0.99))
        );
    }
    println!();
    println!("CPU time per call (user + system, 10 ms ticks over every round):");
    println!(
        "{:<8} {:>10} {:>10} {:>10}",
        "target", "client µs", "server µs", "gateway µs"
    );
    let mut cpu_rows = vec![
        ("direct", direct_cpu, direct_figures.calls),
        ("gateway", gateway_cpu, gateway_figures.calls),
    ];
    if audited_target.is_some() {
        cpu_rows.push(("gateway+db", audited_cpu, audited_figures.calls));
    }
    for (name, cpu, calls) in cpu_rows {
        println!(
            "{:<8} {:>10.1} {:>10.1} {:>10.1}",
            name,
            micros_per_call(cpu.client, calls),
            micros_per_call(cpu.upstream, calls),
            micros_per_call(cpu.gateway, calls)
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    if direct_figures.errors + gateway_figures.errors + audited_figures.errors > 0 {
        bail!("some calls failed: the figures above do not measure what they claim");
    }
    Ok(())
}
