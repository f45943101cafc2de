//! Volley's test kit: the pieces every crate's tests share, so that tests
//! read as sentences and no crate keeps its own copy of a helper.
//!
//! - [`ca`]: a throwaway certificate authority and the leaf certificates it signs.
//! - [`process`]: a binary started and read until its ready line, killed on drop.
//! - [`bins`]: where the workspace's binaries are, for tests of another crate.
//! - [`agents`]: real `agent` processes, and agents in-process through [`agent::serve`].
//! - [`target`]: target-servers, in-process or as the binary, and their counts.
//! - [`http`]: one raw HTTP/1.1 client, so tests see exactly what goes over the wire.
//! - [`controller`]: the real `controller` binary, and [`Run`] to say what a run is.
//! - [`wait`]: polling for an outcome with a deadline.
//! - [`proxy`]: a TCP proxy that delays, and can cut, a controller–agent link.
//! - [`netns`]: several hosts on one machine (network namespaces on a bridge),
//!   and a hosts file only the controller sees.
//!
//! Everything here panics with a message on failure: it is test code.

pub mod agents;
pub mod bins;
pub mod ca;
pub mod controller;
pub mod http;
pub mod netns;
pub mod process;
pub mod proxy;
pub mod target;
pub mod wait;

pub use agents::{
    InProcessAgent, agent_bin, in_process_agent, spawn_agent, spawn_agent_on, spawn_agent_with_open_files,
};
pub use ca::{Leaf, PemDir, TestCa};
pub use controller::{
    Run, Running, agent_row, controller, controller_bin, example_scenario, json_report, spawn_controller,
    spawn_controller_command, spawn_serve, stderr, stdout,
};
pub use http::{Client, Response, http, http_json};
pub use process::{Address, Proc, ready_address, signal, spawn_ready};
pub use proxy::{Proxy, delay_proxy};
pub use target::{served_at_least, spawn_target, target, target_server_bin, target_tls};
pub use wait::within;
