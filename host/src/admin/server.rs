//! Serves the admin socket.

use super::protocol::{Request, Response, socket_path};
use crate::queue::Queue;
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Reloads the configuration; returns a one-line report for the operator. Provided by the
/// plugin platform (so this module does not depend on it).
pub type ReloadFn = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<String>> + Send + Sync>;

/// A request line longer than this is refused (and the connection closed).
const MAX_REQUEST: usize = 64 * 1024;

/// The running admin socket; dropping it stops accepting and removes the socket file.
pub struct AdminServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Binds `<state>/admin.sock` (replacing a stale socket file, refusing if another server
    /// answers on it) and serves requests.
    pub async fn start(
        state_dir: &Path,
        queue: Option<Queue>,
        reload: Option<ReloadFn>,
    ) -> std::io::Result<AdminServer> {
        let path = socket_path(state_dir);
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let handler = Arc::new(Handler { queue, reload });
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let handler = handler.clone();
                        tokio::spawn(async move {
                            if let Err(e) = handler.serve(stream).await {
                                tracing::debug!(error = %e, "admin connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tracing::info!(socket = %path.display(), "admin socket listening");
        Ok(AdminServer { path, task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Handler {
    queue: Option<Queue>,
    reload: Option<ReloadFn>,
}

impl Handler {
    async fn serve(&self, stream: UnixStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_REQUEST as u64 + 1)
                .read_until(b'\n', &mut line)
                .await?;
            if n == 0 {
                return Ok(());
            }
            let too_long = line.len() > MAX_REQUEST;
            let response = if too_long {
                error("request too long")
            } else {
                match serde_json::from_slice::<Request>(&line) {
                    Ok(request) => self.handle(request).await,
                    Err(e) => error(format!("bad request: {e}")),
                }
            };
            let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
            out.push(b'\n');
            write.write_all(&out).await?;
            if too_long {
                return Ok(());
            }
        }
    }

    async fn handle(&self, request: Request) -> Response {
        if let Request::Reload = request {
            return match &self.reload {
                Some(reload) => match reload().await {
                    Ok(report) => Response::Ok { message: report },
                    Err(e) => error(format!("reload failed: {e:#}")),
                },
                None => error("reload is not available in this server"),
            };
        }
        let Some(queue) = &self.queue else {
            return error("no queue manager runs in this server");
        };
        let unknown = |id: &crate::spool::QueueId| error(format!("no message {id} in the queue"));
        match request {
            Request::Reload => unreachable!("handled above"),
            Request::List => Response::Messages {
                messages: queue.list(),
            },
            Request::Show { id } => match queue.show(&id) {
                Some(m) => Response::Message {
                    message: Box::new(m),
                },
                None => unknown(&id),
            },
            Request::Summary => Response::Summary {
                domains: queue.summary(),
            },
            Request::Flush { domain } => {
                let n = queue.flush(domain.as_deref());
                ok(format!("{n} messages flushed"))
            }
            Request::Retry { id } => match queue.retry(&id) {
                true => ok(format!("{id} scheduled for immediate retry")),
                false => unknown(&id),
            },
            Request::Hold { id } => match queue.hold(&id).await {
                Ok(true) => ok(format!("{id} held")),
                Ok(false) => unknown(&id),
                Err(e) => error(format!("cannot hold {id}: {e}")),
            },
            Request::Release { id } => match queue.release(&id).await {
                Ok(true) => ok(format!("{id} released")),
                Ok(false) => unknown(&id),
                Err(e) => error(format!("cannot release {id}: {e}")),
            },
            Request::Remove { id } => match queue.remove(&id).await {
                Ok(true) => ok(format!("{id} removed")),
                Ok(false) => unknown(&id),
                Err(e) => error(format!("cannot remove {id}: {e}")),
            },
        }
    }
}

fn ok(message: impl Into<String>) -> Response {
    Response::Ok {
        message: message.into(),
    }
}

fn error(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}
