//! A bounded queue in front of an [`AuditStore`], drained by one writer task in batches.
//!
//! The proxy only puts an event on the queue. The writer takes whatever is waiting (up to a batch) and
//! stores it in one transaction; when the store fails, it keeps that batch and tries again with a growing
//! pause, so a database that is slow or down holds records back instead of losing them. While it is
//! down the queue fills; then [`Overflow::Block`] (the default) makes the proxy wait for room, so nothing
//! is lost silently, and [`Overflow::Drop`] drops the new event, counts it and logs the loss.
//! [`AuditSink::flush`] stops taking events and waits until everything queued is stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cerberus_core::audit::{
    AuditEvent, AuditSink, AuditStore, DEFAULT_MAX_PAYLOAD_BYTES, PayloadMode, PayloadRedactor,
};
use cerberus_core::store::StoreError;
use cerberus_core::{Trace, TraceEntry};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, watch};

/// What to do with an event when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// The proxy waits for room: nothing is lost, calls slow down while the store is down.
    #[default]
    Block,
    /// The event is dropped, counted and logged: calls go on at full speed, records are lost.
    Drop,
}

/// The audit settings (`[audit]` in the configuration).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Whether to store every event in the control-plane database, when there is one.
    pub database: bool,
    /// How many events may wait for the writer.
    pub queue_capacity: usize,
    /// The most events stored in one transaction.
    pub batch_size: usize,
    /// What to do when the queue is full.
    pub overflow: Overflow,
    /// The longest pause between two attempts to store a batch, in milliseconds.
    pub max_retry_interval_ms: u64,
    /// How long the writer lets a batch gather after its first event, in milliseconds: under load, one
    /// transaction then stores many events instead of one.
    pub linger_ms: u64,
    /// Records older than this many days are deleted (checked hourly); 0 keeps them for ever.
    pub retention_days: u64,
    /// Which payloads records keep: `none` (the default) or `redacted` (every kind of personal data
    /// redacted, whatever the policy). Never raw.
    pub payloads: PayloadMode,
    /// The most bytes of a payload's JSON a record keeps; a longer one is kept as its first bytes,
    /// its length and its SHA-256.
    pub max_payload_bytes: usize,
}

impl AuditSettings {
    /// What makes the payloads these settings keep: `None` when they keep none.
    pub fn payload_redactor(&self) -> Option<PayloadRedactor> {
        PayloadRedactor::for_mode(self.payloads).map(|r| r.with_max_bytes(self.max_payload_bytes))
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            database: true,
            queue_capacity: 65_536,
            batch_size: 1000,
            overflow: Overflow::Block,
            max_retry_interval_ms: 5_000,
            linger_ms: 5,
            retention_days: 0,
            payloads: PayloadMode::None,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

/// Deletes records older than `retention_days` from `store`, and the answered approvals of held
/// calls with them (they are part of the same trail): now, then every hour, for as long as the
/// returned task runs.
pub fn spawn_retention(
    store: Arc<dyn cerberus_core::store::ControlStore>,
    retention_days: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    if retention_days == 0 {
        return None;
    }
    let keep = Duration::from_secs(retention_days.saturating_mul(24 * 3600));
    Some(tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            let Some(before) = std::time::SystemTime::now().checked_sub(keep) else {
                continue;
            };
            let deleted = [
                ("audit records", store.delete_audit_before(before).await),
                ("approvals", store.delete_approvals_before(before).await),
            ];
            for (what, deleted) in deleted {
                match deleted {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, retention_days, "old {what} deleted"),
                    Err(e) => {
                        tracing::warn!(error = %cerberus_core::with_causes(&e), "cannot delete old {what}; trying again in an hour")
                    }
                }
            }
        }
    }))
}

/// A sink that queues events for a batched writer.
#[derive(Debug)]
pub struct BatchedAuditSink {
    sender: mpsc::Sender<AuditEvent>,
    overflow: Overflow,
    dropped: Arc<AtomicU64>,
    /// Events put on the queue.
    accepted: AtomicU64,
    stored: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
    closing: watch::Sender<bool>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl BatchedAuditSink {
    /// Starts the writer task for `store`.
    pub fn start(store: Arc<dyn AuditStore>, settings: &AuditSettings) -> Self {
        let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let (closing, closed) = watch::channel(false);
        let stored = Arc::new(AtomicU64::new(0));
        let rejected = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            store,
            receiver,
            closed,
            batch_size: settings.batch_size.max(1),
            max_retry: Duration::from_millis(settings.max_retry_interval_ms.max(1)),
            linger: Duration::from_millis(settings.linger_ms),
            stored: Arc::clone(&stored),
            rejected: Arc::clone(&rejected),
        };
        Self {
            sender,
            overflow: settings.overflow,
            dropped: Arc::new(AtomicU64::new(0)),
            accepted: AtomicU64::new(0),
            stored,
            rejected,
            closing,
            writer: Mutex::new(Some(tokio::spawn(writer.run()))),
        }
    }

