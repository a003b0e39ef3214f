//! Abuse against the real `mailwit` binary: slow clients, connection floods, AUTH brute force,
//! gigantic lines, binary garbage, invalid UTF-8, pipelined floods, early talkers, TLS garbage,
//! half-open TLS, clients that never read. Each test proves the abuser gets a precise reply or a
//! close, that other clients are still served, and (where it matters) that the server's memory
//! stays bounded (VmRSS from /proc, generous bounds, never timings).
//!
//! Quick tests run in `cargo test --workspace`. The long variants are `#[ignore]`d:
//! `cargo test -p mailwit --test hardening_abuse -- --ignored --nocapture --test-threads 1`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::{Client, TestServer, config};

const MIB: u64 = 1024 * 1024;

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// xorshift64*: deterministic garbage.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One complete transaction to bob; asserts every reply.
fn deliver_one(addr: SocketAddr, subject: &str) {
    let mut c = Client::connect(addr);
    c.expect("EHLO other.test", 250);
    let end = c.send_mail(
        "a@remote.test",
        &["bob@example.test"],
        &crate::support::message(subject, "still served"),
    );
    assert_eq!(end.code, 250, "{end:?}");
    c.expect("QUIT", 221);
}

fn deliver_one_from(addr: SocketAddr, from: &str, subject: &str) {
    let mut c = Client::connect_raw_from(addr, Some(from));
    assert_eq!(c.reply().code, 220);
    c.expect("EHLO other.test", 250);
    let end = c.send_mail(
        "a@remote.test",
        &["bob@example.test"],
        &crate::support::message(subject, "still served"),
    );
    assert_eq!(end.code, 250, "{end:?}");
    c.expect("QUIT", 221);
}

/// Reads until the server closes (EOF or reset) and returns what came; panics if it does not
/// close within the patience bound.
fn closed_by_server(s: &mut TcpStream) -> Vec<u8> {
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
    sink
}

/// Sends `text` one byte at a time with `pause` between bytes.
fn dribble(c: &mut Client, text: &str, pause: Duration) {
    for b in text.bytes() {
        c.send([b]);
        std::thread::sleep(pause);
    }
}

#[test]
fn slow_client_is_served_and_others_are_unaffected() {
    let server = TestServer::start();
    let addr = server.addr("mx");
    let slow = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        // A byte per 100 ms over about five seconds of dialog.
        dribble(&mut c, "EHLO slow.test\r\n", Duration::from_millis(100));
        assert_eq!(c.reply().code, 250);
        dribble(
            &mut c,
            "MAIL FROM:<slow@remote.test>\r\n",
            Duration::from_millis(100),
        );
        assert_eq!(c.reply().code, 250);
        c.expect("RCPT TO:<bob@example.test>", 250);
        c.expect("DATA", 354);
        dribble(
            &mut c,
            "Subject: slow\r\n\r\nbody\r\n",
            Duration::from_millis(50),
        );
        c.expect(".", 250);
        c.expect("QUIT", 221);
    });
    // Meanwhile others send whole transactions.
    for i in 0..5 {
        deliver_one(addr, &format!("fast{i}"));
    }
    slow.join().unwrap();
    assert_eq!(server.wait_maildir("bob@example.test", 6).len(), 6);
    assert_eq!(server.all_messages().len(), 6);
}

