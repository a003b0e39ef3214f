//! Accepting connections on one listener until shutdown, or until a reload removes or rebinds it.

use super::shared::{Bound, Live, stopped};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Accepts on `socket` and runs each connection as its own task, with the settings current when
/// it was accepted (the listener's own settings are looked up by `name`, so a reload that edits
/// them applies to the next connection). On shutdown, or when `stop` flips (the listener was
/// removed or rebound), it stops accepting and waits for its connections (the server bounds that
/// wait by the grace period on shutdown; dropping this future aborts the connections left).
pub(crate) async fn accept_loop(
    live: Arc<Live>,
    name: String,
    socket: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut shutdown = live.current.load().shutdown.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = live.current.load_full();
                    let Some(index) = shared.config.listeners.iter().position(|l| l.name == name) else {
                        // Removed by a reload a moment ago: this socket is about to close.
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    connections.spawn(super::connection::handle(shared, index, stream, peer));
                }
                Err(e) => {
                    // Typically EMFILE: back off briefly rather than spin.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(socket);
    tracing::info!(listener = %name, active = connections.len(), "listener closed");
    while connections.join_next().await.is_some() {}
}

impl Live {
    /// Starts accepting on a bound socket under `name`.
    pub(super) fn spawn_listener(
        self: &Arc<Self>,
        name: &str,
        configured: SocketAddr,
        socket: tokio::net::TcpListener,
    ) -> anyhow::Result<SocketAddr> {
        let bound = socket.local_addr()?;
        self.current.load().metrics.listener_started(name);
        let (stop, stop_rx) = watch::channel(false);
        self.tasks.lock().unwrap().spawn(accept_loop(
            self.clone(),
            name.to_string(),
            socket,
            stop_rx,
        ));
        let previous = self.listeners.lock().unwrap().insert(
            name.to_string(),
            Bound {
                configured,
                bound,
                stop,
            },
        );
        if let Some(previous) = previous {
            let _ = previous.stop.send(true);
        }
        Ok(bound)
    }
}
