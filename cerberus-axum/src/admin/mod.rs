//! The control plane: the admin REST API under `/api/v1`, over a [`ControlStore`].
//!
//! Authentication is a short-lived JWT access token (`POST /api/v1/auth/login`, renewed with a refresh
//! token at `/auth/refresh`); every query is scoped to the caller's organisation, so another tenant's
//! ids are 404; viewers read, admins also write workspaces, agent accesses and policies, owners also
//! manage the organisation and its users. The console at `/console` is a browser client of the same
//! API. Changes the proxy depends on call [`AdminState::changed`],
//! which drops the proxy's cached keys and policies at once.

mod agents;
mod analytics;
mod approvals;
mod audit;
mod console;
pub mod credentials;
mod docs;
pub mod error;
pub mod extract;
#[cfg(feature = "oauth")]
mod identity_providers;
mod labels;
mod login;
mod organisations;
mod pins;
mod policies;
pub mod throttle;
mod trial;
pub(crate) mod validate;
mod workspaces;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};
use cerberus_core::GuardrailRegistry;
use cerberus_core::store::ControlStore;

use self::credentials::TokenIssuer;
use self::error::ApiError;
use self::throttle::{LoginLimits, LoginThrottle};
use serde::{Deserialize, Serialize};

/// The admin API's settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdminSettings {
    /// The secret that signs access tokens (at least 32 bytes; the same on every instance). Better given
    /// as `CERBERUS_JWT_SECRET`; without either, a random one is made and tokens die with the process.
    pub jwt_secret: Option<String>,
    /// How long an access token lives, in seconds.
    pub access_token_ttl_secs: u64,
    /// How long a refresh token lives, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// How long an old key keeps working after a rotation, unless the rotation says otherwise.
    pub key_rotation_grace_secs: u64,
    /// Whether admins may define stdio upstreams, which run commands on the gateway's machine.
    pub allow_stdio_upstreams: bool,
    /// Failed logins for one email within `login_failure_window_secs`; then it gets 429.
    pub login_failures_per_account: u32,
    /// Failed logins from one client address (an IPv6 /64) within the window; then it gets 429.
    pub login_failures_per_address: u32,
    /// How long failed logins are remembered, from the first, in seconds.
    pub login_failure_window_secs: u64,
    /// How long a call held for approval waits for an admin's answer before it is refused, in
    /// seconds (1 to 86 400).
    pub approval_timeout_secs: u64,
    /// How often a waiting call looks for an answer given through another instance, in
    /// milliseconds (50 to 10 000); an answer through this instance wakes it at once.
    pub approval_poll_interval_ms: u64,
    /// How often a client whose call is held gets a keep-alive comment on its event stream, in
    /// seconds (1 to 300).
    pub approval_keep_alive_secs: u64,
    /// Where the gateway POSTs a signed notice of every call held for approval, so that a chat tool
    /// can post it; none when absent.
    pub approval_webhook_url: Option<String>,
    /// The HMAC key that signs those notices (at least 16 bytes). Better given as
    /// `CERBERUS_ADMIN__APPROVAL_WEBHOOK_SECRET`.
    pub approval_webhook_secret: Option<String>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            key_rotation_grace_secs: 0,
            allow_stdio_upstreams: false,
            login_failures_per_account: 10,
            login_failures_per_address: 100,
            login_failure_window_secs: 15 * 60,
            approval_timeout_secs: 5 * 60,
            approval_poll_interval_ms: 500,
            approval_keep_alive_secs: 15,
            approval_webhook_url: None,
            approval_webhook_secret: None,
        }
    }
}

impl AdminSettings {
    /// The default grace period of a rotated key.
    pub fn key_rotation_grace(&self) -> Duration {
        Duration::from_secs(self.key_rotation_grace_secs)
    }

