//! Crash test: a child process stores messages (and its queue delivers them to Maildirs) while
//! the parent SIGKILLs it mid-flight. After a restart, every message whose store returned
//! (acknowledged) must end delivered; none lost. Duplicates are counted and printed
//! (at-least-once allows them).
//!
//! Two variants: both recipients local (Maildir), and one local plus one relayed to an
//! smtp-sink smarthost (SIGKILL during SMTP delivery).
//!
//! The child is this test binary re-run with MAILWIT_CRASH_CHILD set (and MAILWIT_CRASH_SINK
//! to the sink's port in the relay variant).

use crate::support::sink::Sink;
use mailwit::config::queue::{QueueConfig, RoutesConfig};
use mailwit::delivery::{Agents, LocalOnly, maildir::Maildir};
use mailwit::policy::{Envelope, NoHooks, Recipient, ReversePath};
use mailwit::queue::{Queue, QueueOptions};
use mailwit::spool::{Incoming, Spool};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The queue; with `sink`, mail for other domains goes to a smarthost on that port.
async fn start_queue(state: &Path, sink: Option<u16>) -> (Arc<Spool>, Queue) {
    let spool = Arc::new(Spool::open(state.join("queue")).await.unwrap());
    let config = QueueConfig {
        retry_first: Duration::from_millis(100),
        client_timeout: Some(Duration::from_secs(10)),
        ..QueueConfig::default()
    };
    let routes: RoutesConfig = match sink {
        Some(port) => toml::from_str(&format!(
            "smarthost = {{ host = \"127.0.0.1\", port = {port}, tls = \"none\" }}"
        ))
        .unwrap(),
        None => RoutesConfig::default(),
    };
    let agents: Arc<dyn Agents> = match sink {
        Some(_) => {
            Arc::new(mailwit::delivery::from_config(state, "crash.test", &config, &routes).unwrap())
        }
        None => Arc::new(LocalOnly {
            maildir: Maildir::new(state.join("mail"), "crash.test"),
        }),
    };
    let queue = Queue::start(
        spool.clone(),
        QueueOptions {
            config,
            routes,
            hostname: "crash.test".into(),
            hooks: Arc::new(NoHooks),
            local: crate::support::local::example_test(
                &["alice@example.test", "bob@example.test"],
                &[],
            ),
            agents,
        },
    )
    .await
    .unwrap();
    (spool, queue)
}

fn message(n: usize, second: &str) -> Incoming {
    Incoming {
        envelope: Envelope {
            reverse_path: ReversePath {
                address: "sender@remote.test".into(),
                ..Default::default()
            },
            recipients: vec![
                Recipient {
                    address: "bob@example.test".into(),
                    ..Default::default()
                },
                Recipient {
                    address: second.into(),
                    ..Default::default()
                },
            ],
        },
        message: format!("Subject: crash-{n}\r\n\r\n{}\r\n", "x".repeat(2000)).into_bytes(),
        quarantine: None,
        session_id: "crash".into(),
    }
}

/// The child: stores messages from 8 concurrent writers forever, printing each acknowledged
/// number; the queue delivers meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child of crash_during_store_and_delivery_loses_nothing"]
async fn crash_child() {
    let Ok(state) = std::env::var("MAILWIT_CRASH_CHILD") else {
        return;
    };
    let sink = std::env::var("MAILWIT_CRASH_SINK")
        .ok()
        .map(|p| p.parse().unwrap());
    let second = if sink.is_some() {
        "carol@remote.test"
    } else {
        "alice@example.test"
    };
    let (spool, _queue) = start_queue(Path::new(&state), sink).await;
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let spool = spool.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                spool.store(message(n, second)).await.unwrap();
                let mut out = std::io::stdout().lock();
                writeln!(out, "ACK {n}").unwrap();
                out.flush().unwrap();
            }
        }));
    }
    // The writers never end; the parent kills this process.
    futures::future::join_all(tasks).await;
}

