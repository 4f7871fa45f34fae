//! `subscriptions/listen` (2026-07-28) through the gateway: a long-lived POST stream whose change
//! notifications reach the client as the server sends them, each through the response pipeline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod support;

use std::sync::Arc;

use cerberus_core::Direction;
use rmcp::model::{
    ProtocolVersion, ServerCapabilities, ServerConfig, ServerNotification, SubscriptionFilter,
};
use rmcp::service::{SubscriptionContext, SubscriptionEnd};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ClientLifecycleMode, ClientServiceExt, ServerHandler};
use support::{HANG, KEY, start_gateway};
use tokio::sync::Notify;

const POLICY: &str = r#"{ guardrails = [
    { type = "rbac", allow = ["*"] },
    { type = "pii_email", action = "redact" }
] }"#;

/// Announces a tool list change, waits to be released, announces a resource update and ends the
/// subscription gracefully.
#[derive(Clone)]
struct ListeningServer {
    release: Arc<Notify>,
}

impl ServerHandler for ListeningServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), rmcp::ErrorData> {
        context
            .sink()
            .notify_tool_list_changed()
            .await
            .expect("accepted");
        self.release.notified().await;
        context
            .sink()
            .notify_resource_updated("crm://orders")
            .await
            .expect("accepted");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_notifications_stream_through_the_gateway_until_the_subscription_ends() {
    let release = Arc::new(Notify::new());
    let server = ListeningServer {
        release: Arc::clone(&release),
    };
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_sse_keep_alive(None),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let address = support::listen(router).await;
    let gateway = start_gateway(&format!("http://{address}/mcp"), POLICY).await;

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.url.as_str()).auth_header(KEY),
    );
    let client = ()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    let filter = SubscriptionFilter::builder()
        .tools_list_changed()
        .resource_subscriptions(["crm://orders"])
        .build();
    let mut subscription = tokio::time::timeout(HANG, client.peer().listen(filter))
        .await
        .expect("the acknowledgement arrives through the gateway")
        .unwrap();
    assert_eq!(subscription.acknowledged().tools_list_changed, Some(true));

    // The first notification arrives while the server still holds the stream open.
    let first = tokio::time::timeout(HANG, subscription.next())
        .await
        .expect("streamed, not buffered")
        .unwrap();
    assert!(
        matches!(
            first,
            Some(ServerNotification::ToolListChangedNotification(_))
        ),
        "{first:?}"
    );
    release.notify_one();
    let second = tokio::time::timeout(HANG, subscription.next())
        .await
        .unwrap()
        .unwrap();
    let Some(ServerNotification::ResourceUpdatedNotification(update)) = second else {
        panic!("{second:?}")
    };
    assert_eq!(update.params.uri, "crm://orders");
    let end = tokio::time::timeout(HANG, subscription.next())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none());
    assert!(
        matches!(subscription.end(), Some(SubscriptionEnd::Graceful(_))),
        "the final result reaches the client: {:?}",
        subscription.end()
    );

    let events = gateway.audit.events();
    let listened = |method: &str, direction: Direction| {
        events
            .iter()
            .any(|e| e.method.as_deref() == Some(method) && e.direction == direction)
    };
    assert!(listened("subscriptions/listen", Direction::Request));
    assert!(listened(
        "notifications/tools/list_changed",
        Direction::Response
    ));
    assert!(listened(
        "notifications/resources/updated",
        Direction::Response
    ));
    client.cancel().await.unwrap();
}
