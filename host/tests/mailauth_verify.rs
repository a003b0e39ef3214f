//! Verification of inbound mail: the DMARC alignment table (strict/relaxed, subdomains, sp=,
//! pct=, t=) through mailwit's verifier, and end to end on the mx listener: SPF of MAIL FROM and
//! HELO, DMARC with the published policy, an ARC chain sealed by dkimpy's arc_sign, one
//! Authentication-Results header. Zones are served on loopback.

use crate::mailauth_dns;
use crate::support;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mailauth_dns::{DnsServer, Zone};
use mailwit::config::Config;
use mailwit::config::mailauth::KeyAlgorithm;
use mailwit::mailauth::keys;
use mailwit::mailauth::results::{AuthStatus, DmarcPolicy};
use mailwit::mailauth::verify::{Origin, Verifier};
use std::process::{Command, Stdio};
use support::{Client, TestServer};

const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/dkimpy_tool.py");
const SENDER_IP: &str = "192.0.2.1";

/// One row: who claims what, and what DMARC must conclude.
struct Row {
    name: &'static str,
    from: &'static str,
    mail_from: &'static str,
    /// d= of a valid DKIM signature, if any.
    dkim: Option<&'static str>,
    /// Change the body after signing (the signature then fails).
    tamper: bool,
    result: AuthStatus,
    policy: DmarcPolicy,
    spf_aligned: bool,
    dkim_aligned: bool,
}

const fn row(
    name: &'static str,
    from: &'static str,
    mail_from: &'static str,
    dkim: Option<&'static str>,
    result: AuthStatus,
    policy: DmarcPolicy,
    (spf_aligned, dkim_aligned): (bool, bool),
) -> Row {
    Row {
        name,
        from,
        mail_from,
        dkim,
        tamper: false,
        result,
        policy,
        spf_aligned,
        dkim_aligned,
    }
}

fn zone(key_record: &str) -> Zone {
    let mut zone = Zone::new();
    let spf = format!("v=spf1 ip4:{SENDER_IP} -all");
    for domain in [
        "example.org",
        "bounce.example.org",
        "strict.test",
        "bounce.strict.test",
        "other.test",
    ] {
        zone.txt(domain, &spf);
    }
    for (domain, record) in [
        ("example.org", "v=DMARC1; p=reject; sp=quarantine"),
        ("strict.test", "v=DMARC1; p=reject; adkim=s; aspf=s"),
        ("none.test", "v=DMARC1; p=none"),
        ("pct.test", "v=DMARC1; p=reject; pct=0"),
        ("testing.test", "v=DMARC1; p=reject; t=y"),
        ("quarantine.test", "v=DMARC1; p=quarantine"),
    ] {
        zone.txt(&format!("_dmarc.{domain}"), record);
    }
    zone.a("news.example.org", "192.0.2.99");
    for d in [
        "example.org",
        "mail.example.org",
        "strict.test",
        "mail.strict.test",
        "other.test",
    ] {
        zone.txt(&format!("s1._domainkey.{d}"), key_record);
    }
    zone
}

