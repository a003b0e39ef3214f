//! Raw-socket SMTP dialogs against the real `mailwit` binary: extensions, pipelining, BDAT,
//! smuggling, relay control, mailboxes, limits, timeouts, early talkers, connection limits.

use crate::support::{Client, TestServer, config, message};

fn held_containing(server: &TestServer, needle: &str) -> usize {
    server
        .all_messages()
        .iter()
        .filter(|m| m.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .count()
}

#[test]
fn ehlo_advertises_the_extensions() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    let ehlo = c.expect("EHLO client.test", 250);
    let text = ehlo.text();
    for ext in [
        "SIZE 26214400",
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "DSN",
        "HELP",
        "STARTTLS",
    ] {
        assert!(text.contains(ext), "missing {ext}: {text}");
    }
    // The mx listener does not offer AUTH in plaintext.
    assert!(!text.contains("AUTH"), "{text}");
    let helo = c.expect("HELO client.test", 250);
    assert_eq!(helo.lines.len(), 1);
    c.expect("QUIT", 221);
}

#[test]
fn local_delivery_of_one_message_with_received_header() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    let reply = c.send_mail(
        "sender@remote.test",
        &["bob@example.test"],
        &message("hello-bob", "Hi Bob.\r\n..leading dot"),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(reply.enhanced(), "2.0.0");
    c.expect("QUIT", 221);
    let all = server.all_messages();
    assert_eq!(all.len(), 1);
    let text = String::from_utf8_lossy(&all[0]);
    assert!(
        text.contains("Received: from client.test ([127.0.0.1])"),
        "{text}"
    );
    assert!(
        text.contains("by mail.example.test (mailwit) with ESMTP\r\n"),
        "{text}"
    );
    assert!(text.contains("for <bob@example.test>;"), "{text}");
    // Dot-unstuffed.
    assert!(text.contains("\r\n.leading dot\r\n"), "{text}");
    assert!(!text.contains("\r\n..leading"), "{text}");
}

#[test]
fn pipelined_batch_gets_replies_in_order() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    // One write: MAIL, three RCPTs (one unknown, one relay attempt), DATA.
    c.send(
        "MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<nobody@example.test>\r\n\
         RCPT TO:<x@elsewhere.test>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\n",
    );
    let codes: Vec<u16> = (0..6).map(|_| c.reply().code).collect();
    assert_eq!(codes, [250, 250, 550, 554, 250, 354]);
    // Text after 354 is message data, even if it looks like a command.
    c.send("Subject: pipelined\r\n\r\nRSET\r\nQUIT\r\n.\r\nNOOP\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 250);
    c.expect("QUIT", 221);
    let all = server.all_messages();
    assert_eq!(all.len(), 1);
    let text = String::from_utf8_lossy(&all[0]);
    assert!(text.contains("\r\nRSET\r\nQUIT\r\n"), "{text}");
    // Two recipients, so no "for" clause; postmaster resolved to alice.
    assert!(!text.contains("\tfor <"), "{text}");
}

#[test]
fn bdat_chunks_and_last() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    let part1 = "Subject: bdat\r\n\r\n";
    let part2 = "line one\r\n.not stuffed\r\n";
    c.send(format!("BDAT {}\r\n{part1}", part1.len()));
    assert_eq!(c.reply().code, 250);
    c.send(format!("BDAT {} LAST\r\n{part2}", part2.len()));
    let last = c.reply();
    assert_eq!(last.code, 250, "{last:?}");
    // BDAT 0 LAST ends an empty-chunked message too.
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    let whole = "Subject: two\r\n\r\nbody\r\n";
    c.send(format!("BDAT {}\r\n{whole}", whole.len()));
    assert_eq!(c.reply().code, 250);
    c.expect("BDAT 0 LAST", 250);
    // DATA after BDAT in one transaction is a bad sequence.
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.send("BDAT 3\r\nabc");
    assert_eq!(c.reply().code, 250);
    let mixed = c.cmd("DATA");
    assert_eq!((mixed.code, mixed.enhanced().as_str()), (503, "5.5.1"));
    c.expect("RSET", 250);
    c.expect("QUIT", 221);
    assert_eq!(server.all_messages().len(), 2);
    assert_eq!(held_containing(&server, "line one\r\n.not stuffed\r\n"), 1);
}

