//! The load benchmark: the same MCP load directly against the example server and through `cerberus
//! serve` in one run, alternating rounds so that both see the same machine, and the figures side by side.
//!
//! With `--redis URL`, two more targets run in distributed mode on that Redis: one gateway alone
//! (against the in-memory gateway, the cost of the Redis round trips) and two gateways sharing one
//! session, each client's calls alternating between them; Redis's `INFO commandstats` tells what it did
//! per call.
//!
//! Each target gets one session (initialize once), then `concurrency` clients each make `calls`
//! `tools/call` requests in a row. Latency is from sending a request to having read its whole answer.
//! Everything runs on loopback, bounded in calls.
//!
//! `scripts/load-benchmark` builds everything in release mode and runs this.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cerberus_benches::{Process, free_port, keygen, wait_for_port};
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
    /// Also run gateways in distributed mode on this Redis (`redis://127.0.0.1:6379`): one alone, to
    /// measure the Redis round trips, and two sharing one session, calls alternating between them.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Also run another build of `cerberus` as a gateway with the same configuration (target
    /// `baseline`), to compare a change with what it changes within one run.
    #[arg(long, value_name = "CERBERUS")]
    baseline: Option<PathBuf>,
    /// Also run the `floor-proxy` binary (target `floor`): the cheapest pass-through on the gateway's
    /// own HTTP server and upstream client, the most that any gateway on this transport could keep.
    #[arg(long, value_name = "FLOOR_PROXY")]
    floor: Option<PathBuf>,
}

/// One target: the endpoints its calls go to, in turn, and the key they need. The session is opened
/// through the first endpoint and used through all of them.
struct Target {
    name: &'static str,
    urls: Vec<String>,
    key: Option<String>,
}

impl Target {
    fn new(name: &'static str, ports: &[u16], key: Option<&str>) -> Self {
        Self {
            name,
            urls: ports
                .iter()
                .map(|port| format!("http://127.0.0.1:{port}/mcp"))
                .collect(),
            key: key.map(str::to_owned),
        }
    }

    /// The endpoint for a worker's call: with several, consecutive calls of one worker alternate.
    fn url(&self, worker: usize, call: usize) -> &str {
        let turn = (worker + call) % self.urls.len().max(1);
        self.urls.get(turn).map_or("", String::as_str)
    }
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
    url: &str,
    session: Option<&str>,
    body: String,
) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url)
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
    let response = request(client, target, target.url(0, 0), None, init.to_string())
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
    request(
        client,
        target,
        target.url(0, 0),
        Some(&session),
        initialized.to_string(),
    )
    .send()
    .await?
    .bytes()
    .await?;
    Ok(session)
}

