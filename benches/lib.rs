//! Deterministic inputs shared by the benchmarks: realistic MCP traffic without a random seed to chase.

use cerberus_core::PolicyDocument;

pub mod corpus;

/// The organisation policy of the examples: every built-in guardrail, as a deployment would start.
pub fn default_policy() -> PolicyDocument {
    #[expect(
        clippy::expect_used,
        reason = "the bundled example policy is valid; its tests say so"
    )]
    PolicyDocument::from_json(include_str!("../examples/policies/organisation.json"))
        .expect("the example policy parses")
}

/// A small linear congruential generator: the same text on every run and machine.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap_or(0)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let len = items.len().max(1);
        items.get(self.next() % len).copied().unwrap_or_default()
    }
}

const WORDS: [&str; 32] = [
    "the",
    "customer",
    "order",
    "was",
    "shipped",
    "on",
    "invoice",
    "total",
    "and",
    "payment",
    "received",
    "for",
    "account",
    "status",
    "pending",
    "review",
    "team",
    "update",
    "server",
    "version",
    "release",
    "build",
    "with",
    "notes",
    "résumé",
    "café",
    "über",
    "data",
    "report",
    "quarterly",
    "growth",
    "metrics",
];

/// Things that look a little like personal data but are not: dates, versions, ids, times, amounts.
const NEAR_MISSES: [&str; 10] = [
    "2024-01-15",
    "v2.14.3",
    "order #48213",
    "10:30:00",
    "$1,234.56",
    "build 10.0.19041",
    "ticket 5521",
    "ISBN 978-3-16-148410-0",
    "1.2.3",
    "zip 94107",
];

const PII: [&str; 10] = [
    "jane.doe@example.com",
    "(555) 234-5678",
    "536-22-1234",
    "4111 1111 1111 1111",
    "203.0.113.7",
    "+44 20 7946 0958",
    "ops+alerts@mail.example.co.uk",
    "2001:db8::8a2e:370:7334",
    "5555555555554444",
    "07700 900123",
];

/// Personal data the example policy redacts rather than blocks.
pub const REDACTABLE_PII: [&str; 5] = [
    "jane.doe@example.com",
    "(555) 234-5678",
    "+44 20 7946 0958",
    "ops+alerts@mail.example.co.uk",
    "07700 900123",
];

/// `len` bytes (or a little more) of prose with near misses and, every `pii_every` words, a piece of
/// personal data of every kind (`0` for none).
pub fn mixed_text(len: usize, pii_every: usize) -> String {
    mixed_text_with(len, pii_every, &PII)
}

/// [`mixed_text`] drawing its personal data from `pool`.
pub fn mixed_text_with(len: usize, pii_every: usize, pool: &[&str]) -> String {
    let mut rng = Lcg(0x5eed);
    let mut text = String::with_capacity(len + 64);
    let mut words = 0usize;
    while text.len() < len {
        words += 1;
        let piece = if pii_every > 0 && words.is_multiple_of(pii_every) {
            rng.pick(pool)
        } else if words.is_multiple_of(17) {
            rng.pick(&NEAR_MISSES)
        } else {
            rng.pick(&WORDS)
        };
        text.push_str(piece);
        text.push(if words.is_multiple_of(12) { '\n' } else { ' ' });
    }
    text
}

/// What a benchmark message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// No personal data.
    Clean,
    /// A few emails and phone numbers, which the example policy redacts.
    Redactable,
    /// Payment card numbers and SSNs too, which the example policy blocks.
    Blocked,
}

/// A `tools/call` result of about 4 KB: a text item of prose and a small structured part, as a search
/// or CRM tool returns.
pub fn tool_result_4k(payload: Payload) -> Vec<u8> {
    let text = match payload {
        Payload::Clean => mixed_text(3300, 0),
        Payload::Redactable => mixed_text_with(3300, 90, &REDACTABLE_PII),
        Payload::Blocked => mixed_text(3300, 90),
    };
    let pii = payload != Payload::Clean;
    let owner = if pii {
        "jane.doe@example.com"
    } else {
        "owner-1842"
    };
    let result = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 42,
        "result": {
            "content": [{"type": "text", "text": text}],
            "structuredContent": {"matches": 3, "owner": owner, "took_ms": 18, "tags": ["crm", "search", "v2"]},
            "isError": false
        }
    });
    serde_json::to_vec(&result).unwrap_or_default()
}

