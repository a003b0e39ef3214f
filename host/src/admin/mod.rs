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
mod protocol;
pub mod server;

pub use protocol::{Request, Response, socket_path};
pub use server::{AdminServer, ReloadFn};
