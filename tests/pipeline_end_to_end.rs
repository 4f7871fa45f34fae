//! The default example policy over realistic traffic, through the public API only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

use cerberus_benches::{Payload, default_policy, tool_call_4k, tool_result_4k};
use cerberus_core::guardrails::pii::{PiiKinds, PiiScanner};
use cerberus_core::{
    Decision, DecisionKind, Direction, EffectivePolicy, Envelope, GuardrailRegistry, Identity,
    Message, Pipeline, PolicyLevel, methods,
};
use serde_json::Value;

fn pipeline() -> Pipeline {
    GuardrailRegistry::default()
        .build(&EffectivePolicy::single(&default_policy()))
        .unwrap()
}

async fn respond(
    pipeline: &Pipeline,
    identity: &Identity,
    bytes: Vec<u8>,
) -> cerberus_core::PipelineOutcome {
    let message = Message::parse(bytes).unwrap();
    let envelope =
        Envelope::new(Direction::Response, identity).answering(Some(methods::TOOLS_CALL));
    pipeline.run(envelope, message).await
}

#[tokio::test]
async fn clean_traffic_passes_byte_for_byte() {
    let pipeline = pipeline();
    let identity = Identity::new_random();
    let bytes = tool_result_4k(Payload::Clean);
    let outcome = respond(&pipeline, &identity, bytes.clone()).await;
    assert_eq!(outcome.decision, Decision::Allow);
    assert_eq!(outcome.message.to_bytes(), bytes);
    assert!(
        outcome
            .trace
            .entries()
            .iter()
            .all(|e| e.decision == DecisionKind::Allow && e.level == PolicyLevel::Organisation)
    );
}

#[tokio::test]
async fn redacted_traffic_keeps_its_shape_and_loses_its_personal_data() {
    let pipeline = pipeline();
    let identity = Identity::new_random();
    let outcome = respond(&pipeline, &identity, tool_result_4k(Payload::Redactable)).await;
    assert_eq!(outcome.decision, Decision::Modify);
    let after: Value = serde_json::from_slice(&outcome.message.to_bytes()).unwrap();
    assert_eq!(after["id"], 42);
    assert_eq!(
        after["result"]["structuredContent"]["owner"],
        "[REDACTED:EMAIL]"
    );
    let text = after["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("[REDACTED:EMAIL]") && text.contains("[REDACTED:PHONE]"));
    assert!(!PiiScanner::new(PiiKinds::all()).contains_any(text));
    let trace = serde_json::to_string(&outcome.trace).unwrap();
    for raw in ["jane.doe@example.com", "234-5678", "7946 0958"] {
        assert!(!trace.contains(raw), "the trace must not hold {raw}");
    }
}

#[tokio::test]
async fn mandatory_blocks_win_and_name_the_guardrail() {
    let pipeline = pipeline();
    let identity = Identity::new_random();
    let outcome = respond(&pipeline, &identity, tool_result_4k(Payload::Blocked)).await;
    let Decision::Block {
        guardrail, code, ..
    } = &outcome.decision
    else {
        panic!("{:?}", outcome.decision)
    };
    assert!(
        guardrail == "pii_ssn" || guardrail == "pii_credit_card",
        "{guardrail}"
    );
    assert_eq!(code, "pii_detected");
}

#[tokio::test]
async fn the_sixty_first_call_in_a_minute_is_throttled() {
    let pipeline = pipeline();
    let identity = Identity::new_random();
    let bytes = tool_call_4k();
    for call in 1..=60 {
        let outcome = pipeline
            .run(
                Envelope::new(Direction::Request, &identity),
                Message::parse(bytes.clone()).unwrap(),
            )
            .await;
        assert_eq!(outcome.decision, Decision::Allow, "call {call}");
    }
    let outcome = pipeline
        .run(
            Envelope::new(Direction::Request, &identity),
            Message::parse(bytes).unwrap(),
        )
        .await;
    let Decision::Throttle {
        guardrail,
        retry_after,
        ..
    } = outcome.decision
    else {
        panic!()
    };
    assert_eq!(guardrail, "rate_limit_per_minute");
    assert!(
        retry_after.as_secs_f64() > 0.0 && retry_after.as_secs_f64() <= 1.0,
        "{retry_after:?}"
    );
}
