//! Local delivery into Maildirs at `<state>/mail/<domain>/<local-part>/{tmp,new,cur}`.
//!
//! Per message: write `tmp/NAME` (with `Return-Path:` and `Delivered-To:` prepended, RFC 5321
//! §4.4), fsync it, rename it to `new/NAME`, fsync `new/`. Only then is the recipient reported
//! delivered, so the queue drops its copy only once the mailbox copy is durable. Concurrent
//! deliveries into one mailbox share the `new/` fsync (group commit, [`GroupSync`]): a delivery
//! whose rename an fsync started after has already covered skips its own. Names follow the
//! Maildir convention `SECS.M<usec>P<pid>Q<counter>R<random>.<host>`, unique per host.

use super::contract::{Attempt, Outbound, RecipientOutcome};
use crate::policy::Reply;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

static COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct Maildir {
    /// `<state>/mail`
    root: PathBuf,
    /// For unique names; '/' and ':' are replaced as the Maildir convention asks.
    hostname: String,
}

impl Maildir {
    pub fn new(root: PathBuf, hostname: &str) -> Self {
        let hostname = hostname.replace('/', "\\057").replace(':', "\\072");
        Maildir { root, hostname }
    }

    /// The Maildir of `mailbox` ("local@domain", compared case-insensitively), or None if the
    /// address cannot name a directory safely.
    pub fn path_of(&self, mailbox: &str) -> Option<PathBuf> {
        let mailbox = mailbox.to_ascii_lowercase();
        let (local, domain) = crate::mail::address::split(&mailbox)?;
        let safe = |part: &str| {
            !part.is_empty()
                && !part.starts_with('.')
                && !part.contains(['/', '\\', '\0'])
                && !part.chars().any(char::is_control)
        };
        (safe(local) && safe(domain)).then(|| self.root.join(domain).join(local))
    }

