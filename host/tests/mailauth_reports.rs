//! DMARC aggregate reports (`[dmarc_reports]`) through the real server: evaluations of a domain
//! that publishes `rua=` are counted per row, and at the end of the period one gzipped XML report
//! goes out through the queue to the authorised `rua=` addresses (an external address only with
//! its `_report._dmarc` record). Read back with Python's email and gzip modules.

use crate::mailauth_dns::{DnsServer, Zone};
use crate::support::sink::Sink;
use crate::support::{self, Client, TestServer};
use std::io::Write;
use std::process::{Command, Stdio};

/// The XML inside a dumped report (the application/gzip part, decompressed).
const EXTRACT: &str = r#"
import sys, email, gzip
lines = sys.stdin.buffer.read().replace(b"\r\n", b"\n").split(b"\n")
while lines and lines[0].startswith((b"X-Client-", b"X-Helo-Args", b"X-Mail-Args", b"X-Rcpt-Args")):
    lines.pop(0)
message = email.message_from_bytes(b"\n".join(lines))
for part in message.walk():
    if part.get_content_type() == "application/gzip":
        sys.stdout.write(gzip.decompress(part.get_payload(decode=True)).decode())
"#;

fn report_xml(dump: &str) -> String {
    let mut child = Command::new("python3")
        .args(["-c", EXTRACT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dump.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn aggregate_reports_count_rows_and_go_to_authorised_rua_addresses() {
    let mut zone = Zone::new();
    zone.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
        .txt(
            "_dmarc.example.org",
            "v=DMARC1; p=none; rua=mailto:agg@example.org,mailto:dmarc@thirdparty.test,mailto:x@unauthorised.test",
        )
        .txt("example.org._report._dmarc.thirdparty.test", "v=DMARC1")
        .txt("evil.test", "v=spf1 -all")
        .txt("norua.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.norua.test", "v=DMARC1; p=reject");
    let dns = DnsServer::start(zone);
    let sink = Sink::start(&[]);
    let extra = format!(
        "{}\n[dmarc_reports]\nenabled = true\nemail = \"dmarc-reports@example.test\"\ninterval = \"3s\"\n\n\
         [routes]\nsmarthost = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}\n",
        dns.config_toml(),
        sink.port()
    );
    let server = TestServer::with_config(&support::config("", &extra));
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.example.org", 250);
    let mail = |from: &str, subject: &str| {
        format!("From: {from}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n")
    };
    for (sender, from, subject) in [
        ("a@example.org", "a@example.org", "aligned 1"),
        ("b@example.org", "b@example.org", "aligned 2"),
        ("x@evil.test", "someone@example.org", "forged"),
        ("n@norua.test", "n@norua.test", "no reports asked"),
    ] {
        let reply = c.send_mail(sender, &["bob@example.test"], &mail(from, subject));
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    c.expect("QUIT", 221);

    // The report goes out at the end of the 3 s period (bounded wait, only against hangs).
    let deadline = std::time::Instant::now() + support::PATIENCE;
    let dumps = loop {
        let dumps = sink.messages();
        if !dumps.is_empty() || std::time::Instant::now() > deadline {
            break dumps;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        dumps.len(),
        1,
        "one report (example.org only)\n{}",
        server.log()
    );
    let dump = &dumps[0];
    assert!(
        dump.contains("X-Mail-Args: <dmarc-reports@example.test>"),
        "{dump}"
    );
    assert!(dump.contains("X-Rcpt-Args: <agg@example.org>"), "{dump}");
    assert!(
        dump.contains("X-Rcpt-Args: <dmarc@thirdparty.test>"),
        "{dump}"
    );
    assert!(!dump.contains("unauthorised.test>"), "{dump}");
    // (The Subject says the same, RFC 2047-encoded.)
    assert!(
        dump.contains("Report Domain: example.org\nSubmitter: mail.example.test")
            || dump.contains("Report Domain: example.org\r\nSubmitter: mail.example.test"),
        "{dump}"
    );
    let xml = report_xml(dump);
    assert!(
        xml.contains("<org_name>mail.example.test</org_name>"),
        "{xml}"
    );
    assert!(
        xml.contains("<email>dmarc-reports@example.test</email>"),
        "{xml}"
    );
    assert!(xml.contains("<domain>example.org</domain>"), "{xml}");
    assert!(xml.contains("<p>none</p>"), "{xml}");
    assert!(!xml.contains("norua.test"), "{xml}");
    // Two rows: the two aligned messages counted together, the forged one apart.
    let rows: Vec<&str> = xml.split("<record>").skip(1).collect();
    assert_eq!(rows.len(), 2, "{xml}");
    let pass = rows
        .iter()
        .find(|r| r.contains("<spf>pass</spf>") && r.contains("<count>2</count>"))
        .unwrap_or_else(|| panic!("no aligned row counted twice: {xml}"));
    assert!(pass.contains("<source_ip>127.0.0.1</source_ip>"), "{pass}");
    assert!(pass.contains("<disposition>none</disposition>"), "{pass}");
    let forged = rows
        .iter()
        .find(|r| r.contains("<count>1</count>"))
        .unwrap_or_else(|| panic!("no forged row: {xml}"));
    assert!(
        forged.contains("<envelope_from>evil.test</envelope_from>"),
        "{forged}"
    );
    assert!(
        forged.contains("<header_from>example.org</header_from>"),
        "{forged}"
    );
    assert!(forged.contains("<result>fail</result>"), "{forged}");
}
