//! The gateway streams: progress arrives while the tool still runs, and server-to-client requests
//! (sampling) make the round trip, with guardrails on both legs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    deprecated,
    reason = "a test fails loudly on any unexpected error; sampling (deprecated by SEP-2577) is still relayed"
)]

mod support;

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
    CreateMessageResult, ProgressNotificationParam, ProgressToken, RequestMetaObject,
    SamplingMessage,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData, RoleClient};
use support::{HANG, KEY, start_gateway, start_upstream_with_release};
use tokio::sync::mpsc;

const POLICY: &str = r#"{ guardrails = [
    { type = "rbac", allow = ["*"] },
    { type = "pii_email", action = "redact" }
] }"#;

/// A client that reports progress and answers sampling requests, remembering what it was asked.
struct Client {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
    sampled: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Client {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let asked = serde_json::to_string(&params.messages).unwrap();
        self.sampled.lock().unwrap().push(asked);
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text("a fine customer, reachable at bob@example.org"),
            "test-model".into(),
        ))
    }

    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities = ClientCapabilities::builder().enable_sampling().build();
        info
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_streams_while_the_tool_runs_and_sampling_round_trips() {
    let (upstream, release) = start_upstream_with_release().await;
    let gateway = start_gateway(&upstream, POLICY).await;
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let sampled = Arc::new(Mutex::new(Vec::new()));
    let handler = Client {
        progress: progress_tx,
        sampled: Arc::clone(&sampled),
    };
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.url.as_str()).auth_header(KEY),
    );
    let client = handler
        .serve_with_lifecycle(transport, ClientLifecycleMode::Initialize)
        .await
        .unwrap();

    // The tool cannot finish before the test has seen its first progress notification through the
    // gateway, so a relay that buffered the response would never get there.
    let token = ProgressToken(rmcp::model::NumberOrString::String("p-1".into()));
    let mut params = CallToolRequestParams::new("progress_then_wait");
    params.meta = Some(RequestMetaObject::with_progress_token(token.clone()));
    let peer = client.peer().clone();
    let call = tokio::spawn(async move { peer.call_tool(params).await });
    let first = tokio::time::timeout(HANG, progress_rx.recv())
        .await
        .expect("progress arrives before the result")
        .unwrap();
    assert_eq!(first.progress, 1.0);
    assert_eq!(
        first.message.as_deref(),
        Some("call [REDACTED:EMAIL]"),
        "notifications go through the pipeline too"
    );
    assert!(!call.is_finished());
    release.notify_one();
    let result = tokio::time::timeout(HANG, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::to_value(&result.content).unwrap()[0]["text"],
        "done"
    );
    let second = tokio::time::timeout(HANG, progress_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.progress, &second.progress_token),
        (2.0, &first.progress_token),
        "the progress token is relayed unchanged"
    );

    // Sampling: the server's request reaches the client redacted, and the client's answer reaches the
    // server redacted.
    let answer = client
        .call_tool(CallToolRequestParams::new("ask_model"))
        .await
        .unwrap();
    let asked = sampled.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].contains("[REDACTED:EMAIL]") && !asked[0].contains("jane@example.com"),
        "{asked:?}"
    );
    let text = serde_json::to_value(&answer.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains("a fine customer, reachable at [REDACTED:EMAIL]"),
        "{text}"
    );

    let audited: Vec<_> = gateway
        .audit
        .events()
        .into_iter()
        .filter(|e| e.method.as_deref() == Some("sampling/createMessage"))
        .collect();
    assert_eq!(
        audited.len(),
        2,
        "the server's request and the client's answer are both audited"
    );
    client.cancel().await.unwrap();
}
