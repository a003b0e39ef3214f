use super::*;
use crate::policy::{Envelope, Recipient, ReversePath};
use std::time::Duration;

fn incoming(n: usize) -> Incoming {
    Incoming {
        envelope: Envelope {
            reverse_path: ReversePath {
                address: "alice@example.test".into(),
                ..Default::default()
            },
            recipients: vec![Recipient {
                address: format!("rcpt{n}@example.org"),
                ..Default::default()
            }],
        },
        message: format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes(),
        quarantine: None,
        session_id: format!("s{n}"),
    }
}

/// A fresh queue directory's path, inside a temporary directory that lives as long as the
/// returned guard.
fn queue_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let qdir = dir.path().join("queue");
    (dir, qdir)
}

/// A spool with small segments, compacted as soon as possible, in a fresh directory: the
/// directory (keep it alive while the spool is used), the queue path to reopen it from, the spool.
async fn small_segment_spool() -> (tempfile::TempDir, PathBuf, Spool) {
    let (dir, qdir) = queue_dir();
    let small_segments = SpoolOptions {
        segment_bytes: 4096,
        compact_after: Duration::ZERO,
    };
    let spool = Spool::open_with(qdir.clone(), small_segments)
        .await
        .unwrap();
    (dir, qdir, spool)
}

/// Segment files in `dir`, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    segment::list(dir)
        .unwrap()
        .into_iter()
        .map(|s| dir.join(segment::file_name(s)))
        .collect()
}

/// Waits (bounded) for the committer's between-batch work (reclamation).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn store_then_load_round_trips_envelope_and_bytes() {
    let (_dir, qdir) = queue_dir();
    let spool = Spool::open(qdir.clone()).await.unwrap();
    let id = spool.store(incoming(7)).await.unwrap();
    let back = spool.load(&id).unwrap();
    assert_eq!(back.message, b"Subject: 7\r\n\r\nbody 7\r\n");
    assert_eq!(back.meta.envelope, incoming(7).envelope);
    assert_eq!(back.meta.id, id);
    assert_eq!(spool.load_meta(&id).unwrap(), back.meta);
    assert_eq!(spool.list().unwrap(), vec![id]);
    let stats = spool.stats();
    // One append, one fdatasync, no directory fsync (the segment was created at open).
    assert_eq!(
        (stats.stored, stats.file_fsyncs, stats.dir_fsyncs),
        (1, 1, 0)
    );
    // No file per message: the queue directory holds the one segment.
    let names: Vec<_> = std::fs::read_dir(&qdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".seg"));
}

#[tokio::test]
async fn concurrent_stores_share_fsyncs_and_all_land() {
    let (_dir, qdir) = queue_dir();
    let spool = Arc::new(Spool::open(qdir).await.unwrap());
    let mut tasks = Vec::new();
    for n in 0..200 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move { spool.store(incoming(n)).await }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 200, "ids are unique");
    assert_eq!(spool.list().unwrap(), unique);
    for id in &ids {
        let m = spool.load(id).unwrap();
        let n: usize = m.meta.session_id[1..].parse().unwrap();
        assert_eq!(
            m.message,
            incoming(n).message,
            "no message mixed up with another"
        );
    }
    let stats = spool.stats();
    assert_eq!(stats.stored, 200);
    assert_eq!(stats.file_fsyncs, stats.batches, "one sync per batch");
    assert!(stats.batches <= 200 && stats.batches >= 1);
}

#[tokio::test]
async fn states_and_discards_survive_reopen_and_ids_keep_increasing() {
    let (_dir, qdir) = queue_dir();
    let (kept, gone) = {
        let spool = Spool::open(qdir.clone()).await.unwrap();
        let kept = spool.store(incoming(1)).await.unwrap();
        let gone = spool.store(incoming(2)).await.unwrap();
        spool
            .append_state(&kept, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()])
            .await
            .unwrap();
        spool
            .append_state(&gone, vec![b"{}".to_vec()])
            .await
            .unwrap();
        spool.discard(&gone).await.unwrap();
        spool
            .append_state(&kept, vec![b"{\"c\":3}".to_vec()])
            .await
            .unwrap();
        assert_eq!(spool.list().unwrap(), vec![kept.clone()]);
        (kept, gone)
    };
    let spool = Spool::open(qdir.clone()).await.unwrap();
    assert_eq!(spool.list().unwrap(), vec![kept.clone()]);
    assert_eq!(
        spool.states(&kept).unwrap(),
        vec![
            b"{\"a\":1}".to_vec(),
            b"{\"b\":2}".to_vec(),
            b"{\"c\":3}".to_vec()
        ]
    );
    assert_eq!(
        spool.load(&gone).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    let next = spool.store(incoming(3)).await.unwrap();
    assert!(next > gone, "{next} sorts after {gone}");
}

