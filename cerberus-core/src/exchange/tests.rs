use std::sync::Mutex;

use super::*;
use crate::audit::MemoryAuditSink;
use crate::{DecisionKind, EffectivePolicy, GuardrailRegistry, PolicyDocument};

fn pipeline(policy: &str) -> Pipeline {
    let document = PolicyDocument::from_json(policy).unwrap();
    GuardrailRegistry::default()
        .build(&EffectivePolicy::single(&document))
        .unwrap()
}

fn message(text: &str) -> Message {
    Message::parse(text.to_owned()).unwrap()
}

/// Counts what it observes, by direction and decision.
#[derive(Debug, Default)]
struct Counting(Mutex<Vec<(Direction, DecisionKind, Option<Duration>)>>);

impl Observer for Counting {
    fn observe(&self, observation: &Observation<'_>) {
        self.0.lock().unwrap().push((
            observation.envelope.direction,
            observation.decision.kind(),
            observation.upstream,
        ));
    }
}

#[tokio::test]
async fn answers_are_checked_knowing_the_request_and_audited_naming_it() {
    let pipeline = pipeline(r#"{"guardrails": [{"type": "rbac", "allow": ["echo"]}]}"#);
    let identity = Identity::new_random();
    let conversation = Conversation::new();
    let audit = Arc::new(MemoryAuditSink::new());
    let recorder = Recorder::new(audit.clone());
    let exchange = Exchange::new(&pipeline, &identity, &conversation, &recorder)
        .with_session(Some("s1"))
        .with_key_prefix(Some("cbk_abcd"));

    let list = message(r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#);
    assert!(matches!(
        exchange.from_client(list).await.action,
        Action::Forward(_)
    ));
    let tools =
        message(r#"{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"echo"},{"name":"rm"}]}}"#);
    let handled = exchange.from_server(tools).await;
    assert_eq!(handled.decision, Decision::Modify);
    let Action::Forward(filtered) = handled.action else {
        panic!("expected the filtered list")
    };
    assert_eq!(
        filtered.result().unwrap()["tools"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let call =
        message(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}"#);
    exchange.from_client(call).await;
    let result = message(r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#);
    exchange.from_server(result).await;
    assert_eq!(conversation.pending(), (0, 0), "every answer came");

    let events = audit.events();
    assert_eq!(events.len(), 4);
    assert_eq!(events[1].method.as_deref(), Some("tools/list"));
    assert!(
        events[1].upstream_us.is_some(),
        "the server's time is measured"
    );
    assert_eq!(events[1].session.as_deref(), Some("s1"));
    assert_eq!(events[1].key_prefix.as_deref(), Some("cbk_abcd"));
    assert_eq!(
        events[3].target.as_deref(),
        Some("echo"),
        "a result names the tool its call named"
    );
    assert_eq!(
        events[0].upstream_us, None,
        "a request has no upstream time"
    );
}

#[tokio::test]
async fn refusals_go_back_to_the_sender_or_stand_in_for_the_answer() {
    let pipeline = pipeline(
        r#"{"guardrails": [{"type": "rbac", "allow": ["echo"]}, {"type": "pii_ssn", "action": "block", "direction": "both"}]}"#,
    );
    let identity = Identity::new_random();
    let conversation = Conversation::new();
    let recorder = Recorder::none();
    let exchange = Exchange::new(&pipeline, &identity, &conversation, &recorder);
    // A refused client request is answered in the server's place, and is not pending.
    let denied =
        message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}"#);
    let Action::Reply(error) = exchange.from_client(denied).await.action else {
        panic!("expected a reply")
    };
    assert_eq!(error.id(), Some(&serde_json::json!(1)));
    assert_eq!(conversation.pending(), (0, 0));
    // A refused server answer becomes an error the client receives instead.
    let call =
        message(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#);
    exchange.from_client(call).await;
    let leak = message(
        r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"SSN 536-22-8174"}]}}"#,
    );
    let Action::Forward(error) = exchange.from_server(leak).await.action else {
        panic!("expected the error in the answer's place")
    };
    assert_eq!(error.error().unwrap()["code"], refusal::BLOCKED);
    assert!(!String::from_utf8_lossy(&error.to_bytes()).contains("8174"));
    // A refused server request is answered back to the server; a refused notification is dropped.
    let ask = message(
        r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{"note":"536-22-8174"}}"#,
    );
    let Action::Reply(answer) = exchange.from_server(ask).await.action else {
        panic!("expected the server to be answered")
    };
    assert_eq!(answer.id(), Some(&serde_json::json!(9)));
    assert_eq!(
        conversation.pending(),
        (0, 0),
        "a refused request awaits nothing"
    );
    let note = message(
        r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"536-22-8174"}}"#,
    );
    assert_eq!(exchange.from_server(note).await.action, Action::Drop);
}

