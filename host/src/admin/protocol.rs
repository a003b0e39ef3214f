//! What goes over the admin socket: its path, and the JSON-line requests and responses (the
//! server and the client both use this file, never `admin/mod.rs`).

use crate::queue::{DomainSummary, MessageView};
use crate::spool::QueueId;
use std::path::{Path, PathBuf};

/// The socket's path under the state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("admin.sock")
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Reload the configuration (plugins and pipelines).
    Reload,
    List,
    Show {
        id: QueueId,
    },
    /// Make deferred mail due now (all, or for one destination domain).
    Flush {
        #[serde(default)]
        domain: Option<String>,
    },
    Retry {
        id: QueueId,
    },
    Hold {
        id: QueueId,
    },
    Release {
        id: QueueId,
    },
    Remove {
        id: QueueId,
    },
    Summary,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok { message: String },
    Messages { messages: Vec<MessageView> },
    Message { message: Box<MessageView> },
    Summary { domains: Vec<DomainSummary> },
    Error { message: String },
}
