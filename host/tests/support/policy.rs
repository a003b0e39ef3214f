//! Policy-seam values the plugin tests hand to hooks directly (no SMTP session behind them).

use mailwit::policy::{ListenerRole, SessionInfo};

/// An unauthenticated plaintext session on an mx listener, from 127.0.0.1:40000.
pub fn mx_session(id: &str) -> SessionInfo {
    SessionInfo {
        id: id.into(),
        listener: "mx".into(),
        role: ListenerRole::Mx,
        client: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:25".parse().unwrap(),
        helo: Some("client.example.test".into()),
        tls: None,
        authenticated: None,
    }
}