#[tokio::test]
async fn a_client_answers_a_server_request_made_in_another_exchange_of_its_conversation() {
    let pipeline = pipeline(r#"{"guardrails": []}"#);
    let identity = Identity::new_random();
    let conversation = Conversation::new();
    let audit = Arc::new(MemoryAuditSink::new());
    let recorder = Recorder::new(audit.clone());
    // The server's request arrives on one HTTP exchange (a GET stream, say)…
    let ask = message(r#"{"jsonrpc":"2.0","id":5,"method":"roots/list"}"#);
    Exchange::new(&pipeline, &identity, &conversation, &recorder)
        .from_server(ask)
        .await;
    // …and the client's answer on another (a later POST) of the same conversation.
    let answer = message(r#"{"jsonrpc":"2.0","id":5,"result":{"roots":[]}}"#);
    Exchange::new(&pipeline, &identity, &conversation, &recorder)
        .from_client(answer)
        .await;
    let events = audit.events();
    assert_eq!(events[1].method.as_deref(), Some("roots/list"));
    assert_eq!(
        events[1].upstream_us, None,
        "a client answer has no upstream time"
    );
}

#[tokio::test]
async fn the_observer_sees_every_run_and_the_doors_upstream_time() {
    let pipeline = pipeline(r#"{"guardrails": [{"type": "rbac", "allow": ["echo"]}]}"#);
    let identity = Identity::new_random();
    let conversation = Conversation::new();
    let observer = Arc::new(Counting::default());
    let audit = Arc::new(MemoryAuditSink::new());
    let recorder = Recorder::new(audit.clone()).with_observer(observer.clone());
    let exchange = Exchange::new(&pipeline, &identity, &conversation, &recorder);
    let denied =
        message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}"#);
    exchange.from_client(denied).await;
    // A notification on the answer to an HTTP request the door sent: timed from that request.
    let sent = Instant::now();
    let progress = message(
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#,
    );
    exchange
        .with_upstream(Some(200), Some(sent))
        .from_server(progress)
        .await;
    let seen = observer.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].0, seen[0].1, seen[0].2),
        (Direction::Request, DecisionKind::Block, None)
    );
    assert_eq!(
        (seen[1].0, seen[1].1),
        (Direction::Response, DecisionKind::Allow)
    );
    assert!(seen[1].2.is_some());
    let events = audit.events();
    assert_eq!(events[1].upstream_status, Some(200));
    assert!(events[1].upstream_us.is_some());
}

