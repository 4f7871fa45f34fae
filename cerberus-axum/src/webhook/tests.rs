use serde_json::json;

use super::*;

const SECRET: &str = "0123456789abcdef-long-enough";

fn webhooks() -> Webhooks {
    Webhooks::with_secrets(|name| match name {
        "opa" => Some(SECRET.to_owned()),
        "short" => Some("too short".to_owned()),
        _ => None,
    })
}

fn registry() -> GuardrailRegistry {
    let mut registry = GuardrailRegistry::default();
    webhooks().register(&mut registry).unwrap();
    registry
}

fn error_of(entry: Value) -> String {
    let document =
        cerberus_core::PolicyDocument::from_value(json!({ "guardrails": [entry] })).unwrap();
    registry().validate(&document).unwrap_err().to_string()
}

fn built(entry: Value) -> WebhookGuardrail {
    let settings: WebhookSettings = parse_settings(entry.as_object().unwrap()).unwrap();
    WebhookGuardrail::new(settings, webhooks()).unwrap()
}

#[test]
fn a_sound_entry_is_accepted_with_its_defaults() {
    let document = cerberus_core::PolicyDocument::from_value(json!({"guardrails": [
        {"type": "webhook", "url": "https://decide.example.com/v1/data/mcp", "secret": "opa"}
    ]}))
    .unwrap();
    registry().validate(&document).unwrap();
    let webhook = built(json!({"url": "https://decide.example.com/v1/data/mcp", "secret": "opa"}));
    assert_eq!(webhook.label, "webhook:decide.example.com");
    assert_eq!(webhook.timeout, Duration::from_secs(1));
    assert_eq!(webhook.on_error, OnError::Block);
    assert_eq!(webhook.payload, PayloadForm::Redacted);
    assert_eq!(webhook.methods, Some(vec!["tools/call".to_owned()]));
    assert_eq!(webhook.direction, Directions::Request);
    let named = built(
        json!({"url": "http://127.0.0.1:8181/", "secret": "opa", "name": "opa", "methods": ["*"]}),
    );
    assert_eq!(named.label, "webhook:opa");
    assert_eq!(named.methods, None);
}

#[test]
fn an_entry_that_cannot_work_is_refused_naming_the_setting() {
    let base = |extra: Value| {
        let mut entry =
            json!({"type": "webhook", "url": "http://127.0.0.1:8181/", "secret": "opa"});
        for (key, value) in extra.as_object().unwrap() {
            entry[key] = value.clone();
        }
        error_of(entry)
    };
    for (extra, expected) in [
        (json!({"url": "not a url"}), "guardrails[0].url: not a URL"),
        (
            json!({"url": "ftp://host/x"}),
            "guardrails[0].url: expected an http://",
        ),
        (
            json!({"url": "/relative"}),
            "guardrails[0].url: expected an http://",
        ),
        (
            json!({"url": "https://user:pw@host/"}),
            "guardrails[0].url: a URL with credentials",
        ),
        (
            json!({"secret": "missing"}),
            "guardrails[0].secret: no secret `missing` is set (environment variable CERBERUS_WEBHOOK_SECRET_MISSING)",
        ),
        (
            json!({"secret": "short"}),
            "guardrails[0].secret: the secret `short` is shorter than 16 bytes",
        ),
        (
            json!({"secret": "../etc"}),
            "guardrails[0].secret: expected the name of a secret",
        ),
        (
            json!({"secret": ""}),
            "guardrails[0].secret: expected the name of a secret",
        ),
        (
            json!({"timeout_ms": 0}),
            "guardrails[0].timeout_ms: expected 1 to 30000",
        ),
        (
            json!({"timeout_ms": 30001}),
            "guardrails[0].timeout_ms: expected 1 to 30000",
        ),
        (
            json!({"methods": []}),
            "guardrails[0].methods: expected at least one method",
        ),
        (
            json!({"name": "a b"}),
            "guardrails[0].name: expected letters",
        ),
        (
            json!({"on_error": "retry"}),
            "guardrails[0].on_error: unknown variant `retry`",
        ),
        (
            json!({"payload": "raw"}),
            "guardrails[0].payload: unknown variant `raw`",
        ),
        (
            json!({"secret_value": "x"}),
            "guardrails[0].secret_value: unknown field",
        ),
    ] {
        let error = base(extra.clone());
        assert!(error.starts_with(expected), "{extra}: {error}");
    }
    let error = error_of(json!({"type": "webhook", "url": "http://127.0.0.1:8181/"}));
    assert!(error.contains("missing field `secret`"), "{error}");
}

#[test]
fn applies_to_the_methods_and_direction_it_names() {
    let identity = cerberus_core::Identity::new_random();
    let call = cerberus_core::Message::parse(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
    )
    .unwrap();
    let list =
        cerberus_core::Message::parse(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).unwrap();
    let answer = cerberus_core::Message::parse(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
    let request = |m| GuardrailContext::new(cerberus_core::Direction::Request, &identity, m);
    let mut response =
        GuardrailContext::new(cerberus_core::Direction::Response, &identity, &answer);
    response.request_method = Some("tools/call");

    let default = built(json!({"url": "http://127.0.0.1:1/", "secret": "opa"}));
    assert!(default.applies_to(&request(&call)));
    assert!(!default.applies_to(&request(&list)));
    assert!(!default.applies_to(&response));
    let both = built(
        json!({"url": "http://127.0.0.1:1/", "secret": "opa", "direction": "both", "methods": ["*"]}),
    );
    assert!(both.applies_to(&request(&list)));
    assert!(both.applies_to(&response));
}

#[test]
fn the_secret_never_shows_in_debug_output() {
    let webhook = built(json!({"url": "http://127.0.0.1:1/", "secret": "opa"}));
    let text = format!("{webhook:?} {:?}", webhooks());
    assert!(!text.contains(SECRET), "{text}");
}

/// Without [`Webhooks::limit_to`], a call reaches public addresses only: loopback is refused before
/// anything is sent, and `on_error` decides.
#[tokio::test]
async fn a_call_to_a_private_address_is_refused_unless_allowed() {
    let identity = cerberus_core::Identity::new_random();
    let call = cerberus_core::Message::parse(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
    )
    .unwrap();
    let ctx = GuardrailContext::new(cerberus_core::Direction::Request, &identity, &call);
    let webhook = built(json!({"url": "http://127.0.0.1:9/", "secret": "opa"}));
    let mut trace = Trace::new();
    let result = webhook
        .evaluate_traced(&ctx, PolicyLevel::Workspace, &mut trace)
        .await;
    let GuardrailResult::Block { code, reason } = result else {
        panic!("{result:?}");
    };
    assert_eq!(code, FAILED);
    assert!(reason.contains("may not be reached"), "{reason}");
    assert_eq!(trace.entries()[0].guardrail, "webhook:127.0.0.1");
    assert!(
        !webhook.webhooks.limit_to(Reach::Anywhere),
        "set on first use"
    );
}
