//! `GET /health` (liveness) and `GET /ready` (readiness) for load balancers and orchestrators.
//!
//! `/health` answers 200 while the process serves HTTP. `/ready` answers 200 when the gateway can do
//! its work, 503 otherwise, with one entry per check:
//!
//! - `database`: the control-plane database answers `SELECT 1` (with a `[database]`);
//! - `redis`: Redis answers `PING` (with `[redis] url`). Whatever the rate limiter's failure mode,
//!   sessions live in Redis, so an instance that cannot reach it is not ready;
//! - `upstreams`: each workspace of the configuration file whose MCP server is reached over HTTP
//!   accepts a TCP connection; for a stdio server, its command is found. (Workspaces defined through
//!   the admin API are not probed: there may be thousands, and they belong to tenants.)
//!
//! Every check runs concurrently and gives up after [`CHECK_TIMEOUT`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cerberus_core::store::ControlStore;
use serde_json::{Map, Value, json};

#[cfg(feature = "redis")]
use crate::distributed::Distributed;
use crate::upstream::Upstream;

/// How long one readiness check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/ready` checks.
#[derive(Debug, Default)]
pub struct Readiness {
    store: Option<Arc<dyn ControlStore>>,
    #[cfg(feature = "redis")]
    redis: Option<Distributed>,
    upstreams: Vec<(String, Upstream)>,
}

/// The result of one check.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    Ok,
    Failed(String),
}

impl Check {
    fn to_json(&self) -> Value {
        match self {
            Self::Ok => json!({"status": "ok"}),
            Self::Failed(error) => json!({"status": "failed", "error": error}),
        }
    }
}

impl Readiness {
    /// Checks that each of `upstreams` (named for the report) can be reached.
    pub fn new(upstreams: Vec<(String, Upstream)>) -> Self {
        Self {
            upstreams,
            ..Self::default()
        }
    }

    /// Also checks that the control-plane database answers.
    pub fn with_store(self, store: Arc<dyn ControlStore>) -> Self {
        Self {
            store: Some(store),
            ..self
        }
    }

    /// Also checks that Redis answers, in distributed mode.
    #[cfg(feature = "redis")]
    pub fn with_redis(self, distributed: Option<Distributed>) -> Self {
        Self {
            redis: distributed,
            ..self
        }
    }

    /// Runs every check: whether all passed, and the report.
    async fn run(&self) -> (bool, Value) {
        let database = async {
            let store = self.store.as_ref()?;
            Some(bounded(async { store.ping().await.map_err(|e| e.to_string()) }).await)
        };
        #[cfg(feature = "redis")]
        let redis = async {
            let redis = self.redis.as_ref()?;
            Some(bounded(async { redis.ping().await.map_err(|e| e.to_string()) }).await)
        };
        #[cfg(not(feature = "redis"))]
        let redis = async { None::<Check> };
        let upstreams = futures::future::join_all(
            self.upstreams
                .iter()
                .map(|(name, upstream)| async move { (name, bounded(reach(upstream)).await) }),
        );
        let (database, redis, upstreams) = tokio::join!(database, redis, upstreams);
        let mut ready = true;
        let mut checks = Map::new();
        let mut note = |name: &str, check: &Check, checks: &mut Map<String, Value>| {
            ready &= *check == Check::Ok;
            checks.insert(name.to_owned(), check.to_json());
        };
        if let Some(check) = &database {
            note("database", check, &mut checks);
        }
        if let Some(check) = &redis {
            note("redis", check, &mut checks);
        }
        let mut by_name = Map::new();
        for (name, check) in &upstreams {
            note(name, check, &mut by_name);
        }
        if !by_name.is_empty() {
            checks.insert("upstreams".into(), Value::Object(by_name));
        }
        let status = if ready { "ready" } else { "not ready" };
        (ready, json!({"status": status, "checks": checks}))
    }
}

async fn bounded(check: impl Future<Output = Result<(), String>>) -> Check {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => Check::Ok,
        Ok(Err(error)) => Check::Failed(error),
        Err(_) => Check::Failed(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// Whether an upstream can be reached: a TCP connection for HTTP, the command found for stdio.
async fn reach(upstream: &Upstream) -> Result<(), String> {
    match upstream {
        Upstream::Http(http) => {
            let host = http.url.host().ok_or("the URL has no host")?;
            let port = match (http.url.port_u16(), http.url.scheme_str()) {
                (Some(port), _) => port,
                (None, Some("https")) => 443,
                (None, _) => 80,
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            tokio::net::TcpStream::connect((host, port))
                .await
                .map(drop)
                .map_err(|e| format!("cannot connect: {e}"))
        }
        Upstream::Stdio(stdio) => {
            if command_found(&stdio.command) {
                Ok(())
            } else {
                Err("the command is not found".to_owned())
            }
        }
    }
}

/// Whether `command` names a file, directly or on `PATH`.
fn command_found(command: &Path) -> bool {
    if command.components().count() > 1 {
        return command.is_file();
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join(command).is_file())
    })
}

/// The `/health` and `/ready` routes.
pub fn router(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(readiness)
}

async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> Response {
    let (ready, report) = readiness.run().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_commands_on_the_path_or_by_path() {
        assert!(command_found(Path::new("sh")));
        assert!(command_found(Path::new("/bin/sh")));
        assert!(!command_found(Path::new("no-such-command-anywhere")));
        assert!(!command_found(Path::new("/no/such/file")));
    }
}
