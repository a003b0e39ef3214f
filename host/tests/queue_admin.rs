//! The admin socket against a running queue: every command, reload, and bad input.

use async_trait::async_trait;
use mailwit::admin::{AdminServer, ReloadFn, Request, Response, client};
use mailwit::config::queue::{QueueConfig, RoutesConfig};
use mailwit::delivery::maildir::Maildir;
use mailwit::delivery::{Agents, Attempt, Destination, Outbound, RecipientOutcome};
use mailwit::policy::{NoHooks, Reply};
use mailwit::queue::{NoLocalDomains, Queue, QueueOptions, RcptStatus};
use mailwit::spool::{Incoming, QueueId, Spool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Defers everything until `open` is set (a destination that is down, then comes back).
struct Gate {
    open: AtomicBool,
    delivered: AtomicUsize,
    maildir: Maildir,
}

#[async_trait]
impl Agents for Gate {
    async fn deliver(&self, dest: &Destination, out: &Outbound<'_>) -> Attempt {
        if let Destination::Maildir(m) = dest {
            return self.maildir.deliver(m, out).await;
        }
        let outcome = if self.open.load(Ordering::SeqCst) {
            self.delivered
                .fetch_add(out.recipients.len(), Ordering::SeqCst);
            RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "ok"))
        } else {
            RecipientOutcome::Deferred(Reply::new(421, "4.4.1", "connection refused"))
        };
        Attempt::all(out, outcome)
    }
}

fn mail(to: &[&str]) -> Incoming {
    Incoming {
        envelope: crate::support::outbound::envelope("alice@example.test", to),
        message: b"Subject: admin\r\n\r\nx\r\n".to_vec(),
        quarantine: None,
        session_id: "t".into(),
    }
}

