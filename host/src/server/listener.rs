//! Accepting connections on one listener until shutdown.

use super::Shared;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Accepts on `socket` and runs each connection as its own task. On shutdown it stops
/// accepting and waits for its connections (the server bounds that wait by the grace period;
/// dropping this future aborts the connections that are left).
pub async fn accept_loop(shared: Arc<Shared>, listener_index: usize, socket: TcpListener) {
    let mut connections = JoinSet::new();
    let mut shutdown = shared.shutdown.clone();
    let name = &shared.config.listeners[listener_index].name;
    loop {
        tokio::select! {
            _ = super::stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(super::connection::handle(
                        shared.clone(),
                        listener_index,
                        stream,
                        peer,
                    ));
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
