//! Cache invalidation across instances: an instance whose admin API changed a key, an agent or a
//! policy publishes one message, and every instance (itself included) drops its cached answers.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;

/// Publishes and receives invalidations on one Redis channel.
#[derive(Debug, Clone)]
pub struct Invalidations {
    client: redis::Client,
    connection: ConnectionManager,
    channel: String,
}

impl Invalidations {
    /// Invalidations on the channel `{prefix}invalidate`.
    pub fn new(client: redis::Client, connection: ConnectionManager, prefix: &str) -> Self {
        Self {
            client,
            connection,
            channel: format!("{prefix}invalidate"),
        }
    }

    /// Tells every instance to drop its caches.
    pub async fn publish(&self) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg("all")
            .query_async::<i64>(&mut connection)
            .await
            .map(drop)
    }

    /// Calls `invalidate` for every invalidation published, for as long as the returned task runs.
    /// Messages published while the subscription is down are lost, so `invalidate` is also called
    /// each time the subscription is (re)established: a cache that may have missed a message is
    /// dropped rather than trusted.
    pub fn subscribe(
        &self,
        invalidate: Arc<dyn Fn() + Send + Sync>,
    ) -> tokio::task::JoinHandle<()> {
        let (client, channel) = (self.client.clone(), self.channel.clone());
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            let mut connected = false;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            if connected {
                                tracing::info!("subscribed to cache invalidations again");
                            }
                            connected = true;
                            pause = Duration::from_millis(100);
                            invalidate();
                            let mut messages = pubsub.on_message();
                            while messages.next().await.is_some() {
                                invalidate();
                            }
                            tracing::warn!(
                                "the cache invalidation subscription ended; resubscribing"
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot subscribe to cache invalidations")
                        }
                    },
                    Err(e) => {
                        if connected || pause == Duration::from_millis(100) {
                            tracing::warn!(error = %e, "cannot reach Redis for cache invalidations");
                        }
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        })
    }
}
