//! Failed logins counted per account and per client address: past a limit within a window, logins
//! are refused with 429 before the password is checked, so that guessing a password, or making the
//! gateway hash guesses, costs a window's wait every few tries.
//!
//! The counts live in this instance's memory, bounded (the oldest entries go first): several
//! instances each keep their own, so the limits hold per instance.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use moka::future::Cache;

/// The most accounts and addresses remembered at once.
const REMEMBERED: u64 = 100_000;

/// How many failed logins are allowed, and for how long they are remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins for one email within the window; then that email is refused.
    pub per_account: u32,
    /// Failed logins from one client address within the window; then that address is refused.
    pub per_address: u32,
    /// How long failures are remembered, from the first.
    pub window: Duration,
}

/// The failures of one account or address.
#[derive(Debug)]
struct Failures {
    since: Instant,
    count: AtomicU32,
}

/// Remembers failed logins; cheap to share.
#[derive(Clone, Debug)]
pub struct LoginThrottle {
    limits: LoginLimits,
    failures: Cache<String, Arc<Failures>>,
}

impl LoginThrottle {
    /// A throttle with `limits`.
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            failures: Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(limits.window)
                .build(),
        }
    }

    /// `Err(retry_after)` when `email` or `address` has failed too often within the window.
    pub async fn check(&self, email: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let account = self.over(account_key(email), self.limits.per_account).await;
        let client = match address {
            Some(address) => {
                self.over(address_key(address), self.limits.per_address)
                    .await
            }
            None => None,
        };
        match account.into_iter().chain(client).max() {
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// How long `key` must wait, if it has failed `limit` times within the window.
    async fn over(&self, key: String, limit: u32) -> Option<Duration> {
        self.failures
            .get(&key)
            .await
            .filter(|f| f.count.load(Ordering::Relaxed) >= limit)
            .map(|f| self.limits.window.saturating_sub(f.since.elapsed()))
    }

    /// Counts a failed login for `email` and `address`.
    pub async fn failed(&self, email: &str, address: Option<IpAddr>) {
        let keys = std::iter::once(account_key(email)).chain(address.map(address_key));
        for key in keys {
            let failures = self
                .failures
                .get_with(key, async {
                    Arc::new(Failures {
                        since: Instant::now(),
                        count: AtomicU32::new(0),
                    })
                })
                .await;
            failures.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets the failures of `email` after it logged in (not those of its address).
    pub async fn succeeded(&self, email: &str) {
        self.failures.invalidate(&account_key(email)).await;
    }
}

fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}

fn address_key(address: IpAddr) -> String {
    // An IPv6 client is counted by its /64, which one host can rotate through freely.
    match address {
        IpAddr::V4(v4) => format!("address:{v4}"),
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("address:{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(LoginLimits {
            per_account: 3,
            per_address: 5,
            window: Duration::from_secs(900),
        })
    }

    #[tokio::test]
    async fn an_account_is_refused_after_its_failures_and_freed_by_a_success() {
        let throttle = throttle();
        for _ in 0..3 {
            assert!(throttle.check("Ann@Example.com", None).await.is_ok());
            throttle.failed("ann@example.com ", None).await;
        }
        let wait = throttle.check("ann@example.com", None).await.unwrap_err();
        assert!(wait > Duration::from_secs(800) && wait <= Duration::from_secs(900));
        assert!(throttle.check("bob@example.com", None).await.is_ok());
        throttle.succeeded("ANN@example.com").await;
        assert!(throttle.check("ann@example.com", None).await.is_ok());
    }

    #[tokio::test]
    async fn an_address_is_refused_after_failures_on_many_accounts() {
        let throttle = throttle();
        let address: IpAddr = "203.0.113.9".parse().unwrap();
        for n in 0..5 {
            throttle
                .failed(&format!("user{n}@example.com"), Some(address))
                .await;
        }
        assert!(
            throttle
                .check("new@example.com", Some(address))
                .await
                .is_err()
        );
        assert!(throttle.check("new@example.com", None).await.is_ok());
        // An IPv6 client is one /64.
        let (a, b): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::ffff".parse().unwrap(),
        );
        for n in 0..5 {
            throttle
                .failed(&format!("v6-{n}@example.com"), Some(a))
                .await;
        }
        assert!(throttle.check("other@example.com", Some(b)).await.is_err());
    }
}
