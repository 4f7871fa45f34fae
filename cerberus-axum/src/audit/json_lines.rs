//! Audit events as JSON lines, for files and SIEM shippers: written by a background task, never on the
//! request path.

use std::io::Write;
use std::path::Path;

use async_trait::async_trait;
use cerberus_core::audit::{AuditEvent, AuditSink};
use tokio::sync::{mpsc, oneshot};

/// How many events may wait for the writer; past that, `record` waits (nothing is dropped).
const QUEUE: usize = 4096;

/// What the writer thread is handed.
#[derive(Debug)]
enum Item {
    /// An event to write.
    Event(Box<AuditEvent>),
    /// Flush what is written so far, then say so.
    Flush(oneshot::Sender<()>),
}

/// Writes each audit event as one JSON line.
#[derive(Debug)]
pub struct JsonLinesAuditSink {
    sender: mpsc::Sender<Item>,
}

impl JsonLinesAuditSink {
    /// A sink writing to `writer` from a background thread.
    pub fn new(mut writer: Box<dyn Write + Send>) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Item>(QUEUE);
        std::thread::spawn(move || {
            while let Some(item) = receiver.blocking_recv() {
                let event = match item {
                    Item::Event(event) => event,
                    Item::Flush(done) => {
                        if let Err(e) = writer.flush() {
                            tracing::error!(error = %e, "cannot write the audit log");
                        }
                        let _ = done.send(());
                        continue;
                    }
                };
                let written = serde_json::to_writer(&mut writer, &event)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writer.write_all(b"\n"))
                    .and_then(|()| {
                        if receiver.is_empty() {
                            writer.flush()
                        } else {
                            Ok(())
                        }
                    });
                if let Err(e) = written {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
            }
            let _ = writer.flush();
        });
        Self { sender }
    }

    /// A sink appending to the file at `path`.
    pub fn append_to(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self::new(Box::new(std::io::BufWriter::new(file))))
    }
}

#[async_trait]
impl AuditSink for JsonLinesAuditSink {
    async fn record(&self, event: AuditEvent) {
        if self
            .sender
            .send(Item::Event(Box::new(event)))
            .await
            .is_err()
        {
            tracing::error!("the audit writer stopped; an event was lost");
        }
    }

    fn record_now(&self, event: AuditEvent) {
        if self.sender.try_send(Item::Event(Box::new(event))).is_err() {
            tracing::error!("the audit writer is full or stopped; an event was lost");
        }
    }

    /// The events waiting for the writer thread (a line being written is not counted).
    fn unwritten(&self) -> u64 {
        let queued = self.sender.max_capacity() - self.sender.capacity();
        u64::try_from(queued).unwrap_or(u64::MAX)
    }

    /// Waits until every event recorded before is written and flushed.
    async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Item::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}
