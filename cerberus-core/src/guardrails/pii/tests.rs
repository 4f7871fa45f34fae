use super::*;
use crate::{Identity, Message, TraceEntry};
use proptest::prelude::*;
use serde_json::json;

fn rule(kind: PiiKind, action: PiiAction, direction: Directions) -> PiiRule {
    PiiRule {
        kind,
        settings: PiiSettings {
            action,
            direction,
            ..PiiSettings::default()
        },
        level: PolicyLevel::Organisation,
    }
}

/// A rule that redacts `kind` both ways with `replacement`.
fn redacting(kind: PiiKind, replacement: &str) -> PiiRule {
    let mut r = rule(kind, PiiAction::Redact, Directions::Both);
    r.settings.replacement = replacement.into();
    r
}

fn redact_all() -> PiiGuardrail {
    PiiGuardrail::new(
        PiiKind::ALL
            .into_iter()
            .map(|k| rule(k, PiiAction::Redact, Directions::Both))
            .collect(),
    )
}

/// Runs `guardrail` on `message` twice, as parsed from the wire (read from its tape) and as built from a
/// JSON value (read from the value), and checks that both give the same decision and trace.
fn run(
    guardrail: &PiiGuardrail,
    direction: Direction,
    message: Value,
) -> (GuardrailResult, Vec<TraceEntry>) {
    let parsed = Message::parse(message.to_string()).unwrap();
    let built = Message::from_value(message).unwrap();
    let from_wire = run_on(guardrail, direction, &parsed);
    let from_value = run_on(guardrail, direction, &built);
    assert_eq!(
        from_wire, from_value,
        "a parsed and a built message decide alike"
    );
    from_value
}

fn run_on(
    guardrail: &PiiGuardrail,
    direction: Direction,
    message: &Message,
) -> (GuardrailResult, Vec<TraceEntry>) {
    let identity = Identity::new_random();
    let ctx = GuardrailContext::new(direction, &identity, message);
    if !guardrail.applies_to(&ctx) {
        return (GuardrailResult::Allow, Vec::new());
    }
    let mut trace = Trace::new();
    let result = futures::executor::block_on(guardrail.evaluate_traced(
        &ctx,
        PolicyLevel::Organisation,
        &mut trace,
    ));
    (result, trace.entries().to_vec())
}

fn response(result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "result": result})
}

fn text_result(text: &str) -> Value {
    response(json!({"content": [{"type": "text", "text": text}]}))
}

fn redacted_payload(result: &GuardrailResult) -> Value {
    match result {
        GuardrailResult::Modify { message, .. } => message.payload().unwrap().clone(),
        other => panic!("expected a modification, got {other:?}"),
    }
}

