//! Agents (and, for the demo, a target-server) running inside the controller's
//! process: the same gRPC service and engine as the `agent` binary, on a free
//! loopback port, so one machine needs nothing else.

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;

/// An agent serving gRPC on a loopback port of this process.
#[derive(Debug)]
pub struct EmbeddedAgent {
    /// Its address, `127.0.0.1:PORT`.
    pub address: String,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EmbeddedAgent {
    /// Starts an agent with `threads` worker threads on a free loopback port.
    pub async fn start(threads: usize) -> Result<EmbeddedAgent, Error> {
        Self::start_with_io(threads, agent::uring::IoChoice::Epoll).await
    }

    /// The same, its plain HTTP/1.1 runs on the I/O engine `io` resolves to
    /// (`controller run --io`); `uring` where io_uring is not allowed is an error.
    pub async fn start_with_io(threads: usize, io: agent::uring::IoChoice) -> Result<EmbeddedAgent, Error> {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| Error::start("the embedded agent", e))?;
        let address = listener.local_addr().map_err(|e| Error::start("the embedded agent", e))?.to_string();
        let (shutdown, rx) = oneshot::channel();
        // The listener is already bound, so clients can connect at once: no
        // readiness wait is needed.
        let mut config = agent::ServeConfig::plain(threads);
        config.io = agent::uring::resolve(io).map_err(Error::Unservable)?;
        // Like the `agent` binary: a plan needing more descriptors than the
        // process may open is refused before any load (the binary raised its
        // soft limit to the hard one at start; this only reads it again).
        config.limits.open_files = agent::listen::raise_open_files();
        // Whoever runs the controller here may use this host's addresses.
        config.limits.allow_source = volley_proto::source::SourceAddrs::any();
        let task = tokio::spawn(agent::serve(listener, config, async {
            let _ = rx.await;
        }));
        Ok(EmbeddedAgent { address, shutdown, task })
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!("embedded agent stopped with an error: {e}");
        }
    }
}
