//! The queue manager over a real spool and real Maildirs: delivery, retries with short
//! intervals, expiry, bounces, delay warnings, hold/release/remove/flush, restart, limits.
//! Remote destinations are played by a scripted agent here; real SMTP peers are in
//! queue_remote.rs.

use async_trait::async_trait;
use mailwit::config::queue::{QueueConfig, RoutesConfig};
use mailwit::delivery::maildir::Maildir;
use mailwit::delivery::{Agents, Attempt, Destination, Outbound, RecipientOutcome};
use mailwit::policy::{
    DeliveryEvent, DeliveryOutcome, NoHooks, Notify, QueueHooks, Recipient, Reply, ReversePath,
    RouteDecision,
};
use mailwit::queue::{Queue, QueueOptions, RcptStatus};
use mailwit::spool::{Incoming, Spool};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Maildir for local mail; remote destinations answer from a script, and count concurrency.
struct Scripted {
    maildir: Maildir,
    /// Per remote recipient domain: how many attempts defer before one succeeds
    /// (usize::MAX = always defer); "fail.test" always fails with 550, "slow.test" always defers.
    defer_first: usize,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delivered: Mutex<Vec<(String, Vec<u8>)>>,
    pause: Duration,
}

impl Scripted {
    fn new(state: &Path, defer_first: usize) -> Arc<Self> {
        Arc::new(Scripted {
            maildir: Maildir::new(state.join("mail"), "test.host"),
            defer_first,
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            delivered: Mutex::new(Vec::new()),
            pause: Duration::ZERO,
        })
    }
}

#[async_trait]
impl Agents for Scripted {
    async fn deliver(&self, dest: &Destination, out: &Outbound<'_>) -> Attempt {
        if let Destination::Maildir(mailbox) = dest {
            return self.maildir.deliver(mailbox, out).await;
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.pause).await;
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let outcomes = out
            .recipients
            .iter()
            .map(|r| {
                if r.address.ends_with("@fail.test") {
                    RecipientOutcome::Failed(Reply::new(550, "5.1.1", "no such user here"))
                } else if r.address.ends_with("@slow.test") {
                    RecipientOutcome::Deferred(Reply::new(421, "4.4.2", "slow host"))
                } else if false {
                    RecipientOutcome::Failed(Reply::new(550, "5.1.1", "no such user here"))
                } else if call < self.defer_first {
                    RecipientOutcome::Deferred(Reply::new(451, "4.3.2", "try again later"))
                } else {
                    self.delivered
                        .lock()
                        .unwrap()
                        .push((r.address.clone(), out.message.to_vec()));
                    RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "ok"))
                }
            })
            .collect();
        Attempt {
            outcomes,
            dsn_passed_on: false,
            remote_mta: Some("remote.test".into()),
        }
    }
}

fn short_config() -> QueueConfig {
    QueueConfig {
        retry_first: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        lifetime: Duration::from_secs(3600),
        delay_warning: Duration::ZERO,
        ..QueueConfig::default()
    }
}

fn options(
    config: QueueConfig,
    agents: Arc<dyn Agents>,
    hooks: Arc<dyn QueueHooks>,
) -> QueueOptions {
    QueueOptions {
        config,
        routes: RoutesConfig::default(),
        hostname: "mx.example.test".into(),
        hooks,
        local: crate::support::local::example_test(
            &["alice@example.test", "bob@example.test"],
            &[("postmaster@example.test", "alice@example.test")],
        ),
        agents,
    }
}

fn mail(from: &str, to: &[&str], subject: &str) -> Incoming {
    Incoming {
        envelope: crate::support::outbound::envelope(from, to),
        message: format!("From: <{from}>\r\nSubject: {subject}\r\n\r\nHello.\r\n").into_bytes(),
        quarantine: None,
        session_id: "test".into(),
    }
}