async fn load(target: &Arc<Target>, concurrency: usize, calls: usize) -> anyhow::Result<Figures> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()?;
    let session = open_session(&client, target).await?;
    let text = cerberus_benches::load_text();
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let client = client.clone();
        let session = session.clone();
        let text = text.clone();
        let target = Arc::clone(target);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(calls);
            let mut errors = 0;
            for call in 0..calls {
                let id = worker * calls + call + 1;
                let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": text}}})
                .to_string();
                let sent = Instant::now();
                let url = target.url(worker, call);
                let answer = match request(&client, &target, url, Some(&session), body)
                    .send()
                    .await
                {
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

/// CPU time used by the load client, the upstream, the gateways serving a target and Redis.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client: Duration,
    upstream: Duration,
    gateway: Duration,
    redis: Duration,
}

impl Cpu {
    fn now(upstream: u32, gateways: &[u32], redis: Option<u32>) -> Self {
        Self {
            client: cpu_time(None).unwrap_or_default(),
            upstream: cpu_time(Some(upstream)).unwrap_or_default(),
            gateway: gateways.iter().filter_map(|&pid| cpu_time(Some(pid))).sum(),
            redis: redis
                .and_then(|pid| cpu_time(Some(pid)))
                .unwrap_or_default(),
        }
    }

    fn add_since(&mut self, start: Self, end: Self) {
        self.client += end.client.saturating_sub(start.client);
        self.upstream += end.upstream.saturating_sub(start.upstream);
        self.gateway += end.gateway.saturating_sub(start.gateway);
        self.redis += end.redis.saturating_sub(start.redis);
    }
}

/// Redis's own account of its work: how many times it ran each command and for how long, from
/// `INFO commandstats`, and its process for CPU time when it runs on this machine.
struct RedisProbe {
    connection: redis::Connection,
    pid: Option<u32>,
}

/// Calls and microseconds per Redis command.
type CommandStats = BTreeMap<String, (u64, u64)>;

impl RedisProbe {
    fn connect(url: &str) -> anyhow::Result<Self> {
        let mut connection = redis::Client::open(url)?
            .get_connection()
            .with_context(|| format!("cannot reach Redis at {url}"))?;
        let server: String = redis::cmd("INFO").arg("server").query(&mut connection)?;
        let pid = server
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        Ok(Self { connection, pid })
    }

    fn command_stats(&mut self) -> anyhow::Result<CommandStats> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection)?;
        // Lines look like `cmdstat_evalsha:calls=12,usec=340,usec_per_call=28.33,...`.
        let field = |fields: &str, name: &str| -> Option<u64> {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
        };
        Ok(info
            .lines()
            .filter_map(|line| {
                let (command, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                Some((
                    command.to_owned(),
                    (field(fields, "calls")?, field(fields, "usec")?),
                ))
            })
            .collect())
    }
}

/// What `after` adds to `before`, leaving out the probe's own `info`.
fn stats_since(before: &CommandStats, after: &CommandStats, into: &mut CommandStats) {
    for (command, &(calls, usec)) in after {
        if command == "info" {
            continue;
        }
        let (calls_before, usec_before) = before.get(command).copied().unwrap_or_default();
        let entry = into.entry(command.clone()).or_default();
        entry.0 += calls.saturating_sub(calls_before);
        entry.1 += usec.saturating_sub(usec_before);
    }
}

/// One target's load and what it cost.
struct Run {
    target: Arc<Target>,
    /// The gateway processes serving the target; none for the direct one.
    gateways: Vec<u32>,
    figures: Figures,
    cpu: Cpu,
    redis_commands: CommandStats,
}

impl Run {
    fn new(target: Target, gateways: &[&Process]) -> Self {
        Self {
            target: Arc::new(target),
            gateways: gateways.iter().map(|p| p.0.id()).collect(),
            figures: Figures::default(),
            cpu: Cpu::default(),
            redis_commands: CommandStats::new(),
        }
    }

    fn p50(&self) -> f64 {
        millis(self.figures.percentile(0.50))
    }

    fn p99(&self) -> f64 {
        millis(self.figures.percentile(0.99))
    }

    fn gateway_micros(&self) -> f64 {
        micros_per_call(self.cpu.gateway, self.figures.calls)
    }