/// Many connections from one address: the per-address limit refuses the excess with 421 4.7.0,
/// a second address is still served, and the global limit holds over all addresses.
#[test]
fn connection_floods_hit_per_address_and_global_limits() {
    let server = TestServer::with_config(&config(
        "[server.limits]\nmax_connections = 60\nmax_connections_per_ip = 40\n",
        "",
    ));
    let addr = server.addr("mx");
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let mut c = Client::connect_raw(addr);
        let reply = c.reply();
        match reply.code {
            220 => held.push(c),
            421 => {
                assert_eq!(reply.enhanced(), "4.7.0", "{reply:?}");
                assert!(c.is_closed());
                refused += 1;
            }
            _ => panic!("{reply:?}"),
        }
    }
    assert_eq!((held.len(), refused), (40, 160));
    // A second address is served (a full transaction).
    deliver_one_from(addr, "127.0.0.2", "second address");
    // Fill the global limit from more addresses: 40 + 20 = 60, then everybody is refused.
    for _ in 0..20 {
        let mut c = Client::connect_raw_from(addr, Some("127.0.0.3"));
        assert_eq!(c.reply().code, 220);
        held.push(c);
    }
    for from in ["127.0.0.4", "127.0.0.5"] {
        let mut c = Client::connect_raw_from(addr, Some(from));
        let reply = c.reply();
        assert_eq!((reply.code, reply.enhanced().as_str()), (421, "4.7.0"));
    }
    // The held connections are alive and served.
    for c in held.iter_mut().step_by(7) {
        c.expect("NOOP", 250);
    }
    drop(held);
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let mut c = Client::connect_raw_from(addr, Some("127.0.0.4"));
        if c.reply().code == 220 {
            c.expect("QUIT", 221);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slots never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Password guessing: each failure is 535 5.7.8 (and slower), the limit closes the session with
/// 421 4.7.0; the right password on a new connection still works.
#[test]
fn auth_brute_force_is_throttled_then_disconnected() {
    let server = TestServer::with_config(&config("[server.limits]\nmax_auth_failures = 4\n", ""));
    let addr = server.addr("submissions");
    let mut c = Client::connect_tls(addr);
    c.expect("EHLO guesser.test", 250);
    for guess in 0..3 {
        let token = crate::support::b64(&format!("\0{}\0guess{guess}", crate::support::ALICE));
        let reply = c.cmd(&format!("AUTH PLAIN {token}"));
        assert_eq!((reply.code, reply.enhanced().as_str()), (535, "5.7.8"));
    }
    // LOGIN counts too.
    c.expect("AUTH LOGIN", 334);
    c.expect(&crate::support::b64(crate::support::ALICE), 334);
    let reply = c.cmd(&crate::support::b64("guess3"));
    assert_eq!((reply.code, reply.enhanced().as_str()), (535, "5.7.8"));
    let reply = c.reply();
    assert_eq!((reply.code, reply.enhanced().as_str()), (421, "4.7.0"));
    assert!(c.is_closed());
    assert!(server.log().contains("auth"), "nothing logged");

    let mut ok = Client::connect_tls(addr);
    ok.expect("EHLO alice.test", 250);
    ok.login_alice();
    ok.expect("QUIT", 221);
}

/// A megabyte command line is refused with 500 5.5.2 without being buffered, the session goes
/// on; a megabyte text line makes the message fail, not the server.
#[test]
fn megabyte_lines_are_refused_and_memory_stays_bounded() {
    let server = TestServer::start();
    let before = rss(server.pid());
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO big.test", 250);
    let mut line = vec![b'A'; 8 * MIB as usize];
    line.extend_from_slice(b"\r\n");
    c.send(&line);
    let reply = c.reply();
    assert_eq!((reply.code, reply.enhanced().as_str()), (500, "5.5.2"));
    c.expect("NOOP", 250);
    // A huge MAIL argument, same answer.
    c.send(format!(
        "MAIL FROM:<{}@remote.test>\r\n",
        "x".repeat(MIB as usize)
    ));
    assert_eq!(c.reply().code, 500);
    // A huge text line inside DATA.
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.expect("DATA", 354);
    c.send(b"Subject: long\r\n\r\n");
    c.send(&line);
    let reply = c.cmd(".");
    assert!((500..600).contains(&reply.code), "{reply:?}");
    c.expect("NOOP", 250);
    let after = rss(server.pid());
    eprintln!("megabyte lines: RSS {before} -> {after}");
    assert!(
        after < before + 64 * MIB,
        "RSS grew from {before} to {after}"
    );
    assert!(server.all_messages().is_empty());
    deliver_one(server.addr("mx"), "after-long-lines");
}

/// Random bytes (NUL, bare CR, high bit, over-long lines) get error replies, then 421 4.7.0 at
/// the bad-command limit; a blob with line feeds anywhere ends the same way. The server keeps
/// serving others.
#[test]
fn binary_garbage_gets_errors_then_421() {
    let server = TestServer::start();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut lines = 0;
    for round in 0..6 {
        let mut c = Client::connect(server.addr("mx"));
        if round % 2 == 1 {
            c.expect("EHLO garbage.test", 250);
        }
        let closing = loop {
            let len = 1 + (rng.next() % 700) as usize;
            let mut line: Vec<u8> = rng.bytes(len).into_iter().filter(|&b| b != b'\n').collect();
            line.extend_from_slice(b"\r\n");
            c.send(&line);
            lines += 1;
            let reply = c.reply();
            assert!(
                (500..600).contains(&reply.code) || reply.code == 421,
                "{reply:?}"
            );
            if reply.code == 421 {
                break reply;
            }
        };
        assert_eq!(closing.enhanced(), "4.7.0", "{closing:?}");
        assert!(c.is_closed());
    }
    // Whole blobs with CR and LF anywhere: the server answers or closes, and stays up.
    for _ in 0..4 {
        let mut c = Client::connect(server.addr("mx"));
        let _ = c.try_send(rng.bytes(16 * 1024));
        while let Some(reply) = c.try_reply() {
            if reply.code == 421 {
                break;
            }
        }
    }
    eprintln!("garbage lines sent: {lines}");
    deliver_one(server.addr("mx"), "after-garbage");
    assert_eq!(server.wait_maildir("bob@example.test", 1).len(), 1);
}

/// Invalid UTF-8 in addresses, with and without SMTPUTF8: a 5xx, never a panic or a message.
#[test]
fn invalid_utf8_in_smtputf8_addresses_is_refused() {
    let server = TestServer::with_config(&config("[server.limits]\nmax_bad_commands = 1000\n", ""));
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO utf8.test", 250);
    let bad: &[&[u8]] = &[
        b"\xff\xfe",
        b"b\xc3",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        b"\x80bob",
        b"bo\x00b",
    ];
    for local in bad {
        for smtputf8 in [" SMTPUTF8", ""] {
            let mut line = b"MAIL FROM:<".to_vec();
            line.extend_from_slice(local);
            line.extend_from_slice(b"@remote.test>");
            line.extend_from_slice(smtputf8.as_bytes());
            line.extend_from_slice(b"\r\n");
            c.send(&line);
            let reply = c.reply();
            assert!((500..600).contains(&reply.code), "{line:?}: {reply:?}");
        }
        c.expect("MAIL FROM:<a@remote.test> SMTPUTF8", 250);
        let mut line = b"RCPT TO:<".to_vec();
        line.extend_from_slice(local);
        line.extend_from_slice(b"@example.test>\r\n");
        c.send(&line);
        let reply = c.reply();
        assert!((500..600).contains(&reply.code), "{line:?}: {reply:?}");
        c.expect("RSET", 250);
    }
    // Valid UTF-8 needs SMTPUTF8, and an unknown UTF-8 mailbox is just unknown.
    c.expect("MAIL FROM:<a@remote.test>", 250);
    let reply = c.cmd("RCPT TO:<bøb@example.test>");
    assert!((500..600).contains(&reply.code), "{reply:?}");
    c.expect("RSET", 250);
    c.expect("MAIL FROM:<ä@remote.test> SMTPUTF8", 250);
    let reply = c.cmd("RCPT TO:<bøb@example.test>");
    assert_eq!(reply.code, 550, "{reply:?}");
    c.expect("QUIT", 221);
    assert!(server.all_messages().is_empty());
}

/// Thousands of pipelined commands in one write: every one answered, in order.
#[test]
fn pipelined_flood_is_answered_in_order() {
    let server = TestServer::start();
    let stream = TcpStream::connect(server.addr("mx")).unwrap();
    stream
        .set_read_timeout(Some(crate::support::PATIENCE))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    const N: usize = 20_000;
    let sender = std::thread::spawn(move || {
        let mut batch = b"EHLO flood.test\r\n".to_vec();
        for _ in 0..N {
            batch.extend_from_slice(b"NOOP\r\n");
        }
        batch.extend_from_slice(b"MAIL FROM:<a@remote.test>\r\n");
        for _ in 0..150 {
            batch.extend_from_slice(b"RCPT TO:<bob@example.test>\r\n");
        }
        batch.extend_from_slice(b"QUIT\r\n");
        writer.write_all(&batch).unwrap();
    });
    let mut text = String::new();
    let mut reader = std::io::BufReader::new(stream);
    reader.read_to_string(&mut text).unwrap();
    sender.join().unwrap();
    let codes: Vec<&str> = text
        .lines()
        .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
        .map(|l| &l[..3])
        .collect();
    // Greeting, EHLO, N NOOPs, MAIL, 100 RCPTs accepted then 452 4.5.3, QUIT.
    assert_eq!(codes.len(), 1 + 1 + N + 1 + 150 + 1, "{}", codes.len());
    assert_eq!(codes[0], "220");
    assert!(codes[1..N + 3].iter().all(|&c| c == "250"));
    assert!(codes[N + 3..N + 103].iter().all(|&c| c == "250"));
    assert!(codes[N + 103..N + 153].iter().all(|&c| c == "452"));
    assert_eq!(*codes.last().unwrap(), "221");
}

/// A client that talks before the greeting is refused with 554 5.5.0, even when it sends a
/// whole pipelined transaction; nothing is spooled.
#[test]
fn early_talker_with_a_whole_transaction_is_refused() {
    let toml = config("", "").replacen(
        "role = \"mx\"\n",
        "role = \"mx\"\ngreeting_delay_ms = 500\n",
        1,
    );
    let server = TestServer::with_config(&toml);
    for _ in 0..3 {
        let mut c = Client::connect_raw(server.addr("mx"));
        c.send(format!(
            "EHLO eager.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\n\
             DATA\r\n{}.\r\nQUIT\r\n",
            crate::support::message("eager", "x")
        ));
        let reply = c.reply();
        assert_eq!((reply.code, reply.enhanced().as_str()), (554, "5.5.0"));
        assert!(c.is_closed());
    }
    assert!(server.all_messages().is_empty());
    deliver_one(server.addr("mx"), "patient");
}

/// Garbage, plaintext SMTP and truncated handshakes on the implicit-TLS port: the connection is
/// closed, the server stays up, a real TLS client is served.
#[test]
fn tls_handshake_garbage_on_the_implicit_tls_port() {
    let server = TestServer::with_config(&config("[server.timeouts]\ngreeting = 3\n", ""));
    let addr = server.addr("submissions");
    let mut rng = Rng(0xdead_beef_0000_0001);
    let mut payloads: Vec<Vec<u8>> = vec![
        b"EHLO plaintext.test\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        // A TLS record header announcing a handshake longer than what follows.
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0xff],
        // A record header with an absurd length.
        vec![0x16, 0x03, 0x03, 0x7f, 0xff],
        // SSLv2-style hello.
        vec![0x80, 0x2e, 0x01, 0x00, 0x02],
        vec![0u8; 4096],
    ];
    for _ in 0..10 {
        payloads.push(rng.bytes(2048));
    }
    let mut streams = Vec::new();
    for payload in &payloads {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(crate::support::PATIENCE)).unwrap();
        let _ = s.write_all(payload);
        streams.push(s);
    }
    // Each gets a TLS alert at most, then the server closes (at once, or at the greeting
    // timeout for the truncated records); never a plaintext reply.
    for mut s in streams {
        let sink = closed_by_server(&mut s);
        assert!(
            !String::from_utf8_lossy(&sink).contains("220"),
            "plaintext greeting on the TLS port"
        );
    }
    let mut c = Client::connect_tls(addr);
    c.expect("EHLO real.test", 250);
    c.login_alice();
    c.expect("QUIT", 221);
    // STARTTLS garbage: after 220 the client sends junk instead of a ClientHello.
    let mut s = TcpStream::connect(server.addr("submission")).unwrap();
    s.set_read_timeout(Some(crate::support::PATIENCE)).unwrap();
    for (command, reply) in [
        (&b""[..], "220 "),
        (b"EHLO junk.test\r\n", "250 "),
        (b"STARTTLS\r\n", "220 "),
    ] {
        s.write_all(command).unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(reply) {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed while waiting for {reply:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    s.write_all(&rng.bytes(1024)).unwrap();
    closed_by_server(&mut s);
    deliver_one(server.addr("mx"), "after-tls-garbage");
}

/// Half-open TLS: clients that start a handshake and stall, or connect and say nothing, are
/// closed at the greeting timeout; meanwhile others are served.
#[test]
fn half_open_tls_connections_time_out_and_others_are_served() {
    let server = TestServer::with_config(&config("[server.timeouts]\ngreeting = 2\n", ""));
    let addr = server.addr("submissions");
    let mut stalled = Vec::new();
    for i in 0..20 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(crate::support::PATIENCE)).unwrap();
        if i % 2 == 0 {
            // The first bytes of a ClientHello record, then nothing.
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
        }
        stalled.push(s);
    }
    // Served while 20 handshakes hang.
    let mut c = Client::connect_tls(addr);
    c.expect("EHLO real.test", 250);
    c.login_alice();
    let end = c.send_mail(
        "alice@example.test",
        &["bob@example.test"],
        &crate::support::message("during-half-open", "x"),
    );
    assert_eq!(end.code, 250);
    c.expect("QUIT", 221);
    // Each stalled one is closed by the server (EOF or reset), not left open forever.
    for mut s in stalled {
        let sink = closed_by_server(&mut s);
        assert!(!String::from_utf8_lossy(&sink).contains("220"));
    }
    assert_eq!(server.wait_maildir("bob@example.test", 1).len(), 1);
}

