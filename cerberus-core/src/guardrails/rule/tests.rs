use super::*;
use crate::guardrail::Direction;
use crate::identity::{CallerProfile, Identity, Profile};
use crate::message::Message;
use crate::trace::DecisionKind;
use serde_json::json;

fn rule(settings: serde_json::Value) -> Result<Rule, PolicyError> {
    Rule::new(
        serde_json::from_value(settings).unwrap(),
        PolicyLevel::Organisation,
    )
}

fn call(tool: &str, arguments: serde_json::Value) -> Message {
    Message::parse(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": tool, "arguments": arguments}})
        .to_string(),
    )
    .unwrap()
}

fn judge(rules: Vec<Rule>, direction: Direction, message: &Message) -> (GuardrailResult, Trace) {
    let identity = Identity::new_random();
    let profile = CallerProfile {
        agent: Profile {
            name: "ci-bot".into(),
            labels: [("team".to_owned(), "payments".to_owned())].into(),
            groups: vec!["engineering".into(), "on-call".into()],
        },
        ..CallerProfile::default()
    };
    let ctx = GuardrailContext::new(direction, &identity, message).with_profile(&profile);
    let guardrail = RuleGuardrail::new(rules);
    let mut trace = Trace::new();
    let result = guardrail.decide(&ctx, &mut trace);
    (result, trace)
}

#[test]
fn a_rule_that_holds_blocks_with_its_reason_and_name() {
    let cap = rule(
        json!({"name": "amount-cap", "when": "tool == 'transfer' && arguments.amount > 1000",
                          "reason": "transfers above 1,000 need a person"}),
    )
    .unwrap();
    let (result, trace) = judge(
        vec![cap.clone()],
        Direction::Request,
        &call("transfer", json!({"amount": 5000})),
    );
    assert_eq!(
        result,
        GuardrailResult::block(CODE, "transfers above 1,000 need a person")
    );
    assert_eq!(trace.entries()[0].guardrail, "rule:amount-cap");
    let (result, trace) = judge(
        vec![cap],
        Direction::Request,
        &call("transfer", json!({"amount": 10})),
    );
    assert_eq!(result, GuardrailResult::Allow);
    assert_eq!(trace.entries()[0].decision, DecisionKind::Allow);
}

