//! Examples live beside this crate: `cargo run -p cerberus-examples --example NAME`.