#[tokio::test]
async fn a_torn_last_record_is_ignored_at_every_cut() {
    let (dir, qdir) = queue_dir();
    let ids = {
        let spool = Spool::open(qdir.clone()).await.unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(spool.store(incoming(n)).await.unwrap());
        }
        ids
    };
    let segments = segment_files(&qdir);
    assert_eq!(segments.len(), 1);
    let full = std::fs::read(&segments[0]).unwrap();
    // The real span of the last record, from an index built on the intact file.
    let last = {
        let copy = dir.path().join("intact");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(&segments[0], copy.join(segments[0].file_name().unwrap())).unwrap();
        let spool = Spool::open(copy).await.unwrap();
        let index = spool.shared.index();
        index.messages[&ids[2]].span
    };
    assert_eq!(last.offset + last.len as u64, full.len() as u64);
    for cut in last.offset..full.len() as u64 {
        let copy = dir.path().join(format!("cut{cut}"));
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::write(
            copy.join(segments[0].file_name().unwrap()),
            &full[..cut as usize],
        )
        .unwrap();
        let spool = Spool::open(copy.clone()).await.unwrap();
        assert_eq!(spool.list().unwrap(), ids[..2], "cut at {cut}");
        for (n, id) in ids[..2].iter().enumerate() {
            assert_eq!(spool.load(id).unwrap().message, incoming(n).message);
        }
        assert!(
            !copy.join("quarantine").exists(),
            "a torn tail is not quarantined"
        );
        // Appends go to a new segment, never after the torn record.
        let again = spool.store(incoming(9)).await.unwrap();
        drop(spool);
        let reopened = Spool::open(copy.clone()).await.unwrap();
        assert_eq!(reopened.list().unwrap().len(), 3);
        assert_eq!(reopened.load(&again).unwrap().message, incoming(9).message);
        drop(reopened);
        std::fs::remove_dir_all(&copy).unwrap();
    }
}

#[tokio::test]
async fn a_corrupt_record_mid_segment_is_quarantined_and_the_rest_kept() {
    let (_dir, qdir) = queue_dir();
    let (ids, middle) = {
        let spool = Spool::open(qdir.clone()).await.unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(spool.store(incoming(n)).await.unwrap());
        }
        let middle = spool.shared.index().messages[&ids[1]].span;
        (ids, middle)
    };
    let path = segment_files(&qdir)[0].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    // One flipped bit inside the middle record's message octets.
    let at = (middle.offset + middle.len as u64 - 5) as usize;
    bytes[at] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    for _ in 0..2 {
        // Opening twice: no crash loop, the same single quarantine copy.
        let spool = Spool::open(qdir.clone()).await.unwrap();
        assert_eq!(spool.list().unwrap(), vec![ids[0].clone(), ids[2].clone()]);
        assert_eq!(spool.load(&ids[2]).unwrap().message, incoming(2).message);
        let set_aside: Vec<_> = std::fs::read_dir(qdir.join("quarantine"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(set_aside.len(), 1);
        assert_eq!(
            std::fs::read(&set_aside[0]).unwrap().len(),
            middle.len as usize
        );
    }
}

#[tokio::test]
async fn segments_whose_messages_are_all_done_are_deleted() {
    let (_dir, qdir, spool) = small_segment_spool().await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(spool.store(incoming(n)).await.unwrap());
    }
    assert!(segment_files(&qdir).len() > 2, "small segments rotate");
    for id in &ids {
        spool.discard(id).await.unwrap();
    }
    until("only the active segment is left", || {
        segment_files(&qdir).len() == 1
    })
    .await;
    assert!(spool.list().unwrap().is_empty());
    assert!(spool.stats().reclaimed >= 2);
    drop(spool);
    let spool = Spool::open(qdir).await.unwrap();
    assert!(spool.list().unwrap().is_empty(), "nothing comes back");
}