#[test]
fn a_rule_that_cannot_run_fails_closed_unless_told_otherwise() {
    let message = call(
        "transfer",
        json!({"amount": "a lot", "note": "secret-value-42"}),
    );
    let strict = rule(json!({"when": "arguments.amount > 1000"})).unwrap();
    let (result, _) = judge(vec![strict], Direction::Request, &message);
    let GuardrailResult::Block { code, reason } = result else {
        panic!("blocked: {result:?}")
    };
    assert_eq!(code, FAILED_CODE);
    assert!(reason.contains("could not be run"), "{reason}");
    assert!(
        !reason.contains("a lot") && !reason.contains("secret"),
        "{reason}"
    );
    // However the crate words its errors, no value of the message reaches the reason.
    for when in [
        "arguments.note && true",
        "!arguments.note",
        "arguments.note > 5",
        "arguments.note + 1 == 2",
        "arguments.note.startsWith(dyn(size(arguments.note)))",
        "int(arguments.note) == 1",
        "arguments.note[0] == 's'",
        "arguments.amount / 0 == 1",
        "size(arguments.note) / 0 == 1",
        "timestamp(arguments.note) > now",
        "arguments.note.matches('(')",
    ] {
        let r = rule(json!({"when": when})).unwrap_or_else(|e| panic!("{when}: {e}"));
        let (result, trace) = judge(vec![r], Direction::Request, &message);
        let text = format!("{result:?} {trace:?}");
        assert!(
            matches!(result, GuardrailResult::Block { .. }),
            "{when}: {text}"
        );
        assert!(
            !text.contains("secret") && !text.contains("a lot"),
            "{when}: {text}"
        );
    }
    let missing = rule(json!({"when": "arguments.missing == 1"})).unwrap();
    let (result, _) = judge(vec![missing], Direction::Request, &message);
    assert!(
        matches!(&result, GuardrailResult::Block { reason, .. } if reason.contains("missing")),
        "{result:?}"
    );
    let lenient = rule(json!({"when": "arguments.amount > 1000", "on_error": "allow"})).unwrap();
    let (result, trace) = judge(vec![lenient], Direction::Request, &message);
    assert_eq!(result, GuardrailResult::Allow);
    assert!(
        trace.entries()[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("on_error allows")
    );
    let guarded =
        rule(json!({"when": "has(arguments.missing) && arguments.missing == 1"})).unwrap();
    assert_eq!(
        judge(vec![guarded], Direction::Request, &message).0,
        GuardrailResult::Allow
    );
}

#[test]
fn rules_read_the_caller_the_method_and_the_time() {
    let message = call("deploy", json!({}));
    for (when, holds) in [
        (
            "agent.name == 'ci-bot' && agent.labels.team == 'payments'",
            true,
        ),
        ("'team' in agent.labels && !('tier' in agent.labels)", true),
        ("'on-call' in agent.groups && size(agent.groups) == 2", true),
        (
            "'sales' in agent.groups || size(workspace.groups) > 0",
            false,
        ),
        ("method == 'tools/call' && direction == 'request'", true),
        ("now > timestamp('2020-01-01T00:00:00Z')", true),
        ("now.getHours('UTC') >= 0 && now.getHours('UTC') < 24", true),
        ("size(organisation.id) == 36 && workspace.name == ''", true),
        ("tool.startsWith('dep') && tool.matches('^d.*y$')", true),
        ("result == {}", true),
        ("tool in ['a', 'b']", false),
    ] {
        let r = rule(json!({"when": when})).unwrap_or_else(|e| panic!("{when}: {e}"));
        let (result, _) = judge(vec![r], Direction::Request, &message);
        assert_eq!(
            matches!(result, GuardrailResult::Block { .. }),
            holds,
            "{when}: {result:?}"
        );
    }
}

#[test]
fn a_response_is_judged_by_its_result() {
    let message = Message::parse(
        json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "x"}], "isError": true}})
            .to_string(),
    )
    .unwrap();
    let r = rule(
        json!({"when": "direction == 'response' && has(result.isError) && result.isError",
                        "direction": "response"}),
    )
    .unwrap();
    assert!(matches!(
        judge(vec![r.clone()], Direction::Response, &message).0,
        GuardrailResult::Block { .. }
    ));
    // A rule for responses leaves requests alone.
    let guardrail = RuleGuardrail::new(vec![r]);
    let identity = Identity::new_random();
    let request = call("x", json!({}));
    assert!(!guardrail.applies_to(&GuardrailContext::new(
        Direction::Request,
        &identity,
        &request
    )));
}

#[test]
fn rules_run_in_order_and_the_first_that_holds_decides() {
    let rules = vec![
        rule(json!({"name": "a", "when": "tool == 'nope'"})).unwrap(),
        rule(json!({"name": "b", "when": "tool == 'x'"})).unwrap(),
        rule(json!({"name": "c", "when": "true"})).unwrap(),
    ];
    let (result, trace) = judge(rules, Direction::Request, &call("x", json!({})));
    assert!(matches!(result, GuardrailResult::Block { .. }));
    let names: Vec<_> = trace
        .entries()
        .iter()
        .map(|e| e.guardrail.to_string())
        .collect();
    assert_eq!(names, ["rule:a", "rule:b"]);
}

#[test]
fn a_rule_that_cannot_work_is_refused_with_its_column() {
    for (when, expected) in [
        ("tool ==", "when: column 8:"),
        ("tool > 5", "when: column 6: cannot order a string and int"),
        ("agent.nmae == 'x'", "when: column 6: no field `nmae`"),
        ("tol == 'x'", "when: column 1: unknown name `tol`"),
        (
            "size(tool)",
            "when: column 5: a rule must give true or false, and this one gives a int",
        ),
        (
            "tool.frobnicate()",
            "when: column 16: unknown function `frobnicate`",
        ),
        (
            "arguments.amount > 1 && method + 1 == 2",
            "when: column 32: cannot add a string and int",
        ),
        (
            "now > 5",
            "when: column 5: cannot order a timestamp and int",
        ),
        (
            "tool == 'a' ||\n  agent.labels.x > 3",
            "when: line 2, column 18: cannot order a string and int",
        ),
    ] {
        let error = rule(json!({"when": when})).unwrap_err().to_string();
        assert!(error.starts_with(expected), "{when}: {error}");
    }
}

