//! A gateway with a control-plane database, and an HTTP client for its admin API.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use cerberus_axum::config::GatewayConfig;
use cerberus_core::GuardrailRegistry;
use cerberus_core::audit::MemoryAuditSink;
use cerberus_core::store::ControlStore;
use cerberus_sqlx::{Backend, SqlStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::databases::TestDatabase;

/// The password of every user the tests create.
pub const PASSWORD: &str = "correct horse battery staple";

/// The tests' upstreams listen on loopback, which the admin API's upstreams may reach only if allowed.
const LOOPBACK_ALLOWED: &str = "admin_upstream_allow = [\"127.0.0.0/8\"]";

/// A running gateway with the admin API over a fresh database.
pub struct AdminGateway {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The database.
    pub store: Arc<SqlStore>,
    /// What the proxy audited.
    pub audit: Arc<MemoryAuditSink>,
    /// The database audit writer, when the gateway stores its audit there.
    pub stored_audit: Option<Arc<cerberus_axum::audit::BatchedAuditSink>>,
    database: Option<TestDatabase>,
}

impl AdminGateway {
    /// Starts one on `backend`.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, false, LOOPBACK_ALLOWED).await
    }

    /// Starts one on `backend` that stores its audit events in the database.
    pub async fn start_audited(backend: Backend) -> Self {
        Self::start_with(backend, true, LOOPBACK_ALLOWED).await
    }

    /// Starts one on `backend` whose `[server]` section ends with `server` instead of allowing the
    /// admin API's upstreams to reach loopback (where the tests' upstreams are).
    pub async fn start_with_server(backend: Backend, server: &str) -> Self {
        Self::start_with(backend, false, server).await
    }

    /// Starts one on `backend` whose `[admin]` section also holds `admin` (settings, one per line).
    pub async fn start_with_admin(backend: Backend, admin: &str) -> Self {
        Self::start_configured(backend, false, LOOPBACK_ALLOWED, admin).await
    }

    /// Starts one on `backend` that stores its audit events in the database, with `admin` in its
    /// `[admin]` section.
    pub async fn start_audited_with_admin(backend: Backend, admin: &str) -> Self {
        Self::start_configured(backend, true, LOOPBACK_ALLOWED, admin).await
    }

    /// Starts one on `backend` that takes OAuth access tokens at its own address, for the identity
    /// providers set through its admin API; `server` ends its `[server]` section.
    pub async fn start_with_oauth(backend: Backend, server: &str) -> Self {
        let oauth =
            "[oauth]\npublic_url = \"{base}\"\nkey_refresh_interval_secs = 1\nleeway_secs = 0\n";
        Self::start_full(backend, false, server, "", oauth).await
    }

    async fn start_with(backend: Backend, audited: bool, server: &str) -> Self {
        Self::start_configured(backend, audited, server, "").await
    }

    async fn start_configured(backend: Backend, audited: bool, server: &str, admin: &str) -> Self {
        Self::start_full(backend, audited, server, admin, "").await
    }

    /// Starts one; `extra` is appended to its configuration, with `{base}` replaced by its address.
    async fn start_full(
        backend: Backend,
        audited: bool,
        server: &str,
        admin: &str,
        extra: &str,
    ) -> Self {
        let database = TestDatabase::create(backend).await;
        let store = Arc::new(database.store().await);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let base = format!("http://{address}");
        let config = GatewayConfig::parse(
            &format!(
                "[server]\nmax_body_bytes = 65536\nupstream_timeout_secs = 5\n{server}\n\n\
                 [database]\nurl = \"{}\"\ncache_ttl_ms = 60000\n\n\
                 [admin]\njwt_secret = \"{}\"\n{admin}\n\n{}",
                database.url,
                "s".repeat(40),
                extra.replace("{base}", &base)
            ),
            std::path::Path::new("."),
            &GuardrailRegistry::default(),
        )
        .unwrap();
        let audit = Arc::new(MemoryAuditSink::new());
        let stored_audit = audited.then(|| {
            Arc::new(cerberus_axum::audit::BatchedAuditSink::start(
                Arc::clone(&store) as Arc<dyn cerberus_core::audit::AuditStore>,
                &cerberus_axum::audit::AuditSettings::default(),
            ))
        });
        let sink: Arc<dyn cerberus_core::audit::AuditSink> = match &stored_audit {
            Some(stored) => Arc::new(cerberus_core::audit::FanoutAuditSink::new(vec![
                audit.clone(),
                stored.clone(),
            ])),
            None => audit.clone(),
        };
        let (_, router) = cerberus_axum::serve::build_with_store(
            &config,
            GuardrailRegistry::default(),
            sink,
            Arc::clone(&store) as Arc<dyn ControlStore>,
        )
        .unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            base,
            store,
            audit,
            stored_audit,
            database: Some(database),
        }
    }

    /// Another gateway instance on the same database, whose proxy trusts a looked-up key for
    /// `cache_ttl_ms`; returns its proxy endpoint.
    pub async fn second_instance(&self, cache_ttl_ms: u64) -> String {
        format!("{}/mcp", self.second_instance_with(cache_ttl_ms, "").await)
    }

    /// Another gateway instance on the same database, as [`AdminGateway::second_instance`], with
    /// `extra` at the end of its configuration; returns its address.
    pub async fn second_instance_with(&self, cache_ttl_ms: u64, extra: &str) -> String {
        let url = self.database.as_ref().map(|d| d.url.clone()).unwrap();
        let config = GatewayConfig::parse(
            &format!(
                "[server]\n{LOOPBACK_ALLOWED}\n\n[database]\nurl = \"{url}\"\ncache_ttl_ms = {cache_ttl_ms}\n\n[admin]\njwt_secret = \"{}\"\n\n{extra}",
                "s".repeat(40)
            ),
            std::path::Path::new("."),
            &GuardrailRegistry::default(),
        )
        .unwrap();
        let (_, router) = cerberus_axum::serve::build_with_store(
            &config,
            GuardrailRegistry::default(),
            Arc::new(MemoryAuditSink::new()),
            Arc::clone(&self.store) as Arc<dyn ControlStore>,
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{address}")
    }

    /// The proxy endpoint.
    pub fn mcp(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// Creates an organisation with an owner `email`, and logs that owner in.
    pub async fn tenant(&self, organisation: &str, email: &str) -> Admin {
        cerberus_axum::control_plane::create_owner(
            &self.store,
            organisation,
            email,
            PASSWORD.into(),
        )
        .await
        .unwrap();
        self.login(email).await
    }

    /// Logs a user in.
    pub async fn login(&self, email: &str) -> Admin {
        let (status, body) = Admin::anonymous(&self.base)
            .call(
                "POST",
                "/api/v1/auth/login",
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Admin {
            base: self.base.clone(),
            token: body["access_token"].as_str().map(str::to_owned),
            refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
            organisation: body["user"]["organisation"].as_str().unwrap().to_owned(),
            user: body["user"]["id"].as_str().unwrap().to_owned(),
        }
    }

    /// Ends the test: closes the pool and drops the database.
    pub async fn stop(mut self) {
        self.store.pool().close().await;
        if let Some(database) = self.database.take() {
            database.drop_database().await;
        }
    }
}

/// A logged-in admin API client.
#[derive(Clone, Debug)]
pub struct Admin {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its access token.
    pub token: Option<String>,
    /// Its refresh token.
    pub refresh_token: String,
    /// Its organisation's id.
    pub organisation: String,
    /// Its user's id.
    pub user: String,
}

impl Admin {
    /// A client with no credential.
    pub fn anonymous(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: None,
            refresh_token: String::new(),
            organisation: String::new(),
            user: String::new(),
        }
    }

    /// The same client with another bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// Makes a request; returns the status and the JSON body (`null` when empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new().request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base),
        );
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    /// A request that must succeed with `expected`; returns the body.
    pub async fn expect(
        &self,
        expected: StatusCode,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert_eq!(status, expected, "{method} {path}: {value}");
        value
    }

    /// Creates a workspace of its organisation in front of `upstream`; returns its id.
    pub async fn workspace(&self, name: &str, upstream: &str) -> String {
        let body = self
            .expect(
                StatusCode::CREATED,
                "POST",
                &format!(
                    "/api/v1/organisations/{}/mcp-server-workspaces",
                    self.organisation
                ),
                Some(
                    json!({"name": name, "environment": "staging", "upstream": {"url": upstream}}),
                ),
            )
            .await;
        body["id"].as_str().unwrap().to_owned()
    }

    /// Creates an agent access in a workspace; returns its id and key.
    pub async fn agent(&self, workspace: &str, name: &str) -> (String, String) {
        let body = self
            .expect(
                StatusCode::CREATED,
                "POST",
                &format!("/api/v1/mcp-server-workspaces/{workspace}/agent-accesses"),
                Some(json!({"name": name})),
            )
            .await;
        (
            body["agent_access"]["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }

    /// Attaches a policy; returns its id.
    pub async fn policy(&self, level: &str, target: &str, document: Value) -> String {
        let body = self
            .expect(
                StatusCode::CREATED,
                "POST",
                "/api/v1/policies",
                Some(json!({"level": level, "target_id": target, "document": document})),
            )
            .await;
        body["id"].as_str().unwrap().to_owned()
    }
}

/// The HTTP status the proxy gives an `initialize` sent with `key`: 200 when the key opens a route.
pub async fn proxy_status(mcp: &str, key: &str) -> StatusCode {
    reqwest::Client::new()
        .post(mcp)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .body(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .status()
}

/// An rmcp client connected through the proxy with `key`.
async fn connect(mcp: &str, key: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::{ClientLifecycleMode, ClientServiceExt};
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(mcp).auth_header(key),
    );
    ().serve_with_lifecycle(transport, ClientLifecycleMode::Initialize)
        .await
        .expect("the client connects through the gateway")
}

/// The tools an rmcp client sees through the proxy with `key`, sorted.
pub async fn tool_names(mcp: &str, key: &str) -> Vec<String> {
    let client = connect(mcp, key).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    client.cancel().await.unwrap();
    names
}

/// What an rmcp client gets through the proxy with `key` when it calls `echo` with `text`: the
/// echoed text, or the error's text.
pub async fn call_echo(mcp: &str, key: &str, text: &str) -> Result<String, String> {
    use rmcp::model::CallToolRequestParams;
    let client = connect(mcp, key).await;
    let call = CallToolRequestParams::new("echo")
        .with_arguments(json!({"text": text}).as_object().unwrap().clone());
    let result = match client.call_tool(call).await {
        Ok(result) => Ok(serde_json::to_value(&result.content).unwrap()[0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()),
        Err(e) => Err(e.to_string()),
    };
    client.cancel().await.unwrap();
    result
}
