//! `rule` entries: the example rules of `examples/policies/rules.json` against messages they must
//! pass and refuse, `cerberus check` naming the rule that decided, a rule guarding calls between a
//! real rmcp client and server, and a rule that cannot work refused by the configuration file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cerberus_core::guardrails::rule::{CODE, FAILED_CODE, Rule, RuleGuardrail};
use cerberus_core::{
    CallerProfile, DecisionKind, Direction, Guardrail, GuardrailContext, GuardrailRegistry,
    GuardrailResult, Identity, Message, PolicyDocument, PolicyFormat, PolicyLevel, Profile, Trace,
};
use chrono::{DateTime, Utc};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::{KEY, start_gateway, start_upstream};

fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/rules.json")
}

fn example_rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let document = PolicyDocument::parse(&text, PolicyFormat::Json).unwrap();
    document
        .guardrails
        .iter()
        .map(|spec| {
            let settings = serde_json::from_value(Value::Object(spec.settings.clone())).unwrap();
            Rule::new(settings, PolicyLevel::Organisation).unwrap()
        })
        .collect()
}

fn call(tool: &str, arguments: Value) -> Message {
    Message::from_value(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                               "params": {"name": tool, "arguments": arguments}}))
    .unwrap()
}

fn at(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time).unwrap().to_utc()
}

/// Wednesday 2026-01-07, 10:00 in Paris.
fn wednesday_morning() -> DateTime<Utc> {
    at("2026-01-07T09:00:00Z")
}

/// Wednesday 2026-01-07, 20:00 in Paris.
fn wednesday_evening() -> DateTime<Utc> {
    at("2026-01-07T19:00:00Z")
}

/// Saturday 2026-01-10, 10:00 in Paris.
fn saturday_morning() -> DateTime<Utc> {
    at("2026-01-10T09:00:00Z")
}

/// The code of the block `message` gets from the example rules at `clock` for an agent of `role`
/// (`None` when it passes), and the trace entry that decided.
fn judge(
    message: &Message,
    role: Option<&str>,
    clock: fn() -> DateTime<Utc>,
) -> (Option<String>, Trace) {
    let guardrail = RuleGuardrail::new(example_rules()).with_clock(clock);
    let identity = Identity::new_random();
    let profile = CallerProfile {
        agent: Profile {
            name: "agent".into(),
            labels: role
                .map(|r| [("role".to_owned(), r.to_owned())].into())
                .unwrap_or_default(),
            ..Default::default()
        },
        ..CallerProfile::default()
    };
    let ctx = GuardrailContext::new(Direction::Request, &identity, message).with_profile(&profile);
    let mut trace = Trace::new();
    let result = guardrail
        .evaluate_now(&ctx, PolicyLevel::Organisation, &mut trace)
        .unwrap();
    let code = match result {
        GuardrailResult::Allow => None,
        GuardrailResult::Block { code, .. } => Some(code),
        other => panic!("a rule blocks or allows: {other:?}"),
    };
    (code, trace)
}

