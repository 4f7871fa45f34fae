//! The Redis rate limiter against a real Redis: the running one (127.0.0.1:6379, or
//! CERBERUS_TEST_REDIS_URL; no Redis is a failure, not a skip) and, for restarts, a private
//! `redis-server` this test starts and stops.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

use std::num::NonZeroU32;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cerberus_core::rate_limit::{RateLimitDecision, RateLimitWindow, RateLimiter};
use cerberus_redis::{FailureMode, LimiterSettings, RedisRateLimiter, Timeouts, connect};

fn redis_url() -> String {
    std::env::var("CERBERUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A limiter on the shared test Redis, which must be there.
async fn limiter(settings: LimiterSettings) -> RedisRateLimiter {
    let (_, mut connection) = connect(&redis_url(), Timeouts::default()).unwrap();
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("Redis at {} is needed by this test: {e}", redis_url()));
    assert_eq!(pong, "PONG");
    RedisRateLimiter::new(connection, settings)
}

/// A window of `limit` calls per `period` for a key no other test uses.
fn window(agent: &str, name: &str, limit: u32, period: Duration) -> RateLimitWindow {
    RateLimitWindow {
        key: format!("{{{agent}}}:{name}"),
        limit: NonZeroU32::new(limit).unwrap(),
        period,
    }
}

fn fresh_agent() -> String {
    format!(
        "test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn a_burst_of_the_limit_then_one_call_per_interval() {
    let limiter = limiter(LimiterSettings::default()).await;
    let agent = fresh_agent();
    let second = [window(&agent, "1s", 5, Duration::from_secs(1))];
    for _ in 0..5 {
        assert_eq!(
            limiter.acquire(&second).await.unwrap(),
            RateLimitDecision::Allowed
        );
    }
    let RateLimitDecision::Denied {
        window,
        retry_after,
    } = limiter.acquire(&second).await.unwrap()
    else {
        panic!("the sixth call in the burst is refused");
    };
    assert_eq!(window, 0);
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(200),
        "one interval at most: {retry_after:?}"
    );
    // At the edge: once the hint has passed, exactly one more call is admitted.
    tokio::time::sleep(retry_after + Duration::from_millis(5)).await;
    assert_eq!(
        limiter.acquire(&second).await.unwrap(),
        RateLimitDecision::Allowed
    );
    assert!(matches!(
        limiter.acquire(&second).await.unwrap(),
        RateLimitDecision::Denied { .. }
    ));
}

#[tokio::test]
async fn a_refused_call_spends_nothing_in_any_window() {
    let limiter = limiter(LimiterSettings::default()).await;
    let agent = fresh_agent();
    let hour = Duration::from_secs(3600);
    let tight = window(&agent, "tight", 3, hour);
    let loose = window(&agent, "loose", 5, hour);
    let both = [tight.clone(), loose.clone()];
    for _ in 0..3 {
        assert_eq!(
            limiter.acquire(&both).await.unwrap(),
            RateLimitDecision::Allowed
        );
    }
    for _ in 0..10 {
        let RateLimitDecision::Denied {
            window,
            retry_after,
        } = limiter.acquire(&both).await.unwrap()
        else {
            panic!("the tight window is full");
        };
        assert_eq!(window, 0, "the tight window refused");
        assert!(retry_after > Duration::from_secs(1000));
    }
    // Ten refusals later, the loose window has spent 3 of its 5, not 13.
    let alone = [loose];
    assert_eq!(
        limiter.acquire(&alone).await.unwrap(),
        RateLimitDecision::Allowed
    );
    assert_eq!(
        limiter.acquire(&alone).await.unwrap(),
        RateLimitDecision::Allowed
    );
    assert!(matches!(
        limiter.acquire(&alone).await.unwrap(),
        RateLimitDecision::Denied { window: 0, .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_on_several_instances_never_exceed_the_limit() {
    let agent = fresh_agent();
    // Three limiters with their own connections stand for three gateway instances.
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Arc::new(limiter(LimiterSettings::default()).await));
    }
    let windows = Arc::new([
        window(&agent, "60s", 40, Duration::from_secs(60)),
        window(&agent, "3600s", 1000, Duration::from_secs(3600)),
    ]);
    let mut tasks = Vec::new();
    for n in 0..30 {
        let limiter = Arc::clone(&instances[n % 3]);
        let windows = Arc::clone(&windows);
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..10 {
                if limiter.acquire(&windows[..]).await.unwrap() == RateLimitDecision::Allowed {
                    admitted += 1;
                }
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert_eq!(
        admitted, 40,
        "300 calls against a limit of 40 admit exactly 40"
    );
}

/// A `redis-server` of this test's own, on a port of its own, keeping nothing on disk.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test checks)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server never listened");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn settings(failure_mode: FailureMode, cooldown: Duration) -> LimiterSettings {
    LimiterSettings {
        failure_mode,
        breaker_threshold: 2,
        breaker_cooldown: cooldown,
        ..LimiterSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_survives_a_flushed_cache_and_a_restarted_server() {
    let mut redis = OwnRedis::start();
    let (_, connection) = connect(&redis.url(), Timeouts::default()).unwrap();
    let limiter = RedisRateLimiter::new(
        connection.clone(),
        settings(FailureMode::FailClosed, Duration::from_millis(50)),
    );
    let agent = fresh_agent();
    let minute = [window(&agent, "60s", 3, Duration::from_secs(60))];
    assert_eq!(
        limiter.acquire(&minute).await.unwrap(),
        RateLimitDecision::Allowed
    );
    // The script cache emptied (as a restart or SCRIPT FLUSH does): the script is loaded again.
    let mut admin = connection.clone();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        limiter.acquire(&minute).await.unwrap(),
        RateLimitDecision::Allowed
    );

    // The server goes away: fail closed, the breaker opens after two failures, errors are counted.
    redis.stop();
    for _ in 0..4 {
        let refused = limiter.acquire(&minute).await;
        assert!(refused.is_err(), "fail closed: {refused:?}");
    }
    assert!(limiter.breaker_open());
    assert!(limiter.backend_errors() >= 2);
    let errors = limiter.backend_errors();
    // While the breaker is open, calls do not try Redis.
    let _ = limiter.acquire(&minute).await;
    assert_eq!(limiter.backend_errors(), errors);

    // A new server (empty: nothing is kept on disk) on the same port: after the cool-down one call
    // tries, the connection is re-established, the script loaded again and counting starts afresh.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut admitted = 0;
    while admitted == 0 {
        assert!(Instant::now() < deadline, "the limiter never came back");
        tokio::time::sleep(Duration::from_millis(60)).await;
        if matches!(
            limiter.acquire(&minute).await,
            Ok(RateLimitDecision::Allowed)
        ) {
            admitted += 1;
        }
    }
    assert!(!limiter.breaker_open());
    assert_eq!(
        limiter.acquire(&minute).await.unwrap(),
        RateLimitDecision::Allowed
    );
    assert_eq!(
        limiter.acquire(&minute).await.unwrap(),
        RateLimitDecision::Allowed
    );
    assert!(matches!(
        limiter.acquire(&minute).await.unwrap(),
        RateLimitDecision::Denied { .. }
    ));
}

#[tokio::test]
async fn each_failure_mode_does_what_it_says_when_redis_is_away() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let agent = fresh_agent();
    let minute = [window(&agent, "60s", 2, Duration::from_secs(60))];
    let away = |mode| {
        let (_, connection) = connect(&url, Timeouts::default()).unwrap();
        RedisRateLimiter::new(connection, settings(mode, Duration::from_secs(3600)))
    };

    let closed = away(FailureMode::FailClosed);
    for _ in 0..5 {
        assert!(closed.acquire(&minute).await.is_err());
    }
    let open = away(FailureMode::FailOpen);
    for _ in 0..5 {
        assert_eq!(
            open.acquire(&minute).await.unwrap(),
            RateLimitDecision::Allowed
        );
    }
    let local = away(FailureMode::LocalFallback);
    assert_eq!(
        local.acquire(&minute).await.unwrap(),
        RateLimitDecision::Allowed
    );
    assert_eq!(
        local.acquire(&minute).await.unwrap(),
        RateLimitDecision::Allowed
    );
    assert!(matches!(
        local.acquire(&minute).await.unwrap(),
        RateLimitDecision::Denied { .. }
    ));
    assert!(local.breaker_open() && local.backend_errors() == 2);
    // The default is to fail closed.
    assert_eq!(FailureMode::default(), FailureMode::FailClosed);
}
