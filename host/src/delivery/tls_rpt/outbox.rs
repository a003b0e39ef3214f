//! Reports waiting to go out: one file per (report, reporting URI) in `<state>/tls-rpt/outbox/`,
//! written atomically (temporary file, fsync, rename, directory fsync).
//!
//! A period's log becomes outbox files, and only once they are all durable is the log removed:
//! a crash before that rebuilds the same files from the log (nothing of that period was sent),
//! a crash after it finds the files. A file is removed once its report is handed over (queued for
//! `mailto:`, answered 2xx for `https:`); a failed hand-over stays with a later `next_try`
//! (exponential backoff) until `give_up`. So a report is neither lost by a failed upload nor made
//! twice by a restart.
//!
//! Handing a report mail to the spool and removing its file are two writes; in between, a crash
//! would leave a file whose mail is already queued. The file is therefore marked `enqueuing`
//! (durably) first, the mail carries the file's name as its session id, and a marked file found
//! at start is only queued again when no queued message has that session id.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::{Report, Rua};

/// One report for one reporting URI.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    pub domain: String,
    /// The period the report covers: `[start, start + period)`.
    pub start: u64,
    pub period: u64,
    pub report: Report,
    pub rua: Rua,
    /// Failed hand-overs so far.
    pub attempts: u32,
    /// Seconds since the epoch: not before.
    pub next_try: u64,
    /// Seconds since the epoch: a report not handed over by then is dropped.
    pub give_up: u64,
    /// The mail is being handed to the spool (see the module documentation).
    #[serde(default)]
    pub enqueuing: bool,
}

pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn open(dir: PathBuf) -> std::io::Result<Outbox> {
        std::fs::create_dir_all(&dir)?;
        Ok(Outbox { dir })
    }

    /// The name of the `index`th file of the period starting at `start`: also the session id of
    /// its report mail.
    pub fn name(start: u64, index: usize) -> String {
        format!("{start}.{index}")
    }

    /// Removes what an interrupted conversion of the period `start` left (none of it was sent:
    /// sending starts once the period's log is gone).
    pub fn clear_period(&self, start: u64) {
        let prefix = format!("{start}.");
        for (name, path) in self.files() {
            if name.starts_with(&prefix) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Writes `pending` under `name` atomically (the directory is synced by [`Outbox::sync`]).
    pub fn write(&self, name: &str, pending: &Pending) -> std::io::Result<()> {
        use std::io::Write as _;
        let bytes = serde_json::to_vec(pending).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(format!("{name}.json")))
    }

    /// [`Outbox::write`] and the directory synced: the new state survives a crash.
    pub fn write_durably(&self, name: &str, pending: &Pending) -> std::io::Result<()> {
        self.write(name, pending)?;
        self.sync()
    }

    /// Makes renames and removals in the outbox durable.
    pub fn sync(&self) -> std::io::Result<()> {
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Removes a handed-over report, durably.
    pub fn remove(&self, name: &str) {
        if let Err(e) = std::fs::remove_file(self.dir.join(format!("{name}.json"))) {
            tracing::warn!(%name, error = %e, "TLS-RPT: cannot remove a sent report");
        }
        let _ = self.sync();
    }

    /// The waiting reports, oldest period first: (name, report). Unreadable files are logged
    /// and left for an operator.
    pub fn pending(&self) -> Vec<(String, Pending)> {
        let mut out = Vec::new();
        for (name, path) in self.files() {
            match read(&path) {
                Ok(p) => out.push((name, p)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "TLS-RPT: unreadable outbox file")
                }
            }
        }
        out.sort_by_key(|(name, p)| (p.start, name.clone()));
        out
    }

    /// (name without `.json`, path) of every outbox file.
    fn files(&self) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                Some((name.strip_suffix(".json")?.to_string(), e.path()))
            })
            .collect()
    }
}

fn read(path: &Path) -> Result<Pending, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Seconds to wait after the `attempts`th failed hand-over: `first`, doubling, at most an hour.
pub fn backoff(first: u64, attempts: u32) -> u64 {
    let doubled = first
        .max(1)
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    doubled.min(3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(
            (1..=4).map(|a| backoff(30, a)).collect::<Vec<_>>(),
            vec![30, 60, 120, 240]
        );
        assert_eq!(backoff(30, 12), 3600);
        assert_eq!(backoff(0, 1), 1);
    }
}