#[tokio::test]
async fn events_keep_no_personal_data_in_their_id_target_or_reasons() {
    let pipeline = pipeline(
        r#"{"guardrails": [{"type": "rbac", "allow": ["echo"], "resources": {"allow": ["test://static/*"]}}]}"#,
    );
    let identity = Identity::new_random();
    let conversation = Conversation::new();
    let audit = Arc::new(MemoryAuditSink::new());
    let recorder = Recorder::new(audit.clone());
    let exchange = Exchange::new(&pipeline, &identity, &conversation, &recorder);

    let read = message(
        r#"{"jsonrpc":"2.0","id":"jane.doe@example.com","method":"resources/read",
            "params":{"uri":"test://template/jane.doe@example.com/data"}}"#,
    );
    let handled = exchange.from_client(read).await;
    let Action::Reply(refusal) = handled.action else {
        panic!("the resource is not allowed")
    };
    assert_eq!(
        refusal.id().unwrap(),
        &serde_json::json!("jane.doe@example.com"),
        "the caller gets its own id back"
    );
    let call = message(
        r#"{"jsonrpc":"2.0","id":4111111111111111,"method":"tools/call","params":{"name":"call +1 (555) 234-5678"}}"#,
    );
    exchange.from_client(call).await;

    let events = audit.events();
    assert_eq!(events.len(), 2);
    let stored = serde_json::to_string(&events).unwrap();
    for raw in ["jane.doe@example.com", "555) 234-5678", "4111111111111111"] {
        assert!(!stored.contains(raw), "{raw} kept in {stored}");
    }
    assert_eq!(
        events[0].jsonrpc_id.as_deref(),
        Some(r#""[REDACTED:EMAIL]""#)
    );
    assert_eq!(
        events[0].target.as_deref(),
        Some("test://template/[REDACTED:EMAIL]/data")
    );
    assert_eq!(events[0].method.as_deref(), Some("resources/read"));
    let reason = events[0].trace.entries()[0].reason.as_deref().unwrap();
    assert!(reason.contains("[REDACTED:EMAIL]"), "{reason}");
    assert_eq!(
        events[1].jsonrpc_id.as_deref(),
        Some(r#""[REDACTED:CREDIT_CARD]""#),
        "a number that is personal data is stored as a redacted string"
    );
    assert_eq!(events[1].decision, DecisionKind::Block);
}

/// Answers every held call the same way, keeping what it was asked.
#[derive(Debug)]
struct Fixed(ApprovalAnswer, Mutex<Vec<(String, Option<Value>, String)>>);

#[async_trait::async_trait]
impl Approver for Fixed {
    async fn decide(&self, request: ApprovalRequest<'_>) -> ApprovalAnswer {
        self.1.lock().unwrap().push((
            request.target.unwrap_or_default().to_owned(),
            request.arguments.cloned(),
            request.reason.to_owned(),
        ));
        self.0.clone()
    }
}

use serde_json::Value;

const HELD: &str = r#"{"guardrails": [
    {"type": "rbac", "allow": ["echo"], "approve": ["pay*"]},
    {"type": "pii_email", "action": "redact"}
]}"#;

fn pay(to: &str) -> Message {
    message(&format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"pay","arguments":{{"to":"{to}","amount":5}}}}}}"#
    ))
}

async fn held_call(
    answer: ApprovalAnswer,
) -> (
    Handled,
    Vec<(String, Option<Value>, String)>,
    crate::audit::AuditEvent,
) {
    let pipeline = pipeline(HELD);
    let identity = Identity::new_random();
    let conversation = Conversation::new();
    let audit = Arc::new(MemoryAuditSink::new());
    let approver = Arc::new(Fixed(answer, Mutex::new(Vec::new())));
    let recorder = Recorder::new(audit.clone()).with_approver(approver.clone());
    let exchange = Exchange::new(&pipeline, &identity, &conversation, &recorder);
    let handled = exchange.from_client(pay("jane@example.com")).await;
    let asked = approver.1.lock().unwrap().clone();
    (handled, asked, audit.events().remove(0))
}

#[tokio::test]
async fn an_approved_call_goes_on_as_the_pipeline_left_it() {
    let (handled, asked, event) = held_call(ApprovalAnswer::Approved { by: "u1".into() }).await;
    assert_eq!(handled.decision, Decision::Modify);
    let Action::Forward(call) = handled.action else {
        panic!("not forwarded")
    };
    assert_eq!(call.arguments().unwrap()["to"], "[REDACTED:EMAIL]");
    // The person saw the arguments redacted, and why.
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, "pay");
    assert_eq!(asked[0].1.as_ref().unwrap()["to"], "[REDACTED:EMAIL]");
    assert_eq!(asked[0].2, "tool `pay` needs approval for each request");
    let last = event.trace.entries().last().unwrap();
    assert_eq!(last.guardrail, "approval");
    assert_eq!(last.code.as_deref(), Some(crate::approval::codes::GRANTED));
    assert_eq!(last.reason.as_deref(), Some("approved by u1"));
    assert!(last.waited_us.is_some());
    assert_eq!(event.decision, DecisionKind::Modify);
}

