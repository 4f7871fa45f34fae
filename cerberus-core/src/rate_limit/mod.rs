//! Rate limiting behind a trait, so that a shared store (Redis) can replace the in-memory limiter.
//!
//! A call is checked against several windows at once (per minute and per hour): it is admitted only if
//! every window admits it, and a refused call consumes nothing in any window, so that retries while one
//! window is exhausted do not spend another window's quota. Both implementations use GCRA with a burst
//! equal to the limit: `limit` calls may come at once, then one more every `period / limit`.

mod clock;
mod memory;

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;

pub use clock::{Clock, ManualClock, SystemClock};
pub use memory::MemoryRateLimiter;

/// One window a call is counted in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateLimitWindow {
    /// What is counted, for example an agent id and the window length.
    pub key: String,
    /// Calls allowed per period.
    pub limit: NonZeroU32,
    /// The period.
    pub period: Duration,
}

impl RateLimitWindow {
    /// The time between two calls at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.limit.get()
    }
}

/// Whether a call was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitDecision {
    /// Admitted and counted in every window.
    Allowed,
    /// Refused; nothing was counted.
    Denied {
        /// The index of the window that refused (the one that frees up last, if several did).
        window: usize,
        /// When every window will admit the call again.
        retry_after: Duration,
    },
}

/// The limiter could not decide (its backend is unreachable).
#[derive(Clone, Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct RateLimitError(#[source] pub crate::Cause);

/// Counts calls in windows.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Admits a call if every window has room, counting it in all of them; otherwise counts nothing.
    async fn acquire(
        &self,
        windows: &[RateLimitWindow],
    ) -> Result<RateLimitDecision, RateLimitError>;

    /// This limiter as one that decides without waiting, when it counts in this process; `None` (the
    /// default) for one that must be awaited (a shared store).
    fn local(&self) -> Option<&dyn LocalRateLimiter> {
        None
    }
}

/// A limiter that counts in this process, and so decides without waiting: the guardrail pipeline
/// then decides a rate limit in place instead of awaiting it.
pub trait LocalRateLimiter: Send + Sync {
    /// [`RateLimiter::acquire`], decided now.
    fn acquire_now(&self, windows: &[RateLimitWindow])
    -> Result<RateLimitDecision, RateLimitError>;
}
