//! The remote agents behind the real queue manager: mail for a remote domain relayed to a
//! smarthost (smtp-sink), a rejecting smarthost producing a bounce in the sender's Maildir,
//! deferral while the smarthost is down, and session reuse towards a relay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::support::free_port;
use crate::support::outbound::*;
use crate::support::peer::*;
use crate::support::sink::*;
use mail_parser::{MessageParser, MimeHeaders};
use mailwit::config::queue::{QueueConfig, RelayConfig, RoutesConfig};
use mailwit::delivery::maildir::Maildir;
use mailwit::delivery::remote::{DeliveryAgents, RemoteSettings};
use mailwit::delivery::smtp_client::Timeouts;
use mailwit::delivery::{Agents, Destination, Outbound, RecipientOutcome};
use mailwit::policy::{Envelope, NoHooks, RelayTarget, TlsPolicy};
use mailwit::queue::{Queue, QueueOptions};
use mailwit::spool::{Incoming, Spool};

fn settings() -> RemoteSettings {
    let mut s = RemoteSettings::new("mx.example.test");
    s.timeouts = Timeouts::all(Duration::from_secs(10));
    s
}

fn agents(state: &Path) -> Arc<DeliveryAgents> {
    let maildir = Maildir::new(state.join("mail"), "mx.example.test");
    Arc::new(DeliveryAgents::new(maildir, settings()).unwrap())
}

async fn start(state: &Path, smarthost_port: u16) -> (Arc<Spool>, Queue) {
    let spool = Arc::new(Spool::open(state.join("queue")).await.unwrap());
    let routes = RoutesConfig {
        smarthost: Some(RelayConfig {
            tls: TlsPolicy::Opportunistic,
            ..RelayConfig::new("127.0.0.1", smarthost_port)
        }),
        ..RoutesConfig::default()
    };
    let config = QueueConfig {
        retry_first: Duration::from_millis(200),
        retry_max: Duration::from_millis(500),
        lifetime: Duration::from_secs(3600),
        delay_warning: Duration::ZERO,
        ..QueueConfig::default()
    };
    let queue = Queue::start(
        spool.clone(),
        QueueOptions {
            config,
            routes,
            hostname: "mx.example.test".into(),
            hooks: Arc::new(NoHooks),
            local: crate::support::local::example_test(&["alice@example.test"], &[]),
            agents: agents(state),
        },
    )
    .await
    .unwrap();
    (spool, queue)
}

fn mail_from_alice(to: &str, subject: &str) -> Incoming {
    Incoming {
        envelope: Envelope {
            reverse_path: sender("alice@example.test"),
            recipients: vec![rcpt(to)],
        },
        message: message(subject, "Hello from alice.\r\n"),
        quarantine: None,
        session_id: "test".into(),
    }
}

