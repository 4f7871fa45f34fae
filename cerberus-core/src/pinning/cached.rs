//! Pin statuses kept for a moment in front of a shared store: a `tools/call` under `enforce` reads
//! one pin's status, and a round trip to the database for each call would cost more than the rest
//! of the pipeline together (`benches/tool_pinning.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Approval, PinStatus, PinStore, ToolDefinition, ToolPin};
use crate::identity::{OrganisationId, WorkspaceId};
use crate::store::StoreError;

/// A tool of a workspace.
type Key = (OrganisationId, WorkspaceId, String);

/// A [`PinStore`] that remembers each tool's status for `ttl` after reading it.
///
/// What this instance records or approves drops the workspace's remembered statuses at once; what
/// another instance does is seen within `ttl`, as keys and policies are (`database.cache_ttl_ms`).
/// At most `capacity` statuses are kept: past it, the oldest half is forgotten.
#[derive(Debug)]
pub struct CachedPinStore {
    inner: Arc<dyn PinStore>,
    ttl: Duration,
    capacity: usize,
    statuses: Mutex<HashMap<Key, (Option<PinStatus>, Instant)>>,
    /// Moved by every forgetting: a status read while it moved may be older than the change that
    /// moved it, and is not remembered.
    generation: AtomicU64,
}

impl CachedPinStore {
    /// `inner`, its statuses remembered for `ttl`, at most `capacity` of them.
    pub fn new(inner: Arc<dyn PinStore>, ttl: Duration, capacity: usize) -> Self {
        Self {
            inner,
            ttl,
            capacity: capacity.max(1),
            statuses: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Forgets every remembered status: what an admin's change through another path (the admin
    /// API over the store itself) calls for.
    pub fn clear(&self) {
        self.forget_where(|_| true);
    }

    fn forget(&self, organisation: OrganisationId, workspace: WorkspaceId) {
        self.forget_where(|(o, w, _)| (*o, *w) == (organisation, workspace));
    }

    /// Forgets the statuses whose key `forgotten` picks, and moves the generation.
    fn forget_where(&self, mut forgotten: impl FnMut(&Key) -> bool) {
        if let Ok(mut statuses) = self.statuses.lock() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            statuses.retain(|key, _| !forgotten(key));
        }
    }
}

#[async_trait]
impl PinStore for CachedPinStore {
    async fn record_listing(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        definitions: &[ToolDefinition],
        complete: bool,
    ) -> Result<Vec<PinStatus>, StoreError> {
        let statuses = self
            .inner
            .record_listing(organisation, workspace, definitions, complete)
            .await;
        self.forget(organisation, workspace);
        statuses
    }

    async fn pin(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        tool: &str,
    ) -> Result<Option<ToolPin>, StoreError> {
        self.inner.pin(organisation, workspace, tool).await
    }

    async fn status(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        tool: &str,
    ) -> Result<Option<PinStatus>, StoreError> {
        let key = (organisation, workspace, tool.to_owned());
        let now = Instant::now();
        if let Ok(statuses) = self.statuses.lock()
            && let Some((status, read)) = statuses.get(&key)
            && now.duration_since(*read) < self.ttl
        {
            return Ok(*status);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let status = self.inner.status(organisation, workspace, tool).await?;
        if let Ok(mut statuses) = self.statuses.lock()
            && self.generation.load(Ordering::SeqCst) == generation
        {
            if statuses.len() >= self.capacity {
                let mut ages: Vec<Instant> = statuses.values().map(|(_, read)| *read).collect();
                ages.sort_unstable();
                if let Some(median) = ages.get(ages.len() / 2).copied() {
                    statuses.retain(|_, (_, read)| *read > median);
                }
            }
            statuses.insert(key, (status, now));
        }
        Ok(status)
    }

    async fn pins(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
    ) -> Result<Vec<ToolPin>, StoreError> {
        self.inner.pins(organisation, workspace).await
    }

    async fn approve(
        &self,
        organisation: OrganisationId,
        workspace: WorkspaceId,
        tool: &str,
        fingerprint: &str,
        approved_by: &str,
    ) -> Result<Approval, StoreError> {
        let approval = self
            .inner
            .approve(organisation, workspace, tool, fingerprint, approved_by)
            .await;
        self.forget(organisation, workspace);
        approval
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Identity;
    use crate::pinning::MemoryPinStore;

    fn tool(description: &str) -> ToolDefinition {
        ToolDefinition::from_tool(&json!({"name": "search", "description": description})).unwrap()
    }

    #[test]
    fn a_status_is_remembered_until_this_instance_records_a_change_or_the_ttl_ends() {
        futures::executor::block_on(async {
            let shared = Arc::new(MemoryPinStore::new());
            let here = CachedPinStore::new(shared.clone(), Duration::from_secs(3600), 100);
            let (org, ws) = Identity::STANDALONE;
            here.record_listing(org, ws, &[tool("A")], true)
                .await
                .unwrap();
            assert_eq!(
                here.status(org, ws, "search").await.unwrap(),
                Some(PinStatus::Approved)
            );
            // Another instance sees a change: this one keeps its answer for the TTL.
            shared
                .record_listing(org, ws, &[tool("B")], true)
                .await
                .unwrap();
            assert_eq!(
                here.status(org, ws, "search").await.unwrap(),
                Some(PinStatus::Approved)
            );
            // This instance sees it: at once.
            here.record_listing(org, ws, &[tool("B")], true)
                .await
                .unwrap();
            assert_eq!(
                here.status(org, ws, "search").await.unwrap(),
                Some(PinStatus::Changed)
            );
            here.approve(org, ws, "search", tool("B").fingerprint(), "u")
                .await
                .unwrap();
            assert_eq!(
                here.status(org, ws, "search").await.unwrap(),
                Some(PinStatus::Approved)
            );
            let fresh = CachedPinStore::new(shared.clone(), Duration::ZERO, 100);
            shared
                .record_listing(org, ws, &[tool("C")], true)
                .await
                .unwrap();
            assert_eq!(
                fresh.status(org, ws, "search").await.unwrap(),
                Some(PinStatus::Changed)
            );
        });
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        futures::executor::block_on(async {
            let here =
                CachedPinStore::new(Arc::new(MemoryPinStore::new()), Duration::from_secs(60), 10);
            let (org, ws) = Identity::STANDALONE;
            for i in 0..100 {
                here.status(org, ws, &format!("t{i}")).await.unwrap();
            }
            assert!(here.statuses.lock().unwrap().len() <= 10);
        });
    }
}