    /// How many events were dropped because the queue was full (with [`Overflow::Drop`]).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many events the store refused, even in their plain form: lost, each logged by its id.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// How many events have been stored.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// How many events wait for the writer.
    pub fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }
}

#[async_trait]
impl AuditSink for BatchedAuditSink {
    async fn record(&self, event: AuditEvent) {
        match self.overflow {
            Overflow::Block => match self.sender.send(event).await {
                Ok(()) => {
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => tracing::error!("the audit writer has stopped: an event was lost"),
            },
            Overflow::Drop => match self.sender.try_send(event) {
                Ok(()) => {
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let lost = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    // One line per power of two lost, not one per event.
                    if lost.is_power_of_two() {
                        tracing::error!(lost, "the audit queue is full: events are being dropped");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::error!("the audit writer has stopped: an event was lost");
                }
            },
        }
    }

    fn record_now(&self, event: AuditEvent) {
        match self.sender.try_send(event) {
            Ok(()) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!("the audit queue is full: an event was dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("the audit writer has stopped: an event was lost");
            }
        }
    }

    /// Queued or being stored: the events a crash would lose. During a database outage that is every
    /// event since it began, up to the queue's capacity plus one batch.
    fn unwritten(&self) -> u64 {
        let done = self.stored() + self.rejected();
        self.accepted.load(Ordering::Relaxed).saturating_sub(done)
    }

    async fn flush(&self) {
        let _ = self.closing.send(true);
        if let Some(writer) = self.writer.lock().await.take()
            && let Err(e) = writer.await
        {
            tracing::error!(error = %e, "the audit writer failed");
        }
    }
}

/// The writer task's state.
struct Writer {
    store: Arc<dyn AuditStore>,
    receiver: mpsc::Receiver<AuditEvent>,
    closed: watch::Receiver<bool>,
    batch_size: usize,
    max_retry: Duration,
    linger: Duration,
    stored: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
}

impl Writer {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            // Wait for events (taking all that wait, up to a batch), or for the order to close.
            let closing = tokio::select! {
                received = self.receiver.recv_many(&mut batch, self.batch_size) => {
                    if received == 0 {
                        return;
                    }
                    false
                }
                _ = self.closed.wait_for(|closed| *closed) => true,
            };
            if closing {
                // Take what is still queued, then stop once it is stored.
                self.receiver.close();
                while self.receiver.recv_many(&mut batch, self.batch_size).await > 0 {
                    self.store_batch(&mut batch).await;
                }
                return;
            }
            // Let the batch gather for a moment, unless it is full already. The writer sleeps rather than
            // waits on the queue, so events sent meanwhile do not wake it one by one.
            if batch.len() < self.batch_size && !self.linger.is_zero() {
                tokio::time::sleep(self.linger).await;
                while batch.len() < self.batch_size && !self.receiver.is_empty() {
                    let room = self.batch_size - batch.len();
                    self.receiver.recv_many(&mut batch, room).await;
                }
            }
            self.store_batch(&mut batch).await;
        }
    }

    /// Stores `batch`, then empties it.
    ///
    /// While the store is unavailable, the batch is tried again with a growing pause: nothing is
    /// lost. When the store refuses a batch for what it holds ([`StoreError::Rejected`]), the batch
    /// is split in halves until the events it refuses are found: the others are stored, and each
    /// refused one is stored once more in its plain form ([`plain`]), or else counted as rejected
    /// and logged by its id. A refused event never holds back the events behind it.
    async fn store_batch(&mut self, batch: &mut Vec<AuditEvent>) {
        let mut work = vec![std::mem::take(batch)];
        while let Some(mut events) = work.pop() {
            match self.store_until_answered(&events).await {
                Ok(()) => self.count_stored(events.len()),
                Err(_) if events.len() > 1 => {
                    let second = events.split_off(events.len() / 2);
                    work.push(second);
                    work.push(events);
                }
                Err(refusal) => {
                    let Some(event) = events.first() else {
                        continue;
                    };
                    match self.store_until_answered(&[plain(event)]).await {
                        Ok(()) => {
                            tracing::warn!(event = %event.id, error = %refusal, "the audit store refused an event; it was stored without its payload and texts");
                            self.count_stored(1);
                        }
                        Err(e) => {
                            self.rejected.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(event = %event.id, error = %e, "the audit store refused an event even in its plain form; it is lost");
                        }
                    }
                }
            }
        }
    }

