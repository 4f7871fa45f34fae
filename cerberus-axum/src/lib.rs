//! The reference Cerberus gateway: the `cerberus` command and the pieces it is built from.
//!
//! [`proxy`] is the governance plane (the MCP proxy), [`gateway`] its shared state, [`directory`] the
//! key lookup (configuration file and database), [`admin`] the control plane's REST API, [`config`] the
//! configuration file, [`auth`] agent keys, [`check`] the dry run for policy authors.
#![deny(missing_docs)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod check;
pub mod cli;
pub mod config;
pub mod directory;
pub mod distributed;
pub mod gateway;
pub mod health;
pub mod layer;
pub mod metrics;
pub mod proxy;
pub mod serve;
pub mod stdio_wrapper;
