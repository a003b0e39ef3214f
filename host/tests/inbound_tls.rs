//! Inbound TLS of the real binary: certificates chosen by SNI, certificate files reloaded without
//! a restart, the server's cipher-suite order winning over the client's, and a generated
//! certificate with a realistic lifetime.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use support::TestServer;
use support::tls::{Leaf, Pki, Validity};

fn write_pair(dir: &Path, name: &str, leaf: &Leaf) -> (String, String) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let pem = |label: &str, der: &[u8]| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    // Write to a temporary name and rename, as certificate tools do.
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, pem("CERTIFICATE", &leaf.der)).unwrap();
    std::fs::rename(&tmp, &cert).unwrap();
    std::fs::write(&tmp, pem("PRIVATE KEY", &leaf.key_der)).unwrap();
    std::fs::rename(&tmp, &key).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

/// A TLS handshake with the implicit-TLS listener asking for `sni`, trusting only `ca`.
/// Ok(negotiated suite) when the server's certificate verifies for `sni`.
fn handshake(
    addr: SocketAddr,
    sni: &str,
    ca: &rustls_pki_types::CertificateDer<'static>,
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(support::PATIENCE)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let suite = conn.negotiated_cipher_suite().unwrap();
    Ok(format!("{:?}", suite.suite()))
}

fn server_with(tls: &str) -> TestServer {
    TestServer::with_config(&support::config(&format!("[server.tls]\n{tls}"), ""))
}

#[test]
fn sni_selects_among_several_certificates() {
    let pki = Pki::new("inbound CA");
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = write_pair(
        dir.path(),
        "a",
        &pki.leaf(&["mail.a.test"], Validity::Current),
    );
    let (b_cert, b_key) = write_pair(dir.path(), "b", &pki.leaf(&["*.b.test"], Validity::Current));
    let server = server_with(&format!(
        "cert = \"{a_cert}\"\nkey = \"{a_key}\"\ncertificates = [{{ cert = \"{b_cert}\", key = \"{b_key}\" }}]\n"
    ));
    let addr = server.addr("submissions");
    handshake(addr, "mail.a.test", &pki.ca_der, None).unwrap();
    handshake(addr, "mx.b.test", &pki.ca_der, None).unwrap();
    // An unknown name gets the default certificate, which does not name it.
    let err = handshake(addr, "mx.c.test", &pki.ca_der, None).unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[test]
fn certificate_files_are_reloaded_when_they_change() {
    let old_ca = Pki::new("old CA");
    let new_ca = Pki::new("new CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(
        dir.path(),
        "mail",
        &old_ca.leaf(&["mail.a.test"], Validity::Current),
    );
    let server = server_with(&format!(
        "cert = \"{cert}\"\nkey = \"{key}\"\nreload_interval = 1\n"
    ));
    let addr = server.addr("submissions");
    handshake(addr, "mail.a.test", &old_ca.ca_der, None).unwrap();
    // Renewed by another CA; the modification time must differ from the first write.
    std::thread::sleep(Duration::from_millis(1100));
    write_pair(
        dir.path(),
        "mail",
        &new_ca.leaf(&["mail.a.test"], Validity::Current),
    );
    let deadline = Instant::now() + support::PATIENCE;
    while handshake(addr, "mail.a.test", &new_ca.ca_der, None).is_err() {
        assert!(Instant::now() < deadline, "not reloaded:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.log().contains("TLS certificates reloaded"));
    // A broken replacement is refused; the running certificate stays.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(dir.path().join("mail.key"), "not a key").unwrap();
    let deadline = Instant::now() + support::PATIENCE;
    while !server.log().contains("keeping the previous ones") {
        assert!(
            Instant::now() < deadline,
            "no error logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    handshake(addr, "mail.a.test", &new_ca.ca_der, None).unwrap();
}

#[test]
fn the_server_cipher_order_wins() {
    use rustls::crypto::ring::cipher_suite as cs;
    let pki = Pki::new("inbound CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(
        dir.path(),
        "a",
        &pki.leaf(&["mail.a.test"], Validity::Current),
    );
    let server = server_with(&format!("cert = \"{cert}\"\nkey = \"{key}\"\n"));
    let addr = server.addr("submissions");
    // The client prefers the weaker AES-128; the server's order puts AES-256 first.
    let suites = vec![cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384];
    let suite = handshake(addr, "mail.a.test", &pki.ca_der, Some(suites)).unwrap();
    assert_eq!(suite, "TLS13_AES_256_GCM_SHA384");
    let suites = vec![
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ];
    let suite = handshake(addr, "mail.a.test", &pki.ca_der, Some(suites)).unwrap();
    assert_eq!(suite, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
}

#[test]
fn the_generated_certificate_lives_90_days() {
    let server = TestServer::start();
    let client = support::Client::connect_tls(server.addr("submissions"));
    let der = client.peer_certificate().expect("a certificate");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.der");
    std::fs::write(&path, der).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "x509",
            "-inform",
            "DER",
            "-noout",
            "-startdate",
            "-enddate",
            "-in",
        ])
        .arg(&path)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let date = |key: &str| {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        let value = line.split_once('=').unwrap().1.trim().to_string();
        chrono::NaiveDateTime::parse_from_str(&value, "%b %e %H:%M:%S %Y GMT")
            .unwrap_or_else(|e| panic!("{value:?}: {e}"))
    };
    let days = (date("notAfter") - date("notBefore")).num_days();
    assert!((90..=92).contains(&days), "{text}");
}

#[test]
fn a_listener_presents_its_own_certificate() {
    let pki = Pki::new("inbound CA");
    let dir = tempfile::tempdir().unwrap();
    let a = pki.leaf(&["a.example.test"], Validity::Current);
    let (a_cert, a_key) = write_pair(dir.path(), "a", &a);
    let b = pki.leaf(&["b.example.test"], Validity::Current);
    let (b_cert, b_key) = write_pair(dir.path(), "b", &b);
    let config = support::config(
        &format!("[server.tls]\ncert = \"{a_cert}\"\nkey = \"{a_key}\""),
        "",
    )
    .replace(
        "role = \"submissions\"\n",
        &format!("role = \"submissions\"\ntls = {{ cert = \"{b_cert}\", key = \"{b_key}\" }}\n"),
    );
    let server = TestServer::with_config(&config);
    // The submissions listener: its own certificate, whatever name is asked for.
    handshake(
        server.addr("submissions"),
        "b.example.test",
        &pki.ca_der,
        None,
    )
    .unwrap();
    let refused = handshake(
        server.addr("submissions"),
        "a.example.test",
        &pki.ca_der,
        None,
    );
    assert!(refused.is_err(), "{refused:?}");
    let mut c = support::Client::connect_tls(server.addr("submissions"));
    assert_eq!(c.peer_certificate().unwrap(), b.der.to_vec());
    c.expect("EHLO client.test", 250);
    // The mx listener (STARTTLS): the server's certificate.
    let mut c = support::Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("STARTTLS", 220);
    c.upgrade();
    assert_eq!(c.peer_certificate().unwrap(), a.der.to_vec());
}