fn maildir_files(state: &Path, mailbox: &str) -> Vec<Vec<u8>> {
    let (local, domain) = mailbox.split_once('@').unwrap();
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

/// Polls `cond` until it holds; panics after a generous deadline (a hang, not a timing check).
fn idle(queue: &Queue, spool: &Spool) -> bool {
    queue.is_empty() && spool.list().unwrap().is_empty()
}

async fn setup(state: &Path, config: QueueConfig, agents: Arc<dyn Agents>) -> (Arc<Spool>, Queue) {
    let spool = Arc::new(Spool::open(state.join("queue")).await.unwrap());
    let queue = Queue::start(spool.clone(), options(config, agents, Arc::new(NoHooks)))
        .await
        .unwrap();
    (spool, queue)
}

#[tokio::test]
async fn local_mail_lands_in_maildirs_once_and_leaves_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (spool, queue) = setup(state, short_config(), Scripted::new(state, 0)).await;
    for n in 0..5 {
        spool
            .store(mail(
                "carol@remote.test",
                &["bob@example.test", "Postmaster@example.test"],
                &format!("m{n}"),
            ))
            .await
            .unwrap();
    }
    crate::support::until("5 messages each for bob and alice", || {
        maildir_files(state, "bob@example.test").len() == 5
            && maildir_files(state, "alice@example.test").len() == 5
    })
    .await;
    crate::support::until("queue empty", || {
        queue.is_empty() && spool.list().unwrap().is_empty()
    })
    .await;
    let bob = maildir_files(state, "bob@example.test");
    let text = String::from_utf8(bob[0].clone()).unwrap();
    assert!(
        text.starts_with("Return-Path: <carol@remote.test>\r\nDelivered-To: bob@example.test\r\n")
    );
    assert!(text.ends_with("\r\n\r\nHello.\r\n"));
    // Nothing left behind: no file per message, only the spool's segment log, which holds no
    // queued message.
    for entry in std::fs::read_dir(state.join("queue")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with(".seg"), "unexpected {name}");
    }
    assert!(
        mailwit::spool::snapshot(&state.join("queue"))
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn deferred_mail_is_retried_with_backoff_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let agents = Scripted::new(state, 3);
    let (spool, queue) = setup(state, short_config(), agents.clone()).await;
    let id = spool
        .store(mail("alice@example.test", &["dave@remote.test"], "retry"))
        .await
        .unwrap();
    crate::support::until("first deferral recorded", || {
        queue
            .show(&id)
            .is_some_and(|m| m.recipients[0].status == RcptStatus::Deferred)
    })
    .await;
    let shown = queue.show(&id).unwrap();
    assert_eq!(
        shown.recipients[0].last_reply.as_ref().unwrap().enhanced,
        "4.3.2"
    );
    assert!(shown.recipients[0].next_attempt_ms > 0);
    crate::support::until("delivered on the 4th attempt", || idle(&queue, &spool)).await;
    assert_eq!(agents.calls.load(Ordering::SeqCst), 4);
    assert_eq!(agents.delivered.lock().unwrap().len(), 1);
    assert!(spool.list().unwrap().is_empty());
}

#[tokio::test]
async fn permanent_failure_bounces_to_sender_with_rfc3464_report() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (spool, queue) = setup(state, short_config(), Scripted::new(state, 0)).await;
    let mut m = mail(
        "alice@example.test",
        &["eve@fail.test", "bob@example.test"],
        "doomed",
    );
    m.envelope.recipients[0].orcpt = Some("rfc822;eve@fail.test".into());
    spool.store(m).await.unwrap();
    crate::support::until("bounce in alice's maildir", || {
        maildir_files(state, "alice@example.test").len() == 1
    })
    .await;
    crate::support::until("queue empty", || idle(&queue, &spool)).await;
    assert_eq!(
        maildir_files(state, "bob@example.test").len(),
        1,
        "bob still gets his copy"
    );
    let bounce = String::from_utf8(maildir_files(state, "alice@example.test")[0].clone()).unwrap();
    assert!(bounce.starts_with("Return-Path: <>\r\n"), "{bounce}");
    assert!(bounce.contains("multipart/report; report-type=delivery-status"));
    assert!(bounce.contains("Final-Recipient: rfc822; eve@fail.test"));
    assert!(bounce.contains("Original-Recipient: rfc822;eve@fail.test"));
    assert!(bounce.contains("Action: failed"));
    assert!(bounce.contains("Status: 5.1.1"));
    assert!(bounce.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here"));
    assert!(
        bounce.contains("Subject: doomed"),
        "the original comes back"
    );
    assert!(!bounce.contains("Final-Recipient: rfc822; bob@example.test"));
}