    /// Appends `events`, trying again while the store is unavailable; the store's refusal, when it
    /// refuses them for what they hold.
    async fn store_until_answered(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut pause = Duration::from_millis(50);
        loop {
            match self.store.append(events).await {
                Ok(()) => return Ok(()),
                Err(refusal @ StoreError::Rejected(_)) => return Err(refusal),
                Err(e) => {
                    tracing::warn!(error = %e, events = events.len(), retry_in = ?pause, "cannot store audit events; holding them");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.max_retry);
                }
            }
        }
    }

    fn count_stored(&self, events: usize) {
        self.stored
            .fetch_add(u64::try_from(events).unwrap_or(0), Ordering::Relaxed);
    }
}

/// What is kept of an event its store refused: who, when, which way, the decision and the
/// guardrails' decisions, the sizes and times; not its payload, its reasons, nor any text that came
/// from the message (the method and target keep only their printable ASCII, the rest shown as `?`).
fn plain(event: &AuditEvent) -> AuditEvent {
    let printable = |text: &String| {
        text.chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect::<String>()
    };
    let mut trace = Trace::with_capacity(event.trace.len());
    for entry in event.trace.entries() {
        trace.push(TraceEntry::new(
            entry.guardrail.clone(),
            entry.level,
            entry.decision,
        ));
    }
    AuditEvent {
        jsonrpc_id: None,
        method: event.method.as_ref().map(printable),
        target: event.target.as_ref().map(printable),
        trace,
        payload: None,
        ..event.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::AtomicBool;
    use std::time::SystemTime;

    use cerberus_core::store::StoreError;
    use cerberus_core::{DecisionKind, Direction, Identity, Trace};

    use super::*;

    /// A store that can be switched off, refuses batches holding any of `refuse` in a method or a
    /// target (as PostgreSQL refuses a NUL), and remembers what it stored.
    #[derive(Debug, Default)]
    struct FlakyStore {
        down: AtomicBool,
        refuse: StdMutex<Vec<String>>,
        rows: StdMutex<Vec<AuditEvent>>,
        attempts: AtomicU64,
    }

    #[async_trait]
    impl AuditStore for FlakyStore {
        async fn append(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                return Err(StoreError::Unavailable(cerberus_core::Cause::message(
                    "down",
                )));
            }
            let refused = self.refuse.lock().unwrap().clone();
            let holds = |text: &Option<String>| {
                text.as_deref()
                    .is_some_and(|text| refused.iter().any(|r| text.contains(r.as_str())))
            };
            if events.iter().any(|e| holds(&e.method) || holds(&e.target)) {
                return Err(StoreError::Rejected(cerberus_core::Cause::message(
                    "invalid byte sequence for encoding \"UTF8\": 0x00",
                )));
            }
            self.rows.lock().unwrap().extend_from_slice(events);
            Ok(())
        }

        async fn audit_records(
            &self,
            _: cerberus_core::OrganisationId,
            _: &cerberus_core::audit::AuditFilter,
            _: Option<cerberus_core::audit::AuditCursor>,
            budget: cerberus_core::audit::RecordBudget,
        ) -> Result<cerberus_core::audit::RecordPage, StoreError> {
            let rows = self.rows.lock().unwrap();
            let limit = budget.records as usize;
            Ok(cerberus_core::audit::RecordPage {
                records: rows.iter().rev().take(limit).cloned().collect(),
                more: rows.len() > limit,
            })
        }

        async fn audit_analytics(
            &self,
            _: cerberus_core::OrganisationId,
            _: &cerberus_core::audit::AnalyticsQuery,
        ) -> Result<cerberus_core::audit::AuditAnalytics, StoreError> {
            Err(StoreError::Unavailable(cerberus_core::Cause::message(
                "not aggregated here",
            )))
        }

        async fn delete_audit_before(&self, before: SystemTime) -> Result<u64, StoreError> {
            let mut rows = self.rows.lock().unwrap();
            let kept = rows.len();
            rows.retain(|e| e.time >= before);
            Ok((kept - rows.len()) as u64)
        }
    }

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            id: uuid::Uuid::new_v4(),
            time: SystemTime::now(),
            identity: Identity::new_random(),
            key_prefix: None,
            session: None,
            jsonrpc_id: Some(n.to_string()),
            direction: Direction::Request,
            method: Some("tools/call".into()),
            target: None,
            decision: DecisionKind::Allow,
            trace: Trace::new(),
            size_bytes: 10,
            overhead_us: 1,
            upstream_status: None,
            upstream_us: None,
            payload: None,
        }
    }

    fn settings(capacity: usize, overflow: Overflow) -> AuditSettings {
        AuditSettings {
            database: true,
            queue_capacity: capacity,
            batch_size: 16,
            overflow,
            max_retry_interval_ms: 20,
            linger_ms: 1,
            retention_days: 0,
            ..AuditSettings::default()
        }
    }

    #[tokio::test]
    async fn everything_recorded_is_stored_in_order_by_the_flush() {
        let store = Arc::new(FlakyStore::default());
        let sink = BatchedAuditSink::start(store.clone(), &settings(8, Overflow::Block));
        for n in 0..100 {
            sink.record(event(n)).await;
        }
        sink.flush().await;
        let rows = store.rows.lock().unwrap();
        let ids: Vec<_> = rows.iter().map(|e| e.jsonrpc_id.clone().unwrap()).collect();
        assert_eq!(ids, (0..100).map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(sink.stored(), 100);
    }

    #[tokio::test]
    async fn a_store_that_is_down_holds_events_back_and_loses_none() {
        let store = Arc::new(FlakyStore::default());
        store.down.store(true, Ordering::Relaxed);
        let sink = Arc::new(BatchedAuditSink::start(
            store.clone(),
            &settings(4, Overflow::Block),
        ));
        let producer = {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                for n in 0..50 {
                    sink.record(event(n)).await;
                }
            })
        };
        // The writer keeps failing while the producer fills the queue and then waits for room.
        while store.attempts.load(Ordering::Relaxed) < 3 {
            tokio::task::yield_now().await;
        }
        assert!(!producer.is_finished(), "a full queue makes the proxy wait");
        // What a crash now would lose: the full queue (4) and the batch the writer holds (at most 16).
        let unwritten = sink.unwritten();
        assert!((5..=4 + 16).contains(&unwritten), "{unwritten}");
        store.down.store(false, Ordering::Relaxed);
        producer.await.unwrap();
        sink.flush().await;
        assert_eq!(store.rows.lock().unwrap().len(), 50);
        assert_eq!(sink.dropped(), 0);
        assert_eq!(sink.unwritten(), 0);
    }

    /// A shutdown that gives up on a store still down can say how many events it leaves behind.
    #[tokio::test]
    async fn a_flush_cut_short_by_an_outage_knows_what_it_leaves() {
        let store = Arc::new(FlakyStore::default());
        store.down.store(true, Ordering::Relaxed);
        let sink = BatchedAuditSink::start(store.clone(), &settings(16, Overflow::Block));
        for n in 0..10 {
            sink.record(event(n)).await;
        }
        let flush = tokio::time::timeout(Duration::from_millis(200), sink.flush()).await;
        assert!(
            flush.is_err(),
            "the store is down: the flush does not finish"
        );
        assert_eq!(sink.unwritten(), 10);
        assert_eq!(store.rows.lock().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn the_drop_setting_counts_what_it_loses() {
        let store = Arc::new(FlakyStore::default());
        store.down.store(true, Ordering::Relaxed);
        let sink = BatchedAuditSink::start(store.clone(), &settings(4, Overflow::Drop));
        for n in 0..50 {
            sink.record(event(n)).await;
        }
        store.down.store(false, Ordering::Relaxed);
        sink.flush().await;
        let kept = store.rows.lock().unwrap().len();
        assert_eq!(
            u64::try_from(kept).unwrap() + sink.dropped(),
            50,
            "every event is stored or counted as dropped"
        );
        assert!(sink.dropped() > 0);
    }

    #[tokio::test]
    async fn a_refused_event_is_stored_plain_or_counted_and_holds_nothing_back() {
        let store = Arc::new(FlakyStore::default());
        *store.refuse.lock().unwrap() = vec!["\0".into(), "never".into()];
        let sink = BatchedAuditSink::start(store.clone(), &settings(8, Overflow::Block));
        for n in 0..40 {
            let mut event = event(n);
            if n == 5 {
                event.method = Some("tools/\0call".into());
                event.payload = Some(serde_json::json!({"text": "kept nowhere"}));
            }
            if n == 20 {
                event.target = Some("never".into());
            }
            sink.record(event).await;
        }
        sink.flush().await;
        let rows = store.rows.lock().unwrap();
        assert_eq!((sink.stored(), sink.rejected()), (39, 1));
        let ids: Vec<String> = rows
            .iter()
            .map(|e| e.jsonrpc_id.clone().unwrap_or_else(|| "plain".into()))
            .collect();
        let expected: Vec<String> = (0..40)
            .filter(|n| *n != 20)
            .map(|n| {
                if n == 5 {
                    "plain".into()
                } else {
                    n.to_string()
                }
            })
            .collect();
        assert_eq!(ids, expected, "the rest is stored, in order");
        let plain = rows.iter().find(|e| e.jsonrpc_id.is_none()).unwrap();
        assert_eq!(plain.method.as_deref(), Some("tools/?call"));
        assert_eq!(plain.payload, None);
    }
}
