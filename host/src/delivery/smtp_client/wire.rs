//! Commands out, replies in: bounded reads (pipelined replies are kept in a buffer), writes under
//! timeouts, and how broken sessions and peer replies become [`Failure`]s.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connection::{Connection, Failure};
use super::reply::{ReplyError, ServerReply, parse_reply};
use crate::policy::Reply;

/// Why a session broke; becomes a 4.4.x deferral.
#[derive(Debug)]
enum SessionError {
    Io(std::io::Error),
    Timeout,
    Closed,
    Garbled(ReplyError),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Io(e) => write!(f, "{e}"),
            SessionError::Timeout => f.write_str("timed out"),
            SessionError::Closed => f.write_str("connection closed by peer"),
            SessionError::Garbled(e) => write!(f, "garbled reply: {e}"),
        }
    }
}

impl Connection {
    /// A reply that ends the transaction. A 421 also ends the session.
    pub(super) fn broken_by(&mut self, reply: &ServerReply) -> Failure {
        if reply.code == 421 {
            self.usable = false;
        }
        let said = self.remote_said(reply);
        match said.code / 100 {
            5 => Failure::Permanent(said),
            4 => Failure::Transient(said),
            _ => {
                self.usable = false;
                Failure::Transient(Reply::new(
                    451,
                    "4.5.0",
                    format!("unexpected reply: {} {}", said.code, said.text),
                ))
            }
        }
    }

    /// The peer's reply as a [`Reply`], its text prefixed with who said it (for bounces and logs).
    pub(super) fn remote_said(&self, reply: &ServerReply) -> Reply {
        let mut r = reply.to_reply();
        r.text = format!("{} said: {}", self.remote, r.text);
        r
    }

    pub(super) async fn command(
        &mut self,
        line: &str,
        timeout: Duration,
        stage: &'static str,
    ) -> Result<ServerReply, Failure> {
        self.write(format!("{line}\r\n").as_bytes(), timeout)
            .await?;
        self.read(timeout, stage).await
    }

    pub(super) async fn write(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), Failure> {
        let io = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(timeout, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(SessionError::Io(e), "sending")),
            Err(_) => Err(self.lost(SessionError::Timeout, "sending")),
        }
    }

    /// Writes message data in blocks, each under the data-block timeout.
    pub(super) async fn write_blocks(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        for block in bytes.chunks(64 * 1024) {
            self.write(block, self.config.timeouts.data_block).await?;
        }
        Ok(())
    }

    /// Reads one complete reply. Replies already buffered (pipelining) are used first.
    pub(super) async fn read(
        &mut self,
        timeout: Duration,
        stage: &'static str,
    ) -> Result<ServerReply, Failure> {
        let io = async {
            loop {
                match parse_reply(&self.buffer) {
                    Ok((reply, used)) => {
                        self.buffer.drain(..used);
                        return Ok(reply);
                    }
                    Err(ReplyError::Incomplete) => {}
                    Err(e) => return Err(SessionError::Garbled(e)),
                }
                let mut chunk = [0u8; 4096];
                let n = self
                    .stream
                    .read(&mut chunk)
                    .await
                    .map_err(SessionError::Io)?;
                if n == 0 {
                    return Err(SessionError::Closed);
                }
                self.buffer.extend_from_slice(&chunk[..n]);
            }
        };
        match tokio::time::timeout(timeout, io).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(self.lost(e, stage)),
            Err(_) => Err(self.lost(SessionError::Timeout, stage)),
        }
    }

    fn lost(&mut self, error: SessionError, stage: &str) -> Failure {
        self.usable = false;
        Failure::Transient(Reply::new(
            421,
            "4.4.2",
            format!(
                "lost connection with {} while {stage}: {error}",
                self.remote
            ),
        ))
    }
}
