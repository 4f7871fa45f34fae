//! Properties of the whole engine on open-ended input: nothing panics, decisions are coherent, unchanged
//! messages keep their bytes, and personal data never reaches the trace.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

use cerberus_core::guardrails::pii::{PiiKinds, PiiScanner};
use cerberus_core::{
    Decision, Direction, EffectivePolicy, Envelope, GuardrailRegistry, Identity, Message, Pipeline,
    PolicyDocument,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Every built-in guardrail, PII redacted so that the message flows on through the rest.
fn every_guardrail() -> Pipeline {
    let policy = PolicyDocument::from_value(json!({"guardrails": [
        {"type": "rbac", "allow": ["t*", "a?"], "deny": ["t9*"], "prompts": {"allow": ["p*"]}, "resources": {"allow": ["file:*"]}},
        {"type": "pii_ssn", "action": "redact"},
        {"type": "pii_credit_card", "action": "redact"},
        {"type": "pii_email", "action": "redact"},
        {"type": "pii_phone", "action": "redact"},
        {"type": "pii_ip_address", "action": "redact"},
        {"type": "rate_limit_per_minute", "limit": 1000000, "methods": ["*"]},
        {"type": "rate_limit_per_hour", "limit": 1000000, "key": "agent_tool"},
        {"type": "content_large_documents", "max_bytes": 100000},
        {"type": "content_structured_data", "max_rows": 5},
        {"type": "content_source_code", "max_lines": 5}
    ]}))
    .unwrap();
    GuardrailRegistry::default()
        .build(&EffectivePolicy::single(&policy))
        .unwrap()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("jane@example.com"),
            Just("536-22-1234"),
            Just("4111-1111-1111-1111"),
            Just("+1 (555) 234-5678"),
            Just("10.0.0.1"),
            Just("a,b\n1,2\n3,4"),
            Just("```\nx\n```"),
            Just("| a |\n|---|\n| 1 |"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,10}", inner.clone(), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            inner.prop_map(|v| Value::String(v.to_string())),
        ]
    })
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tools/call".to_owned()),
        Just("tools/list".to_owned()),
        Just("prompts/get".to_owned()),
        Just("prompts/list".to_owned()),
        Just("resources/read".to_owned()),
        Just("resources/list".to_owned()),
        Just("sampling/createMessage".to_owned()),
        "[a-z/]{1,20}",
    ]
}

/// Any JSON-RPC message shape: request, notification, response or error, with arbitrary payloads.
fn message() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        any::<i64>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String)
    ];
    prop_oneof![
        (id.clone(), method(), json_value()).prop_map(|(id, method, params)| {
            let params = if params.is_object() { params } else { json!({"name": "t1", "uri": "file:///x", "arguments": params}) };
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        }),
        (method(), json_value()).prop_map(|(method, data)| json!({"jsonrpc": "2.0", "method": method, "params": {"data": data}})),
        (id.clone(), json_value()).prop_map(|(id, result)| json!({"jsonrpc": "2.0", "id": id, "result": result})),
        (id, json_value()).prop_map(|(id, data)| json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": "x", "data": data}})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_pipeline_never_panics_and_stays_coherent(
        value in message(),
        response in any::<bool>(),
        answering in prop::option::of(method()),
    ) {
        let pipeline = every_guardrail();
        let identity = Identity::new_random();
        let bytes = serde_json::to_vec(&value).unwrap();
        let message = Message::parse(bytes.clone()).unwrap();
        let direction = if response { Direction::Response } else { Direction::Request };
        let envelope = Envelope::new(direction, &identity).answering(answering.as_deref());
        let outcome = futures::executor::block_on(pipeline.run(envelope, message));

        match &outcome.decision {
            Decision::Allow => prop_assert_eq!(outcome.message.to_bytes(), bytes, "an allowed message keeps its bytes"),
            Decision::Modify => prop_assert!(outcome.message.is_modified()),
            Decision::Block { code, .. } => prop_assert!(!code.is_empty()),
            Decision::Throttle { .. } => prop_assert!(false, "the limits are far away"),
            other => prop_assert!(false, "a decision this test does not know: {:?}", other),
        }
        // Whatever happened, the outgoing bytes are one valid JSON-RPC message of the same kind.
        let again = Message::parse(outcome.message.to_bytes()).unwrap();
        prop_assert_eq!(again.kind(), outcome.message.kind());
        prop_assert_eq!(again.id(), value.get("id"));

        let trace = serde_json::to_string(&outcome.trace).unwrap();
        let scanner = PiiScanner::new(PiiKinds::all());
        let reasons: Vec<String> = outcome.trace.entries().iter().filter_map(|e| e.reason.clone()).collect();
        for reason in reasons {
            prop_assert!(!scanner.contains_any(&reason), "personal data in a reason: {}", reason);
        }
        prop_assert!(!trace.contains("jane@example.com"));
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Message::parse(bytes.clone());
        let _ = Message::parse_batch(bytes);
    }

    #[test]
    fn parsing_arbitrary_policies_never_panics(value in json_value()) {
        let registry = GuardrailRegistry::default();
        if let Ok(document) = PolicyDocument::from_value(json!({"guardrails": [value]}))
            && registry.validate(&document).is_ok()
        {
            registry.build(&EffectivePolicy::single(&document)).unwrap();
        }
    }
}