    /// This run's throughput as a share of `baseline`'s, and the latency it adds to it.
    fn compared_with(&self, baseline: &Run) -> String {
        format!(
            "{:.1}% of the throughput of {}; p50 {:+.3} ms, p99 {:+.3} ms",
            self.figures.throughput() / baseline.figures.throughput().max(f64::EPSILON) * 100.0,
            baseline.target.name,
            self.p50() - baseline.p50(),
            self.p99() - baseline.p99(),
        )
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
    let mut redis_probe = args.redis.as_deref().map(RedisProbe::connect).transpose()?;

    let upstream_port = free_port()?;
    let mut upstream = Process(
        Command::new(&args.example_server)
            .args(["--http", &format!("127.0.0.1:{upstream_port}")])
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the example server")?,
    );
    wait_for_port(upstream_port, &mut upstream)?;

    let (key, hash) = keygen(&args.cerberus)?;
    let policy = std::fs::canonicalize(&args.policy)?;
    // `settings` is TOML for the sections the gateway needs beyond `[server]`.
    let start = |binary: &PathBuf, name: &str, settings: &str| -> anyhow::Result<(Process, u16)> {
        let port = free_port()?;
        let config = work.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{settings}\n[[organisations]]\nname = \"load\"\npolicy = \"{}\"\n\n\
                 [[workspaces]]\nname = \"example\"\norganisation = \"load\"\nupstream = {{ url = \"http://127.0.0.1:{upstream_port}/mcp\" }}\n\n\
                 [[agents]]\nname = \"load\"\nworkspace = \"example\"\nkey_sha256 = \"{hash}\"\n",
                policy.display()
            ),
        )?;
        let mut process = Process(
            Command::new(binary)
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

    let start_gateway = |name: &str, settings: &str| start(&args.cerberus, name, settings);
    let (gateway, gateway_port) = start_gateway("gateway", "")?;
    let mut runs = vec![
        Run::new(Target::new("direct", &[upstream_port], None), &[]),
        Run::new(
            Target::new("gateway", &[gateway_port], Some(&key)),
            &[&gateway],
        ),
    ];
    let audited = if args.audit_database {
        let database = work.join("audited.db");
        let (process, port) = start_gateway(
            "audited",
            &format!(
                "[database]\nurl = \"sqlite://{}?mode=rwc\"\n",
                database.display()
            ),
        )?;
        runs.push(Run::new(
            Target::new("gateway+db", &[port], Some(&key)),
            &[&process],
        ));
        Some(process)
    } else {
        None
    };
    let distributed = if let Some(url) = &args.redis {
        // Keys of this run only, and sessions that Redis forgets soon after it.
        let settings = format!(
            "[redis]\nurl = \"{url}\"\nkey_prefix = \"cerberus-load-{}:\"\nsession_idle_secs = 300\n",
            std::process::id()
        );
        let (first, first_port) = start_gateway("redis-a", &settings)?;
        let (second, second_port) = start_gateway("redis-b", &settings)?;
        runs.push(Run::new(
            Target::new("redis x1", &[first_port], Some(&key)),
            &[&first],
        ));
        runs.push(Run::new(
            Target::new("redis x2", &[first_port, second_port], Some(&key)),
            &[&first, &second],
        ));
        Some((first, second))
    } else {
        None
    };

    let baseline = if let Some(binary) = &args.baseline {
        let (process, port) = start(binary, "baseline", "")?;
        runs.push(Run::new(
            Target::new("baseline", &[port], Some(&key)),
            &[&process],
        ));
        Some(process)
    } else {
        None
    };

    let floor = if let Some(binary) = &args.floor {
        let port = free_port()?;
        let mut process = Process(
            Command::new(binary)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args([
                    "--upstream",
                    &format!("http://127.0.0.1:{upstream_port}/mcp"),
                ])
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start the floor proxy")?,
        );
        wait_for_port(port, &mut process)?;
        runs.push(Run::new(Target::new("floor", &[port], None), &[&process]));
        Some(process)
    } else {
        None
    };

    // A short warm-up of each, so that connection pools and caches are as they will be.
    for run in &runs {
        load(&run.target, 2, 20).await?;
    }

    let redis_pid = redis_probe.as_ref().and_then(|probe| probe.pid);
    for round in 1..=args.rounds {
        // Each round starts one target later than the one before: a target that always ran right
        // after another (the gateway after direct) measured a few percent apart from the same binary
        // in another position, so no target keeps a position.
        let count = runs.len();
        let mut throughputs = vec![0.0; count];
        for turn in 0..count {
            let index = (turn + round - 1) % count;
            let Some(run) = runs.get_mut(index) else {
                continue;
            };
            let before = Cpu::now(upstream.0.id(), &run.gateways, redis_pid);
            let stats_before = redis_probe
                .as_mut()
                .map(RedisProbe::command_stats)
                .transpose()?;
            let figures = load(&run.target, args.concurrency, args.calls).await?;
            run.cpu
                .add_since(before, Cpu::now(upstream.0.id(), &run.gateways, redis_pid));
            if let (Some(probe), Some(before)) = (redis_probe.as_mut(), stats_before) {
                stats_since(&before, &probe.command_stats()?, &mut run.redis_commands);
            }
            if let Some(throughput) = throughputs.get_mut(index) {
                *throughput = figures.throughput();
            }
            merge(&mut run.figures, figures);
        }
        let figures: Vec<String> = runs
            .iter()
            .zip(&throughputs)
            .map(|(run, throughput)| format!("{} {throughput:.0} calls/s", run.target.name))
            .collect();
        println!("round {round}: {}", figures.join(", "));
    }

    println!();
    println!(
        "{} clients x {} tools/call x {} rounds per target; ~1 KB arguments; policy {}",
        args.concurrency,
        args.calls,
        args.rounds,
        args.policy.display()
    );
    if args.redis.is_some() {
        println!(
            "redis x1: one gateway counting rate limits and keeping sessions in Redis; redis x2: two such \
             gateways, one session, each client's calls alternating between them"
        );
    }
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>8}",
        "target", "calls/s", "p50 ms", "p99 ms", "errors"
    );
    for run in &runs {
        println!(
            "{:<10} {:>10.0} {:>10.3} {:>10.3} {:>8}",
            run.target.name,
            run.figures.throughput(),
            run.p50(),
            run.p99(),
            run.figures.errors
        );
    }

    let [direct, gateway_run, others @ ..] = runs.as_slice() else {
        bail!("the direct and gateway runs are always there");
    };
    println!();
    println!("gateway: {}", gateway_run.compared_with(direct));
    let mut others = others.iter();
    if audited.is_some()
        && let Some(run) = others.next()
    {
        println!("gateway+db: {}", run.compared_with(gateway_run));
    }
    if distributed.is_some()
        && let (Some(one), Some(two)) = (others.next(), others.next())
    {
        println!("redis x1: {}", one.compared_with(gateway_run));
        println!(
            "  the Redis round trips cost the gateway {:+.1} µs of CPU per call",
            one.gateway_micros() - gateway_run.gateway_micros()
        );
        for run in [one, two] {
            let calls = run.figures.calls.max(1) as f64;
            let commands: Vec<String> = run
                .redis_commands
                .iter()
                // Leave out what only opening the session did.
                .filter(|(_, (count, _))| *count as f64 / calls >= 0.01)
                .map(|(command, (count, usec))| {
                    format!(
                        "{command} {:.2} per call, {:.1} µs each",
                        *count as f64 / calls,
                        *usec as f64 / (*count).max(1) as f64
                    )
                })
                .collect();
            println!(
                "  {} in Redis (a script's get, set and time are in its evalsha's time): {}",
                run.target.name,
                commands.join("; ")
            );
        }
        println!("redis x2: {}", two.compared_with(gateway_run));
        println!("redis x2: {}", two.compared_with(direct));
    }
    if baseline.is_some()
        && let Some(run) = others.next()
    {
        println!("baseline: {}", run.compared_with(direct));
        println!("gateway: {}", gateway_run.compared_with(run));
    }
    if floor.is_some()
        && let Some(run) = others.next()
    {
        println!("floor: {}", run.compared_with(direct));
        println!("gateway: {}", gateway_run.compared_with(run));
    }

    println!();
    println!("CPU time per call (user + system, 10 ms ticks over every round):");
    println!(
        "{:<10} {:>10} {:>10} {:>11} {:>10}",
        "target", "client µs", "server µs", "gateway µs", "redis µs"
    );
    for run in &runs {
        let calls = run.figures.calls;
        println!(
            "{:<10} {:>10.1} {:>10.1} {:>11.1} {:>10.1}",
            run.target.name,
            micros_per_call(run.cpu.client, calls),
            micros_per_call(run.cpu.upstream, calls),
            micros_per_call(run.cpu.gateway, calls),
            micros_per_call(run.cpu.redis, calls)
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    if runs.iter().any(|run| run.figures.errors > 0) {
        bail!("some calls failed: the figures above do not measure what they claim");
    }
    Ok(())
}