#[test]
fn the_example_rules_pass_and_refuse_what_they_say() {
    let matched = Some(CODE.to_owned());
    let failed = Some(FAILED_CODE.to_owned());
    let cases = [
        // sql-read-only
        ("run_sql", json!({"query": "SELECT * FROM orders"}), None),
        ("run_sql", json!({"query": "  select id from t;"}), None),
        (
            "run_sql",
            json!({"query": "DELETE FROM orders"}),
            matched.clone(),
        ),
        (
            "run_sql",
            json!({"query": "SELECT 1; DROP TABLE orders"}),
            matched.clone(),
        ),
        ("run_sql", json!({}), matched.clone()),
        ("run_sql", json!({"query": 5}), failed.clone()),
        // transfer-cap
        ("transfer", json!({"amount": 500}), None),
        ("transfer", json!({"amount": "900.50"}), None),
        ("transfer", json!({"amount": 5000}), matched.clone()),
        ("transfer", json!({"amount": 1e9}), matched.clone()),
        ("transfer", json!({}), matched.clone()),
        ("transfer", json!({"amount": "a lot"}), failed.clone()),
        // shared-files-only
        ("read_file", json!({"path": "/srv/shared/report.csv"}), None),
        ("read_file", json!({"path": "/etc/passwd"}), matched.clone()),
        (
            "read_file",
            json!({"path": "/srv/shared/../../etc/passwd"}),
            matched.clone(),
        ),
        // company-mail-only
        ("send_email", json!({"to": "bob@example.com"}), None),
        (
            "send_email",
            json!({"to": "bob@example.com.evil.io"}),
            matched.clone(),
        ),
        (
            "send_email",
            json!({"to": "a@example.com, b@evil.io"}),
            matched.clone(),
        ),
        (
            "send_email",
            json!({"to": ["a@example.com"]}),
            failed.clone(),
        ),
        // Tools no rule names pass whatever they carry.
        (
            "search",
            json!({"query": "DROP TABLE", "amount": 1e12}),
            None,
        ),
    ];
    for (tool, arguments, expected) in cases {
        let (code, trace) = judge(&call(tool, arguments.clone()), None, wednesday_morning);
        assert_eq!(code, expected, "{tool} {arguments}: {trace:?}");
    }
    // deploys-in-working-hours, through the agent's labels and the time.
    let deploy = call("deploy", json!({"service": "api"}));
    assert_eq!(judge(&deploy, Some("release"), wednesday_morning).0, None);
    for (role, clock) in [
        (Some("release"), wednesday_evening as fn() -> DateTime<Utc>),
        (Some("release"), saturday_morning),
        (Some("intern"), wednesday_morning),
        (None, wednesday_morning),
    ] {
        assert_eq!(judge(&deploy, role, clock).0, matched, "{role:?}");
    }
}

#[test]
fn the_trace_names_the_rule_that_decided() {
    let (_, trace) = judge(
        &call("transfer", json!({"amount": 5000})),
        None,
        wednesday_morning,
    );
    let last = trace.entries().last().unwrap();
    assert_eq!(last.guardrail, "rule:transfer-cap");
    assert_eq!(last.decision, DecisionKind::Block);
    assert_eq!(
        last.reason.as_deref(),
        Some("transfers above 1,000 need a person")
    );
    let earlier: Vec<_> = trace.entries().iter().map(|e| e.decision).collect();
    assert_eq!(earlier, [DecisionKind::Allow, DecisionKind::Block]);
}

#[test]
fn cerberus_check_names_the_rule_that_decided() {
    let mut child = Command::new(support::workspace_binary("cerberus-axum", "cerberus"))
        .arg("check")
        .arg("--policy")
        .arg(rules_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": "read_file", "arguments": {"path": "/etc/shadow"}}});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["decision"], "block", "{report}");
    assert_eq!(report["guardrail"], "rule:shared-files-only", "{report}");
    assert_eq!(report["reason"], "read_file reads below /srv/shared/ only");
    let levels: Vec<_> = report["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["guardrail"].as_str().unwrap(),
                e["level"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        levels,
        [
            ("rule:sql-read-only", "organisation"),
            ("rule:transfer-cap", "organisation"),
            ("rule:shared-files-only", "organisation"),
        ]
    );
}

/// The gateway's caller is agent `bot` of workspace `tools` of organisation `acme`: the second rule
/// holds unless the gateway hands those names to rules.
const POLICY: &str = r#"{ guardrails = [
    { type = "rule", name = "no-shouting", when = "tool == 'echo' && arguments.text.matches('^[A-Z ]+$')", reason = "no shouting" },
    { type = "rule", name = "known-caller", when = "agent.name != 'bot' || workspace.name != 'tools' || organisation.name != 'acme'" }
] }"#;

