//! The controller-agent protocol: types and tonic client/server generated from
//! `proto/volley.proto` at build time.
//!
//! Both sides check [`PROTOCOL_VERSION`]: an agent refuses a plan from another
//! version, and the controller refuses an agent that describes another.

/// Bumped on every incompatible change of `volley.proto`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Generated code of package `volley.v1`.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("volley.v1");
}

pub use v1::*;
