//! The client side of the admin socket, for the CLI and tests.

use super::protocol::{Request, Response, socket_path};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Sends one request to the server whose state directory is `state_dir` and returns its answer.
pub async fn request(state_dir: &Path, request: Request) -> std::io::Result<Response> {
    let path = socket_path(state_dir);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot reach the server at {} ({e}); is `mailwit serve` running with this state directory?",
                path.display()
            ),
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(&request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.shutdown().await?;
    let mut reader = BufReader::new(read);
    let mut answer = Vec::new();
    reader.read_until(b'\n', &mut answer).await?;
    serde_json::from_slice(&answer).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad answer from the server: {e}"),
        )
    })
}
