//! RCPT TO: parameters, errors, the recipient limit.

use super::*;

#[test]
fn rcpt_parameters_reach_the_engine() {
    let out = run_default(
        "EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@mx.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@mx.example\r\n\
         RCPT TO:<Postmaster>\r\nRCPT TO:<\"x y\"@[192.0.2.1]> NOTIFY=NEVER\r\nDATA\r\n.\r\n",
    );
    let rcpts = &out.messages[0].0.recipients;
    assert_eq!(
        rcpts[0].notify,
        Some(Notify {
            success: true,
            failure: true,
            delay: false
        })
    );
    assert_eq!(rcpts[0].orcpt.as_deref(), Some("rfc822;b@mx.example"));
    assert_eq!(rcpts[1].address, "Postmaster");
    assert_eq!(rcpts[2].address, "\"x y\"@[192.0.2.1]");
    assert_eq!(rcpts[2].notify, Some(Notify::default()));
}

#[test]
fn rcpt_errors() {
    let cases = [
        ("RCPT TO:<b@mx.example> NOTIFY=NEVER,DELAY", "501 5.5.4"),
        (
            "RCPT TO:<b@mx.example> NOTIFY=SUCCESS NOTIFY=DELAY",
            "501 5.5.4",
        ),
        ("RCPT TO:<b@mx.example> SIZE=10", "555 5.5.4"),
        ("RCPT TO:<>", "501 5.1.3"),
        ("RCPT TO:<b@mx..example>", "501 5.1.3"),
        ("RCPT TO:b@mx.example", "501 5.1.3"),
    ];
    assert_replies("EHLO c\r\nMAIL FROM:<>\r\n", &["250 2.1.0"], &cases);
    assert_eq!(
        run_default("EHLO c\r\nRCPT TO:<b@mx.example>\r\n").codes(),
        ["503 5.5.1"]
    );
}

#[test]
fn recipient_limit() {
    let mut input = String::from("EHLO c\r\nMAIL FROM:<>\r\n");
    for i in 0..4 {
        input.push_str(&format!("RCPT TO:<r{i}@mx.example>\r\n"));
    }
    input.push_str("DATA\r\n.\r\n");
    let out = run(
        SessionConfig {
            max_recipients: 3,
            ..config()
        },
        input.as_bytes(),
    );
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3",
            "354 End",
            "250 2.0.0"
        ]
    );
    assert_eq!(out.messages[0].0.recipients.len(), 3);
}
