//! Small commands, QUIT, enhanced codes everywhere, bad-command and line limits, ETRN, timers, refusal.

use super::*;

#[test]
fn small_commands() {
    let out = run_default(
        "EHLO c\r\nNOOP\r\nNOOP hello\r\nHELP\r\nHELP MAIL\r\nVRFY bob\r\nEXPN list\r\nRSET\r\nFOO\r\nTURN\r\nRSET x\r\nQUIT\r\n",
    );
    assert_eq!(
        out.codes(),
        [
            "250 2.0.0",
            "250 2.0.0",
            "214 2.0.0",
            "214 2.0.0",
            "252 2.5.0",
            "502 5.5.1",
            "250 2.0.0",
            "500 5.5.1",
            "502 5.5.1",
            "501 5.5.4",
            "221 2.0.0"
        ]
    );
    assert!(out.closed);
    assert_eq!(out.events, ["ehlo c", "close"]);
}

#[test]
fn quit_ends_everything() {
    let mut s = greeted(config());
    s.receive(b"QUIT\r\nNOOP\r\n");
    assert!(matches!(s.poll(), Some(Event::Close)));
    assert!(s.poll().is_none());
    assert!(s.is_closed());
    assert_eq!(
        s.take_output(),
        b"221 2.0.0 mx.example closing connection\r\n"
    );
    s.receive(b"NOOP\r\n");
    assert!(s.poll().is_none());
    assert_eq!(s.timeout(), Timeout::None);
}

#[test]
fn every_reply_carries_an_enhanced_status_code() {
    let out = run(
        SessionConfig { auth: true, auth_plaintext: true, etrn: true, max_bad_commands: 100, ..config() },
        format!(
            "EHLO c\r\nNOOP\r\nFOO\r\nMAIL FROM:<x>\r\n{}DATA\r\nx\r\n.\r\nAUTH PLAIN AGIAc2VjcmV0\r\nVRFY x\r\nEXPN x\r\n\
             ETRN x.example\r\nHELP\r\nBDAT 1\r\nxSTARTTLS\r\nRSET\r\nQUIT\r\n",
            &TX[8..]
        )
        .as_bytes(),
    );
    let re_ok = |l: &str| {
        let mut parts = l[4..].split(' ');
        let enhanced = parts.next().unwrap();
        let bits: Vec<_> = enhanced.split('.').collect();
        bits.len() == 3
            && bits
                .iter()
                .all(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
    };
    for line in out.lines() {
        let ehlo_line = !line.contains(' ') || line.starts_with("250-") || line == "250 HELP";
        if ehlo_line || line.starts_with("354 ") {
            continue;
        }
        assert!(re_ok(line), "no enhanced code: {line}");
    }
    assert!(out.lines().len() > 15);
}

#[test]
fn bad_commands_end_the_session() {
    let out = run(
        SessionConfig {
            max_bad_commands: 3,
            ..config()
        },
        b"FOO\r\nBAR\r\nNOOP\r\nBAZ\r\nNOOP\r\n",
    );
    assert_eq!(
        out.codes(),
        [
            "500 5.5.1",
            "500 5.5.1",
            "250 2.0.0",
            "500 5.5.1",
            "421 4.7.0"
        ]
    );
    assert!(out.closed);
}

// ---------------- line limits

#[test]
fn command_line_limit() {
    let ok = format!("NOOP {}\r\n", "x".repeat(512 - 7));
    assert_eq!(ok.len(), 512);
    assert_eq!(run_default(&ok).codes(), ["250 2.0.0"]);
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(512 - 6));
    assert_eq!(run_default(&long).codes(), ["500 5.5.2", "250 2.0.0"]);
}

#[test]
fn gigantic_line_is_never_buffered_whole() {
    let mut s = greeted(config());
    let junk = vec![b'A'; 4096];
    let mut out = drive(&mut s, &[b"EHLO c\r\n"]);
    for _ in 0..2560 {
        // 10 MiB without a line end
        let more = drive(&mut s, &[&junk]);
        assert!(more.output.is_empty());
        assert!(s.input.capacity() <= 16 * 1024, "{}", s.input.capacity());
    }
    out.output
        .push_str(&drive(&mut s, &[b"AAAA\r\nNOOP\r\n"]).output);
    assert_eq!(out.codes(), ["500 5.5.2", "250 2.0.0"]);
}

// ---------------- ETRN, timeouts, refusal

#[test]
fn etrn() {
    let cfg = SessionConfig {
        etrn: true,
        ..config()
    };
    let out = run(cfg, b"EHLO c\r\nETRN example.org\r\n");
    assert_eq!(out.events[1], "etrn example.org");
    assert_eq!(out.codes(), ["250 2.0.0"]);
    assert_eq!(
        run_default("EHLO c\r\nETRN example.org\r\n").codes(),
        ["502 5.5.1"]
    );
}

#[test]
fn timers_follow_the_state() {
    let mut s = greeted(config());
    assert_eq!(s.timeout(), Timeout::Command);
    s.receive(TX.as_bytes());
    while let Some(_ev) = s.poll() {
        assert_eq!(s.timeout(), Timeout::None);
        s.answer(Answer::Accept);
    }
    s.receive(b"DATA\r\n");
    assert!(s.poll().is_none());
    assert_eq!(s.timeout(), Timeout::DataInit);
    s.receive(b"Subject: x\r\n");
    assert!(s.poll().is_none());
    assert_eq!(s.timeout(), Timeout::DataBlock);
    s.take_output();
    s.timed_out();
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "421 4.4.2 mx.example Timeout exceeded, closing connection\r\n"
    );
    assert!(matches!(s.poll(), Some(Event::Close)));
    assert!(s.is_closed());
}

#[test]
fn refuse_before_greeting() {
    let mut s = Session::new(config(), None);
    s.refuse(Reply::new(554, "5.5.0", "talked before the greeting"));
    assert_eq!(s.take_output(), b"554 5.5.0 talked before the greeting\r\n");
    assert!(matches!(s.poll(), Some(Event::Close)));
    assert!(s.is_closed());
}

#[test]
fn answer_without_pending_event_is_ignored() {
    let mut s = greeted(config());
    s.answer(Answer::Accept);
    assert!(s.take_output().is_empty());
    assert!(!s.is_closed());
}

/// Not a timed assertion: prints a throughput figure for the report (run with --ignored --nocapture).
#[test]
#[ignore]
fn throughput_figure() {
    let body = "Subject: load\r\n\r\n".to_string() + "0123456789abcdef ".repeat(50).trim_end();
    let mut message = String::new();
    while message.len() < 10_000 {
        message.push_str(&body);
        message.push_str("\r\n");
    }
    let one =
        format!("MAIL FROM:<a@c.example>\r\nRCPT TO:<b@mx.example>\r\nDATA\r\n{message}.\r\n");
    let transactions = 20_000;
    let mut s = greeted(config());
    let mut delivered = 0usize;
    let start = std::time::Instant::now();
    s.receive(b"EHLO c\r\n");
    for _ in 0..=transactions {
        while let Some(event) = s.poll() {
            match event {
                Event::Message { data, .. } => {
                    delivered += data.len();
                    s.answer(Answer::Queued("q".into()));
                }
                _ => s.answer(Answer::Accept),
            }
        }
        s.take_output();
        s.receive(one.as_bytes());
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(delivered / transactions, message.len());
    println!(
        "{transactions} transactions of {} bytes in {secs:.3}s: {:.0} tx/s, {:.1} MB/s",
        one.len(),
        transactions as f64 / secs,
        (transactions * one.len()) as f64 / secs / 1e6
    );
}