fn redacted_text(result: &GuardrailResult) -> String {
    redacted_payload(result)["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn redacts_only_the_matched_spans() {
    let (result, trace) = run(
        &redact_all(),
        Direction::Response,
        text_result(
            "Mail jane@example.com or call (555) 234-5678; SSN 536-22-1234, card 4111 1111 1111 1111, host 10.1.2.3.",
        ),
    );
    assert_eq!(
        redacted_text(&result),
        "Mail [REDACTED:EMAIL] or call [REDACTED:PHONE]; SSN [REDACTED:SSN], card [REDACTED:CREDIT_CARD], host [REDACTED:IP_ADDRESS]."
    );
    let decisions: Vec<_> = trace
        .iter()
        .map(|e| (e.guardrail.as_ref(), e.decision, e.reason.as_deref()))
        .collect();
    assert_eq!(
        decisions,
        [
            (
                "pii_ssn",
                DecisionKind::Modify,
                Some("redacted 1 social security number")
            ),
            (
                "pii_credit_card",
                DecisionKind::Modify,
                Some("redacted 1 payment card number")
            ),
            (
                "pii_email",
                DecisionKind::Modify,
                Some("redacted 1 email address")
            ),
            (
                "pii_phone",
                DecisionKind::Modify,
                Some("redacted 1 phone number")
            ),
            (
                "pii_ip_address",
                DecisionKind::Modify,
                Some("redacted 1 IP address")
            ),
        ]
    );
}

#[test]
fn blocks_without_repeating_the_value() {
    let guardrail = PiiGuardrail::new(vec![
        rule(PiiKind::Email, PiiAction::Redact, Directions::Both),
        rule(PiiKind::Ssn, PiiAction::Block, Directions::Both),
    ]);
    let (result, trace) = run(
        &guardrail,
        Direction::Request,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x", "arguments": {"q": "a@example.com 536-22-1234"}}}),
    );
    let GuardrailResult::Block { code, reason } = &result else {
        panic!("{result:?}")
    };
    assert_eq!(code, CODE);
    assert_eq!(
        reason,
        "the request contains a social security number (pii_ssn)"
    );
    assert!(!format!("{trace:?}").contains("536-22-1234"));
    assert_eq!(
        trace
            .iter()
            .filter(|e| e.decision == DecisionKind::Block)
            .count(),
        1
    );
}

#[test]
fn respects_direction() {
    let guardrail = PiiGuardrail::new(vec![rule(
        PiiKind::Email,
        PiiAction::Redact,
        Directions::Request,
    )]);
    let (result, trace) = run(
        &guardrail,
        Direction::Response,
        text_result("a@example.com"),
    );
    assert_eq!(result, GuardrailResult::Allow);
    assert!(
        trace.is_empty(),
        "a rule for the other direction does not run"
    );
    let (result, _) = run(
        &guardrail,
        Direction::Request,
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "a@example.com"}}),
    );
    assert_eq!(redacted_payload(&result)["data"], "[REDACTED:EMAIL]");
}

#[test]
fn the_replacement_is_configurable() {
    let r = redacting(PiiKind::Phone, "<{type} removed>");
    let (result, _) = run(
        &PiiGuardrail::new(vec![r]),
        Direction::Response,
        text_result("call +44 20 7946 0958"),
    );
    assert_eq!(redacted_text(&result), "call <PHONE removed>");
}

#[test]
fn context_words_label_bare_numbers_only_where_turned_on() {
    let text = "SSN: 536221234, mobile 2125550143, order 536221234, a@example.com";
    let plain = redact_all();
    let (result, _) = run(&plain, Direction::Response, text_result(text));
    assert_eq!(
        redacted_text(&result),
        "SSN: 536221234, mobile 2125550143, order 536221234, [REDACTED:EMAIL]",
        "off by default"
    );
    let rules = PiiKind::ALL
        .into_iter()
        .map(|kind| {
            let mut r = rule(kind, PiiAction::Redact, Directions::Both);
            if matches!(kind, PiiKind::Ssn | PiiKind::Phone) {
                r.settings.context = PiiContext::BuiltIn(true);
            }
            r
        })
        .collect();
    let (result, trace) = run(
        &PiiGuardrail::new(rules),
        Direction::Response,
        text_result(text),
    );
    assert_eq!(
        redacted_text(&result),
        "SSN: [REDACTED:SSN], mobile [REDACTED:PHONE], order 536221234, [REDACTED:EMAIL]"
    );
    let reasons: Vec<_> = trace.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(reasons.contains(&"redacted 1 social security number".to_owned()));
    assert!(reasons.contains(&"redacted 1 phone number".to_owned()));
}

#[test]
fn a_labelled_value_blocks_like_any_other() {
    let mut r = rule(PiiKind::Ssn, PiiAction::Block, Directions::Both);
    r.settings.context = PiiContext::Words(vec!["taxpayer".into()]);
    let guardrail = PiiGuardrail::new(vec![r]);
    let (result, _) = run(
        &guardrail,
        Direction::Request,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "file", "arguments": {"note": "Taxpayer 536221234"}}}),
    );
    assert!(
        matches!(result, GuardrailResult::Block { .. }),
        "{result:?}"
    );
    let (result, _) = run(
        &guardrail,
        Direction::Response,
        text_result("SSN 536221234"),
    );
    assert_eq!(result, GuardrailResult::Allow, "only the words given count");
}

