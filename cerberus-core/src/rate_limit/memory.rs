//! The in-memory limiter: GCRA state per key in one map, checked and updated under one short lock.
//!
//! governor's keyed limiter checks one quota at a time and cannot refund, so checking a minute and an
//! hour window with it would spend the minute quota on calls the hour window refuses. This limiter
//! applies GCRA to all windows of a call atomically, on an injected [`Clock`] (tests drive time with
//! [`ManualClock`](super::ManualClock)).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{
    Clock, LocalRateLimiter, RateLimitDecision, RateLimitError, RateLimitWindow, RateLimiter,
    SystemClock,
};
use async_trait::async_trait;

/// How many calls pass between sweeps of expired keys.
const SWEEP_EVERY: u64 = 4096;

/// GCRA in memory, for one gateway instance.
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use cerberus_core::rate_limit::{ManualClock, MemoryRateLimiter, RateLimitDecision, RateLimitWindow, RateLimiter};
///
/// let clock = ManualClock::new();
/// let limiter = MemoryRateLimiter::with_clock(clock.clone());
/// let minute = [RateLimitWindow { key: "agent".into(), limit: NonZeroU32::new(2).unwrap(), period: Duration::from_secs(60) }];
/// let acquire = || futures::executor::block_on(limiter.acquire(&minute)).unwrap();
/// assert_eq!(acquire(), RateLimitDecision::Allowed);
/// assert_eq!(acquire(), RateLimitDecision::Allowed);
/// assert_eq!(acquire(), RateLimitDecision::Denied { window: 0, retry_after: Duration::from_secs(30) });
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(acquire(), RateLimitDecision::Allowed);
/// ```
#[derive(Debug)]
pub struct MemoryRateLimiter<C: Clock = SystemClock> {
    clock: C,
    /// Theoretical arrival time of the next call per key, in nanoseconds of the clock.
    tats: Mutex<HashMap<String, u64, foldhash::fast::RandomState>>,
    calls: AtomicU64,
}

