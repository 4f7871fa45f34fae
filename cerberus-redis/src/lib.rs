//! Distributed mode for Cerberus on Redis: a `RateLimiter` shared by every gateway instance, a shared
//! session store and cross-instance cache invalidation.
//!
//! This crate is laid down with the workspace; its implementations arrive with the distributed-mode work
//! (issue 6). It will implement `cerberus_core::rate_limit::RateLimiter` with the same semantics as
//! `cerberus_core::rate_limit::MemoryRateLimiter`: several windows checked atomically, nothing counted
//! on a refusal.
#![deny(missing_docs)]

pub use cerberus_core;