#[tokio::test]
async fn null_sender_and_notify_never_get_no_bounce() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let agents = Scripted::new(state, 0);
    let (spool, queue) = setup(state, short_config(), agents.clone()).await;
    spool
        .store(mail("", &["eve@fail.test"], "bounce of a bounce"))
        .await
        .unwrap();
    let mut never = mail("alice@example.test", &["eve@fail.test"], "never");
    never.envelope.recipients[0].notify = Some(Notify::default());
    spool.store(never).await.unwrap();
    // A third message proves the queue moved on past both.
    spool
        .store(mail("carol@remote.test", &["bob@example.test"], "marker"))
        .await
        .unwrap();
    crate::support::until("all processed", || {
        idle(&queue, &spool) && maildir_files(state, "bob@example.test").len() == 1
    })
    .await;
    assert_eq!(agents.calls.load(Ordering::SeqCst), 2);
    assert!(
        maildir_files(state, "alice@example.test").is_empty(),
        "no DSN was sent"
    );
    assert!(spool.list().unwrap().is_empty());
}

#[tokio::test]
async fn unknown_local_mailbox_bounces_and_success_notify_reports_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (spool, queue) = setup(state, short_config(), Scripted::new(state, 0)).await;
    let mut m = mail(
        "alice@example.test",
        &["nobody@example.test", "bob@example.test", "x@remote.test"],
        "dsn",
    );
    m.envelope.recipients[1].notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    m.envelope.recipients[2].notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    spool.store(m).await.unwrap();
    crate::support::until("one report for alice", || {
        maildir_files(state, "alice@example.test").len() == 1
    })
    .await;
    crate::support::until("queue empty", || idle(&queue, &spool)).await;
    let report = String::from_utf8(maildir_files(state, "alice@example.test")[0].clone()).unwrap();
    assert!(report.contains(
        "Final-Recipient: rfc822; nobody@example.test\r\nAction: failed\r\nStatus: 5.1.1"
    ));
    assert!(report.contains(
        "Final-Recipient: rfc822; bob@example.test\r\nAction: delivered\r\nStatus: 2.0.0"
    ));
    assert!(
        report
            .contains("Final-Recipient: rfc822; x@remote.test\r\nAction: relayed\r\nStatus: 2.0.0")
    );
}

#[tokio::test]
async fn mail_that_outlives_its_lifetime_bounces_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let agents = Scripted::new(state, usize::MAX);
    let config = QueueConfig {
        lifetime: Duration::from_millis(400),
        ..short_config()
    };
    let (spool, queue) = setup(state, config, agents.clone()).await;
    spool
        .store(mail("alice@example.test", &["dave@remote.test"], "slow"))
        .await
        .unwrap();
    crate::support::until("expiry bounce", || {
        maildir_files(state, "alice@example.test").len() == 1
    })
    .await;
    crate::support::until("queue empty", || idle(&queue, &spool)).await;
    assert!(
        agents.calls.load(Ordering::SeqCst) >= 2,
        "it was retried before giving up"
    );
    let bounce = String::from_utf8(maildir_files(state, "alice@example.test")[0].clone()).unwrap();
    assert!(
        bounce.contains("Action: failed\r\nStatus: 4.3.2"),
        "{bounce}"
    );
    assert!(bounce.contains("gave up"));
}

#[tokio::test]
async fn delay_warning_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let agents = Scripted::new(state, 8);
    let config = QueueConfig {
        delay_warning: Duration::from_millis(100),
        ..short_config()
    };
    let (spool, queue) = setup(state, config, agents.clone()).await;
    spool
        .store(mail("alice@example.test", &["dave@remote.test"], "late"))
        .await
        .unwrap();
    crate::support::until("delivered in the end", || idle(&queue, &spool)).await;
    let reports = maildir_files(state, "alice@example.test");
    assert_eq!(reports.len(), 1, "exactly one delay warning");
    let report = String::from_utf8(reports[0].clone()).unwrap();
    assert!(report.contains("Action: delayed\r\nStatus: 4.3.2"));
    assert!(
        report.contains("text/rfc822-headers"),
        "a delay report returns headers only"
    );
}