#[test]
fn smuggling_never_makes_a_second_message() {
    let server = TestServer::start();
    let smuggled = [
        "\n.\r\n",
        "\r\n.\n",
        "\n.\n",
        "\r.\r",
        "\r\n.\r",
        "\r\n\x00.\r\n",
    ];
    for (i, trick) in smuggled.iter().enumerate() {
        let mut c = Client::connect(server.addr("mx"));
        c.expect("EHLO client.test", 250);
        c.expect("MAIL FROM:<a@remote.test>", 250);
        c.expect("RCPT TO:<bob@example.test>", 250);
        c.expect("DATA", 354);
        c.send(format!(
            "Subject: outer {i}\r\n\r\nbody{trick}MAIL FROM:<evil@remote.test>\r\n\
             RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: smuggled {i}\r\n\r\nevil\r\n.\r\n"
        ));
        let end = c.reply();
        // Either refused as a whole (bare CR/LF) or one message; never a second transaction.
        assert!(end.code == 250 || end.code >= 500, "{trick:?}: {end:?}");
        // The session goes on cleanly.
        c.expect("RSET", 250);
        c.expect("QUIT", 221);
    }
    let all = server.all_messages();
    let smuggled_out: Vec<String> = all
        .iter()
        .map(|m| String::from_utf8_lossy(m).to_string())
        // The smuggled text may sit inside the outer message's body; it must never be a
        // message of its own.
        .filter(|m| m.contains("Subject: smuggled") && !m.contains("Subject: outer"))
        .collect();
    assert!(smuggled_out.is_empty(), "{smuggled_out:#?}");
    assert!(server.all_messages().len() <= smuggled.len());
}

#[test]
fn relay_control_and_mailboxes() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@remote.test>", 250);
    // Syntax the parser refuses (501) is as good as a relay refusal: never a 250.
    for rcpt in [
        "bob@example.test.",
        "bob@@example.test",
        "<bob@example.test>",
    ] {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(
            reply.code == 501 || reply.code == 554 || reply.code == 553,
            "{rcpt}: {reply:?}"
        );
    }
    for (rcpt, code, enhanced) in [
        ("bob@example.test", 250, "2.1.5"),
        ("BOB@Example.Test", 250, "2.1.5"),
        ("postmaster@example.test", 250, "2.1.5"),
        ("nobody@example.test", 550, "5.1.1"),
        ("victim@elsewhere.test", 554, "5.7.1"),
        ("victim%elsewhere.test@example.test", 554, "5.7.1"),
        ("elsewhere.test!victim@example.test", 554, "5.7.1"),
        ("bob@[127.0.0.1]", 554, "5.7.1"),
        ("@example.test:victim@elsewhere.test", 554, "5.7.1"),
        ("\"victim@elsewhere.test\"@example.test", 554, "5.7.1"),
    ] {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert_eq!(reply.code, code, "{rcpt}: {reply:?}");
        assert_eq!(reply.enhanced(), enhanced, "{rcpt}: {reply:?}");
    }
    c.expect("QUIT", 221);
}

#[test]
fn submission_requires_auth_and_tls_for_auth() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("submission"));
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(
        !ehlo.text().contains("AUTH"),
        "no AUTH before TLS: {ehlo:?}"
    );
    let mail = c.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!((mail.code, mail.enhanced().as_str()), (530, "5.7.0"));
    let auth = c.cmd(&format!(
        "AUTH PLAIN {}",
        crate::support::b64("\0alice@example.test\0alice-secret")
    ));
    assert_eq!((auth.code, auth.enhanced().as_str()), (538, "5.7.11"));
    c.expect("QUIT", 221);
}

