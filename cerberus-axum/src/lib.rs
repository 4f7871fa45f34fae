#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod layer;
mod relay;
pub mod sse;
pub mod wire;

#[cfg(feature = "gateway")]
pub mod asking;
#[cfg(feature = "gateway")]
pub mod auth;
#[cfg(feature = "gateway")]
pub mod config;
#[cfg(feature = "gateway")]
pub mod directory;
#[cfg(feature = "gateway")]
pub mod egress;
#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "gateway")]
pub mod health;
#[cfg(feature = "gateway")]
pub mod listener;
#[cfg(feature = "gateway")]
pub mod metrics;
#[cfg(feature = "gateway")]
pub mod proxy;
#[cfg(feature = "gateway")]
pub mod serve;
#[cfg(feature = "gateway")]
pub mod telemetry;
#[cfg(feature = "gateway")]
pub mod upstream;
#[cfg(feature = "gateway")]
pub mod upstream_client;
#[cfg(feature = "gateway")]
pub mod webhook;

#[cfg(feature = "control-plane")]
pub mod admin;
#[cfg(feature = "control-plane")]
pub mod approvals;
#[cfg(feature = "control-plane")]
pub mod control_plane;

#[cfg(feature = "redis")]
pub mod distributed;
#[cfg(any(feature = "control-plane", feature = "oauth"))]
mod jose;
#[cfg(feature = "oauth")]
pub mod oauth;

#[cfg(any(feature = "cli", feature = "control-plane"))]
pub mod check;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod stdio_wrapper;