#[tokio::test]
async fn dmarc_alignment_table() {
    use AuthStatus as S;
    use DmarcPolicy as P;
    let pem = keys::generate(KeyAlgorithm::Ed25519).unwrap();
    let record = keys::txt_value(&keys::parse_pem(pem.as_bytes()).unwrap());
    let dns = DnsServer::start(zone(&record));
    let config = Config::parse(&dns.config_toml(), "t.toml", None).unwrap();
    let verifier = Verifier::from_config(&config).unwrap();

    let mut rows = vec![
        row(
            "relaxed: SPF of the From domain itself",
            "a@example.org",
            "b@example.org",
            None,
            S::Pass,
            P::Reject,
            (true, false),
        ),
        row(
            "relaxed: SPF of a subdomain aligns",
            "a@example.org",
            "b@bounce.example.org",
            None,
            S::Pass,
            P::Reject,
            (true, false),
        ),
        row(
            "relaxed: DKIM of a subdomain aligns",
            "a@example.org",
            "x@other.test",
            Some("mail.example.org"),
            S::Pass,
            P::Reject,
            (false, true),
        ),
        row(
            "relaxed: SPF pass of another domain does not align",
            "a@example.org",
            "x@other.test",
            None,
            S::Fail,
            P::Reject,
            (false, false),
        ),
        row(
            "relaxed: DKIM of another domain does not align",
            "a@example.org",
            "x@other.test",
            Some("other.test"),
            S::Fail,
            P::Reject,
            (false, false),
        ),
        row(
            "strict: SPF of a subdomain does not align",
            "a@strict.test",
            "b@bounce.strict.test",
            None,
            S::Fail,
            P::Reject,
            (false, false),
        ),
        row(
            "strict: DKIM of a subdomain does not align",
            "a@strict.test",
            "x@other.test",
            Some("mail.strict.test"),
            S::Fail,
            P::Reject,
            (false, false),
        ),
        row(
            "strict: exact DKIM domain aligns",
            "a@strict.test",
            "x@other.test",
            Some("strict.test"),
            S::Pass,
            P::Reject,
            (false, true),
        ),
        row(
            "strict: exact SPF domain aligns",
            "a@strict.test",
            "b@strict.test",
            None,
            S::Pass,
            P::Reject,
            (true, false),
        ),
        row(
            "sp= applies to a subdomain without its own record",
            "a@news.example.org",
            "x@other.test",
            None,
            S::Fail,
            P::Quarantine,
            (false, false),
        ),
        row(
            "sp= subdomain still passes when aligned",
            "a@news.example.org",
            "b@example.org",
            None,
            S::Pass,
            P::Quarantine,
            (true, false),
        ),
        row(
            "p=none",
            "a@none.test",
            "x@other.test",
            None,
            S::Fail,
            P::None,
            (false, false),
        ),
        row(
            "p=quarantine",
            "a@quarantine.test",
            "x@other.test",
            None,
            S::Fail,
            P::Quarantine,
            (false, false),
        ),
        // RFC 9989 (which mail-auth 0.13 implements) removed pct=: it is ignored, the policy
        // stands. Its replacement t=y lowers the policy one level.
        row(
            "pct=0 is ignored (RFC 9989)",
            "a@pct.test",
            "x@other.test",
            None,
            S::Fail,
            P::Reject,
            (false, false),
        ),
        row(
            "t=y lowers reject to quarantine",
            "a@testing.test",
            "x@other.test",
            None,
            S::Fail,
            P::Quarantine,
            (false, false),
        ),
        row(
            "no DMARC record",
            "a@norecord.test",
            "x@other.test",
            None,
            S::None,
            P::None,
            (false, false),
        ),
    ];
    rows.push(Row {
        tamper: true,
        ..row(
            "strict: a broken aligned signature does not pass",
            "a@strict.test",
            "x@other.test",
            Some("strict.test"),
            S::Fail,
            P::Reject,
            (false, false),
        )
    });

    let mut failures = Vec::new();
    for row in &rows {
        let mut message = format!(
            "From: {}\r\nTo: bob@example.test\r\nSubject: {}\r\n\r\nbody of {}\r\n",
            row.from, row.name, row.name
        );
        if let Some(d) = row.dkim {
            let key = keys::parse_pem(pem.as_bytes()).unwrap().key;
            let signer = DkimSigner::from_key(key)
                .domain(d)
                .selector("s1")
                .headers(["From", "To", "Subject"])
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            let signature = signer.sign(message.as_bytes()).unwrap();
            message = format!("{}{message}", signature.to_header());
        }
        if row.tamper {
            message = message.replace("body of", "BODY OF");
        }
        let origin = Origin {
            client_ip: SENDER_IP.parse().unwrap(),
            helo: "client.other.test",
            mail_from: row.mail_from,
        };
        let results = verifier.verify(&origin, message.as_bytes()).await;
        let Some(dmarc) = &results.dmarc else {
            failures.push(format!("{}: no DMARC evaluation", row.name));
            continue;
        };
        let got = (
            dmarc.result,
            dmarc.policy,
            dmarc.spf_aligned,
            dmarc.dkim_aligned,
        );
        let want = (row.result, row.policy, row.spf_aligned, row.dkim_aligned);
        if got != want {
            failures.push(format!(
                "{}: got {got:?}, want {want:?} (spf {:?}, dkim {:?})",
                row.name, results.spf_mail_from.result, results.dkim
            ));
        }
    }
    println!(
        "DMARC alignment table: {} of {} rows as expected",
        rows.len() - failures.len(),
        rows.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn auth_results(text: &str) -> String {
    let unfolded = text.replace("\r\n\t", " ");
    unfolded
        .lines()
        .find(|l| l.starts_with("Authentication-Results: mail.example.test;"))
        .unwrap_or_else(|| panic!("no Authentication-Results of ours:\n{text}"))
        .to_string()
}

fn python(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg(TOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (a test dependency)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dkimpy_tool {args:?}: {out:?} (.ci/run installs dkimpy, authres)"
    );
    out.stdout
}

#[test]
fn mx_mail_gets_one_authentication_results_header() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("arc").to_str().unwrap().to_string();
    python(&["keygen", "rsa", &prefix], b"");
    let arc_record = std::fs::read_to_string(format!("{prefix}.dns")).unwrap();

    let mut zone = Zone::new();
    zone.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.example.org", "v=DMARC1; p=reject")
        .txt("client.example.org", "v=spf1 a -all")
        .a("client.example.org", "127.0.0.1")
        .txt("evil.test", "v=spf1 -all")
        .txt("_dmarc.example.test", "v=DMARC1; p=reject")
        .txt("arc._domainkey.forwarder.example.net", arc_record.trim());
    let dns = DnsServer::start(zone);
    let server = TestServer::with_config(&support::config("", &dns.config_toml()));

    // 1. Authorised by SPF (MAIL FROM and HELO): DMARC passes with p=reject.
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.example.org", 250);
    let genuine =
        "From: carol@example.org\r\nTo: bob@example.test\r\nSubject: genuine\r\n\r\nhi\r\n";
    assert_eq!(
        c.send_mail("carol@example.org", &["bob@example.test"], genuine)
            .code,
        250
    );
    // 2. A spoofed From of example.test (p=reject) from an unauthorised client: DMARC fails.
    let spoof =
        "From: someone@example.test\r\nTo: bob@example.test\r\nSubject: spoofed\r\n\r\nhi\r\n";
    assert_eq!(
        c.send_mail("attacker@evil.test", &["bob@example.test"], spoof)
            .code,
        250
    );
    // 3. Forwarded through an ARC-sealing intermediary (dkimpy's arc_sign), intact and tampered.
    let forwarded = "Authentication-Results: forwarder.example.net; spf=pass smtp.mailfrom=carol@example.org\r\n\
                     From: carol@example.org\r\nTo: bob@example.test\r\nSubject: forwarded\r\n\r\nvia a list\r\n";
    let sealed = python(
        &[
            "arcsign",
            &format!("{prefix}.key"),
            "forwarder.example.net",
            "arc",
        ],
        forwarded.as_bytes(),
    );
    let sealed = String::from_utf8(sealed).unwrap();
    assert_eq!(
        c.send_mail("list@forwarder.example.net", &["bob@example.test"], &sealed)
            .code,
        250
    );
    let broken = sealed.replace("via a list", "via a list, changed");
    assert_eq!(
        c.send_mail("list@forwarder.example.net", &["bob@example.test"], &broken)
            .code,
        250
    );

    let files = server.wait_maildir("bob@example.test", 4);
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let find = |subject: &str, extra: &str| {
        texts
            .iter()
            .find(|t| t.contains(&format!("Subject: {subject}")) && t.contains(extra))
            .unwrap_or_else(|| panic!("no message {subject}"))
    };
    for text in &texts {
        assert_eq!(
            text.matches("Authentication-Results: mail.example.test;")
                .count(),
            1,
            "{text}"
        );
    }
    let r = auth_results(find("genuine", ""));
    assert!(
        r.contains("spf=pass smtp.mailfrom=carol@example.org"),
        "{r}"
    );
    assert!(r.contains("spf=pass smtp.helo=client.example.org"), "{r}");
    assert!(
        r.contains("dmarc=pass (p=reject) header.from=example.org"),
        "{r}"
    );
    assert!(r.contains("dkim=none"), "{r}");
    assert!(r.contains("arc=none"), "{r}");
    let r = auth_results(find("spoofed", ""));
    assert!(
        r.contains("spf=fail smtp.mailfrom=attacker@evil.test"),
        "{r}"
    );
    assert!(
        r.contains("dmarc=fail (p=reject) header.from=example.test"),
        "{r}"
    );
    let r = auth_results(find("forwarded", "via a list\r\n"));
    assert!(r.contains("arc=pass"), "{r}");
    let r = auth_results(find("forwarded", "changed"));
    assert!(r.contains("arc=fail"), "{r}");
}

/// The message inside an smtp-sink dump: its envelope lines (X-Client-Addr, X-Mail-Args, ...)
/// dropped, CRLF line ends.
fn dumped_message(dump: &str) -> String {
    let text = dump.replace("\r\n", "\n");
    let mut lines = text.lines().peekable();
    while lines.peek().is_some_and(|l| {
        ["X-Client-", "X-Helo-Args", "X-Mail-Args", "X-Rcpt-Args"]
            .iter()
            .any(|p| l.starts_with(p))
    }) {
        lines.next();
    }
    lines.map(|l| format!("{l}\r\n")).collect()
}

#[test]
fn forwarded_mail_is_arc_sealed_and_the_seal_validates_in_mail_auth_and_dkimpy() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    // The original author's DKIM key (dkimpy signs), and our sealing key (`mailwit dkim
    // generate`, the same tool an operator uses).
    python(&["keygen", "rsa", &prefix("author")], b"");
    let author_record = std::fs::read_to_string(prefix("author") + ".dns").unwrap();
    let seal_key = dir.path().join("arc.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .args([
            "dkim",
            "generate",
            "--algorithm",
            "rsa",
            "--domain",
            "example.test",
        ])
        .args(["--selector", "arc", "--out", seal_key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let seal_record: String = printed
        .split_once(" IN TXT ")
        .unwrap()
        .1
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();

    let mut zone = Zone::new();
    zone.txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.example.org", "v=DMARC1; p=reject")
        .txt("s1._domainkey.example.org", author_record.trim())
        .txt("arc._domainkey.example.test", &seal_record);
    let dns = DnsServer::start(zone);
    let sink = crate::support::sink::Sink::start(&[]);
    let extra = format!(
        "{dns}\n[arc]\nseal = {{ domain = \"example.test\", selector = \"arc\", key = \"{key}\" }}\n\n\
         [routes]\nsmarthost = {{ host = \"127.0.0.1\", port = {port}, tls = \"none\" }}\n\n\
         [plugins.recipients]\nbuiltin = \"recipients\"\ngrants = [\"config\", \"log\", \"relay\"]\n\n\
         [plugins.recipients.config]\ndomains = [\"example.test\"]\n\
         mailboxes = [\"alice@example.test\", \"bob@example.test\"]\n\
         aliases = {{ \"fwd@example.test\" = \"carol@remote.test\" }}\n\n\
         [pipelines.mx]\nrcpt = [\"recipients\"]\n",
        dns = dns.config_toml(),
        key = seal_key.display(),
        port = sink.port(),
    );
    let server = TestServer::with_config(&support::config("", &extra));

    let original = "From: dave@example.org\r\nTo: fwd@example.test\r\nSubject: forwarded\r\n\
                    Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <f1@example.org>\r\n\r\n\
                    A message for the forwarder.\r\n";
    let signed = python(
        &["sign", &(prefix("author") + ".key"), "example.org", "s1"],
        original.as_bytes(),
    );
    let signed = String::from_utf8(signed).unwrap();
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.example.org", 250);
    let reply = c.send_mail("dave@example.org", &["fwd@example.test"], &signed);
    assert_eq!(reply.code, 250, "{reply:?}");
    // Local delivery is not forwarding: no seal.
    let local = signed.replace("To: fwd@example.test", "To: bob@example.test");
    let reply = c.send_mail("dave@example.org", &["bob@example.test"], &local);
    assert_eq!(reply.code, 250, "{reply:?}");

    // An 8-bit body is made 7-bit before it is sealed (like DKIM signing), so no downgrade on
    // the way breaks the seal.
    let eight_bit = "From: dave@example.org\r\nTo: fwd@example.test\r\nSubject: 8-bit\r\n\
                     MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Content-Transfer-Encoding: 8bit\r\n\r\nGr\u{fc}\u{df}e vom Weiterleiter.\r\n";
    c.expect("MAIL FROM:<dave@example.org> BODY=8BITMIME", 250);
    c.expect("RCPT TO:<fwd@example.test>", 250);
    c.expect("DATA", 354);
    c.send(eight_bit);
    c.send(".\r\n");
    assert_eq!(c.reply().code, 250);

    let deadline = std::time::Instant::now() + support::PATIENCE;
    let dumps = loop {
        let dumps = sink.messages();
        if dumps.len() >= 2 || std::time::Instant::now() > deadline {
            break dumps;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(dumps.len(), 2, "{}", server.log());
    let (forwarded, eight): (Vec<&String>, Vec<&String>) =
        dumps.iter().partition(|d| d.contains("Subject: forwarded"));
    let (dump, eight) = (forwarded[0], dumped_message(eight[0]));
    assert!(dump.contains("X-Rcpt-Args: <carol@remote.test>"), "{dump}");
    assert!(eight.is_ascii(), "{eight}");
    assert!(
        eight.contains("Content-Transfer-Encoding: quoted-printable"),
        "{eight}"
    );
    assert!(eight.contains("ARC-Seal: i=1;"), "{eight}");
    let relayed = dumped_message(dump);
    let unfolded = relayed.replace("\r\n\t", " ").replace("\r\n ", " ");
    let field = |name: &str| {
        unfolded
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{relayed}"))
            .to_string()
    };
    let seal = field("ARC-Seal:");
    assert!(seal.contains("i=1;"), "{seal}");
    assert!(seal.contains("cv=none"), "{seal}");
    assert!(
        seal.contains("d=example.test") && seal.contains("s=arc"),
        "{seal}"
    );
    assert!(field("ARC-Message-Signature:").contains("i=1;"));
    let aar = field("ARC-Authentication-Results:");
    assert!(aar.contains("i=1; mail.example.test"), "{aar}");
    assert!(aar.contains("dkim=pass"), "{aar}");
    assert!(aar.contains("spf=pass"), "{aar}");
    assert!(aar.contains("dmarc=pass"), "{aar}");
    let bob = server.wait_maildir("bob@example.test", 1);
    let bob = std::fs::read_to_string(&bob[0]).unwrap();
    assert!(!bob.contains("ARC-Seal:"), "{bob}");

    // mail-auth (as the next hop would run it): the chain validates; tampered, it does not.
    let config = Config::parse(&dns.config_toml(), "t.toml", None).unwrap();
    let verifier = Verifier::from_config(&config).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let origin = Origin {
        client_ip: "192.0.2.77".parse().unwrap(),
        helo: "next.hop.test",
        mail_from: "dave@example.org",
    };
    let tampered = relayed.replace("A message for the forwarder.", "A changed message.");
    let arc_of = |text: &str| {
        runtime
            .block_on(verifier.verify(&origin, text.as_bytes()))
            .arc
            .result
    };
    assert_eq!(arc_of(&relayed), AuthStatus::Pass);
    assert_eq!(arc_of(&eight), AuthStatus::Pass);
    assert_eq!(arc_of(&tampered), AuthStatus::Fail);

    // dkimpy's arc_verify agrees.
    let records = [
        format!("arc._domainkey.example.test={seal_record}"),
        format!("s1._domainkey.example.org={}", author_record.trim()),
    ];
    let args = |text: &str| -> String {
        let mut child = Command::new("python3")
            .arg(TOOL)
            .arg("arcverify")
            .args(&records)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let verdict = args(&relayed);
    assert!(verdict.starts_with("pass"), "{verdict}\n{relayed}");
    let verdict = args(&tampered);
    assert!(verdict.starts_with("fail"), "{verdict}");
}
