//! The command line: check-config diagnostics (file, line, key), hash-password, and the
//! quickstart file itself.

use std::io::Write;
use std::process::{Command, Stdio};

fn mailwit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailwit"))
}

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = mailwit()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (out.status.success(), stderr)
}

#[test]
fn quickstart_checks_ok() {
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.toml");
    let out = mailwit()
        .args(["check-config", "--config", quickstart])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (4 listeners"));
}

#[test]
fn check_config_names_file_line_and_key() {
    let (ok, err) = check("[server]\nhostname = \"x\"\nhostnme = \"typo\"\n");
    assert!(!ok);
    assert!(
        err.contains("FILE:3:1: server.hostnme: unknown field"),
        "{err}"
    );

    let (ok, err) = check(
        "[[listeners]]\nname = \"mx\"\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\n\n\
         [[listeners]]\nname = \"sub\"\naddress = \"nonsense\"\nrole = \"submission\"\n",
    );
    assert!(!ok);
    assert!(err.contains("FILE:8:"), "{err}");
    assert!(err.contains("listeners[1].address"), "{err}");

    let (ok, err) = check("[server.limits]\nmax_command_line = 100\n");
    assert!(!ok);
    assert!(
        err.contains("FILE:2:1: server.limits.max_command_line: must be at least 512"),
        "{err}"
    );

    let (ok, err) = check("[auth]\nusers_file = \"missing-users\"\n");
    assert!(!ok);
    assert!(err.contains("missing-users"), "{err}");
}

#[test]
fn hash_password_makes_a_verifiable_phc_hash() {
    let mut child = mailwit()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hunter2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(mailwit::auth::verify_password("hunter2", hash));
    assert!(!mailwit::auth::verify_password("hunter3", hash));
}