#[test]
fn line_length_limits() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    // A command line far over 512 octets: refused, never buffered whole; the session goes on.
    let long = format!("NOOP {}", "x".repeat(100_000));
    let reply = c.cmd(&long);
    assert_eq!((reply.code, reply.enhanced().as_str()), (500, "5.5.2"));
    c.expect("NOOP", 250);
    // A text line over 1000 octets in DATA: the message is refused at the end.
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.expect("DATA", 354);
    c.send(format!(
        "Subject: long\r\n\r\n{}\r\n.\r\n",
        "y".repeat(5000)
    ));
    let end = c.reply();
    assert!(end.code >= 500, "{end:?}");
    c.expect("QUIT", 221);
    assert_eq!(server.all_messages().len(), 0);
}

#[test]
fn recipient_and_size_limits() {
    let server = TestServer::with_config(&config(
        "[server.limits]\nmax_recipients = 3\nmax_message_size = 10000\n",
        "",
    ));
    let mut c = Client::connect(server.addr("mx"));
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.text().contains("SIZE 10000"), "{ehlo:?}");
    // Declared size over the limit: refused at MAIL.
    let mail = c.cmd("MAIL FROM:<a@remote.test> SIZE=20000");
    assert_eq!((mail.code, mail.enhanced().as_str()), (552, "5.3.4"));
    c.expect("MAIL FROM:<a@remote.test>", 250);
    for _ in 0..3 {
        c.expect("RCPT TO:<bob@example.test>", 250);
    }
    let fourth = c.cmd("RCPT TO:<alice@example.test>");
    assert_eq!((fourth.code, fourth.enhanced().as_str()), (452, "4.5.3"));
    // Actual size over the limit: dropped after the data, session goes on.
    c.expect("DATA", 354);
    let line = format!("{}\r\n", "z".repeat(98));
    c.send(format!("Subject: big\r\n\r\n{}.\r\n", line.repeat(200)));
    let end = c.reply();
    assert_eq!((end.code, end.enhanced().as_str()), (552, "5.3.4"));
    let reply = c.send_mail(
        "a@remote.test",
        &["bob@example.test"],
        &message("small", "ok"),
    );
    assert_eq!(reply.code, 250);
    c.expect("QUIT", 221);
    assert_eq!(server.all_messages().len(), 1);
}

#[test]
fn bad_commands_then_421() {
    let server = TestServer::with_config(&config("[server.limits]\nmax_bad_commands = 3\n", ""));
    let mut c = Client::connect(server.addr("mx"));
    assert_eq!(c.cmd("FOO").code, 500);
    assert_eq!(c.cmd("BAR").code, 500);
    // The third reaches the limit: its 500 (if any) is followed by 421 and the close.
    let mut last = c.cmd("BAZ");
    if last.code == 500 {
        last = c.reply();
    }
    assert_eq!(
        (last.code, last.enhanced().as_str()),
        (421, "4.7.0"),
        "{last:?}"
    );
    assert!(c.is_closed());
}

#[test]
fn idle_client_times_out_with_421() {
    let server = TestServer::with_config(&config("[server.timeouts]\ncommand = 1\n", ""));
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    let reply = c.reply();
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (421, "4.4.2"),
        "{reply:?}"
    );
    assert!(c.is_closed());
}

#[test]
fn stalled_data_times_out_with_421() {
    let server = TestServer::with_config(&config(
        "[server.timeouts]\ndata_init = 1\ndata_block = 1\n",
        "",
    ));
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.expect("DATA", 354);
    c.send("Subject: stalled\r\n\r\npartial");
    let reply = c.reply();
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (421, "4.4.2"),
        "{reply:?}"
    );
    assert!(c.is_closed());
    assert_eq!(server.all_messages().len(), 0);
}

