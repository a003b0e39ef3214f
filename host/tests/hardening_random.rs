//! Random dialogs against the real `mailwit` binary, on every listener: SMTP tokens, random
//! bytes, fake ends of data, BDAT with lying sizes, AUTH and STARTTLS at odd moments, all sent
//! pipelined without waiting. The server must never panic or die, every reply it sends must be a
//! well-formed SMTP reply with an enhanced status code, and it must serve a normal client after.
//! A generator with a fixed seed makes failures reproducible (the seed is printed).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Client, TestServer, config};

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"EHLO a.example\r\n",
    b"HELO a\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=x\r\n",
    b"MAIL FROM:<\xc3\xa9@b.example> SMTPUTF8\r\n",
    b"MAIL FROM:<a@b.example> AUTH=<>\r\n",
    b"RCPT TO:<bob@example.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob@example.test\r\n",
    b"RCPT TO:<alice@example.test>\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"RCPT TO:<victim@elsewhere.test>\r\n",
    b"RCPT TO:<\"q@x\"@example.test>\r\n",
    b"DATA\r\n",
    b"BDAT 10\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 99999999999999999999\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"\n.\n",
    b"\r.\r",
    b"..x\r\n",
    b"Subject: x\r\n\r\nbody\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=\r\n",
    b"AUTH PLAIN AGEAYg==\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH PLAIN\r\n",
    b"YQ==\r\n",
    b"*\r\n",
    b"=\r\n",
    b"ETRN example.test\r\n",
    b"VRFY bob\r\n",
    b"EXPN bob\r\n",
    b"HELP\r\n",
    b"XCLIENT ADDR=1.2.3.4\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b" \t",
];

/// Checks every reply line: three digits, '-' or ' ', and an enhanced code on final 4xx/5xx lines
/// (the greeting and EHLO/HELO are exempt, RFC 2034 3).
fn check_replies(text: &str, seed: u64) {
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let bytes = line.as_bytes();
        assert!(
            bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit),
            "seed {seed:#x}: malformed reply line {line:?}"
        );
        let code: u16 = line[..3].parse().unwrap();
        assert!((200..600).contains(&code), "seed {seed:#x}: {line:?}");
        let sep = bytes.get(3).copied();
        assert!(
            matches!(sep, None | Some(b' ') | Some(b'-')),
            "seed {seed:#x}: {line:?}"
        );
        if code >= 400 && sep != Some(b'-') {
            let enhanced = line.get(4..).unwrap_or("").split(' ').next().unwrap_or("");
            let class = char::from(bytes[0]);
            assert!(
                enhanced.starts_with(class) && enhanced.split('.').count() == 3,
                "seed {seed:#x}: no enhanced status code in {line:?}"
            );
        }
    }
}

fn random_dialog(addr: std::net::SocketAddr, seed: u64) {
    let mut rng = Rng(seed);
    let mut input = Vec::new();
    for _ in 0..rng.below(60) {
        if rng.below(4) == 0 {
            for _ in 0..rng.below(300) {
                input.push(rng.next() as u8);
            }
        } else {
            input.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
        }
    }
    input.extend_from_slice(b"QUIT\r\n");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // Wait for the greeting (an early talker is refused, which is not what we test here).
    let mut greeting = [0u8; 512];
    let n = s.read(&mut greeting).unwrap();
    assert!(greeting[..n].starts_with(b"220"), "seed {seed:#x}");
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for piece in input.chunks(1 + (seed as usize % 700)) {
            if writer.write_all(piece).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    // EOF, reset, or (after STARTTLS with no handshake, or a dangling DATA) our read timeout.
    let _ = s.read_to_end(&mut out);
    drop(s);
    sender.join().unwrap();
    // Only the plaintext part is checked: after a STARTTLS 220 the rest is TLS records.
    let text = String::from_utf8_lossy(&out);
    let plain = match text.find("\r\n220 ") {
        Some(p) => &text[..p + 2],
        None if text.starts_with("220 ") => "",
        None => &text[..],
    };
    check_replies(plain, seed);
}

#[test]
fn random_dialogs_never_break_the_server() {
    let server = TestServer::with_config(&config(
        "[server.timeouts]\ncommand = 2\ndata_init = 2\ndata_block = 2\ngreeting = 2\n",
        "",
    ));
    let base: u64 = std::env::var("HARDENING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00C0_FFEE);
    let rounds: u64 = std::env::var("HARDENING_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    eprintln!("random dialogs: seed base {base:#x}, {rounds} rounds");
    let listeners = ["mx", "submission"];
    // Several dialogs at once, as on a real server.
    let mut threads = Vec::new();
    for worker in 0..6u64 {
        let addrs: Vec<_> = listeners.iter().map(|l| server.addr(l)).collect();
        threads.push(std::thread::spawn(move || {
            let mut round = worker;
            while round < rounds {
                let seed = base.wrapping_add(round.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
                random_dialog(addrs[round as usize % addrs.len()], seed);
                round += 6;
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    // Still up and serving.
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO after.test", 250);
    let end = c.send_mail(
        "a@remote.test",
        &["bob@example.test"],
        &crate::support::message("after-random", "x"),
    );
    assert_eq!(end.code, 250);
    c.expect("QUIT", 221);
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO after.test", 250);
    c.login_alice();
    c.expect("QUIT", 221);
}