#[test]
fn every_function_the_checker_allows_exists() {
    let message = call("t", json!({"list": [1, 2], "text": "abc"}));
    for when in [
        "size('ab') == 2 && 'ab'.size() == 2 && size([1]) == 1 && size({'a': 1}) == 1",
        "'abc'.contains('b') && 'abc'.startsWith('a') && 'abc'.endsWith('c') && 'abc'.matches('b')",
        "matches('abc', 'b')",
        "int('5') == 5 && uint(5) == 5u && double(1) == 1.0 && string(5) == '5' && bytes('a') == b'a'",
        "bool('true') && dyn(1) == 1 && type(1) == int",
        "duration('1h') > duration('1m') && timestamp('2024-01-01T00:00:00Z') < now",
        "now.getFullYear() > 2000 && now.getMonth() >= 0 && now.getDate() >= 1 && now.getDayOfMonth() >= 0",
        "now.getDayOfWeek() >= 0 && now.getDayOfYear() >= 0 && now.getMinutes() >= 0 && now.getSeconds() >= 0",
        "now.getMilliseconds() >= 0 && duration('90m').getHours() == 1 && now.getHours('Europe/Paris') >= 0",
        "arguments.list.all(x, x > 0) && arguments.list.exists(x, x == 2) && arguments.list.exists_one(x, x == 1)",
        "arguments.list.map(x, x * 2)[1] == 4 && arguments.list.filter(x, x > 1).size() == 1",
        "arguments.text + 'd' == 'abcd' && 2 - 1 == 1 && 6 / 3 == 2 && 7 % 2 == 1 && -1 < 0",
        "now - duration('1h') < now && (now - now) == duration('0s')",
        "(tool == 't' ? 1 : 2) == 1",
        "agent.labels.all(k, k == 'team')",
    ] {
        let r = rule(json!({"when": when})).unwrap_or_else(|e| panic!("{when}: {e}"));
        let (result, trace) = judge(vec![r], Direction::Request, &message);
        assert!(
            matches!(result, GuardrailResult::Block { ref code, .. } if code == CODE),
            "{when}: {result:?} {trace:?}"
        );
    }
}

/// Rules that read members by name get a map of only those members; the same rule made to read the
/// whole map (through `size`) must decide alike on every message.
#[test]
fn reading_members_by_name_decides_as_reading_the_whole_map() {
    let messages = [
        call("t", json!({"amount": 5, "to": "a@example.com", "x": {"y": [1, 2]}})),
        call("t", json!({"amount": "5", "other": null})),
        call("t", json!({})),
        Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"amount":1,"amount":2000}}}"#).unwrap(),
        call("t", json!([1, 2])),
    ];
    for when in [
        "arguments.amount > 1000",
        "has(arguments.amount) && arguments.amount > 1",
        "has(arguments.to) && arguments.to.endsWith('@example.com')",
        "arguments.x.y[1] == 2",
        "!has(arguments.missing)",
        "has(result.isError)",
    ] {
        let by_name = rule(json!({"when": when})).unwrap();
        let whole =
            rule(json!({"when": format!("size(arguments) >= 0 && size(result) >= 0 && ({when})")}))
                .unwrap();
        for message in &messages {
            let code = |r: &Rule| match judge(vec![r.clone()], Direction::Request, message).0 {
                GuardrailResult::Block { code, .. } => Some(code),
                _ => None,
            };
            assert_eq!(
                code(&by_name),
                code(&whole),
                "{when} on {}",
                String::from_utf8_lossy(&message.to_bytes())
            );
        }
    }
}
