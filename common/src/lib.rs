//! Small pieces every Volley binary needs, written once: the duration syntax
//! of flags, files and the API ([`parse_duration`]), the signal that stops a
//! server ([`shutdown_signal`]), and a lock that survives a panic elsewhere
//! ([`lock`]).
//!
//! # Layout
//!
//! - [`duration`]: `500ms`, `10s`, `2m` and why one is refused.
//! - [`file`]: reading a named file with a size limit, regular files only.
//! - [`shutdown`]: Ctrl-C or SIGTERM as one future.
//! - [`sync`]: a poisoned mutex is still usable.

#![forbid(unsafe_code)]

pub mod duration;
pub mod file;
pub mod shutdown;
pub mod sync;

pub use duration::{DurationError, parse_duration, parse_nonzero_duration};
pub use shutdown::shutdown_signal;
pub use sync::lock;
