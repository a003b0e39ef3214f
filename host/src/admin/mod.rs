//! The local admin socket: `<state>/admin.sock`, a Unix stream socket speaking JSON lines (one
//! [`Request`] per line in, one [`Response`] per line out). Only the socket file's permissions
//! (0600, the server's user) guard it.
//!
//! - [`server`]: serves requests against the running queue and the reload callback.
//! - [`client`]: `request(state_dir, Request) -> Response`, used by the CLI.
//! - [`cli`]: the clap definitions of `mailwit queue …` and `mailwit reload`.
//!
//! Example: `{"command":"flush","domain":"example.org"}` -> `{"result":"ok","message":"2 messages flushed"}`.

pub mod cli;
pub mod client;
pub mod server;

use crate::queue::{DomainSummary, MessageView};
use crate::spool::QueueId;
use std::path::{Path, PathBuf};

pub use server::{AdminServer, ReloadFn};

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