    /// Refuses settings out of their range, naming the setting.
    pub fn check(&self) -> Result<(), crate::config::ConfigError> {
        if !(1..=86_400).contains(&self.approval_timeout_secs) {
            return Err(crate::config::ConfigError::new(
                "admin.approval_timeout_secs",
                "must be from 1 to 86400",
            ));
        }
        if !(50..=10_000).contains(&self.approval_poll_interval_ms) {
            return Err(crate::config::ConfigError::new(
                "admin.approval_poll_interval_ms",
                "must be from 50 to 10000",
            ));
        }
        match (&self.approval_webhook_url, &self.approval_webhook_secret) {
            (None, None) => {}
            (Some(url), Some(secret)) => {
                crate::approvals::ApprovalNotifier::new(url, secret.as_bytes()).map_err(|e| {
                    crate::config::ConfigError::new("admin.approval_webhook_url", e)
                })?;
            }
            (Some(_), None) => {
                return Err(crate::config::ConfigError::new(
                    "admin.approval_webhook_secret",
                    "a webhook needs the secret that signs its notices",
                ));
            }
            (None, Some(_)) => {
                return Err(crate::config::ConfigError::new(
                    "admin.approval_webhook_url",
                    "a webhook secret needs a URL",
                ));
            }
        }
        if !(1..=300).contains(&self.approval_keep_alive_secs) {
            return Err(crate::config::ConfigError::new(
                "admin.approval_keep_alive_secs",
                "must be from 1 to 300",
            ));
        }
        Ok(())
    }

    /// How often a held call's client gets a keep-alive comment.
    pub fn approval_keep_alive(&self) -> Duration {
        Duration::from_secs(self.approval_keep_alive_secs)
    }

    /// How long a held call waits for an answer.
    pub fn approval_timeout(&self) -> Duration {
        Duration::from_secs(self.approval_timeout_secs)
    }

    /// How often a held call looks for an answer in the database.
    pub fn approval_poll_interval(&self) -> Duration {
        Duration::from_millis(self.approval_poll_interval_ms)
    }

    /// The limits of failed logins.
    pub fn login_limits(&self) -> LoginLimits {
        LoginLimits {
            per_account: self.login_failures_per_account.max(1),
            per_address: self.login_failures_per_address.max(1),
            window: Duration::from_secs(self.login_failure_window_secs.max(1)),
        }
    }
}

/// What every admin handler shares.
#[derive(Clone)]
pub struct AdminState {
    /// Where the control plane lives.
    pub store: Arc<dyn ControlStore>,
    /// Issues and checks access tokens.
    pub tokens: TokenIssuer,
    /// Checks policy documents.
    pub registry: Arc<GuardrailRegistry>,
    /// The admin settings.
    pub settings: Arc<AdminSettings>,
    /// Failed logins, per account and per address.
    pub logins: LoginThrottle,
    /// This instance's waiting held calls, woken when an answer is given here.
    pub approvals: Option<Arc<crate::approvals::AdminApprover>>,
    /// The proxy's OAuth resource server, when the gateway takes access tokens
    /// (`oauth.public_url`): identity providers cannot be trusted without it.
    #[cfg(feature = "oauth")]
    pub oauth: Option<Arc<crate::oauth::ResourceServer>>,
    on_change: Arc<dyn Fn() + Send + Sync>,
}

impl fmt::Debug for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminState")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// The state of an admin API over `store`; `on_change` runs after every change the proxy must see.
    pub fn new(
        store: Arc<dyn ControlStore>,
        tokens: TokenIssuer,
        registry: Arc<GuardrailRegistry>,
        settings: AdminSettings,
        on_change: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            store,
            tokens,
            registry,
            logins: LoginThrottle::new(settings.login_limits()),
            settings: Arc::new(settings),
            approvals: None,
            #[cfg(feature = "oauth")]
            oauth: None,
            on_change,
        }
    }

    /// The same state waking `approver`'s waiting calls when an answer is given here.
    pub fn with_approvals(self, approver: Arc<crate::approvals::AdminApprover>) -> Self {
        Self {
            approvals: Some(approver),
            ..self
        }
    }

    /// The same state trusting identity providers for `server`.
    #[cfg(feature = "oauth")]
    pub fn with_oauth(self, server: Option<Arc<crate::oauth::ResourceServer>>) -> Self {
        Self {
            oauth: server,
            ..self
        }
    }

    /// Tells the proxy that keys, workspaces or policies changed.
    pub fn changed(&self) {
        (self.on_change)();
    }
}