/// A `tools/call` request of about 4 KB of arguments.
pub fn tool_call_4k() -> Vec<u8> {
    let call = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 41,
        "method": "tools/call",
        "params": {"name": "search_customers", "arguments": {"query": mixed_text(3800, 0), "limit": 20}}
    });
    serde_json::to_vec(&call).unwrap_or_default()
}

/// A `tools/call` of `transfer` with about 1 KB of arguments: an amount under the cap, and the
/// fields a payment tool takes.
pub fn rule_call_1kb() -> Vec<u8> {
    let mut arguments = serde_json::Map::new();
    arguments.insert("amount".into(), serde_json::json!(250.5));
    arguments.insert("currency".into(), serde_json::json!("EUR"));
    arguments.insert("to".into(), serde_json::json!("ops@example.com"));
    arguments.insert(
        "path".into(),
        serde_json::json!("/srv/shared/invoices/2026/01/invoice-0042.pdf"),
    );
    arguments.insert(
        "query".into(),
        serde_json::json!("SELECT id, total FROM invoices WHERE customer = 42"),
    );
    for i in 0..20 {
        arguments.insert(
            format!("field_{i:02}"),
            serde_json::json!(format!("value {i} of the payment's reference data")),
        );
    }
    let call = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "transfer", "arguments": arguments}
    });
    serde_json::to_vec(&call).unwrap_or_default()
}

/// Fifty rules of the shapes policies hold: tool names, amounts, prefixes, patterns, labels, time.
/// None holds on [`rule_call_1kb`] or on a result, so every one runs.
pub fn fifty_rules() -> Vec<cerberus_core::guardrails::rule::RuleSettings> {
    let shapes = [
        "tool == 'transfer' && double(arguments.amount) > 1000.0",
        "tool == 'run_sql' && !arguments.query.matches(r'(?i)^\\s*select\\b')",
        "tool == 'read_file' && !arguments.path.startsWith('/srv/shared/')",
        "has(arguments.to) && !arguments.to.endsWith('@example.com')",
        "tool in ['delete_everything', 'drop_table'] && agent.labels.role != 'admin'",
        "has(arguments.currency) && !(arguments.currency in ['EUR', 'USD', 'GBP'])",
        "has(arguments.field_00) && size(arguments.field_00) > 500",
        "now.getHours('UTC') == 3 && tool == 'deploy'",
        "method == 'tools/call' && tool.contains('danger')",
        "arguments.exists(k, k == 'password')",
    ];
    (0..50)
        .map(|i| {
            let when = shapes.get(i % shapes.len()).copied().unwrap_or("false");
            #[expect(
                clippy::expect_used,
                reason = "the shapes are valid settings; the bench runs them"
            )]
            serde_json::from_value(serde_json::json!({"name": format!("rule-{i}"), "when": when}))
                .expect("valid rule settings")
        })
        .collect()
}

/// The load benchmark's argument: about 1 KB of prose, as a search query or a note would be, with a
/// version number in it; every guardrail reads it.
pub fn load_text() -> String {
    "The quarterly report shows steady growth in every region; the team will review the figures \
     on Monday and send the summary to the board before the release of version 2.4. "
        .repeat(6)
}