#[test]
fn finds_pii_in_keys_numbers_errors_and_nested_values() {
    let (result, _) = run(
        &redact_all(),
        Direction::Response,
        response(json!({
            "structuredContent": {
                "users": [{"jane@example.com": {"card": 4111111111111111_u64, "n": 42, "ok": true}}],
                "deep": [[[["ip 192.168.0.1"]]]]
            }
        })),
    );
    assert_eq!(
        redacted_payload(&result),
        json!({"structuredContent": {
            "users": [{"[REDACTED:EMAIL]": {"card": "[REDACTED:CREDIT_CARD]", "n": 42, "ok": true}}],
            "deep": [[[["ip [REDACTED:IP_ADDRESS]"]]]]
        }})
    );
    // A fraction holds nothing to find, whatever its digits.
    for fraction in [
        123.45,
        4111111111111.5,
        0.4111111111111111,
        5362212345.25,
        -2.5e-7,
    ] {
        assert_eq!(
            super::number_text(&Number::from_f64(fraction).unwrap()),
            None,
            "{fraction}"
        );
    }
    // A card number written as a float is the same number.
    for raw in [
        "4.111111111111111e15",
        "4111111111111111.0",
        "4111111111111111e0",
    ] {
        let message = Message::parse(format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"card":{raw},"small":1.5e3,"ratio":2.5}}}}"#
        ))
        .unwrap();
        let (result, _) = run(
            &redact_all(),
            Direction::Response,
            Value::Object(message.into_json()),
        );
        assert_eq!(
            redacted_payload(&result),
            json!({"card": "[REDACTED:CREDIT_CARD]", "small": 1500.0, "ratio": 2.5}),
            "{raw}"
        );
    }
    let error = json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32000, "message": "no user jane@example.com"}});
    let (result, _) = run(&redact_all(), Direction::Response, error);
    assert_eq!(
        redacted_payload(&result)["message"],
        "no user [REDACTED:EMAIL]"
    );
}

#[test]
fn finds_pii_after_json_escapes() {
    // `\u0040` is `@` and `\u002d` is `-`: the scanner reads decoded strings.
    let raw = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"jane\u0040example.com and 536\u002d22\u002d1234 and \"a@example.org\""}]}}"#;
    let message = Message::parse(raw).unwrap();
    let (result, _) = run(
        &redact_all(),
        Direction::Response,
        Value::Object(message.into_json()),
    );
    assert_eq!(
        redacted_text(&result),
        r#"[REDACTED:EMAIL] and [REDACTED:SSN] and "[REDACTED:EMAIL]""#
    );
}

#[test]
fn finds_pii_in_json_embedded_in_a_text_item() {
    let embedded =
        json!({"rows": [{"email": "jane\u{0040}example.com", "phone": "+1 555 234 5678"}]})
            .to_string();
    let (result, _) = run(&redact_all(), Direction::Response, text_result(&embedded));
    let text = redacted_text(&result);
    let inner: Value = serde_json::from_str(&text).expect("the embedded document stays valid JSON");
    assert_eq!(
        inner,
        json!({"rows": [{"email": "[REDACTED:EMAIL]", "phone": "[REDACTED:PHONE]"}]})
    );
}