impl MemoryRateLimiter {
    /// A limiter on the monotonic system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock::default())
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> MemoryRateLimiter<C> {
    /// A limiter on `clock`.
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            tats: Mutex::new(HashMap::default()),
            calls: AtomicU64::new(0),
        }
    }

    /// The number of keys with state (expired keys are swept from time to time).
    pub fn tracked_keys(&self) -> usize {
        self.tats.lock().map_or(0, |tats| tats.len())
    }

    fn now_nanos(&self) -> u64 {
        nanos(self.clock.now())
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[async_trait]
impl<C: Clock> RateLimiter for MemoryRateLimiter<C> {
    async fn acquire(
        &self,
        windows: &[RateLimitWindow],
    ) -> Result<RateLimitDecision, RateLimitError> {
        self.acquire_now(windows)
    }

    fn local(&self) -> Option<&dyn LocalRateLimiter> {
        Some(self)
    }
}

impl<C: Clock> LocalRateLimiter for MemoryRateLimiter<C> {
    /// Decides and, when every window admits the call, records it.
    fn acquire_now(
        &self,
        windows: &[RateLimitWindow],
    ) -> Result<RateLimitDecision, RateLimitError> {
        let now = self.now_nanos();
        let mut tats = self.tats.lock().map_err(|_| {
            RateLimitError(crate::Cause::message(
                "the limiter's state was poisoned by a panic",
            ))
        })?;
        let mut new_tats = Vec::with_capacity(windows.len());
        let mut denied: Option<(usize, u64)> = None;
        for (index, window) in windows.iter().enumerate() {
            let period = nanos(window.period);
            let interval = nanos(window.emission_interval()).max(1);
            let tat = tats.get(&window.key).copied().unwrap_or(now).max(now);
            let new_tat = tat.saturating_add(interval);
            let allow_at = new_tat.saturating_sub(period);
            if allow_at > now {
                let wait = allow_at - now;
                if denied.is_none_or(|(_, longest)| wait > longest) {
                    denied = Some((index, wait));
                }
            } else {
                new_tats.push(new_tat);
            }
        }
        if let Some((window, wait)) = denied {
            return Ok(RateLimitDecision::Denied {
                window,
                retry_after: Duration::from_nanos(wait),
            });
        }
        for (window, tat) in windows.iter().zip(new_tats) {
            match tats.get_mut(&window.key) {
                Some(known) => *known = tat,
                None => {
                    tats.insert(window.key.clone(), tat);
                }
            }
        }
        if self.calls.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // A key whose TAT has passed holds no more than a fresh key: forget it.
            tats.retain(|_, tat| *tat > now);
        }
        Ok(RateLimitDecision::Allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::ManualClock;
    use std::num::NonZeroU32;
    use std::sync::Arc;

    fn window(key: &str, limit: u32, secs: u64) -> RateLimitWindow {
        RateLimitWindow {
            key: key.into(),
            limit: NonZeroU32::new(limit).unwrap(),
            period: Duration::from_secs(secs),
        }
    }

    fn limiter() -> (ManualClock, MemoryRateLimiter<ManualClock>) {
        let clock = ManualClock::new();
        (clock.clone(), MemoryRateLimiter::with_clock(clock))
    }

    fn admitted(
        limiter: &MemoryRateLimiter<ManualClock>,
        windows: &[RateLimitWindow],
        n: usize,
    ) -> usize {
        (0..n)
            .filter(|_| limiter.acquire_now(windows).unwrap() == RateLimitDecision::Allowed)
            .count()
    }

    #[test]
    fn admits_a_burst_of_limit_then_one_per_interval() {
        let (clock, limiter) = limiter();
        let w = [window("a", 60, 60)];
        assert_eq!(admitted(&limiter, &w, 100), 60);
        clock.advance(Duration::from_millis(999));
        assert_eq!(admitted(&limiter, &w, 10), 0, "not yet one interval");
        clock.advance(Duration::from_millis(1));
        assert_eq!(admitted(&limiter, &w, 10), 1);
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            admitted(&limiter, &w, 100),
            60,
            "a full period restores the full burst"
        );
    }

    #[test]
    fn retry_after_is_exactly_when_the_next_call_passes() {
        let (clock, limiter) = limiter();
        let w = [window("a", 3, 60)];
        assert_eq!(admitted(&limiter, &w, 3), 3);
        let RateLimitDecision::Denied { retry_after, .. } = limiter.acquire_now(&w).unwrap() else {
            panic!()
        };
        assert_eq!(retry_after, Duration::from_secs(20));
        clock.advance(retry_after - Duration::from_nanos(1));
        assert!(matches!(
            limiter.acquire_now(&w).unwrap(),
            RateLimitDecision::Denied { .. }
        ));
        clock.advance(Duration::from_nanos(1));
        assert_eq!(limiter.acquire_now(&w).unwrap(), RateLimitDecision::Allowed);
    }

    #[test]
    fn a_denial_spends_nothing_in_any_window() {
        let (clock, limiter) = limiter();
        let both = [window("m", 10, 60), window("h", 3, 3600)];
        assert_eq!(admitted(&limiter, &both, 3), 3);
        // The hour window is exhausted: a thousand refused retries must not touch the minute window.
        assert_eq!(admitted(&limiter, &both, 1000), 0);
        let RateLimitDecision::Denied {
            window: refusing,
            retry_after,
        } = limiter.acquire_now(&both).unwrap()
        else {
            panic!()
        };
        assert_eq!(refusing, 1);
        assert_eq!(retry_after, Duration::from_secs(1200));
        // The minute window was charged for the three admitted calls only: seven of its ten remain.
        assert_eq!(admitted(&limiter, &[window("m", 10, 60)], 100), 7);
        clock.advance(retry_after);
        assert_eq!(
            admitted(&limiter, &both, 2),
            1,
            "the retry hint is enough for every window"
        );
    }

    #[test]
    fn keys_are_independent() {
        let (_, limiter) = limiter();
        assert_eq!(admitted(&limiter, &[window("a", 2, 60)], 5), 2);
        assert_eq!(admitted(&limiter, &[window("b", 2, 60)], 5), 2);
    }

    #[test]
    fn expired_keys_are_swept() {
        let (clock, limiter) = limiter();
        for i in 0..SWEEP_EVERY - 1 {
            limiter
                .acquire_now(&[window(&format!("k{i}"), 1, 1)])
                .unwrap();
        }
        assert_eq!(limiter.tracked_keys(), (SWEEP_EVERY - 1) as usize);
        clock.advance(Duration::from_secs(2));
        limiter.acquire_now(&[window("last", 1, 1)]).unwrap();
        assert!(limiter.tracked_keys() <= 1);
    }

    #[test]
    fn concurrent_callers_never_exceed_the_limit() {
        let limiter = Arc::new(MemoryRateLimiter::with_clock(ManualClock::new()));
        let w = [window("shared", 500, 60)];
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                let w = w.clone();
                std::thread::spawn(move || {
                    (0..200)
                        .filter(|_| limiter.acquire_now(&w).unwrap() == RateLimitDecision::Allowed)
                        .count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 500);
    }
}
