//! The reference Cerberus gateway: the `cerberus` command and the pieces it is built from.
//!
//! So far: [`check`], the dry run that shows policy authors what a policy does to a message.
#![deny(missing_docs)]

pub mod check;
pub mod cli;
