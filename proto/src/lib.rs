//! The controller-agent contract: the protocol (types and tonic client/server
//! generated from `proto/volley.proto` at build time) and the rules both sides
//! apply to what travels in it.
//!
//! Both sides check [`PROTOCOL_VERSION`]: an agent refuses a plan from another
//! version, and the controller refuses an agent that describes another.
//!
//! # Layout
//!
//! - [`v1`] (re-exported here): the generated messages and services.
//! - [`target`]: which target URLs a plan may name, and their parts.
//! - [`limits`]: the most a plan may ask (connections, threads, rate, time...).
//! - [`auth`]: the shared [`Token`](auth::Token) that lets a caller command an agent.
//! - [`tls`]: the checks on an `https://` target's name and extra CA.
//! - [`source`]: lists of source addresses (`--source-addr`, `--allow-source`).
//! - [`connect_to`]: `--connect-to HOST:PORT:ADDR:PORT` entries.

pub mod auth;
pub mod connect_to;
pub mod limits;
pub mod profile;
pub mod source;
pub mod target;
pub mod tls;

/// Bumped on every incompatible change of `volley.proto`.
pub const PROTOCOL_VERSION: u32 = 3;

/// Generated code of package `volley.v1`.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("volley.v1");
}

pub use v1::*;
