//! BDAT (CHUNKING).

use super::*;

#[test]
fn bdat_chunks_make_one_message() {
    let out = run_default(&format!(
        "{TX}BDAT 5\r\nhel\r\nBDAT 10 LAST\r\nlo\r\nQUIT\r\nRSET\r\n"
    ));
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0",
            "250 2.0.0"
        ]
    );
    assert!(out.output.contains("250 2.0.0 5 octets received\r\n"));
    assert_eq!(out.messages[0].1, b"hel\r\nlo\r\nQUIT\r\n");
    assert!(!out.closed);
}

#[test]
fn bdat_zero_last_completes() {
    let out = run_default(&format!("{TX}BDAT 4\r\nab\r\nBDAT 0 LAST\r\n"));
    assert_eq!(out.messages[0].1, b"ab\r\n");
    let out = run_default(&format!("{TX}BDAT 0 LAST\r\n"));
    assert_eq!(out.messages.len(), 1);
    assert!(out.messages[0].1.is_empty());
}

#[test]
fn bdat_without_transaction_consumes_the_chunk() {
    let out = run_default("EHLO c\r\nBDAT 6\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(out.codes(), ["503 5.5.1", "250 2.0.0"]);
    assert!(!out.closed);
    let out = run_default("EHLO c\r\nMAIL FROM:<>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(out.codes(), ["250 2.1.0", "503 5.5.1", "250 2.0.0"]);
}

#[test]
fn data_and_bdat_never_mix() {
    let out = run_default(&format!(
        "{TX}BDAT 3\r\nab\nDATA\r\nRCPT TO:<x@mx.example>\r\nBDAT 0 LAST\r\n"
    ));
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "503 5.5.1",
            "503 5.5.1",
            "554 5.6.0"
        ]
    );
    assert!(out.messages.is_empty());
}

#[test]
fn bdat_over_the_size_limit() {
    let cfg = SessionConfig {
        max_message_size: 10,
        ..config()
    };
    let out = run(
        cfg,
        format!("{TX}BDAT 8\r\n12345678BDAT 8\r\n12345678BDAT 1 LAST\r\n9MAIL FROM:<>\r\nRCPT TO:<b@mx.example>\r\nBDAT 2 LAST\r\nok").as_bytes(),
    );
    assert_eq!(
        out.codes(),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "552 5.3.4",
            "552 5.3.4",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0"
        ]
    );
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.messages[0].1, b"ok\r\n", "a final CRLF is supplied");
}

#[test]
fn bdat_syntax_errors() {
    assert_eq!(
        run_default("EHLO c\r\nBDAT\r\nBDAT x\r\nBDAT 1 NOW\r\n").codes(),
        ["501 5.5.4"; 3]
    );
}
