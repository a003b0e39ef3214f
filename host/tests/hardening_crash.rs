//! Crash consistency: load against the real `mailwit` binary, SIGKILL at varied moments (while
//! clients send and while the queue delivers to the Maildir), restart on the same state dir,
//! repeat. At the end every message that got 250 is in the Maildir at least once (duplicates
//! counted and reported, losses fail the test), and no Maildir `new/` ever holds a half-written
//! file: each message carries a unique `X-Crash-Id` header and a trailer line naming the same id,
//! and every file is checked after every kill and at the end.
//!
//! The relay variant does the same with every message relayed through the smarthost route to
//! Postfix's smtp-sink (its dumps count as delivered), so kills land during outbound delivery.
//!
//! Default: 5 cycles. Full run: `HARDENING_CRASH_CYCLES=25 cargo test -p mailwit --test
//! hardening_crash -- --nocapture`.

use crate::support::sink::Sink;
use crate::support::{ALICE, Client, TestServer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PAYLOAD_LINES: usize = 40;
const LOCAL: &str = "bob@example.test";
const REMOTE: &str = "bob@remote.test";
/// Guards the final wait for delivery against a hang; not a speed assertion.
const DELIVERY_PATIENCE: Duration = Duration::from_secs(600);

fn cycles() -> usize {
    std::env::var("HARDENING_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn message(id: &str, to: &str) -> String {
    format!(
        "From: load@remote.test\r\nTo: {to}\r\nSubject: crash load\r\nX-Crash-Id: {id}\r\n\r\n\
         {}END-OF-MESSAGE {id}\r\n",
        "payload line\r\n".repeat(PAYLOAD_LINES)
    )
}

/// The id of a complete delivered message, or why the file is not complete. Line based, so it
/// reads smtp-sink's dumps too.
fn complete_id(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let id = lines
        .iter()
        .find_map(|l| l.strip_prefix("X-Crash-Id: "))
        .ok_or("no X-Crash-Id header")?
        .to_string();
    if lines.iter().filter(|l| **l == "payload line").count() != PAYLOAD_LINES {
        return Err(format!("{id}: payload truncated"));
    }
    if !lines.contains(&format!("END-OF-MESSAGE {id}").as_str()) {
        return Err(format!("{id}: trailer missing"));
    }
    Ok(id)
}

/// smtp-sink's dumps: (id → complete copies), and how many dumps are incomplete (transfers cut
/// by the kill before the final dot, which mailwit retries: not deliveries).
fn relayed(sink: &Sink) -> (BTreeMap<String, usize>, usize) {
    let mut copies = BTreeMap::new();
    let mut cut = 0;
    for entry in std::fs::read_dir(sink.dump_dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        match complete_id(&bytes) {
            Ok(id) => *copies.entry(id).or_insert(0) += 1,
            Err(_) => cut += 1,
        }
    }
    (copies, cut)
}

/// Every file in the Maildir's `new/` and `cur/`: (id → copies); panics on a half-written file.
fn delivered(server: &TestServer) -> BTreeMap<String, usize> {
    let user = server.state_dir().join("mail/example.test/bob");
    let mut copies = BTreeMap::new();
    for sub in ["new", "cur"] {
        let files: Vec<PathBuf> = std::fs::read_dir(user.join(sub))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            match complete_id(&bytes) {
                Ok(id) => *copies.entry(id).or_insert(0) += 1,
                Err(why) => panic!("half-written file {}: {why}", file.display()),
            }
        }
    }
    copies
}

/// Where the load goes: local mail to the MX listener, or relayed mail submitted by alice.
#[derive(Clone, Copy)]
enum Load {
    Local(std::net::SocketAddr),
    Relay(std::net::SocketAddr),
}

/// Sends messages on one connection after another until `stop` or the server goes away;
/// records the ids that got 250.
fn sender(
    load: Load,
    prefix: String,
    acked: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let (mut c, from, to) = match load {
            Load::Local(addr) => {
                let Some(mut c) = Client::try_connect_raw(addr) else {
                    return;
                };
                if c.try_reply().map(|r| r.code) != Some(220) {
                    return;
                }
                if c.try_send("EHLO crash.test\r\n").is_err() || c.try_reply().is_none() {
                    return;
                }
                (c, "load@remote.test", LOCAL)
            }
            Load::Relay(addr) => {
                // Panics (caught by the join) if the server dies during the TLS/AUTH dialog.
                let mut c = Client::connect_tls(addr);
                c.expect("EHLO crash.test", 250);
                c.login_alice();
                (c, ALICE, REMOTE)
            }
        };
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let id = format!("{prefix}-{n}");
            let transaction = format!(
                "MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n{}.\r\n",
                message(&id, to)
            );
            if c.try_send(transaction).is_err() {
                return;
            }
            let replies: Vec<Option<u16>> = (0..4).map(|_| c.try_reply().map(|r| r.code)).collect();
            match replies.as_slice() {
                [Some(250), Some(250), Some(354), Some(250)] => {
                    acked.lock().unwrap().push(id);
                    count.fetch_add(1, Ordering::Relaxed);
                }
                _ => return,
            }
        }
    }
}