#[test]
fn a_repeated_member_is_read_in_every_copy() {
    // The bytes forwarded hold both copies, and a reader may keep the first: each is scanned.
    let text =
        r#"{"jsonrpc":"2.0","id":1,"result":{"note":"mail jane.doe@example.com","note":"clean"}}"#;
    let guardrail = PiiGuardrail::new(vec![rule(
        PiiKind::Email,
        PiiAction::Redact,
        Directions::Both,
    )]);
    let message = Message::parse(text.to_owned()).unwrap();
    let (result, _) = run_on(&guardrail, Direction::Response, &message);
    let GuardrailResult::Modify { message, .. } = result else {
        panic!("expected the email in the first copy to be redacted, got {result:?}");
    };
    let out = String::from_utf8(message.to_bytes().to_vec()).unwrap();
    assert!(!out.contains("jane.doe"), "{out}");
    let blocking = PiiGuardrail::new(vec![rule(PiiKind::Ssn, PiiAction::Block, Directions::Both)]);
    let text = r#"{"jsonrpc":"2.0","id":1,"result":{"n":"536-22-1234","n":"clean"}}"#;
    let message = Message::parse(text.to_owned()).unwrap();
    let (result, _) = run_on(&blocking, Direction::Response, &message);
    assert!(
        matches!(result, GuardrailResult::Block { .. }),
        "{result:?}"
    );
}

#[test]
fn redacted_keys_never_collide() {
    let (result, _) = run(
        &redact_all(),
        Direction::Response,
        response(json!({"a@example.com": 1, "b@example.com": 2})),
    );
    assert_eq!(
        redacted_payload(&result),
        json!({"[REDACTED:EMAIL]": 1, "[REDACTED:EMAIL]#2": 2})
    );
}

#[test]
fn clean_messages_pass_untouched() {
    let (result, trace) = run(
        &redact_all(),
        Direction::Response,
        text_result("Version 1.2.3 released on 2024-01-15 at 10:30. Order 12345."),
    );
    assert_eq!(result, GuardrailResult::Allow);
    assert!(trace.iter().all(|e| e.decision == DecisionKind::Allow));
    assert_eq!(trace.len(), 5);
}

#[test]
fn the_method_and_id_are_not_scanned() {
    let guardrail = redact_all();
    let message = json!({"jsonrpc": "2.0", "id": "536-22-1234", "method": "tools/call", "params": {"name": "t"}});
    assert_eq!(
        run(&guardrail, Direction::Request, message).0,
        GuardrailResult::Allow
    );
}

#[test]
fn a_custom_replacement_that_looks_like_pii_is_not_left_behind() {
    let r = redacting(PiiKind::Email, "x@example.com");
    let (result, _) = run(
        &PiiGuardrail::new(vec![r]),
        Direction::Response,
        text_result("to a@example.com"),
    );
    let text = redacted_text(&result);
    assert!(
        !PiiScanner::new(PiiKinds::all()).contains_any(&text),
        "{text}"
    );
}

fn pii_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("jane.doe@example.com".to_owned()),
        Just("536-22-1234".to_owned()),
        Just("4111 1111 1111 1111".to_owned()),
        Just("5555555555554444".to_owned()),
        Just("(555) 234-5678".to_owned()),
        Just("+44 20 7946 0958".to_owned()),
        Just("10.20.30.40".to_owned()),
        Just("2001:db8::8a2e:370:7334".to_owned()),
        "[a-z]{1,8}@[a-z]{1,8}\\.(com|org|net|io|co\\.uk)",
    ]
}

fn noise() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,20}",
        "\\PC{0,10}",
        Just(String::new()),
        Just(" ".to_owned()),
        Just("\n".to_owned())
    ]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::String),
        (noise(), pii_value(), noise()).prop_map(|(a, p, b)| Value::String(format!("{a}{p}{b}"))),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,12}", inner.clone(), 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            inner.prop_map(|v| Value::String(v.to_string())),
        ]
    })
}

