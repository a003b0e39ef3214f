//! Durability: SIGKILL the server while clients send, restart it, and every message that got
//! a 250 is in a Maildir or the spool (duplicates allowed, losses not).

use crate::support::{Client, TestServer};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Sends messages until the connection breaks or `stop`; records tokens that got 250.
fn sender(
    addr: std::net::SocketAddr,
    worker: usize,
    acked: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut c) = Client::try_connect_raw(addr) else {
            return;
        };
        if c.try_reply().map(|r| r.code) != Some(220) {
            return;
        }
        let _ = c.try_send("EHLO crash.test\r\n");
        if c.try_reply().is_none() {
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let token = format!("token-{worker}-{n}");
            let body = format!(
                "MAIL FROM:<load@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
                 Subject: {token}\r\n\r\n{}\r\n.\r\n",
                "payload line\r\n".repeat(50)
            );
            if c.try_send(body).is_err() {
                return;
            }
            let replies: Vec<Option<u16>> = (0..4).map(|_| c.try_reply().map(|r| r.code)).collect();
            match replies.as_slice() {
                [Some(250), Some(250), Some(354), Some(250)] => {
                    acked.lock().unwrap().push(token);
                    count.fetch_add(1, Ordering::Relaxed);
                }
                _ => return,
            }
        }
    }
}

#[test]
fn sigkill_while_sending_loses_no_acknowledged_message() {
    let mut server = TestServer::start();
    let addr = server.addr("mx");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (acked, count, stop) = (acked.clone(), count.clone(), stop.clone());
            std::thread::spawn(move || sender(addr, w, acked, count, stop))
        })
        .collect();
    // Let a good number of messages through, then pull the plug mid-stream.
    let deadline = Instant::now() + crate::support::PATIENCE;
    while count.load(Ordering::Relaxed) < 60 {
        assert!(
            Instant::now() < deadline,
            "clients are not getting through:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= 60);

    // Restart on the same state: recovery, then delivery resumes.
    server.spawn();
    let held = server.all_messages();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|t| {
            !held
                .iter()
                .any(|m| contains(m, &format!("Subject: {t}\r\n")))
        })
        .collect();
    assert!(missing.is_empty(), "lost after SIGKILL: {missing:?}");

    // Everything local ends up in bob's Maildir; every delivered file is complete.
    let bob = server.wait_maildir("bob@example.test", acked.len());
    for file in &bob {
        let text = std::fs::read_to_string(file).unwrap();
        assert_eq!(
            text.matches("payload line\r\n").count(),
            50,
            "truncated: {}",
            file.display()
        );
    }
    let delivered: Vec<String> = bob
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for token in &acked {
        assert!(
            delivered
                .iter()
                .any(|m| m.contains(&format!("Subject: {token}\r\n"))),
            "{token} not delivered"
        );
    }
}