/// Clients that send a flood of pipelined commands and never read a reply: the server stops
/// reading when its writes block, so its memory stays bounded; others are served.
#[test]
fn clients_that_never_read_keep_memory_bounded() {
    let server = TestServer::with_config(&config("[server.timeouts]\ncommand = 5\n", ""));
    let addr = server.addr("mx");
    let before = rss(server.pid());
    let mut writers = Vec::new();
    for _ in 0..8 {
        writers.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let chunk = b"NOOP\r\n".repeat(10_000);
            let mut sent = 0u64;
            // Until the server stops reading (our write times out) or 64 MiB went out.
            while sent < 64 * MIB {
                match s.write(&chunk) {
                    Ok(n) => sent += n as u64,
                    Err(_) => break,
                }
            }
            (s, sent)
        }));
    }
    let held: Vec<(TcpStream, u64)> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let during = rss(server.pid());
    let sent: u64 = held.iter().map(|(_, n)| n).sum();
    eprintln!(
        "never-reading clients: {} sent {} MiB in total; RSS {} -> {} MiB",
        held.len(),
        sent / MIB,
        before / MIB,
        during / MIB
    );
    assert!(
        sent < 8 * 64 * MIB,
        "the server read everything a non-reading client sent"
    );
    assert!(during < before + 64 * MIB, "RSS {before} -> {during}");
    deliver_one(addr, "while-not-read");
    drop(held);
    deliver_one(addr, "after-not-read");
    assert_eq!(server.wait_maildir("bob@example.test", 2).len(), 2);
}