fn maildir(state: &Path, domain: &str, local: &str) -> Vec<Vec<u8>> {
    let dir = state.join("mail").join(domain).join(local).join("new");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Polls until `cond` holds; the deadline only catches hangs.
#[tokio::test]
async fn remote_mail_is_relayed_to_the_smarthost() {
    let sink = Sink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (spool, queue) = start(dir.path(), sink.port()).await;
    spool
        .store(mail_from_alice("bob@remote.test", "relayed"))
        .await
        .unwrap();
    crate::support::until("the sink got it", || sink.messages().len() == 1).await;
    crate::support::until("the queue is empty", || queue.is_empty()).await;
    let dump = &sink.wait_messages(1)[0];
    assert!(dump.contains("X-Rcpt-Args: <bob@remote.test>"), "{dump}");
    assert!(dump.contains("Subject: relayed"), "{dump}");
    queue.shutdown();
}

#[tokio::test]
async fn rejected_recipient_bounces_into_the_senders_maildir() {
    let sink = Sink::start(&["-f", "RCPT"]);
    let dir = tempfile::tempdir().unwrap();
    let (spool, queue) = start(dir.path(), sink.port()).await;
    spool
        .store(mail_from_alice("bob@remote.test", "doomed"))
        .await
        .unwrap();
    crate::support::until("a bounce for alice", || {
        !maildir(dir.path(), "example.test", "alice").is_empty()
    })
    .await;
    let bounce = maildir(dir.path(), "example.test", "alice").remove(0);
    let parsed = MessageParser::default().parse(&bounce).unwrap();
    let ct = parsed.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    let text = String::from_utf8_lossy(&bounce);
    assert!(text.contains("Action: failed"), "{text}");
    assert!(text.contains("Status: 5.3.0"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; bob@remote.test"),
        "{text}"
    );
    assert!(text.contains("Subject: doomed"), "{text}");
    crate::support::until("the queue is empty", || queue.is_empty()).await;
    queue.shutdown();
}

#[tokio::test]
async fn smarthost_down_defers_and_summary_shows_the_domain() {
    let port = free_port("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let (spool, queue) = start(dir.path(), port).await;
    spool
        .store(mail_from_alice("bob@remote.test", "waiting"))
        .await
        .unwrap();
    crate::support::until("a deferral", || {
        queue
            .summary()
            .iter()
            .any(|d| d.domain == "remote.test" && d.deferred == 1)
    })
    .await;
    // The smarthost comes up: the next retry delivers.
    let sink = Sink::start_on("127.0.0.1", port, &[]);
    crate::support::until("delivered after the retry", || sink.messages().len() == 1).await;
    crate::support::until("the queue is empty", || queue.is_empty()).await;
    queue.shutdown();
}

#[tokio::test]
async fn relay_sessions_are_reused_between_deliveries() {
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["PIPELINING".into(), "8BITMIME".into()],
        ..PeerOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let agents = agents(dir.path());
    let target = Destination::Relay(RelayTarget {
        host: "127.0.0.1".into(),
        port: server.addr.port(),
        tls: TlsPolicy::None,
        credentials: None,
    });
    let rp = sender("alice@example.test");
    let rcpts = [rcpt("bob@remote.test")];
    for i in 0..3 {
        let msg = message(&format!("reuse{i}"), "body\r\n");
        let out = Outbound {
            queue_id: "Q",
            reverse_path: &rp,
            recipients: &rcpts,
            message: &msg,
        };
        let attempt = agents.deliver(&target, &out).await;
        assert!(
            matches!(attempt.outcomes[..], [RecipientOutcome::Delivered(_)]),
            "{attempt:?}"
        );
    }
    agents.close_idle().await;
    let t = server.transcript();
    assert_eq!(t.messages.len(), 3);
    assert_eq!(t.sessions, 1, "one session for three messages");
    assert_eq!(t.commands.iter().filter(|c| *c == "RSET").count(), 2);
    assert_eq!(t.commands.last().map(String::as_str), Some("QUIT"));

    // Unknown credentials name: a configuration problem, deferred.
    let target = Destination::Relay(RelayTarget {
        host: "127.0.0.1".into(),
        port: server.addr.port(),
        tls: TlsPolicy::None,
        credentials: Some("nobody".into()),
    });
    let msg = message("creds", "body\r\n");
    let out = Outbound {
        queue_id: "Q",
        reverse_path: &rp,
        recipients: &rcpts,
        message: &msg,
    };
    let attempt = agents.deliver(&target, &out).await;
    assert!(matches!(&attempt.outcomes[0], RecipientOutcome::Deferred(r) if r.enhanced == "4.3.5"));
}

#[tokio::test]
async fn a_cached_session_the_peer_dropped_is_replaced_at_once() {
    // The relay hangs up after each message; the cached session is dead when the next
    // delivery takes it. Its pipelined RSET finds that out before anything is sent, and the
    // message goes over a new session: delivered, not deferred.
    let server = ScriptedPeer::start(PeerOptions {
        extensions: vec!["PIPELINING".into()],
        close_after: Some(1),
        ..PeerOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let agents = agents(dir.path());
    let target = Destination::Relay(RelayTarget {
        host: "127.0.0.1".into(),
        port: server.addr.port(),
        tls: TlsPolicy::None,
        credentials: None,
    });
    let rp = sender("alice@example.test");
    let rcpts = [rcpt("bob@remote.test")];
    for i in 0..3 {
        let msg = message(&format!("dropped{i}"), "body\r\n");
        let out = Outbound {
            queue_id: "Q",
            reverse_path: &rp,
            recipients: &rcpts,
            message: &msg,
        };
        let attempt = agents.deliver(&target, &out).await;
        assert!(
            matches!(attempt.outcomes[..], [RecipientOutcome::Delivered(_)]),
            "message {i}: {attempt:?}"
        );
    }
    let t = server.transcript();
    assert_eq!(t.messages.len(), 3);
    assert_eq!(t.sessions, 3);
}

#[tokio::test]
async fn lmtp_destination_through_the_agents() {
    let sink = Sink::start(&["-L"]);
    let dir = tempfile::tempdir().unwrap();
    let agents = agents(dir.path());
    let rp = sender("alice@example.test");
    let rcpts = [rcpt("bob@lmtp.test"), rcpt("carol@lmtp.test")];
    let msg = message("lmtp", "body\r\n");
    let out = Outbound {
        queue_id: "Q",
        reverse_path: &rp,
        recipients: &rcpts,
        message: &msg,
    };
    let attempt = agents
        .deliver(&Destination::Lmtp(sink.addr.to_string()), &out)
        .await;
    assert!(matches!(
        attempt.outcomes[..],
        [
            RecipientOutcome::Delivered(_),
            RecipientOutcome::Delivered(_)
        ]
    ));
    agents.close_idle().await;
    assert_eq!(sink.wait_messages(1).len(), 1);
}
