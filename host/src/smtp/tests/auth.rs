//! AUTH PLAIN and LOGIN.

use super::*;

fn auth_config() -> SessionConfig {
    SessionConfig {
        auth: true,
        ..config()
    }
}

fn run_tls(config: SessionConfig, input: &str) -> Outcome {
    let mut s = Session::new(config, Some(tls_info()));
    s.greet();
    s.take_output();
    drive(&mut s, &[input.as_bytes()])
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    // "\0alice\0secret"
    let out = run_tls(
        auth_config(),
        "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    );
    assert_eq!(out.codes(), ["235 2.7.0"]);
    let out = run_tls(
        auth_config(),
        "EHLO c\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n",
    );
    assert!(
        out.output.contains("\r\n334 \r\n235 2.7.0 "),
        "{}",
        out.output
    );
    assert_eq!(out.events[1], "auth PLAIN alice secret");
}

#[test]
fn auth_login_with_and_without_initial_response() {
    // "alice", "secret"
    let out = run_tls(
        auth_config(),
        "EHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
    );
    assert!(
        out.output
            .contains("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0"),
        "{}",
        out.output
    );
    assert_eq!(out.events[1], "auth LOGIN alice secret");
    let out = run_tls(
        auth_config(),
        "EHLO c\r\nAUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n",
    );
    assert!(out.output.contains("334 UGFzc3dvcmQ6\r\n235 2.7.0"));
}

#[test]
fn auth_errors() {
    let cases: &[(&str, &[&str])] = &[
        ("AUTH PLAIN !!!\r\n", &["501 5.5.2"]),
        ("AUTH PLAIN\r\n*\r\n", &["501 5.7.0"]),
        ("AUTH LOGIN\r\n*\r\n", &["501 5.7.0"]),
        ("AUTH LOGIN\r\nYWxpY2U=\r\n*\r\n", &["501 5.7.0"]),
        ("AUTH PLAIN YWxpY2U=\r\n", &["501 5.5.2"]),
        ("AUTH CRAM-MD5\r\n", &["504 5.5.4"]),
        ("AUTH PLAIN AGFsaWNlAHdyb25n\r\n", &["535 5.7.8"]),
        (
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
            &["235 2.7.0", "503 5.5.1"],
        ),
        (
            "MAIL FROM:<>\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
            &["250 2.1.0", "503 5.5.1"],
        ),
    ];
    for (input, codes) in cases {
        let out = run_tls(auth_config(), &format!("EHLO c\r\n{input}"));
        assert_eq!(out.codes(), *codes, "{input:?}");
    }
}

#[test]
fn auth_in_plaintext_needs_configuration() {
    let plaintext = SessionConfig {
        auth_plaintext: true,
        ..auth_config()
    };
    for (cfg, code) in [
        (auth_config(), "538 5.7.11"),
        (config(), "502 5.5.1"),
        (plaintext, "235 2.7.0"),
    ] {
        let out = run(cfg, b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        assert_eq!(out.codes(), [code]);
    }
}

#[test]
fn auth_failures_end_the_session() {
    let cfg = SessionConfig {
        max_auth_failures: 2,
        ..auth_config()
    };
    let out = run_tls(
        cfg,
        "EHLO c\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nNOOP\r\n",
    );
    assert_eq!(out.codes(), ["535 5.7.8", "535 5.7.8", "421 4.7.0"]);
    assert!(out.closed);
}

#[test]
fn auth_required_before_mail() {
    let cfg = SessionConfig {
        auth_required: true,
        ..auth_config()
    };
    let out = run_tls(
        cfg,
        "EHLO c\r\nMAIL FROM:<alice@mx.example>\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<alice@mx.example> AUTH=<>\r\n",
    );
    assert_eq!(out.codes(), ["530 5.7.0", "235 2.7.0", "250 2.1.0"]);
}

#[test]
fn long_auth_lines_are_allowed() {
    let secret = "s".repeat(600);
    let blob = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("\0alice\0{secret}"),
    );
    let out = run_tls(auth_config(), &format!("EHLO c\r\nAUTH PLAIN {blob}\r\n"));
    assert_eq!(out.codes(), ["535 5.7.8"]);
}

#[test]
fn overlong_sasl_response_ends_the_exchange() {
    let huge = "A".repeat(20_000);
    let out = run_tls(
        auth_config(),
        &format!("EHLO c\r\nAUTH PLAIN\r\n{huge}\r\nNOOP\r\n"),
    );
    assert_eq!(out.codes(), ["500 5.5.2", "250 2.0.0"]);
    assert_eq!(out.events, ["ehlo c"]);
}