/// The admin API routes.
pub fn router(state: AdminState) -> Router {
    use self::{
        agents as a, labels as t, login as l, organisations as o, policies as p, workspaces as w,
    };
    let router = Router::new()
        .route("/api/v1/auth/login", post(l::login))
        .route("/api/v1/auth/refresh", post(l::refresh))
        .route("/api/v1/auth/logout", post(l::logout))
        .route("/api/v1/organisations", get(o::list).post(o::create))
        .route(
            "/api/v1/organisations/{id}",
            get(o::get).patch(o::update).delete(o::delete),
        )
        .route("/api/v1/organisations/{id}/labels", put(t::organisation))
        .route(
            "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}/labels",
            put(t::workspace),
        )
        .route("/api/v1/agent-accesses/{id}/labels", put(t::agent_access))
        .route(
            "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}/tool-pins",
            get(pins::list),
        )
        .route(
            "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}/tool-pins/approve",
            post(pins::approve),
        )
        .route(
            "/api/v1/organisations/{id}/users",
            get(o::users).post(o::create_user),
        )
        .route(
            "/api/v1/organisations/{id}/users/{user_id}",
            axum::routing::patch(o::update_user).delete(o::delete_user),
        )
        .route(
            "/api/v1/organisations/{id}/mcp-server-workspaces",
            get(w::list).post(w::create),
        )
        .route(
            "/api/v1/organisations/{id}/mcp-server-workspaces/{workspace_id}",
            get(w::get).patch(w::update).delete(w::delete),
        )
        .route(
            "/api/v1/mcp-server-workspaces/{id}/agent-accesses",
            get(a::list).post(a::create),
        )
        .route("/api/v1/agent-accesses/{id}", get(a::get).delete(a::delete))
        .route("/api/v1/agent-accesses/{id}/rotate", post(a::rotate))
        .route("/api/v1/agent-accesses/{id}/revoke", post(a::revoke))
        .route(
            "/api/v1/organisations/{id}/audit-logs",
            get(self::audit::list),
        )
        .route(
            "/api/v1/organisations/{id}/audit-logs/export",
            get(self::audit::export),
        )
        .route(
            "/api/v1/organisations/{id}/analytics",
            get(self::analytics::get),
        )
        .route(
            "/api/v1/organisations/{id}/approvals",
            get(self::approvals::list),
        )
        .route(
            "/api/v1/organisations/{id}/approvals/{approval_id}",
            get(self::approvals::get),
        )
        .route(
            "/api/v1/organisations/{id}/approvals/{approval_id}/approve",
            post(self::approvals::approve),
        )
        .route(
            "/api/v1/organisations/{id}/approvals/{approval_id}/deny",
            post(self::approvals::deny),
        )
        .route("/api/v1/policies", get(p::list).post(p::create))
        .route(
            "/api/v1/policies/{id}",
            get(p::get).put(p::update).delete(p::delete),
        )
        .route(
            "/api/v1/policies/mcp-server-workspaces/{id}/effective-policies",
            get(p::effective),
        )
        .route("/api/v1/policies/check", post(trial::check))
        .route("/api/v1/guardrail-types", get(trial::types))
        .route("/openapi.json", get(docs::openapi))
        .route("/docs", get(docs::page))
        .route(docs::RAPIDOC_PATH, get(docs::rapidoc))
        .route("/console", get(console::redirect))
        .route("/console/", get(console::page))
        .route("/console/{*name}", get(console::asset))
        .route("/api/v1/{*rest}", axum::routing::any(not_found));
    #[cfg(feature = "oauth")]
    let router = {
        use self::identity_providers as i;
        router
            .route(
                "/api/v1/organisations/{id}/identity-providers",
                get(i::list).post(i::create),
            )
            .route(
                "/api/v1/organisations/{id}/identity-providers/{provider_id}",
                get(i::get).put(i::update).delete(i::delete),
            )
            .route(
                "/api/v1/organisations/{id}/identity-providers/{provider_id}/member-policies",
                get(i::member_policies),
            )
            .route(
                "/api/v1/organisations/{id}/identity-providers/{provider_id}/groups/{group}/policy",
                put(i::set_group_policy).delete(i::delete_group_policy),
            )
            .route(
                "/api/v1/organisations/{id}/identity-providers/{provider_id}/people/{subject}/policy",
                put(i::set_person_policy).delete(i::delete_person_policy),
            )
    };
    router.with_state(state)
}

/// The admin API's OpenAPI document.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    docs::document()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