/// How many copies of each numbered message a directory holds (a Maildir's new/ or an
/// smtp-sink dump directory).
fn copies(dir: &Path) -> HashMap<usize, usize> {
    let mut counts = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text =
            String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned();
        if !text.contains(&"x".repeat(2000)) {
            continue; // a transaction the sink saw cut off
        }
        let n: usize = text
            .split("Subject: crash-")
            .nth(1)
            .and_then(|rest| rest.split(['\r', '\n']).next())
            .and_then(|s| s.parse().ok())
            .expect("a numbered message");
        *counts.entry(n).or_insert(0usize) += 1;
    }
    counts
}

#[tokio::test]
async fn crash_during_store_and_delivery_loses_nothing() {
    crash_rounds(false).await;
}

#[tokio::test]
async fn crash_during_relay_delivery_loses_nothing() {
    crash_rounds(true).await;
}

async fn crash_rounds(relay: bool) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let state = dir.path();
    // The relay variant's smtp-sink dumps (it may run as another user, see support/helper_dir.rs).
    let dumps = crate::support::helper_dir::helper_dir();
    let mut acked = Vec::new();
    for round in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sink = relay.then(|| {
            Sink::start_dumping_to(port, &dumps.path().join(format!("round{round}")), &[])
        });
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--ignored",
                "--exact",
                "queue_crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MAILWIT_CRASH_CHILD", state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if relay {
            command.env("MAILWIT_CRASH_SINK", port.to_string());
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        // Kill after a different number of acknowledgements each round.
        let kill_after = 150 + round * 70;
        let mut got = 0;
        while got < kill_after {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(n) = line.strip_prefix("ACK ") {
                acked.push(n.parse::<usize>().unwrap() + round * 1_000_000);
                got += 1;
            }
        }
        // SIGKILL: no destructor, no flush, mid-store and mid-delivery.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        // Acks printed before the kill took effect still count.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("ACK ") {
                acked.push(n.parse::<usize>().unwrap() + round * 1_000_000);
            }
        }
        child.wait().unwrap();
        assert!(got > 0, "child acknowledged nothing in round {round}");
        // Restart and let the queue finish. The next round's child numbers from 0 again: this
        // round's mail is moved aside afterwards.
        let (spool, queue) = start_queue(state, relay.then_some(port)).await;
        for _ in 0..1500 {
            if queue.is_empty() && spool.list().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(queue.is_empty(), "queue drained after restart");
        queue.shutdown();
        drop(queue);
        drop(spool);
        drop(sink);
        let mailboxes: &[&str] = if relay { &["bob"] } else { &["bob", "alice"] };
        for mailbox in mailboxes {
            let from = state.join("mail/example.test").join(mailbox);
            let to = state.join(format!("round{round}")).join(mailbox);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::rename(&from, &to).unwrap();
        }
    }
    let mut lost = 0;
    let mut duplicates = 0;
    let mut delivered = 0;
    let second = if relay { "carol" } else { "alice" };
    for round in 0..3usize {
        for mailbox in ["bob", second] {
            let dir = if mailbox == "carol" {
                dumps.path().join(format!("round{round}"))
            } else {
                state
                    .join(format!("round{round}"))
                    .join(mailbox)
                    .join("new")
            };
            let counts = copies(&dir);
            for &a in acked.iter().filter(|&&a| a / 1_000_000 == round) {
                match counts.get(&(a % 1_000_000)) {
                    None => lost += 1,
                    Some(&c) => {
                        delivered += 1;
                        duplicates += c - 1;
                    }
                }
            }
        }
    }
    println!(
        "crash test ({}): {} acknowledged messages x 2 recipients, {delivered} delivered, {lost} lost, {duplicates} duplicates",
        if relay {
            "Maildir + smtp-sink relay"
        } else {
            "Maildir"
        },
        acked.len()
    );
    assert_eq!(lost, 0, "an acknowledged message was lost");
    assert_eq!(delivered, acked.len() * 2);
}
