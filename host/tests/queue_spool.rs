//! The durable spool seen from outside: throughput figures (ignored bench) and persistence across
//! reopen. Crash behaviour under SIGKILL lives in queue_crash.rs.

use mailwit::policy::{Envelope, Recipient, ReversePath};
use mailwit::spool::{Incoming, Spool};
use std::sync::Arc;
use std::time::Instant;

fn incoming(n: usize, size: usize) -> Incoming {
    let mut message = format!("Subject: message {n}\r\n\r\n").into_bytes();
    message.resize(message.len() + size, b'x');
    message.extend_from_slice(b"\r\n");
    Incoming {
        envelope: Envelope {
            reverse_path: ReversePath {
                address: "alice@example.test".into(),
                ..Default::default()
            },
            recipients: vec![Recipient {
                address: "bob@example.test".into(),
                ..Default::default()
            }],
        },
        message,
        quarantine: None,
        session_id: format!("bench{n}"),
    }
}

#[tokio::test]
async fn stored_messages_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let qdir = dir.path().join("queue");
    let mut ids = Vec::new();
    {
        let spool = Spool::open(qdir.clone()).await.unwrap();
        for n in 0..10 {
            ids.push(spool.store(incoming(n, 100)).await.unwrap());
        }
    }
    let spool = Spool::open(qdir).await.unwrap();
    assert_eq!(spool.list().unwrap(), ids);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(spool.load(id).unwrap().message, incoming(n, 100).message);
    }
}

async fn run_bench(writers: usize, per_writer: usize) -> (f64, f64, f64) {
    let dir =
        tempfile::tempdir_in(std::env::var("MAILWIT_BENCH_DIR").unwrap_or(".".into())).unwrap();
    let spool = Arc::new(Spool::open(dir.path().join("queue")).await.unwrap());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                spool
                    .store(incoming(w * per_writer + i, 4096))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = spool.stats();
    let total = (writers * per_writer) as f64;
    assert_eq!(stats.stored as f64, total);
    (
        total / secs,
        (stats.file_fsyncs + stats.dir_fsyncs) as f64 / total,
        total / stats.batches as f64,
    )
}

/// `cargo test -p mailwit --test queue_spool -- --ignored --nocapture spool_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn spool_throughput() {
    for writers in [1, 50] {
        let per_writer = if writers == 1 { 300 } else { 20 };
        let (rate, fsyncs, batch) = run_bench(writers, per_writer).await;
        println!(
            "spool: {writers:>2} writers, 4 KiB messages: {rate:.0} stores/s, {fsyncs:.2} fsyncs/message, {batch:.1} messages/batch"
        );
    }
}
