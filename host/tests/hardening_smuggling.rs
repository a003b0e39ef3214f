//! SMTP smuggling against the real `mailwit` binary: every published end-of-data variant yields
//! one message or a refusal, never two, and the session goes on cleanly.
//!
//! Each probe sends an outer message whose body holds a fake end of data followed by a complete
//! smuggled transaction (to alice), then the genuine `CRLF.CRLF`. A server that honoured the fake
//! end would answer the smuggled commands (extra replies, which would throw the dialog out of step)
//! and deliver a second message to alice. We count replies and Maildir files.

use crate::support::{Client, TestServer, config};

/// Fake ends of data from the SMTP smuggling publications (SEC Consult 2023, Postfix and Sendmail
/// advisories) and their permutations. None of them is `CRLF.CRLF` preceded by nothing else.
const FAKE_ENDS: &[&str] = &[
    "\n.\n",
    "\n.\r\n",
    "\r\n.\n",
    "\r.\r",
    "\r.\r\n",
    "\r\n.\r",
    "\r.\n",
    "\n.\r",
    "\r\n\x00.\r\n",
    "\n\x00.\r\n",
    "\r\n.\x00\r\n",
    "\r\n.\r\x00\n",
    "\r\n\r.\r\n",
    "\r\n\n.\r\n",
    "\r\n.\r\r\n",
    "\r\n.\n\r\n",
    "\r\n .\r\n",
    "\r\n..\r\n",
    "\r\n.\t\r\n",
];

fn smuggled_transaction(i: usize) -> String {
    format!(
        "MAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\
         Subject: smuggled {i}\r\n\r\nevil\r\n"
    )
}

/// Sends one probe and returns the reply to the whole message; then proves the dialog is in step.
fn probe(c: &mut Client, i: usize, fake_end: &str, split: bool) -> u16 {
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.expect("DATA", 354);
    let head = format!("Subject: outer {i}\r\n\r\nbody");
    let tail = format!("{}.\r\n", smuggled_transaction(i));
    if split {
        // The fake end split over TCP segments (the decoder's state must carry over).
        c.send(&head);
        for b in fake_end.bytes() {
            c.send([b]);
        }
        c.send(&tail);
    } else {
        c.send(format!("{head}{fake_end}{tail}"));
    }
    let end = c.reply();
    assert!(
        end.code == 250 || (500..600).contains(&end.code),
        "{fake_end:?}: {end:?}"
    );
    // In step: the very next reply is NOOP's own, not a leftover from a smuggled command.
    let noop = c.cmd("NOOP");
    assert_eq!(
        (noop.code, noop.enhanced().as_str()),
        (250, "2.0.0"),
        "{fake_end:?}: dialog out of step: {noop:?}"
    );
    end.code
}

#[test]
fn every_end_of_data_variant_yields_one_message_or_a_refusal() {
    let server = TestServer::start();
    let mut accepted = 0;
    let mut refused = 0;
    let mut i = 0;
    for split in [false, true] {
        let mut c = Client::connect(server.addr("mx"));
        c.expect("EHLO client.test", 250);
        for fake_end in FAKE_ENDS {
            i += 1;
            match probe(&mut c, i, fake_end, split) {
                250 => accepted += 1,
                _ => refused += 1,
            }
        }
        c.expect("QUIT", 221);
    }
    assert_eq!(accepted + refused, 2 * FAKE_ENDS.len());
    eprintln!("smuggling probes: {accepted} accepted as one message, {refused} refused");
    // The 14 variants with a bare CR or LF are refused (554 5.6.0); the NUL, space, tab and
    // stuffed-dot variants are ordinary text lines and make one message each.
    assert!(refused >= 2 * 14, "refused {refused}");

    // Exactly the accepted messages exist, each delivered to bob, none to alice.
    let delivered = server.wait_maildir("bob@example.test", accepted);
    assert_eq!(delivered.len(), accepted, "duplicates for bob");
    assert_eq!(server.all_messages().len(), accepted);
    assert!(
        server.maildir("alice@example.test").is_empty(),
        "a smuggled message reached alice"
    );
    for m in server.all_messages() {
        let text = String::from_utf8_lossy(&m);
        assert!(
            text.contains("Subject: outer"),
            "a message of its own: {text}"
        );
    }
}