#[tokio::test]
async fn hold_release_retry_flush_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let agents = Scripted::new(state, 1);
    let config = QueueConfig {
        retry_first: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        ..short_config()
    };
    let (spool, queue) = setup(state, config, agents.clone()).await;
    let mut quarantined = mail("carol@remote.test", &["bob@example.test"], "held");
    quarantined.quarantine = Some("virus scanner said so".into());
    let held = spool.store(quarantined).await.unwrap();
    let a = spool
        .store(mail("alice@example.test", &["x@one.test"], "a"))
        .await
        .unwrap();
    crate::support::until("a deferred", || {
        queue
            .show(&a)
            .is_some_and(|m| !m.active && m.recipients[0].status == RcptStatus::Deferred)
    })
    .await;
    // Deferred for an hour: only a flush of its domain brings it forward.
    assert_eq!(queue.flush(Some("other.test")), 0);
    assert_eq!(queue.flush(Some("ONE.test")), 1);
    crate::support::until("a delivered after flush", || queue.show(&a).is_none()).await;

    let summary = queue.summary();
    assert_eq!(summary.len(), 1);
    assert_eq!(
        (summary[0].domain.as_str(), summary[0].recipients),
        ("example.test", 1)
    );
    let view = queue.show(&held).unwrap();
    assert!(view.held && view.quarantine.as_deref() == Some("virus scanner said so"));
    assert!(maildir_files(state, "bob@example.test").is_empty());
    assert!(queue.release(&held).await.unwrap());
    crate::support::until("released message delivered", || {
        maildir_files(state, "bob@example.test").len() == 1
    })
    .await;

    // A deferred message can be held, and removed without a bounce.
    let b = spool
        .store(mail("alice@example.test", &["y@slow.test"], "b"))
        .await
        .unwrap();
    crate::support::until("b known", || queue.show(&b).is_some()).await;
    assert!(queue.hold(&b).await.unwrap());
    assert!(queue.show(&b).unwrap().held);
    assert!(queue.remove(&b).await.unwrap());
    assert!(queue.show(&b).is_none());
    assert!(!queue.remove(&b).await.unwrap());
    assert!(!queue.retry(&b));
    crate::support::until("spool empty", || spool.list().unwrap().is_empty()).await;
    assert!(
        maildir_files(state, "alice@example.test").is_empty(),
        "removal sends no DSN"
    );
}

#[tokio::test]
async fn state_survives_restart_and_delivery_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let config = QueueConfig {
        retry_first: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        ..short_config()
    };
    let id = {
        let (spool, queue) = setup(state, config.clone(), Scripted::new(state, usize::MAX)).await;
        let id = spool
            .store(mail(
                "alice@example.test",
                &["x@one.test", "bob@example.test"],
                "r",
            ))
            .await
            .unwrap();
        crate::support::until("x deferred and recorded", || {
            queue
                .show(&id)
                .is_some_and(|m| !m.active && m.recipients[0].status == RcptStatus::Deferred)
        })
        .await;
        queue.hold(&id).await.unwrap();
        queue.shutdown();
        id
    };
    // A message stored while no queue manager runs (the engine spooled it, then crashed).
    let spool = Arc::new(Spool::open(state.join("queue")).await.unwrap());
    let orphan = spool
        .store(mail("carol@remote.test", &["bob@example.test"], "o"))
        .await
        .unwrap();
    drop(spool);

    let agents = Scripted::new(state, 0);
    let (_spool, queue) = setup(state, config, agents.clone()).await;
    let view = queue.show(&id).unwrap();
    assert!(view.held, "hold persisted");
    assert_eq!(view.recipients[0].status, RcptStatus::Deferred);
    assert_eq!(view.recipients[0].attempts, 1);
    assert_eq!(view.recipients[1].status, RcptStatus::Delivered);
    crate::support::until("orphan delivered", || queue.show(&orphan).is_none()).await;
    assert_eq!(maildir_files(state, "bob@example.test").len(), 2);
    queue.release(&id).await.unwrap();
    queue.retry(&id);
    crate::support::until("resumed message delivered", || queue.is_empty()).await;
    assert_eq!(
        maildir_files(state, "bob@example.test").len(),
        2,
        "bob not delivered twice"
    );
    assert_eq!(agents.delivered.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn per_destination_concurrency_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let mut agents = Scripted::new(state, 0);
    Arc::get_mut(&mut agents).unwrap().pause = Duration::from_millis(30);
    let config = QueueConfig {
        concurrency_per_destination: 2,
        ..short_config()
    };
    let (spool, queue) = setup(state, config, agents.clone()).await;
    for n in 0..12 {
        spool
            .store(mail("alice@example.test", &["x@one.test"], &format!("{n}")))
            .await
            .unwrap();
    }
    crate::support::until("all delivered", || idle(&queue, &spool)).await;
    assert_eq!(agents.delivered.lock().unwrap().len(), 12);
    let max = agents.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "max in flight {max}");
}

struct RouteAndWatch {
    events: Mutex<Vec<(String, DeliveryOutcome)>>,
}