#[tokio::test]
async fn a_denied_or_timed_out_call_is_refused_with_its_reason() {
    for (answer, code, reason) in [
        (
            ApprovalAnswer::Denied {
                by: "u2".into(),
                reason: Some("not this week".into()),
            },
            crate::approval::codes::DENIED,
            "denied by u2: not this week",
        ),
        (
            ApprovalAnswer::TimedOut {
                after: Duration::from_secs(300),
            },
            crate::approval::codes::TIMED_OUT,
            "nobody answered within 300 s",
        ),
    ] {
        let (handled, _, event) = held_call(answer).await;
        let Action::Reply(error) = handled.action else {
            panic!("not refused")
        };
        let data = &error.error().unwrap()["data"];
        assert_eq!(data["guardrail"], "approval");
        assert_eq!(data["code"], code);
        assert_eq!(data["reason"], reason);
        assert_eq!(event.decision, DecisionKind::Block);
        assert_eq!(
            event.trace.entries().last().unwrap().reason.as_deref(),
            Some(reason)
        );
    }
}

#[tokio::test]
async fn without_an_approver_a_held_call_is_refused_and_others_pass() {
    let pipeline = pipeline(HELD);
    let identity = Identity::new_random();
    let conversation = Conversation::new();
    let recorder = Recorder::none();
    let exchange = Exchange::new(&pipeline, &identity, &conversation, &recorder);
    let handled = exchange.from_client(pay("x")).await;
    let Action::Reply(error) = handled.action else {
        panic!("not refused")
    };
    assert_eq!(
        error.error().unwrap()["data"]["code"],
        crate::approval::codes::UNAVAILABLE
    );
    let echo =
        message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#);
    assert_eq!(exchange.from_client(echo).await.decision, Decision::Allow);
}

#[tokio::test]
async fn a_call_another_guardrail_refuses_is_never_put_to_anyone() {
    let pipeline = pipeline(
        r#"{"guardrails": [
            {"type": "rule", "name": "ask", "when": "tool == 'pay'", "action": "approve"},
            {"type": "rule", "name": "cap", "when": "tool == 'pay' && arguments.amount > 1"},
            {"type": "rbac", "allow": ["*"]}
        ]}"#,
    );
    let identity = Identity::new_random();
    let conversation = Conversation::new();
    let approver = Arc::new(Fixed(
        ApprovalAnswer::Approved { by: "u".into() },
        Mutex::new(Vec::new()),
    ));
    let recorder = Recorder::none().with_approver(approver.clone());
    let exchange = Exchange::new(&pipeline, &identity, &conversation, &recorder);
    let handled = exchange.from_client(pay("x")).await;
    assert!(
        matches!(handled.decision, Decision::Block { ref guardrail, .. } if guardrail == "rule:cap")
    );
    assert!(approver.1.lock().unwrap().is_empty());
    // A rule that holds alone names itself as the guardrail that asked.
    let pipeline = self::pipeline(
        r#"{"guardrails": [{"type": "rule", "name": "ask", "when": "tool == 'pay'", "action": "approve", "reason": "payments need a person"}]}"#,
    );
    let outcome = pipeline
        .run(Envelope::new(Direction::Request, &identity), pay("x"))
        .await;
    assert_eq!(
        outcome.decision,
        Decision::Hold {
            guardrail: "rule:ask".into(),
            code: crate::approval::codes::REQUIRED.into(),
            reason: "payments need a person".into(),
            by: crate::approval::ApproveBy::Admin,
        }
    );
}

/// Never answers.
#[derive(Debug)]
struct Silent;

#[async_trait::async_trait]
impl Approver for Silent {
    async fn decide(&self, _: ApprovalRequest<'_>) -> ApprovalAnswer {
        std::future::pending().await
    }
}

#[test]
fn a_held_call_whose_caller_goes_away_still_leaves_its_record() {
    use futures::FutureExt as _;
    let pipeline = pipeline(HELD);
    let identity = Identity::new_random();
    let conversation = Conversation::new();
    let audit = Arc::new(MemoryAuditSink::new());
    let recorder = Recorder::new(audit.clone()).with_approver(Arc::new(Silent));
    let exchange = Exchange::new(&pipeline, &identity, &conversation, &recorder);
    // The call waits; its caller goes away, which drops the wait.
    assert!(
        exchange
            .from_client(pay("jane@example.com"))
            .now_or_never()
            .is_none()
    );
    let events = audit.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].decision, DecisionKind::Block);
    let last = events[0].trace.entries().last().unwrap();
    assert_eq!(
        last.code.as_deref(),
        Some(crate::approval::codes::ABANDONED)
    );
    assert_eq!(
        last.reason.as_deref(),
        Some("the caller went away before an answer")
    );
}