    /// Delivers one copy for all of `outbound`'s recipients into `mailbox`.
    pub async fn deliver(&self, mailbox: &str, outbound: &Outbound<'_>) -> Attempt {
        let Some(dir) = self.path_of(mailbox) else {
            return Attempt::all(
                outbound,
                RecipientOutcome::Failed(Reply::new(550, "5.1.3", "bad local mailbox name")),
            );
        };
        let mut bytes = Vec::with_capacity(outbound.message.len() + 128);
        bytes.extend_from_slice(
            format!(
                "Return-Path: <{}>\r\nDelivered-To: {}\r\n",
                outbound.reverse_path.address,
                mailbox.to_ascii_lowercase()
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(outbound.message);
        let hostname = self.hostname.clone();
        let result = tokio::task::spawn_blocking(move || write_maildir(&dir, &hostname, &bytes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match result {
            Ok(name) => Attempt::all(
                outbound,
                RecipientOutcome::Delivered(Reply::new(
                    250,
                    "2.0.0",
                    format!("delivered to maildir as {name}"),
                )),
            ),
            Err(e) => {
                tracing::warn!(queue_id = outbound.queue_id, mailbox, error = %e, "maildir delivery failed");
                let reply = if e.raw_os_error() == Some(libc::ENOSPC) {
                    Reply::new(452, "4.3.1", "mail system full")
                } else {
                    Reply::new(451, "4.3.0", format!("local delivery failed: {e}"))
                };
                Attempt::all(outbound, RecipientOutcome::Deferred(reply))
            }
        }
    }
}

/// Writes one message into the Maildir at `dir` durably and returns its file name.
pub fn write_maildir(dir: &Path, hostname: &str, bytes: &[u8]) -> std::io::Result<String> {
    ensure_maildir(dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{}.M{}P{}Q{}R{:08x}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>(),
        hostname
    );
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(file);
    std::fs::rename(&tmp, &new)?;
    let new_dir = dir.join("new");
    group_sync(&new_dir).after_change(|| std::fs::File::open(&new_dir)?.sync_all())?;
    Ok(name)
}

/// Group commit for one directory: changes (renames into it) take a ticket once done; an fsync
/// covers every ticket taken before it started, so concurrent changes share one fsync.
#[derive(Default)]
pub struct GroupSync {
    /// Changes made so far.
    changed: AtomicU64,
    /// The highest ticket a completed sync covers.
    synced: Mutex<u64>,
}

impl GroupSync {
    /// Call after the change is made: returns once a sync started after it has succeeded (this
    /// call's `sync`, or one another thread ran meanwhile).
    pub fn after_change(&self, sync: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        let ticket = self.changed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        if *synced >= ticket {
            return Ok(());
        }
        // Every change with a ticket up to `covering` was complete before this load, so before
        // the sync starts.
        let covering = self.changed.load(Ordering::SeqCst);
        sync()?;
        *synced = covering;
        Ok(())
    }
}

/// The [`GroupSync`] of a Maildir's `new/` (one per mailbox delivered to since start).
fn group_sync(dir: &Path) -> Arc<GroupSync> {
    static SYNCS: LazyLock<Mutex<HashMap<PathBuf, Arc<GroupSync>>>> = LazyLock::new(Mutex::default);
    let mut syncs = SYNCS.lock().unwrap_or_else(PoisonError::into_inner);
    syncs.entry(dir.to_path_buf()).or_default().clone()
}

/// Creates `dir/{tmp,new,cur}` if missing, fsyncing each parent whose entries changed.
fn ensure_maildir(dir: &Path) -> std::io::Result<()> {
    if dir.join("new").is_dir() && dir.join("tmp").is_dir() && dir.join("cur").is_dir() {
        return Ok(());
    }
    // Create the chain top-down so every new entry's parent can be fsynced.
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    for sub in ["tmp", "new", "cur"] {
        match std::fs::create_dir(dir.join(sub)) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Recipient, ReversePath};

    #[tokio::test]
    async fn delivers_one_durable_file_into_new() {
        let root = tempfile::tempdir().unwrap();
        let maildir = Maildir::new(root.path().to_path_buf(), "host/name:1");
        let from = ReversePath {
            address: "carol@example.org".into(),
            ..Default::default()
        };
        let rcpts = [Recipient {
            address: "Bob@Example.test".into(),
            ..Default::default()
        }];
        let out = Outbound {
            queue_id: "Q",
            reverse_path: &from,
            recipients: &rcpts,
            message: b"Subject: hi\r\n\r\nhello\r\n",
        };
        let attempt = maildir.deliver("Bob@Example.test", &out).await;
        assert!(matches!(
            attempt.outcomes[..],
            [RecipientOutcome::Delivered(_)]
        ));
        let new = root.path().join("example.test/bob/new");
        let files: Vec<_> = std::fs::read_dir(&new).unwrap().collect();
        assert_eq!(files.len(), 1);
        let name = files[0].as_ref().unwrap().file_name();
        assert!(!name.to_str().unwrap().contains(['/', ':']));
        let content = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(
            content,
            b"Return-Path: <carol@example.org>\r\nDelivered-To: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("example.test/bob/tmp"))
                .unwrap()
                .count(),
            0
        );
        assert!(root.path().join("example.test/bob/cur").is_dir());
    }

    #[test]
    fn group_sync_shares_one_sync_among_concurrent_changes_and_never_skips_a_lone_one() {
        let group = Arc::new(GroupSync::default());
        let syncs = Arc::new(AtomicU64::new(0));
        // One change on its own, with a sync that only counts itself.
        let lone_change = || {
            group
                .after_change(|| {
                    syncs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap()
        };
        // One after another: every change needs its own sync.
        for _ in 0..3 {
            lone_change();
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 3);
        // Eight changes at once while a slow sync runs: they share syncs.
        syncs.store(0, Ordering::SeqCst);
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (group, syncs, barrier) = (group.clone(), syncs.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    group.after_change(|| {
                        syncs.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        Ok(())
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let n = syncs.load(Ordering::SeqCst);
        assert!((1..8).contains(&n), "{n} syncs for 8 concurrent changes");
        // A failed sync is reported, and the next change syncs again.
        let err = group.after_change(|| Err(std::io::Error::other("disk gone")));
        assert!(err.is_err());
        syncs.store(0, Ordering::SeqCst);
        lone_change();
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_deliveries_into_one_mailbox_all_land() {
        let root = tempfile::tempdir().unwrap();
        let maildir = Maildir::new(root.path().to_path_buf(), "h");
        let from = ReversePath::default();
        let rcpts = [Recipient {
            address: "bob@example.test".into(),
            ..Default::default()
        }];
        let deliveries = (0..40).map(|i| {
            let maildir = maildir.clone();
            let rcpts = rcpts.clone();
            let from = from.clone();
            tokio::spawn(async move {
                let body = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
                let out = Outbound {
                    queue_id: "Q",
                    reverse_path: &from,
                    recipients: &rcpts,
                    message: body.as_bytes(),
                };
                maildir.deliver("bob@example.test", &out).await
            })
        });
        for delivery in deliveries.collect::<Vec<_>>() {
            let attempt = delivery.await.unwrap();
            assert!(matches!(
                attempt.outcomes[..],
                [RecipientOutcome::Delivered(_)]
            ));
        }
        let new = root.path().join("example.test/bob/new");
        assert_eq!(std::fs::read_dir(new).unwrap().count(), 40);
    }

    #[tokio::test]
    async fn refuses_mailbox_names_that_escape_the_root() {
        let root = tempfile::tempdir().unwrap();
        let maildir = Maildir::new(root.path().to_path_buf(), "h");
        assert!(maildir.path_of("../x@example.test").is_none());
        assert!(maildir.path_of("a/b@example.test").is_none());
        assert!(maildir.path_of("a@..").is_none());
        assert!(maildir.path_of("noat").is_none());
    }
}