#[async_trait]
impl QueueHooks for RouteAndWatch {
    async fn route(&self, _from: &ReversePath, rcpt: &Recipient) -> RouteDecision {
        match rcpt.address.as_str() {
            "sales@partner.test" => RouteDecision::Maildir("bob@example.test".into()),
            "spam@partner.test" => RouteDecision::Discard,
            _ => RouteDecision::Continue,
        }
    }
    async fn delivery(&self, event: &DeliveryEvent) {
        self.events
            .lock()
            .unwrap()
            .push((event.recipient.clone(), event.outcome));
    }
}

#[tokio::test]
async fn route_hook_decides_first_and_delivery_hook_sees_every_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let hooks = Arc::new(RouteAndWatch {
        events: Mutex::new(Vec::new()),
    });
    let spool = Arc::new(Spool::open(state.join("queue")).await.unwrap());
    let queue = Queue::start(
        spool.clone(),
        options(short_config(), Scripted::new(state, 1), hooks.clone()),
    )
    .await
    .unwrap();
    spool
        .store(mail(
            "",
            &[
                "sales@partner.test",
                "spam@partner.test",
                "x@remote.test",
                "eve@fail.test",
            ],
            "h",
        ))
        .await
        .unwrap();
    crate::support::until("done", || idle(&queue, &spool)).await;
    assert_eq!(maildir_files(state, "bob@example.test").len(), 1);
    let mut events = hooks.events.lock().unwrap().clone();
    events.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        events,
        vec![
            ("eve@fail.test".into(), DeliveryOutcome::Failed),
            ("sales@partner.test".into(), DeliveryOutcome::Delivered),
            ("spam@partner.test".into(), DeliveryOutcome::Delivered),
            ("x@remote.test".into(), DeliveryOutcome::Deferred),
            ("x@remote.test".into(), DeliveryOutcome::Delivered),
        ]
    );
}

/// Maildir at once; remote recipients wait until the test opens the gate.
struct Gated {
    maildir: Maildir,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl Agents for Gated {
    async fn deliver(&self, dest: &Destination, out: &Outbound<'_>) -> Attempt {
        if let Destination::Maildir(mailbox) = dest {
            return self.maildir.deliver(mailbox, out).await;
        }
        let _pass = self.gate.acquire().await.unwrap();
        Attempt::all(
            out,
            RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "ok")),
        )
    }
}

#[tokio::test]
async fn local_outcome_is_recorded_while_a_slow_destination_is_still_busy() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let agents = Arc::new(Gated {
        maildir: Maildir::new(state.join("mail"), "h"),
        gate: tokio::sync::Semaphore::new(0),
    });
    let (spool, queue) = setup(state, short_config(), agents.clone()).await;
    let id = spool
        .store(mail(
            "carol@remote.test",
            &["bob@example.test", "x@slow.test"],
            "split",
        ))
        .await
        .unwrap();
    // bob's copy is recorded (on disk) before the slow destination answers, so a crash now
    // would not deliver it twice.
    crate::support::until("bob recorded", || {
        queue
            .show(&id)
            .is_some_and(|m| m.recipients[0].status == RcptStatus::Delivered)
    })
    .await;
    // The spool's index shows a state record only once it is durable in the log.
    crate::support::until("bob's outcome durable", || {
        spool
            .states(&id)
            .unwrap()
            .iter()
            .any(|s| String::from_utf8_lossy(s).contains("\"status\":\"delivered\""))
    })
    .await;
    assert_eq!(
        queue.show(&id).unwrap().recipients[1].status,
        RcptStatus::Pending
    );
    agents.gate.add_permits(1);
    crate::support::until("done", || idle(&queue, &spool)).await;
    assert_eq!(maildir_files(state, "bob@example.test").len(), 1);
}

/// `cargo test -p mailwit --test queue_manager -- --ignored --nocapture local_delivery_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn local_delivery_throughput() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let state = dir.path().to_path_buf();
    let (spool, queue) = setup(&state, short_config(), Scripted::new(&state, 0)).await;
    let n = 1000;
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..20 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 20 {
                spool
                    .store(mail(
                        "carol@remote.test",
                        &["bob@example.test"],
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
    crate::support::until("all delivered", || idle(&queue, &spool)).await;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(maildir_files(&state, "bob@example.test").len(), n);
    let stats = spool.stats();
    println!(
        "spool + queue + Maildir: {n} messages from 20 writers in {secs:.2}s: {:.0} messages/s; spool fsyncs/message {:.2}",
        n as f64 / secs,
        (stats.file_fsyncs + stats.dir_fsyncs) as f64 / n as f64
    );
}
