//! Storage for the Cerberus control plane and audit log, through `sqlx`: SQLite as the embedded default,
//! PostgreSQL for production.
//!
//! This crate is laid down with the workspace; its storage traits and backends arrive with the
//! control-plane work (issue 4). Until then it only names its place in the architecture: it depends on
//! `cerberus-core`, never the other way round.
#![deny(missing_docs)]

pub use cerberus_core;