/// Server RSS with many idle and half-finished connections; states the bound per connection.
fn memory_per_connection(n: usize) -> u64 {
    let server = TestServer::with_config(&config(
        &format!("[server.limits]\nmax_connections = {n}0\nmax_connections_per_ip = {n}0\n"),
        "",
    ));
    let addr = server.addr("mx");
    // Warm up (thread pools, first allocations) so they do not count against connections.
    deliver_one(addr, "warm-up");
    let before = rss(server.pid());
    let mut held = Vec::new();
    for i in 0..n {
        let mut c = Client::connect(addr);
        match i % 3 {
            0 => {}
            1 => {
                c.expect("EHLO idle.test", 250);
            }
            _ => {
                // Mid-transaction, inside DATA with a partial line.
                c.expect("EHLO busy.test", 250);
                c.expect("MAIL FROM:<a@remote.test>", 250);
                c.expect("RCPT TO:<bob@example.test>", 250);
                c.expect("DATA", 354);
                c.send("Subject: partial\r\n\r\nhalf a li");
            }
        }
        held.push(c);
    }
    // Every connection is still alive and served.
    for c in held.iter_mut().step_by(3) {
        c.expect("NOOP", 250);
    }
    let after = rss(server.pid());
    let per = after.saturating_sub(before) / n as u64;
    eprintln!(
        "{n} connections: RSS {} -> {} KiB, {} KiB per connection",
        before / 1024,
        after / 1024,
        per / 1024
    );
    deliver_one(addr, "with-many-connections");
    per
}

