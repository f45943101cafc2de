//! The signal that stops a server: Ctrl-C or SIGTERM (how deployments stop
//! us), whichever comes first.
//!
//! The handlers are installed when [`shutdown_signal`] is called, not when the
//! future is first polled: a server that prints its ready line after calling
//! it is stopped gracefully by a SIGTERM sent the moment that line is read,
//! rather than killed by the default action.

use std::future::Future;

/// Installs the Ctrl-C and SIGTERM handlers now; the future completes when
/// either arrives. Call it inside a Tokio runtime (the handlers need its I/O
/// driver).
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        // Should Ctrl-C handling fail, waiting for ever is the safe answer:
        // the server keeps serving until it is killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_on_sigterm_sent_after_install() {
        let signal = shutdown_signal().unwrap();
        // The handler is in place before the signal is sent, so SIGTERM is
        // caught rather than ending the test process.
        std::process::Command::new("kill").args(["-TERM", &std::process::id().to_string()]).status().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), signal).await.expect("SIGTERM seen");
    }
}
