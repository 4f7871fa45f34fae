//! A circuit breaker: after a few failures in a row, stop asking the backend for a while, so that a
//! Redis outage costs each call nothing instead of a timeout.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Closed (calls go to the backend), open (they do not, until the cool-down ends), then half-open (one
/// call tries the backend; success closes the breaker, failure opens it again).
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl CircuitBreaker {
    /// A breaker that opens after `threshold` failures in a row and stays open for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
        }
    }

    /// Whether a call may try the backend now. While open, no; once the cool-down has passed, one
    /// caller gets to try (the breaker stays open for the others for another cool-down).
    pub fn allows(&self) -> bool {
        let Ok(mut open_until) = self.open_until.lock() else {
            return true;
        };
        match *open_until {
            None => true,
            Some(until) if Instant::now() >= until => {
                *open_until = Some(Instant::now() + self.cooldown);
                true
            }
            Some(_) => false,
        }
    }

    /// Whether the breaker is open (calls do not reach the backend).
    pub fn is_open(&self) -> bool {
        self.open_until.lock().is_ok_and(|o| o.is_some())
    }

    /// Notes a call that reached the backend; closes the breaker. Returns whether it was open.
    pub fn succeeded(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until
            .lock()
            .is_ok_and(|mut open_until| open_until.take().is_some())
    }

    /// Notes a call that failed; returns whether this failure opened the breaker.
    pub fn failed(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut open_until) = self.open_until.lock() else {
            return false;
        };
        let opens = failures >= self.threshold && open_until.is_none();
        if failures >= self.threshold {
            *open_until = Some(Instant::now() + self.cooldown);
        }
        opens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_lets_one_call_try_after_the_cooldown() {
        let breaker = CircuitBreaker::new(3, Duration::ZERO);
        assert!(breaker.allows());
        assert!(!breaker.failed());
        assert!(!breaker.failed());
        assert!(breaker.failed(), "the third failure opens it");
        assert!(breaker.is_open());
        // The cool-down is zero: the next call tries, and its success closes the breaker.
        assert!(breaker.allows());
        assert!(breaker.succeeded());
        assert!(!breaker.is_open());
        assert!(!breaker.succeeded());
    }

    #[test]
    fn stays_open_during_the_cooldown() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(3600));
        assert!(breaker.failed());
        assert!(!breaker.allows());
        assert!(!breaker.allows());
    }
}
