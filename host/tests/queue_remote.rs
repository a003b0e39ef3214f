//! The queue with the real agents against Postfix's smtp-sink on loopback: relaying through a
//! smarthost, a rejecting sink (bounce to a local sender), a sink that is down (deferred, shown by
//! summary, delivered after flush), and a throughput figure.

use crate::support::sink::Sink;
use mailwit::config::queue::{QueueConfig, RoutesConfig};
use mailwit::policy::NoHooks;
use mailwit::queue::{Queue, QueueOptions, RcptStatus};
use mailwit::spool::{Incoming, Spool};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    crate::support::free_port("127.0.0.1")
}

fn mail(from: &str, to: &[&str], subject: &str) -> Incoming {
    Incoming {
        envelope: crate::support::outbound::envelope(from, to),
        message: format!("From: <{from}>\r\nSubject: {subject}\r\n\r\nHello over SMTP.\r\n")
            .into_bytes(),
        quarantine: None,
        session_id: "t".into(),
    }
}

async fn start(state: &Path, smarthost_port: u16, config: QueueConfig) -> (Arc<Spool>, Queue) {
    let routes: RoutesConfig = toml::from_str(&format!(
        "smarthost = {{ host = \"127.0.0.1\", port = {smarthost_port}, tls = \"none\" }}"
    ))
    .unwrap();
    let agents = Arc::new(
        mailwit::delivery::from_config(state, "mx.example.test", &config, &routes).unwrap(),
    );
    let spool = Arc::new(Spool::open(state.join("queue")).await.unwrap());
    let queue = Queue::start(
        spool.clone(),
        QueueOptions {
            config,
            routes,
            hostname: "mx.example.test".into(),
            hooks: Arc::new(NoHooks),
            local: crate::support::local::example_test(&["alice@example.test"], &[]),
            agents,
        },
    )
    .await
    .unwrap();
    (spool, queue)
}

fn config() -> QueueConfig {
    QueueConfig {
        retry_first: Duration::from_secs(3600),
        client_timeout: Some(Duration::from_secs(10)),
        ..QueueConfig::default()
    }
}

fn maildir_new(state: &Path, domain: &str, local: &str) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("mail").join(domain).join(local).join("new"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn remote_mail_is_relayed_to_the_smarthost() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = Sink::start_on("127.0.0.1", port, &[]);
    let (spool, queue) = start(dir.path(), port, config()).await;
    for n in 0..10 {
        spool
            .store(mail(
                "alice@example.test",
                &["bob@remote.test", "carol@other.test"],
                &format!("relay {n}"),
            ))
            .await
            .unwrap();
    }
    crate::support::until("queue empty", || {
        queue.is_empty() && spool.list().unwrap().is_empty()
    })
    .await;
    let dumps = sink.messages();
    // Both recipients go to the same smarthost: one transaction per message.
    assert_eq!(dumps.len(), 10, "{dumps:?}");
    for d in &dumps {
        assert!(d.contains("Subject: relay "));
        assert!(d.contains("Hello over SMTP."));
    }
    assert!(
        maildir_new(dir.path(), "example.test", "alice").is_empty(),
        "no bounce"
    );
}

#[tokio::test]
async fn rejected_recipient_bounces_to_the_local_sender() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _sink = Sink::start_on("127.0.0.1", port, &["-f", "RCPT"]);
    let (spool, queue) = start(dir.path(), port, config()).await;
    spool
        .store(mail("alice@example.test", &["bob@remote.test"], "rejected"))
        .await
        .unwrap();
    crate::support::until("bounce delivered", || {
        maildir_new(dir.path(), "example.test", "alice").len() == 1
    })
    .await;
    crate::support::until("queue empty", || {
        queue.is_empty() && spool.list().unwrap().is_empty()
    })
    .await;
    let bounce =
        std::fs::read_to_string(&maildir_new(dir.path(), "example.test", "alice")[0]).unwrap();
    use mail_parser::MimeHeaders;
    let parsed = mail_parser::MessageParser::default()
        .parse(bounce.as_bytes())
        .unwrap();
    assert_eq!(parsed.content_type().unwrap().subtype(), Some("report"));
    assert!(bounce.contains("Final-Recipient: rfc822; bob@remote.test"));
    assert!(bounce.contains("Action: failed"));
    assert!(bounce.contains("Status: 5.3.0"), "{bounce}");
    assert!(bounce.contains("Remote-MTA: dns; 127.0.0.1"));
    assert!(bounce.contains("Subject: rejected"));
}