/// The client pipelines the whole transaction, body and genuine end included, in one write
/// before reading any reply: one message; the smuggled text inside stays text.
#[test]
fn pipelined_transaction_with_mail_inside_data_is_one_message() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.send(format!(
        "MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
         Subject: outer\r\n\r\nbody\r\n{}.\r\nNOOP\r\n",
        smuggled_transaction(0)
    ));
    let codes: Vec<u16> = (0..5).map(|_| c.reply().code).collect();
    assert_eq!(codes, [250, 250, 354, 250, 250]);
    c.expect("QUIT", 221);
    let delivered = server.wait_maildir("bob@example.test", 1);
    assert_eq!(delivered.len(), 1);
    let text = std::fs::read_to_string(&delivered[0]).unwrap();
    assert!(text.contains("MAIL FROM:<evil@remote.test>\r\n"), "{text}");
    assert!(server.maildir("alice@example.test").is_empty());
    assert_eq!(server.all_messages().len(), 1);
}

/// BDAT content is opaque: a `CRLF.CRLF` and commands inside a chunk are message text, and a
/// bare line ending there is refused like in DATA.
#[test]
fn bdat_chunks_cannot_smuggle() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);

    let body = format!(
        "Subject: outer bdat\r\n\r\nbody\r\n.\r\n{}",
        smuggled_transaction(1)
    );
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.send(format!("BDAT {} LAST\r\n{body}", body.len()));
    assert_eq!(c.reply().code, 250);
    c.expect("NOOP", 250);

    // Bare LF inside a chunk: refused, and the next transaction starts clean.
    let body = format!(
        "Subject: outer bare\r\n\r\nbody\n.\n{}",
        smuggled_transaction(2)
    );
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.send(format!("BDAT {} LAST\r\n{body}", body.len()));
    let reply = c.reply();
    assert!((500..600).contains(&reply.code), "{reply:?}");
    c.expect("NOOP", 250);

    // The announced size covers text that looks like a command: it is data.
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    let text = "Subject: outer short\r\n\r\nx\r\n";
    let trailing = "RCPT TO:<alice@example.test>\r\n";
    c.send(format!(
        "BDAT {} LAST\r\n{text}{trailing}",
        text.len() + trailing.len()
    ));
    assert_eq!(c.reply().code, 250);
    c.expect("QUIT", 221);

    let delivered = server.wait_maildir("bob@example.test", 2);
    assert_eq!(delivered.len(), 2);
    assert!(server.maildir("alice@example.test").is_empty());
    assert_eq!(server.all_messages().len(), 2);
}

/// Without PIPELINING discipline a client may send DATA's content before the 354; when DATA is
/// refused (no valid recipient) those lines are commands, as RFC 2920 warns: they can still
/// never relay or reach a mailbox the client could not reach anyway.
#[test]
fn refused_data_with_pipelined_content_never_relays() {
    let server = TestServer::with_config(&config("", ""));
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.send(
        "MAIL FROM:<a@remote.test>\r\nRCPT TO:<victim@elsewhere.test>\r\nDATA\r\n\
         RCPT TO:<other@elsewhere.test>\r\nDATA\r\nSubject: relayed\r\n\r\nx\r\n.\r\n",
    );
    let mut codes = Vec::new();
    while let Some(reply) = c.try_reply() {
        codes.push(reply.code);
        if codes.len() == 5 {
            break;
        }
    }
    // MAIL ok, then RCPT relay denied, DATA refused, RCPT relay denied, DATA refused again.
    assert_eq!(codes[0], 250);
    assert!(
        codes[1..].iter().all(|c| (500..600).contains(c)),
        "{codes:?}"
    );
    // The rest ("Subject: relayed", "x", ".") are unknown commands, never a message.
    for _ in 0..4 {
        let reply = c.reply();
        assert!((500..600).contains(&reply.code), "{reply:?}");
    }
    c.expect("QUIT", 221);
    assert!(server.all_messages().is_empty());
}