/// Runs `cycles` load/SIGKILL/restart cycles; returns the acknowledged ids.
fn kill_cycles(server: &mut TestServer, cycles: usize, relay: bool) -> BTreeSet<String> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    for cycle in 0..cycles {
        if cycle > 0 {
            server.spawn();
        }
        let load = if relay {
            Load::Relay(server.addr("submissions"))
        } else {
            Load::Local(server.addr("mx"))
        };
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (acked, count, stop) = (acked.clone(), count.clone(), stop.clone());
                let prefix = format!("c{cycle}-w{w}");
                std::thread::spawn(move || sender(load, prefix, acked, count, stop))
            })
            .collect();
        // Vary the moment: after a cycle-dependent number of acks, then a cycle-dependent pause,
        // so kills land mid-DATA, mid-fsync, mid-delivery and in the recovery after a restart.
        let target = 5 + (cycle * 13) % 40;
        let deadline = Instant::now() + crate::support::PATIENCE;
        while count.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: clients are not getting through:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(((cycle * 17) % 60) as u64));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            let _ = w.join(); // a relay sender may panic when the server dies mid-dialog
        }
        // Right after the kill: whatever is in the Maildir is complete.
        delivered(server);
    }
    // Last restart: recovery, then delivery of everything that got 250.
    server.spawn();
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= 5 * cycles);
    acked
}

#[test]
fn sigkill_cycles_lose_no_acknowledged_message_and_deliver_no_partial_file() {
    let cycles = cycles();
    let mut server = TestServer::start();
    let acked = kill_cycles(&mut server, cycles, false);
    let deadline = Instant::now() + DELIVERY_PATIENCE;
    let copies = loop {
        let copies = delivered(&server);
        if acked.iter().all(|id| copies.contains_key(id)) {
            break copies;
        }
        if Instant::now() > deadline {
            let lost: Vec<&String> = acked
                .iter()
                .filter(|id| !copies.contains_key(*id))
                .collect();
            panic!("lost after SIGKILL: {lost:?}\n{}", server.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let files: usize = copies.values().sum();
    let duplicates = files - copies.len();
    let unacked_delivered = copies.keys().filter(|id| !acked.contains(*id)).count();
    println!(
        "crash harness: cycles={cycles} acked={} delivered_ids={} files={files} \
         duplicates={duplicates} delivered_without_ack={unacked_delivered} lost=0",
        acked.len(),
        copies.len()
    );
}

#[test]
fn sigkill_cycles_during_relay_delivery_lose_no_acknowledged_message() {
    let cycles = cycles();
    let sink = Sink::start(&[]);
    let config = crate::support::config(
        "",
        &format!(
            "[routes]\nsmarthost = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}\n\
             [queue]\nretry_first = \"1s\"\nretry_max = \"2s\"\nclient_timeout = \"30s\"\n",
            sink.port()
        ),
    );
    let mut server = TestServer::with_config(&config);
    let acked = kill_cycles(&mut server, cycles, true);
    let deadline = Instant::now() + DELIVERY_PATIENCE;
    let (copies, cut) = loop {
        let (copies, cut) = relayed(&sink);
        if acked.iter().all(|id| copies.contains_key(id)) {
            break (copies, cut);
        }
        if Instant::now() > deadline {
            let lost: Vec<&String> = acked
                .iter()
                .filter(|id| !copies.contains_key(*id))
                .collect();
            panic!("lost after SIGKILL: {lost:?}\n{}", server.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dumps: usize = copies.values().sum();
    let duplicates = dumps - copies.len();
    let unacked_delivered = copies.keys().filter(|id| !acked.contains(*id)).count();
    println!(
        "crash harness (relay): cycles={cycles} acked={} relayed_ids={} dumps={dumps} \
         duplicates={duplicates} cut_transfers={cut} delivered_without_ack={unacked_delivered} lost=0",
        acked.len(),
        copies.len()
    );
}
