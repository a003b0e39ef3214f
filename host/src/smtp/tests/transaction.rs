//! Whole transactions: pipelining, the boundary after 354, input split anywhere.

use super::*;

#[test]
fn a_whole_transaction() {
    let out = run_default(&format!(
        "{TX}DATA\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"
    ));
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "354 End",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert!(out.output.contains("250 2.0.0 Ok: queued as Q1\r\n"));
    assert_eq!(out.messages.len(), 1);
    let (envelope, data) = &out.messages[0];
    assert_eq!(envelope.reverse_path.address, "a@client.example");
    assert_eq!(envelope.recipients[0].address, "b@mx.example");
    assert_eq!(data, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
    assert!(out.closed);
    assert_eq!(out.events.last().unwrap(), "close");
}

#[test]
fn pipelined_batch_gets_replies_in_order() {
    let out = run_default(
        "EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@mx.example>\r\nRCPT TO:<unknown@mx.example>\r\n\
         RCPT TO:<alias@mx.example>\r\nNOOP\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<>\r\nRSET\r\nQUIT\r\n",
    );
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "250 2.1.5",
            "250 2.0.0",
            "354 End",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    let recipients: Vec<_> = out.messages[0]
        .0
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(recipients, ["b@mx.example", "target@mx.example"]);
}

#[test]
fn nothing_after_354_is_read_as_a_command() {
    let out = run_default(&format!("{TX}DATA\r\nQUIT\r\nRSET\r\n.\r\nNOOP\r\n"));
    assert_eq!(out.messages[0].1, b"QUIT\r\nRSET\r\n");
    assert!(!out.closed);
    assert_eq!(out.codes().last().unwrap(), "250 2.0.0");
}

/// Feeding the same dialogue whole, byte by byte, or split at any point gives the same result.
#[test]
fn split_input_at_every_byte_boundary() {
    let script = format!(
        "{TX}DATA\r\nA: b\r\n\r\n..x\r\n\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<c@mx.example> NOTIFY=NEVER\r\n\
         BDAT 7\r\nhello\r\nBDAT 4 LAST\r\nab\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<d@mx.example>\r\n\
         DATA\r\nbad\nline\r\n.\r\nAUTH PLAIN\r\nFOO\r\nRSET\r\nQUIT\r\n"
    );
    let script = script.as_bytes();
    let whole = run(config(), script);
    assert_eq!(whole.messages.len(), 2);
    assert!(whole.output.contains("554 5.6.0"));
    let bytes: Vec<&[u8]> = script.chunks(1).collect();
    assert_eq!(drive(&mut greeted(config()), &bytes), whole);
    for step in [2, 3, 5, 7, 13] {
        let pieces: Vec<&[u8]> = script.chunks(step).collect();
        assert_eq!(drive(&mut greeted(config()), &pieces), whole, "step {step}");
    }
    for cut in 0..script.len() {
        let (a, b) = script.split_at(cut);
        assert_eq!(
            drive(&mut greeted(config()), &[a, b]),
            whole,
            "cut at {cut}"
        );
    }
}