fn text(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_guards_calls_through_the_gateway() {
    let upstream = start_upstream().await;
    let gateway = start_gateway(&upstream, POLICY).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.url.as_str()).auth_header(KEY),
    );
    let client = ().serve(transport).await.unwrap();
    let echo = |text: Value| {
        CallToolRequestParams::new("echo")
            .with_arguments(json!({"text": text}).as_object().unwrap().clone())
    };
    let quiet = client.call_tool(echo(json!("hello there"))).await.unwrap();
    assert_eq!(text(&quiet), "hello there");
    let loud = client
        .call_tool(echo(json!("HELLO THERE")))
        .await
        .unwrap_err()
        .to_string();
    assert!(loud.contains("no shouting"), "{loud}");
    // A number where the rule expects a string: the rule cannot run, and the call is refused.
    let odd = client
        .call_tool(echo(json!(42)))
        .await
        .unwrap_err()
        .to_string();
    assert!(odd.contains("could not be run"), "{odd}");
    client.cancel().await.unwrap();

    let events = gateway.audit.events();
    let blocks: Vec<_> = events
        .iter()
        .filter(|e| e.decision == DecisionKind::Block)
        .collect();
    assert_eq!(blocks.len(), 2, "{events:?}");
    for block in blocks {
        let last = block.trace.entries().last().unwrap();
        assert_eq!(last.guardrail, "rule:no-shouting");
        assert_eq!(last.level, PolicyLevel::Organisation);
    }
}

#[test]
fn a_rule_that_cannot_work_is_refused_by_the_configuration_file() {
    let config = "[[organisations]]\nname = \"acme\"\npolicy = { guardrails = [\n\
                  { type = \"rule\", name = \"cap\", when = \"arguments.amount > 1000 && tool > 1\" }\n] }\n";
    let error = cerberus_axum::config::GatewayConfig::parse(
        config,
        Path::new("."),
        &GuardrailRegistry::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("guardrails[0].when: column 33: cannot order a string and int"),
        "{error}"
    );
}

/// The example rules in front of a server that has none of their tools: what a rule refuses never
/// leaves the gateway, and what it lets through reaches the server (which answers that it has no
/// such tool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_rules_decide_through_the_gateway() {
    let upstream = start_upstream().await;
    let policy = format!("{:?}", rules_file().display().to_string());
    let gateway = start_gateway(&upstream, &policy).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.url.as_str()).auth_header(KEY),
    );
    let client = ().serve(transport).await.unwrap();
    let call = |tool: &'static str, arguments: Value| {
        CallToolRequestParams::new(tool).with_arguments(arguments.as_object().unwrap().clone())
    };
    for (tool, arguments, refused) in [
        ("run_sql", json!({"query": "SELECT 1"}), None),
        (
            "run_sql",
            json!({"query": "DROP TABLE t"}),
            Some("run_sql takes a single SELECT statement"),
        ),
        ("transfer", json!({"amount": 5}), None),
        (
            "transfer",
            json!({"amount": 5000}),
            Some("transfers above 1,000 need a person"),
        ),
        ("read_file", json!({"path": "/srv/shared/a"}), None),
        (
            "read_file",
            json!({"path": "/etc/passwd"}),
            Some("read_file reads below /srv/shared/ only"),
        ),
        ("send_email", json!({"to": "a@example.com"}), None),
        (
            "send_email",
            json!({"to": "a@evil.io"}),
            Some("send_email writes to example.com addresses only"),
        ),
        // The gateway's agent has no `role` label: deploys are refused whatever the hour.
        ("deploy", json!({}), Some("deploy is for release agents")),
    ] {
        let error = client
            .call_tool(call(tool, arguments.clone()))
            .await
            .expect_err("the test server has none of these tools")
            .to_string();
        match refused {
            Some(reason) => assert!(error.contains(reason), "{tool} {arguments}: {error}"),
            None => assert!(
                !error.contains("blocked by guardrail") && !error.contains("-32050"),
                "{tool} {arguments} passes the rules and reaches the server: {error}"
            ),
        }
    }
    client.cancel().await.unwrap();
    let refused = gateway
        .audit
        .events()
        .iter()
        .filter(|e| e.decision == DecisionKind::Block)
        .count();
    assert_eq!(refused, 5);
}