/// A child process of a benchmark, stopped when dropped.
#[derive(Debug)]
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (yet).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits up to 30 s for `process` to listen on `port`; an error if it exits first or never does.
pub fn wait_for_port(port: u16, process: &mut Process) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(status) = process.0.try_wait()? {
            anyhow::bail!("the process exited with {status} before listening on {port}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    anyhow::bail!("nothing listens on port {port}")
}

/// An MCP client of a gateway for one agent, within its own session (protocol 2025-11-25).
#[derive(Debug)]
pub struct McpClient {
    http: reqwest::Client,
    url: String,
    key: String,
    session: String,
}

impl McpClient {
    /// Initializes a session at `url` with the agent key `key`.
    pub async fn open(url: String, key: String) -> anyhow::Result<Self> {
        use anyhow::Context;

        let http = reqwest::Client::builder().no_gzip().build()?;
        let response = http
            .post(&url)
            .bearer_auth(&key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("content-type", "application/json")
            .body(
                serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "cerberus-benches", "version": "1"}}})
                .to_string(),
            )
            .send()
            .await?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .context("no session")?
            .to_str()?
            .to_owned();
        let client = Self {
            http,
            url,
            key,
            session,
        };
        client
            .post(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await?;
        Ok(client)
    }

    /// A POST of `body` within the session.
    pub fn post(&self, body: serde_json::Value) -> reqwest::RequestBuilder {
        self.http
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &self.session)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    /// A `tools/call` of `tool` with `arguments`.
    pub fn call(
        &self,
        id: usize,
        tool: &str,
        arguments: serde_json::Value,
    ) -> reqwest::RequestBuilder {
        self.post(
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}),
        )
    }
}

/// A new agent key and its SHA-256 hash, from `cerberus keygen`.
pub fn keygen(cerberus: &std::path::Path) -> anyhow::Result<(String, String)> {
    use anyhow::Context;

    let output = std::process::Command::new(cerberus)
        .arg("keygen")
        .output()?;
    let output = String::from_utf8(output.stdout)?;
    let field = |name: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::to_owned)
    };
    Ok((
        field("key: ").context("no key")?,
        field("key_sha256: ").context("no hash")?,
    ))
}

/// Starts an MCP server of the benchmark's own on a free loopback port, at `/mcp`: `initialize` is
/// answered, any other request's `result` is what `result` makes of the request, notifications are
/// accepted; bodies of any size are read. Returns the port.
pub async fn serve_upstream(
    result: fn(&serde_json::Value) -> serde_json::Value,
) -> anyhow::Result<u16> {
    use axum::extract::{DefaultBodyLimit, State};
    use axum::response::IntoResponse;
    use serde_json::{Value, json};

    async fn answer(
        State(result): State<fn(&Value) -> Value>,
        axum::Json(message): axum::Json<Value>,
    ) -> axum::response::Response {
        let Some(id) = message.get("id").cloned() else {
            return axum::http::StatusCode::ACCEPTED.into_response();
        };
        let result = match message.get("method").and_then(Value::as_str) {
            Some("initialize") => json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "cerberus-benches", "version": "1"}
            }),
            _ => result(&message),
        };
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
    }

    let port = free_port()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(answer))
        .layer(DefaultBodyLimit::disable())
        .with_state(result);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

#[cfg(test)]
mod tests {
    use cerberus_core::guardrails::rule::{Rule, RuleGuardrail};
    use cerberus_core::{
        Direction, Guardrail, GuardrailContext, GuardrailResult, Identity, Message, PolicyLevel,
        Trace,
    };

    #[test]
    fn no_bench_rule_holds_on_the_bench_call_so_every_one_runs() {
        let rules: Vec<Rule> = super::fifty_rules()
            .into_iter()
            .map(|r| Rule::new(r, PolicyLevel::Organisation).unwrap())
            .collect();
        let guardrail = RuleGuardrail::new(rules);
        let message = Message::parse(super::rule_call_1kb()).unwrap();
        let identity = Identity::new_random();
        let ctx = GuardrailContext::new(Direction::Request, &identity, &message);
        let mut trace = Trace::new();
        let result = guardrail.evaluate_now(&ctx, PolicyLevel::Organisation, &mut trace);
        assert_eq!(result, Some(GuardrailResult::Allow), "{trace:?}");
        assert_eq!(trace.entries().len(), 50);
        assert!(message.to_bytes().len() > 1000);
        let result = Message::parse(super::tool_result_4k(super::Payload::Clean)).unwrap();
        let ctx = GuardrailContext::new(Direction::Response, &identity, &result);
        let mut trace = Trace::new();
        let decided = guardrail.evaluate_now(&ctx, PolicyLevel::Organisation, &mut trace);
        assert_eq!(decided, Some(GuardrailResult::Allow), "{trace:?}");
    }
}
