//! Where the proxy's audit events go: a database through a bounded queue and a batched writer
//! ([`BatchedAuditSink`]), JSON lines to a file or standard output ([`JsonLinesAuditSink`]), or several at
//! once (`cerberus_core::audit::FanoutAuditSink`). None of them writes on the request path.

#[cfg(feature = "gateway")]
mod batched;
mod json_lines;

#[cfg(feature = "gateway")]
pub use batched::{AuditSettings, BatchedAuditSink, Overflow, spawn_retention};
pub use json_lines::JsonLinesAuditSink;