#[test]
fn memory_per_idle_or_abusive_connection_is_bounded() {
    let per = memory_per_connection(300);
    assert!(per < 256 * 1024, "{per} bytes per connection");
}

#[test]
#[ignore = "long: thousands of connections"]
fn memory_with_thousands_of_connections() {
    let per = memory_per_connection(3000);
    assert!(per < 256 * 1024, "{per} bytes per connection");
}

#[test]
#[ignore = "long: a byte a second for a minute"]
fn very_slow_client_a_byte_a_second() {
    let server = TestServer::start();
    let addr = server.addr("mx");
    let slow = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        dribble(&mut c, "EHLO slow.test\r\n", Duration::from_secs(1));
        assert_eq!(c.reply().code, 250);
        dribble(
            &mut c,
            "MAIL FROM:<slow@remote.test>\r\nRCPT TO:<bob@example.test>\r\n",
            Duration::from_secs(1),
        );
        assert_eq!(c.reply().code, 250);
        assert_eq!(c.reply().code, 250);
        c.expect("DATA", 354);
        dribble(
            &mut c,
            "Subject: slow\r\n\r\nx\r\n.\r\n",
            Duration::from_secs(1),
        );
        assert_eq!(c.reply().code, 250);
    });
    for i in 0..20 {
        deliver_one(addr, &format!("fast{i}"));
        std::thread::sleep(Duration::from_secs(2));
    }
    slow.join().unwrap();
    assert_eq!(server.wait_maildir("bob@example.test", 21).len(), 21);
}

#[test]
#[ignore = "long: a thousand connections from one address"]
fn thousands_of_connections_from_one_address() {
    let server = TestServer::with_config(&config(
        "[server.limits]\nmax_connections = 1500\nmax_connections_per_ip = 1000\n",
        "",
    ));
    let addr = server.addr("mx");
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..3000 {
        let mut c = Client::connect_raw(addr);
        match c.reply().code {
            220 => held.push(c),
            421 => refused += 1,
            code => panic!("{code}"),
        }
    }
    assert_eq!((held.len(), refused), (1000, 2000));
    deliver_one_from(addr, "127.0.0.2", "second address");
}