#[test]
fn early_talker_is_refused() {
    let mut toml = config("", "");
    toml = toml.replacen(
        "role = \"mx\"\n",
        "role = \"mx\"\ngreeting_delay_ms = 1500\n",
        1,
    );
    let server = TestServer::with_config(&toml);
    let mut c = Client::connect_raw(server.addr("mx"));
    c.send("EHLO eager.test\r\n");
    let reply = c.reply();
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (554, "5.5.0"),
        "{reply:?}"
    );
    assert!(c.is_closed());
    // A patient client gets the greeting after the delay.
    let mut patient = Client::connect(server.addr("mx"));
    patient.expect("QUIT", 221);
}

#[test]
fn connection_limits_total_and_per_ip() {
    let server = TestServer::with_config(&config(
        "[server.limits]\nmax_connections = 3\nmax_connections_per_ip = 2\n",
        "",
    ));
    let addr = server.addr("mx");
    let _a1 = Client::connect(addr);
    let _a2 = Client::connect(addr);
    // Third from 127.0.0.1: per-IP limit.
    let mut a3 = Client::connect_raw(addr);
    let reply = a3.reply();
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (421, "4.7.0"),
        "{reply:?}"
    );
    assert!(a3.is_closed());
    // From a second address: allowed once, then the total limit.
    let _b1 = Client::connect_raw_from(addr, Some("127.0.0.2"));
    let mut b1 = _b1;
    assert_eq!(b1.reply().code, 220);
    let mut b2 = Client::connect_raw_from(addr, Some("127.0.0.3"));
    let reply = b2.reply();
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (421, "4.7.0"),
        "{reply:?}"
    );
    // Slots free up when clients leave.
    b1.expect("QUIT", 221);
    assert!(b1.is_closed());
    let mut again = Client::connect_raw_from(addr, Some("127.0.0.3"));
    // The server may not have processed the close yet; retry a few times.
    let mut code = again.reply().code;
    for _ in 0..50 {
        if code == 220 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        again = Client::connect_raw_from(addr, Some("127.0.0.3"));
        code = again.reply().code;
    }
    assert_eq!(code, 220);
}

#[test]
fn sigterm_lets_the_transaction_finish_and_exits_zero() {
    let mut server = TestServer::start();
    let mut idle = Client::connect(server.addr("mx"));
    idle.expect("EHLO idle.test", 250);
    let mut busy = Client::connect(server.addr("mx"));
    busy.expect("EHLO busy.test", 250);
    busy.expect("MAIL FROM:<a@remote.test>", 250);
    busy.expect("RCPT TO:<bob@example.test>", 250);
    busy.expect("DATA", 354);
    busy.send("Subject: in flight\r\n\r\nfirst half\r\n");
    let pid = server.pid() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // The idle session is told to go away.
    let bye = idle.reply();
    assert_eq!(
        (bye.code, bye.enhanced().as_str()),
        (421, "4.3.2"),
        "{bye:?}"
    );
    // The transaction in flight completes.
    busy.send("second half\r\n.\r\n");
    let done = busy.reply();
    assert_eq!(done.code, 250, "{done:?}");
    let status = server.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(held_containing(&server, "second half"), 1);
}

#[test]
fn etrn_only_for_configured_clients() {
    let server = TestServer::start();
    let mut c = Client::connect(server.addr("mx"));
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(!ehlo.text().contains("ETRN"), "{ehlo:?}");
    assert_eq!(c.cmd("ETRN example.test").code / 100, 5);

    let server =
        TestServer::with_config(&config("", "[queue]\netrn_clients = [\"127.0.0.0/8\"]\n"));
    let mut c = Client::connect(server.addr("mx"));
    let ehlo = c.expect("EHLO client.test", 250);
    assert!(ehlo.text().contains("ETRN"), "{ehlo:?}");
    let etrn = c.cmd("ETRN remote.test");
    assert_eq!(etrn.code / 100, 2, "{etrn:?}");
    c.expect("QUIT", 221);
}