fn leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            out.push(s.clone());
            if let Some(inner) = embedded_json(s) {
                leaves(&inner, out);
            }
        }
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            leaves(v, out);
        }),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn redaction_never_leaves_a_detected_value_behind(result in arbitrary_json()) {
        let guardrail = redact_all();
        let (outcome, _) = run(&guardrail, Direction::Response, response(result.clone()));
        let scanner = PiiScanner::new(PiiKinds::all());
        let after = match &outcome {
            GuardrailResult::Modify { message, .. } => message.payload().unwrap().clone(),
            GuardrailResult::Allow => result.clone(),
            other => panic!("unexpected {other:?}"),
        };
        let mut texts = Vec::new();
        leaves(&after, &mut texts);
        for text in texts {
            prop_assert!(scanner.find_all(&text).is_empty(), "left behind in {text:?}");
        }
    }

    #[test]
    fn a_planted_value_is_always_found(prefix in noise(), value in pii_value(), suffix in noise()) {
        // Separate the value from the noise so that the noise cannot legitimately extend it.
        let text = format!("{prefix} {value} {suffix}");
        let (outcome, _) = run(&redact_all(), Direction::Response, text_result(&text));
        let redacted = redacted_text(&outcome);
        prop_assert!(!redacted.contains(&value), "{value:?} still in {redacted:?}");
    }

    /// The pass over a message's parsed view decides as the pass over its JSON object (what `redact`
    /// reads): the same block, counts and redacted payload, with rules that block and rules that
    /// redact.
    #[test]
    fn the_pass_over_the_view_matches_the_walk_over_the_object(result in arbitrary_json()) {
        let guardrail = PiiGuardrail::new(vec![
            rule(PiiKind::Ssn, PiiAction::Block, Directions::Both),
            rule(PiiKind::CreditCard, PiiAction::Block, Directions::Both),
            rule(PiiKind::Email, PiiAction::Redact, Directions::Both),
            rule(PiiKind::Phone, PiiAction::Redact, Directions::Both),
            rule(PiiKind::IpAddress, PiiAction::Redact, Directions::Both),
        ]);
        for guardrail in [guardrail, redact_all()] {
            let plan = guardrail.plan(Direction::Response).unwrap();
            let message = Message::parse(response(result.clone()).to_string()).unwrap();
            let pass = guardrail.inspect(plan, message.payload_view().unwrap());
            let walked = guardrail.inspect(plan, JsonRef::from(message.payload().unwrap()));
            prop_assert_eq!(pass.blocked, walked.blocked);
            if walked.blocked.is_none() {
                prop_assert_eq!(pass.counts, walked.counts);
                prop_assert_eq!(&pass.edits, &walked.edits);
            }
        }
    }

    #[test]
    fn scanning_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let scanner = PiiScanner::new(PiiKinds::all());
        for finding in scanner.find_all(&text) {
            prop_assert!(text.is_char_boundary(finding.span.start) && text.is_char_boundary(finding.span.end));
            prop_assert!(finding.span.start < finding.span.end);
        }
    }
}

#[test]
fn a_value_that_redaction_sets_apart_is_redacted_too() {
    // The whole reads as no email (its domain would end in a number), so the first scan finds only
    // the phone; with the phone replaced, the email stands on its own.
    let (result, _) = run(
        &redact_all(),
        Direction::Response,
        text_result("jane@example.io.555-123-4567"),
    );
    assert_eq!(redacted_text(&result), "[REDACTED:EMAIL].[REDACTED:PHONE]");
}

#[test]
fn a_value_redacted_whole_is_scanned_again_unless_its_replacement_holds_nothing() {
    let plan = |replacement: &str| {
        PiiGuardrail::new(vec![redacting(PiiKind::Email, replacement)])
            .response
            .unwrap()
    };
    assert_eq!(plan(DEFAULT_REPLACEMENT).inert, ["[REDACTED:EMAIL]"]);
    assert!(plan("x@example.com").inert.is_empty());
    assert_eq!(
        redact_all().response.unwrap().inert.len(),
        PiiKind::ALL.len(),
        "every default replacement holds nothing"
    );

    // A value that is an email and nothing else, replaced by something that reads as one.
    let (result, _) = run(
        &PiiGuardrail::new(vec![redacting(PiiKind::Email, "x@example.com")]),
        Direction::Response,
        text_result("a@example.com"),
    );
    assert_eq!(redacted_text(&result), FALLBACK_REPLACEMENT);
}
