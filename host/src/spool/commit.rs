//! Group commit: one thread renames every fsynced temp file waiting at that moment into place,
//! fsyncs the spool directory once for the whole batch, then completes all of the batch's waiters.

use super::{Counters, fsync_dir};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use tokio::sync::oneshot;

struct Pending {
    tmp: PathBuf,
    fin: PathBuf,
    done: oneshot::Sender<std::io::Result<()>>,
}

pub(super) struct Committer {
    tx: std_mpsc::Sender<Pending>,
}

impl Committer {
    /// Starts the committer thread; it ends when the `Committer` (the spool) is dropped.
    pub(super) fn start(dir: PathBuf, counters: Arc<Counters>) -> std::io::Result<Committer> {
        let (tx, rx) = std_mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || run(dir, rx, counters))?;
        Ok(Committer { tx })
    }

    /// Renames `tmp` (already written and fsynced) to `fin` and returns once the directory entry
    /// is durable.
    pub(super) async fn commit(&self, tmp: PathBuf, fin: PathBuf) -> std::io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending { tmp, fin, done })
            .map_err(|_| std::io::Error::other("spool committer stopped"))?;
        wait.await
            .map_err(|_| std::io::Error::other("spool committer stopped"))?
    }
}

fn run(dir: PathBuf, rx: std_mpsc::Receiver<Pending>, counters: Arc<Counters>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // Everything that queued up while the previous batch was being fsynced joins this one.
        batch.extend(rx.try_iter());
        let mut renamed = Vec::with_capacity(batch.len());
        for p in batch {
            match std::fs::rename(&p.tmp, &p.fin) {
                Ok(()) => renamed.push(p),
                Err(e) => {
                    let _ = std::fs::remove_file(&p.tmp);
                    let _ = p.done.send(Err(e));
                }
            }
        }
        if renamed.is_empty() {
            continue;
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.dir_fsyncs.fetch_add(1, Ordering::Relaxed);
        match fsync_dir(&dir) {
            Ok(()) => {
                for p in renamed {
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(e) => {
                // Not durable: undo so nothing unacknowledged is delivered, and report the error.
                tracing::error!(error = %e, "spool directory fsync failed");
                for p in renamed {
                    let _ = std::fs::remove_file(&p.fin);
                    let _ = p
                        .done
                        .send(Err(std::io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }
}
