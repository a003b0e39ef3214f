//! Independent real clients against the real binary: Python's smtplib (script in
//! tests/scripts/), swaks and Postfix's smtp-source.

use crate::support::TestServer;
use std::process::Command;

fn installed(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn python_smtplib_plain_starttls_and_implicit_tls() {
    if !installed("python3") {
        eprintln!("SKIP: python3 is not installed (.ci/run installs it)");
        return;
    }
    let server = TestServer::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/smtplib_send.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(server.addr("mx").port().to_string())
        .arg(server.addr("submission").port().to_string())
        .arg(server.addr("submissions").port().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smtplib failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    // bob got the mx and STARTTLS messages, alice (via postmaster) the implicit-TLS one.
    let bob = server.wait_maildir("bob@example.test", 2);
    let alice = server.wait_maildir("alice@example.test", 1);
    assert_eq!((bob.len(), alice.len()), (2, 1));
    let text = std::fs::read_to_string(&alice[0]).unwrap();
    assert!(text.contains("Subject: smtplib-implicit"), "{text}");
    assert!(text.contains("with ESMTPSA"), "{text}");
}

#[test]
fn swaks_end_to_end_with_starttls_and_auth() {
    assert!(
        installed("swaks"),
        "swaks is a test dependency (.ci/run installs it)"
    );
    let server = TestServer::start();
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1"])
        .args(["--port", &server.addr("submission").port().to_string()])
        .args(["--from", "alice@example.test", "--to", "bob@example.test"])
        .args(["--ehlo", "swaks.test", "--tls"])
        .args(["--auth", "PLAIN", "--auth-user", "alice@example.test"])
        .args(["--auth-password", "alice-secret"])
        .args([
            "--header",
            "Subject: swaks-e2e",
            "--body",
            "Hello from swaks",
        ])
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swaks failed:\n{transcript}\n{}",
        server.log()
    );
    assert!(transcript.contains("<~  250 2.0.0"), "{transcript}");
    let bob = server.wait_maildir("bob@example.test", 1);
    let text = std::fs::read_to_string(&bob[0]).unwrap();
    assert!(text.contains("Subject: swaks-e2e"), "{text}");
    assert!(text.contains("Hello from swaks"), "{text}");
}

#[test]
fn smtp_source_multi_message_run() {
    assert!(
        installed("/usr/sbin/smtp-source"),
        "smtp-source (Debian postfix) is a test dependency (.ci/run installs it)"
    );
    let server = TestServer::start();
    let target = server.addr("mx").to_string();
    let messages = 40;
    let out = Command::new("/usr/sbin/smtp-source")
        .args(["-s", "4", "-m", &messages.to_string(), "-l", "2000"])
        .args(["-f", "load@remote.test", "-t", "bob@example.test"])
        .args(["-M", "source.test"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smtp-source failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let bob = server.wait_maildir("bob@example.test", messages);
    assert_eq!(bob.len(), messages);
    for file in &bob {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size >= 2000, "{}: {size} octets", file.display());
    }
}