#[tokio::test]
async fn queue_commands_over_the_admin_socket() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let spool = Arc::new(Spool::open(state.join("queue")).await.unwrap());
    let gate = Arc::new(Gate {
        open: AtomicBool::new(false),
        delivered: AtomicUsize::new(0),
        maildir: Maildir::new(state.join("mail"), "h"),
    });
    let queue = Queue::start(
        spool.clone(),
        QueueOptions {
            config: QueueConfig {
                retry_first: Duration::from_secs(3600),
                ..QueueConfig::default()
            },
            routes: RoutesConfig::default(),
            hostname: "h".into(),
            hooks: Arc::new(NoHooks),
            local: Arc::new(NoLocalDomains),
            agents: gate.clone(),
        },
    )
    .await
    .unwrap();
    let reloads = Arc::new(AtomicUsize::new(0));
    let counter = reloads.clone();
    let reload: ReloadFn = Arc::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move { Ok(format!("generation {n} active")) })
    });
    let _admin = AdminServer::start(&state, Some(queue.clone()), Some(reload))
        .await
        .unwrap();
    let ask = |r: Request| {
        let state = state.clone();
        async move { client::request(&state, r).await.unwrap() }
    };

    let a = spool
        .store(mail(&["x@down.test", "y@down.test"]))
        .await
        .unwrap();
    let b = spool.store(mail(&["z@other.test"])).await.unwrap();
    crate::support::until_async("both deferred", async || {
        let Response::Messages { messages } = ask(Request::List).await else {
            return false;
        };
        messages.len() == 2
            && messages.iter().all(|m| {
                !m.active
                    && m.recipients
                        .iter()
                        .all(|r| r.status == RcptStatus::Deferred)
            })
    })
    .await;

    let Response::Summary { domains } = ask(Request::Summary).await else {
        panic!("summary")
    };
    assert_eq!(domains.len(), 2);
    assert_eq!(
        (
            domains[0].domain.as_str(),
            domains[0].recipients,
            domains[0].deferred
        ),
        ("down.test", 2, 2)
    );
    assert_eq!(
        (domains[1].domain.as_str(), domains[1].recipients),
        ("other.test", 1)
    );

    let Response::Message { message } = ask(Request::Show { id: a.clone() }).await else {
        panic!("show")
    };
    assert_eq!(
        message.recipients[0].last_reply.as_ref().unwrap().enhanced,
        "4.4.1"
    );
    assert_eq!(message.recipients[0].attempts, 1);

    let missing = QueueId("000000000000000000".into());
    assert!(matches!(
        ask(Request::Show {
            id: missing.clone()
        })
        .await,
        Response::Error { .. }
    ));
    assert!(matches!(
        ask(Request::Hold { id: missing }).await,
        Response::Error { .. }
    ));

    assert_eq!(
        ask(Request::Hold { id: b.clone() }).await,
        Response::Ok {
            message: format!("{b} held")
        }
    );
    gate.open.store(true, Ordering::SeqCst);
    assert_eq!(
        ask(Request::Flush {
            domain: Some("down.test".into())
        })
        .await,
        Response::Ok {
            message: "1 messages flushed".into()
        }
    );
    crate::support::until_async("a delivered", async || queue.show(&a).is_none()).await;
    assert_eq!(gate.delivered.load(Ordering::SeqCst), 2);

    // b is held: a retry does nothing until it is released.
    assert!(matches!(
        ask(Request::Retry { id: b.clone() }).await,
        Response::Ok { .. }
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(queue.show(&b).is_some_and(|m| m.held));
    // The retry made it due; releasing it lets it go at once.
    assert!(matches!(
        ask(Request::Release { id: b.clone() }).await,
        Response::Ok { .. }
    ));
    crate::support::until_async("b delivered", async || queue.show(&b).is_none()).await;
    assert_eq!(gate.delivered.load(Ordering::SeqCst), 3);

    gate.open.store(false, Ordering::SeqCst);
    let c = spool.store(mail(&["w@down.test"])).await.unwrap();
    crate::support::until_async("c deferred", async || {
        queue
            .show(&c)
            .is_some_and(|m| m.recipients[0].attempts == 1)
    })
    .await;
    assert_eq!(
        ask(Request::Remove { id: c.clone() }).await,
        Response::Ok {
            message: format!("{c} removed")
        }
    );
    assert!(spool.list().unwrap().is_empty());
    assert_eq!(
        ask(Request::List).await,
        Response::Messages { messages: vec![] }
    );

    assert_eq!(
        ask(Request::Reload).await,
        Response::Ok {
            message: "generation 1 active".into()
        }
    );
    assert_eq!(reloads.load(Ordering::SeqCst), 1);

    // Bad input gets an error answer, and the connection keeps working.
    let stream = tokio::net::UnixStream::connect(state.join("admin.sock"))
        .await
        .unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"{\"command\":\"explode\"}\nnot json\n{\"command\":\"summary\"}\n")
        .await
        .unwrap();
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        lines.push(serde_json::from_str::<Response>(&line).unwrap());
    }
    assert!(matches!(lines[0], Response::Error { .. }));
    assert!(matches!(lines[1], Response::Error { .. }));
    assert!(matches!(lines[2], Response::Summary { .. }));
}

#[tokio::test]
async fn second_server_on_the_same_state_dir_is_refused_and_stale_socket_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let first = AdminServer::start(dir.path(), None, None).await.unwrap();
    let err = AdminServer::start(dir.path(), None, None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let answer = client::request(dir.path(), Request::Summary).await.unwrap();
    assert!(
        matches!(answer, Response::Error { .. }),
        "no queue here: {answer:?}"
    );
    let answer = client::request(dir.path(), Request::Reload).await.unwrap();
    assert!(matches!(answer, Response::Error { .. }));
    drop(first);
    // A stale socket file (server killed) does not block the next start.
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("admin.sock")).unwrap();
    drop(_listener);
    let _second = AdminServer::start(dir.path(), None, None).await.unwrap();
}