#[tokio::test]
async fn a_long_queued_message_is_copied_forward_so_old_segments_go() {
    let (_dir, qdir, spool) = small_segment_spool().await;
    let deferred = spool.store(incoming(0)).await.unwrap();
    spool
        .append_state(&deferred, vec![b"{\"try\":1}".to_vec()])
        .await
        .unwrap();
    for n in 1..60 {
        let id = spool.store(incoming(n)).await.unwrap();
        spool.discard(&id).await.unwrap();
    }
    spool
        .append_state(&deferred, vec![b"{\"try\":2}".to_vec()])
        .await
        .unwrap();
    // Nudge the committer once more so it reclaims after the last rotation.
    until("old segments reclaimed", || segment_files(&qdir).len() <= 2).await;
    assert!(spool.stats().compacted >= 1);
    assert_eq!(spool.list().unwrap(), vec![deferred.clone()]);
    assert_eq!(spool.load(&deferred).unwrap().message, incoming(0).message);
    drop(spool);
    let spool = Spool::open(qdir).await.unwrap();
    assert_eq!(spool.list().unwrap(), vec![deferred.clone()]);
    assert_eq!(
        spool.states(&deferred).unwrap(),
        vec![b"{\"try\":1}".to_vec(), b"{\"try\":2}".to_vec()]
    );
    assert_eq!(spool.load(&deferred).unwrap().message, incoming(0).message);
}

#[tokio::test]
async fn an_old_format_queue_is_migrated_into_the_log() {
    let (_dir, qdir) = queue_dir();
    std::fs::create_dir_all(&qdir).unwrap();
    // What earlier versions wrote: ID.msg (magic, JSON metadata line, message), ID.state (JSON
    // lines, the last one torn by a crash), a half-written ID.tmp.
    let id = QueueId("0000000000000A0001".into());
    let message = incoming(5).message;
    let meta = MessageMeta {
        id: id.clone(),
        arrived_ms: 1_000,
        size: message.len() as u64,
        envelope: incoming(5).envelope,
        quarantine: None,
        session_id: "old".into(),
    };
    let mut msg = b"mailwit-spool 1\n".to_vec();
    msg.extend(serde_json::to_vec(&meta).unwrap());
    msg.push(b'\n');
    msg.extend(&message);
    std::fs::write(qdir.join(format!("{id}.msg")), msg).unwrap();
    std::fs::write(
        qdir.join(format!("{id}.state")),
        b"{\"kind\":\"hold\",\"held\":true,\"at_ms\":5}\n{\"kind\":\"ho",
    )
    .unwrap();
    std::fs::write(
        qdir.join("0000000000000B0000.tmp"),
        b"mailwit-spool 1\n{\"tr",
    )
    .unwrap();
    std::fs::write(qdir.join("not-a-spool-file.txt"), b"left alone").unwrap();

    for _ in 0..2 {
        let spool = Spool::open(qdir.clone()).await.unwrap();
        assert_eq!(spool.list().unwrap(), vec![id.clone()]);
        let back = spool.load(&id).unwrap();
        assert_eq!(back.meta, meta);
        assert_eq!(back.message, message);
        assert_eq!(
            spool.states(&id).unwrap(),
            vec![b"{\"kind\":\"hold\",\"held\":true,\"at_ms\":5}".to_vec()]
        );
        let next = spool.store(incoming(6)).await.unwrap();
        assert!(next > id);
        spool.discard(&next).await.unwrap();
    }
    let mut left: Vec<String> = std::fs::read_dir(&qdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".seg"))
        .collect();
    left.sort();
    assert_eq!(left, vec!["not-a-spool-file.txt"], "old files removed");
}

#[tokio::test]
async fn snapshot_reads_the_queue_while_it_is_open() {
    let (dir, qdir) = queue_dir();
    let spool = Spool::open(qdir.clone()).await.unwrap();
    let a = spool.store(incoming(1)).await.unwrap();
    let b = spool.store(incoming(2)).await.unwrap();
    spool.discard(&a).await.unwrap();
    let seen = snapshot(&qdir).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].meta.id, b);
    assert_eq!(seen[0].message, incoming(2).message);
    assert!(snapshot(&dir.path().join("missing")).unwrap().is_empty());
}

#[tokio::test]
async fn arrivals_announce_each_stored_id_once() {
    let (_dir, qdir) = queue_dir();
    let spool = Spool::open(qdir).await.unwrap();
    let mut rx = spool.arrivals().unwrap();
    assert!(spool.arrivals().is_none());
    let id = spool.store(incoming(1)).await.unwrap();
    assert_eq!(rx.recv().await, Some(id));
}

#[test]
fn queue_id_parse_accepts_only_spool_ids() {
    assert!(QueueId::parse("0123456789ABCDEF01").is_some());
    assert!(QueueId::parse("0123456789abcdef01").is_none());
    assert!(QueueId::parse("../etc/passwd").is_none());
    assert!(QueueId::parse("0123").is_none());
}
