//! The first-party `dmarc` plugin through the real server, with zones served on loopback: the
//! quickstart (plugin enabled) refuses a forged From of a p=reject domain with 550 5.7.1 and takes
//! aligned mail; quarantine tagging, `pct=` and the allow lists on their own configuration.

use crate::mailauth_dns::{DnsServer, Zone};
use crate::support::{self, Client, TestServer};

/// The quickstart as shipped, with every listener on a free port, its users file found from the
/// test's directory, and `[dns]` pointed at the test zone.
fn quickstart_with(dns: &DnsServer) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.toml");
    let mut text = std::fs::read_to_string(path).unwrap();
    for port in ["2525", "2587", "2465", "2366", "2580"] {
        text = text.replace(&format!("\"127.0.0.1:{port}\""), "\"127.0.0.1:0\"");
    }
    let users = support::users_file();
    text = text.replace(
        "users_file = \"users\"",
        &format!("users_file = \"{}\"", users.display()),
    );
    format!("{text}\n{}", dns.config_toml())
}

/// example.test publishes p=reject and lets no one send for it; example.org authorises the test
/// client (127.0.0.1) by SPF, also under p=reject.
fn zone() -> Zone {
    let mut zone = Zone::new();
    zone.txt("example.test", "v=spf1 -all")
        .txt("_dmarc.example.test", "v=DMARC1; p=reject")
        .txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.example.org", "v=DMARC1; p=reject")
        .txt("evil.test", "v=spf1 -all")
        .txt("quarantine.test", "v=spf1 -all")
        .txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
        .txt("pct.test", "v=spf1 -all")
        .txt("_dmarc.pct.test", "v=DMARC1; p=reject; pct=0")
        .txt("partner.test", "v=spf1 -all")
        .txt("_dmarc.partner.test", "v=DMARC1; p=reject")
        .txt("lists.test", "v=spf1 ip4:127.0.0.1 -all");
    zone
}

fn mail(from: &str, subject: &str) -> String {
    format!("From: {from}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n")
}

#[test]
fn quickstart_refuses_a_forged_from_of_a_reject_domain() {
    let dns = DnsServer::start(zone());
    let server = TestServer::with_config(&quickstart_with(&dns));
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.evil.test", 250);
    let forged = c.send_mail(
        "attacker@evil.test",
        &["bob@example.test"],
        &mail("someone@example.test", "forged"),
    );
    assert_eq!(forged.code, 550, "{forged:?}\n{}", server.log());
    assert_eq!(forged.enhanced(), "5.7.1", "{forged:?}");
    assert!(
        forged.text().contains("DMARC policy of example.test"),
        "{forged:?}"
    );
    // The session goes on: aligned mail (SPF pass for example.org) is taken.
    let aligned = c.send_mail(
        "carol@example.org",
        &["bob@example.test"],
        &mail("carol@example.org", "aligned"),
    );
    assert_eq!(aligned.code, 250, "{aligned:?}\n{}", server.log());
    let files = server.wait_maildir("bob@example.test", 1);
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("Subject: aligned"), "{text}");
    assert!(
        text.contains("dmarc=pass (p=reject) header.from=example.org"),
        "{text}"
    );
    assert!(!text.contains("X-DMARC-Quarantine"), "{text}");
    assert!(
        server
            .log()
            .contains("example.test fails DMARC (p=reject), rejected"),
        "{}",
        server.log()
    );
}

#[test]
fn quarantine_pct_and_allow_lists_through_the_server() {
    let dns = DnsServer::start(zone());
    let extra = format!(
        "{}\n[plugins.dmarc]\nbuiltin = \"dmarc\"\ngrants = [\"config\", \"dns\", \"log\"]\n\n\
         [plugins.dmarc.config]\nallow_domains = [\"partner.test\"]\nallow_senders = [\"lists.test\"]\n\n\
         [pipelines.mx]\ndata = [\"dmarc\"]\n",
        dns.config_toml()
    );
    let server = TestServer::with_config(&support::config("", &extra));
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.evil.test", 250);
    let mut send = |from_header: &str, sender: &str, subject: &str| {
        c.send_mail(sender, &["bob@example.test"], &mail(from_header, subject))
    };
    // Still refused on this configuration.
    assert_eq!(send("a@example.test", "x@evil.test", "refused").code, 550);
    // p=quarantine: accepted and tagged (the default action), and a client's own tag replaced.
    let tagged = "X-DMARC-Quarantine: no\r\nFrom: a@quarantine.test\r\nTo: bob@example.test\r\n\
                  Subject: quarantined\r\n\r\nhello\r\n";
    assert_eq!(
        c.send_mail("x@evil.test", &["bob@example.test"], tagged)
            .code,
        250
    );
    let mut send = |from_header: &str, sender: &str, subject: &str| {
        c.send_mail(sender, &["bob@example.test"], &mail(from_header, subject))
    };
    // p=reject; pct=0: no message is sampled, so the next lower policy (quarantine) applies.
    assert_eq!(send("a@pct.test", "x@evil.test", "pct zero").code, 250);
    // Allow lists: a partner's From domain, and a mailing list's envelope sender.
    assert_eq!(send("a@partner.test", "x@evil.test", "partner").code, 250);
    assert_eq!(
        send("a@example.test", "list@lists.test", "via list").code,
        250
    );

    let files = server.wait_maildir("bob@example.test", 4);
    let texts: Vec<String> = files
        .iter()
        // Unfolded: plugin-added fields are folded at 76 characters.
        .map(|f| std::fs::read_to_string(f).unwrap().replace("\r\n ", " "))
        .collect();
    let find = |subject: &str| {
        texts
            .iter()
            .find(|t| t.contains(&format!("Subject: {subject}\r\n")))
            .unwrap_or_else(|| panic!("no message {subject}: {texts:?}"))
    };
    let q = find("quarantined");
    assert_eq!(q.matches("X-DMARC-Quarantine:").count(), 1, "{q}");
    assert!(
        q.contains("X-DMARC-Quarantine: yes (dmarc=fail p=quarantine header.from=quarantine.test)"),
        "{q}"
    );
    let p = find("pct zero");
    assert!(
        p.contains("X-DMARC-Quarantine: yes (dmarc=fail p=reject header.from=pct.test)"),
        "{p}"
    );
    for subject in ["partner", "via list"] {
        let t = find(subject);
        assert!(!t.contains("X-DMARC-Quarantine"), "{t}");
        assert!(t.contains("dmarc=fail"), "the header still tells: {t}");
    }
    let log = server.log();
    assert!(
        log.contains("not applied: From domain in allow_domains (partner.test)"),
        "{log}"
    );
    assert!(
        log.contains("not applied: sender domain in allow_senders (lists.test)"),
        "{log}"
    );
}