#[tokio::test]
async fn mail_waits_while_the_smarthost_is_down_and_goes_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens yet
    let (spool, queue) = start(dir.path(), port, config()).await;
    let id = spool
        .store(mail(
            "alice@example.test",
            &["bob@remote.test", "x@remote.test"],
            "waiting",
        ))
        .await
        .unwrap();
    spool
        .store(mail("alice@example.test", &["y@other.test"], "waiting too"))
        .await
        .unwrap();
    crate::support::until("deferred", || {
        queue.list().len() == 2
            && queue.list().iter().all(|m| {
                !m.active
                    && m.recipients
                        .iter()
                        .all(|r| r.status == RcptStatus::Deferred)
            })
    })
    .await;
    let shown = queue.show(&id).unwrap();
    assert_eq!(
        shown.recipients[0].last_reply.as_ref().unwrap().enhanced,
        "4.4.1"
    );
    let summary = queue.summary();
    assert_eq!(
        summary
            .iter()
            .map(|d| (d.domain.as_str(), d.recipients, d.deferred))
            .collect::<Vec<_>>(),
        vec![("remote.test", 2, 2), ("other.test", 1, 1)]
    );
    let sink = Sink::start_on("127.0.0.1", port, &[]);
    assert_eq!(queue.flush(None), 2);
    crate::support::until("delivered after flush", || queue.is_empty()).await;
    assert_eq!(sink.messages().len(), 2);
}

/// Forwards connections to `target`, counting them.
async fn counting_proxy(target: u16) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", target))
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (port, count)
}

#[tokio::test]
async fn consecutive_messages_reuse_one_relay_connection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sink = Sink::start_on("127.0.0.1", port, &[]);
    let (proxy, connections) = counting_proxy(port).await;
    let config = QueueConfig {
        concurrency_per_destination: 1,
        connection_reuse: Duration::from_secs(30),
        ..config()
    };
    let (spool, queue) = start(dir.path(), proxy, config).await;
    for n in 0..5 {
        spool
            .store(mail(
                "alice@example.test",
                &["bob@remote.test"],
                &format!("reuse {n}"),
            ))
            .await
            .unwrap();
    }
    crate::support::until("all relayed", || {
        queue.is_empty() && spool.list().unwrap().is_empty()
    })
    .await;
    assert_eq!(sink.messages().len(), 5);
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection carried all five messages"
    );
}

#[tokio::test]
async fn listed_domain_goes_over_lmtp() {
    let dir = tempfile::tempdir().unwrap();
    let lmtp_port = free_port();
    let lmtp = Sink::start_on("127.0.0.1", lmtp_port, &["-L"]);
    let routes: RoutesConfig = toml::from_str(&format!(
        "[domains.\"store.test\"]\nlmtp = \"127.0.0.1:{lmtp_port}\"\n"
    ))
    .unwrap();
    routes.validate().unwrap();
    let config = config();
    let agents = Arc::new(
        mailwit::delivery::from_config(dir.path(), "mx.example.test", &config, &routes).unwrap(),
    );
    let spool = Arc::new(Spool::open(dir.path().join("queue")).await.unwrap());
    let queue = Queue::start(
        spool.clone(),
        QueueOptions {
            config,
            routes,
            hostname: "mx.example.test".into(),
            hooks: Arc::new(NoHooks),
            local: crate::support::local::example_test(&["alice@example.test"], &[]),
            agents,
        },
    )
    .await
    .unwrap();
    spool
        .store(mail(
            "alice@example.test",
            &["u1@store.test", "u2@Store.Test"],
            "lmtp",
        ))
        .await
        .unwrap();
    crate::support::until("delivered", || {
        queue.is_empty() && spool.list().unwrap().is_empty()
    })
    .await;
    let dumps = lmtp.messages();
    assert_eq!(dumps.len(), 1, "both recipients in one LMTP transaction");
    assert!(dumps[0].contains("Subject: lmtp"));
}

/// `cargo test -p mailwit --test queue_remote -- --ignored --nocapture throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn throughput_to_smtp_sink() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let port = free_port();
    let sink = Sink::start_on("127.0.0.1", port, &[]);
    let n = 1000;
    let (spool, queue) = start(dir.path(), port, config()).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..20 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 20 {
                spool
                    .store(mail(
                        "alice@example.test",
                        &["bob@remote.test"],
                        &format!("{w}-{i}"),
                    ))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stored = start.elapsed();
    crate::support::until("all delivered", || {
        queue.is_empty() && spool.list().unwrap().is_empty()
    })
    .await;
    let total = start.elapsed();
    assert_eq!(sink.messages().len(), n);
    println!(
        "queue -> smtp-sink: {n} messages stored in {:.2}s, all delivered in {:.2}s: {:.0} messages/s end to end",
        stored.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
}
