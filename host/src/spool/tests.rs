use super::*;
use crate::policy::{Recipient, ReversePath};

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

#[tokio::test]
async fn store_then_load_round_trips_envelope_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("queue")).await.unwrap();
    let id = spool.store(incoming(7)).await.unwrap();
    let back = spool.load(&id).unwrap();
    assert_eq!(back.message, b"Subject: 7\r\n\r\nbody 7\r\n");
    assert_eq!(back.meta.envelope, incoming(7).envelope);
    assert_eq!(back.meta.id, id);
    assert_eq!(spool.list().unwrap(), vec![id]);
    let stats = spool.stats();
    assert_eq!(
        (stats.stored, stats.file_fsyncs, stats.dir_fsyncs),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn concurrent_stores_share_directory_fsyncs_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path().join("queue")).await.unwrap());
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
    assert!(stats.batches <= 200 && stats.batches >= 1);
}

#[tokio::test]
async fn reopen_removes_half_written_files_and_keeps_ids_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let qdir = dir.path().join("queue");
    let first = {
        let spool = Spool::open(qdir.clone()).await.unwrap();
        spool.store(incoming(1)).await.unwrap()
    };
    // A crash mid-write leaves a temp file; a crash mid-removal an orphaned state file.
    std::fs::write(
        qdir.join("0000000000000A0000.tmp"),
        b"mailwit-spool 1\n{\"trunc",
    )
    .unwrap();
    std::fs::write(qdir.join("0000000000000B0000.state"), b"{}\n").unwrap();
    // A message "from the future" (clock went back since) must still sort before new ones.
    let future = QueueId(format!("{:014X}0000", first.micros() + 3_600_000_000));
    std::fs::copy(
        qdir.join(format!("{first}.msg")),
        qdir.join(format!("{future}.msg")),
    )
    .unwrap();

    let spool = Spool::open(qdir.clone()).await.unwrap();
    assert!(!qdir.join("0000000000000A0000.tmp").exists());
    assert!(!qdir.join("0000000000000B0000.state").exists());
    assert_eq!(spool.list().unwrap(), vec![first.clone(), future.clone()]);
    let next = spool.store(incoming(2)).await.unwrap();
    assert!(next > future, "{next} sorts after {future}");
}

#[tokio::test]
async fn remove_deletes_message_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("queue")).await.unwrap();
    let id = spool.store(incoming(1)).await.unwrap();
    std::fs::write(spool.state_path(&id), b"").unwrap();
    spool.remove(&id).unwrap();
    assert!(spool.list().unwrap().is_empty());
    assert!(!spool.state_path(&id).exists());
}

#[tokio::test]
async fn arrivals_announce_each_stored_id_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("queue")).await.unwrap();
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
