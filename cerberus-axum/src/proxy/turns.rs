//! Turns for large messages, so that one agent's large calls cannot take every core from the others.
//!
//! Scanning a message costs time in proportion to its size (a few milliseconds a megabyte on hostile
//! text), on the runtime's worker threads. An agent that sends many large messages at once would keep
//! every worker busy with them while other agents' small calls wait their turn behind. So a message of
//! [`LARGE`] bytes or more is parsed and governed only in its agent's turn: one at a time per agent,
//! waiting without holding a thread. Other agents, and the same agent's small messages, never wait for
//! it. The same holds for an upstream's large JSON answers, governed in the turn of the agent that
//! called (a tenant sets its upstream); an SSE answer's events are governed as they come, each within
//! the 16 MiB an event may have. `scripts/fairness-benchmark` measures the effect
//! (`docs/benchmarks.md`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cerberus_core::Identity;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The size from which a message waits for its agent's turn.
pub const LARGE: usize = 256 * 1024;
/// How many agents' turns are kept before those nobody holds are forgotten.
const KEPT: usize = 1024;

/// Each agent's turn for large messages.
#[derive(Debug, Default)]
pub struct LargeMessageTurns {
    turns: Mutex<HashMap<Identity, Arc<Semaphore>>>,
}

/// An agent's turn: its next large message waits until this is dropped.
#[derive(Debug)]
pub struct Turn(#[allow(dead_code, reason = "held for its drop")] OwnedSemaphorePermit);

impl LargeMessageTurns {
    /// Waits for `agent`'s turn when a message of `bytes` is large; `None` (at once) when it is not.
    pub async fn take(&self, agent: Identity, bytes: usize) -> Option<Turn> {
        if bytes < LARGE {
            return None;
        }
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            if turns.len() >= KEPT {
                turns.retain(|_, turn| Arc::strong_count(turn) > 1);
            }
            Arc::clone(
                turns
                    .entry(agent)
                    .or_insert_with(|| Arc::new(Semaphore::new(1))),
            )
        };
        // The semaphore is never closed.
        turn.acquire_owned().await.ok().map(Turn)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cerberus_core::AgentId;

    use super::*;

    fn agent(name: &str) -> Identity {
        Identity::standalone(AgentId::from_name(name))
    }

    #[tokio::test(start_paused = true)]
    async fn large_messages_take_turns_per_agent_and_small_ones_never_wait() {
        let turns = Arc::new(LargeMessageTurns::default());
        assert!(turns.take(agent("a"), LARGE - 1).await.is_none(), "small");
        let first = turns.take(agent("a"), LARGE).await.unwrap();

        // Another agent's large message, and this agent's small ones, go at once.
        let other = turns.take(agent("b"), 10 * LARGE).await;
        assert!(other.is_some());
        assert!(turns.take(agent("a"), 100).await.is_none());

        // This agent's next large message waits for the first to be done.
        let second = tokio::spawn({
            let turns = Arc::clone(&turns);
            async move {
                let start = tokio::time::Instant::now();
                let turn = turns.take(agent("a"), LARGE).await;
                (turn.is_some(), start.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(first);
        let (got, waited) = second.await.unwrap();
        assert!(got);
        assert_eq!(waited, Duration::from_secs(3));
    }

    #[tokio::test]
    async fn turns_nobody_holds_are_forgotten() {
        let turns = LargeMessageTurns::default();
        for n in 0..(KEPT + 10) {
            drop(turns.take(agent(&n.to_string()), LARGE).await);
        }
        let kept = turns.turns.lock().unwrap().len();
        assert!(kept <= KEPT, "{kept}");
    }
}
