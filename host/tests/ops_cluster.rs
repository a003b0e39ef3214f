//! The two-instance deployment of examples/cluster, with the real components: Debian's HAProxy
//! balancing round-robin with PROXY v2 over two mailwit instances that share one Redis. Through
//! the balancer, a greylisted triplet passes on the retry whichever instance takes it, a rate
//! limit counts across both, AUTH failures from one client add up across both until AUTH is
//! refused with 421 4.7.0, and hooks and Received see the real client, not the balancer.

use crate::support;

use support::ops::{Haproxy, Redis};
use support::{ALICE, Client, TestServer, b64, config, message};

fn instance(redis: &Redis) -> TestServer {
    TestServer::with_config(&config(
        "[server.limits]\nmax_auth_failures = 10\nmax_auth_failures_per_ip = 3\n",
        &format!(
            "[kv]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"cluster\"\n\
             [[listeners]]\nname = \"balanced-mx\"\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n\
             pipeline = \"mx\"\nproxy_protocol = true\nproxy_trusted = [\"127.0.0.1/32\"]\n\
             [[listeners]]\nname = \"balanced-submission\"\naddress = \"127.0.0.1:0\"\n\
             role = \"submission\"\nauth_plaintext = true\nproxy_protocol = true\n\
             proxy_trusted = [\"127.0.0.1/32\"]\n\
             [plugins.grey]\nbuiltin = \"greylist\"\n\
             grants = [\"config\", \"kv\", \"clock\", \"log\"]\nconfig = {{ delay_secs = 0 }}\n\
             [plugins.limit]\nbuiltin = \"rate-limit\"\ngrants = [\"config\", \"kv\", \"log\"]\n\
             config = {{ messages_per_sender_domain = {{ limit = 2, window_secs = 3600 }} }}\n\
             [pipelines.mx]\nmail = [\"limit\"]\nrcpt = [\"grey\"]\n",
            redis.url()
        ),
    ))
}

/// Whether `server` served a session of the client at `ip` (its log lines carry the client).
fn served(server: &TestServer, ip: &str) -> bool {
    server.log().contains(&format!("client={ip}:"))
}

#[test]
fn two_instances_behind_haproxy_share_one_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(&dir.path().join("redis"));
    let (a, b) = (instance(&redis), instance(&redis));
    let balancer = |listener: &str| {
        Haproxy::balanced(
            &dir.path().join(listener),
            listener,
            &[a.addr(listener), b.addr(listener)],
            "send-proxy-v2",
        )
    };
    let (mx, submission) = (balancer("balanced-mx"), balancer("balanced-submission"));
    let connect_to = |haproxy: &Haproxy, name: &str, ip: &str| {
        let mut c = Client::connect_raw_from(haproxy.frontend(name), Some(ip));
        assert_eq!(c.reply().code, 220);
        c.expect("EHLO client.test", 250);
        c
    };
    let connect = |ip: &str| connect_to(&mx, "balanced-mx", ip);

    // Greylisting through the balancer: the first attempt is refused by one instance, the
    // retry (round-robin: the other instance) passes, because the triplet is in Redis.
    let mut first = connect("127.0.0.21");
    first.expect("MAIL FROM:<x@grey.test>", 250);
    first.expect("RCPT TO:<bob@example.test>", 451);
    first.expect("QUIT", 221);
    let mut retry = connect("127.0.0.21");
    retry.expect("MAIL FROM:<x@grey.test>", 250);
    retry.expect("RCPT TO:<bob@example.test>", 250);
    retry.expect("DATA", 354);
    let reply = retry.cmd(&format!("{}\r\n.", message("cluster", "through haproxy")));
    assert_eq!(reply.code, 250, "{reply:?}");
    retry.expect("QUIT", 221);
    assert!(
        served(&a, "127.0.0.21") && served(&b, "127.0.0.21"),
        "round-robin: each instance took one of the two attempts"
    );

    // The hook and Received saw the real client, not HAProxy's 127.0.0.1.
    let deadline = std::time::Instant::now() + support::PATIENCE;
    let delivered = loop {
        let files: Vec<_> = a
            .maildir("bob@example.test")
            .into_iter()
            .chain(b.maildir("bob@example.test"))
            .collect();
        if !files.is_empty() || std::time::Instant::now() > deadline {
            break files
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap())
                .collect::<Vec<_>>();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(delivered[0].contains("[127.0.0.21]"), "{}", delivered[0]);
    assert!(!delivered[0].contains("[127.0.0.1]"), "{}", delivered[0]);

    // Rate limit (2 per sender domain) counted across both instances: sender domain
    // limit.test already has nothing; two pass, the third is refused wherever it lands.
    for (n, want) in [(1, 250), (2, 250), (3, 451), (4, 451)] {
        let mut c = connect("127.0.0.22");
        assert_eq!(
            c.cmd(&format!("MAIL FROM:<{n}@limit.test>")).code,
            want,
            "message {n}"
        );
        c.cmd("QUIT");
    }

    // AUTH failures from one client, spread over both instances by the balancer, add up to
    // the per-IP limit of 3; the next AUTH (right password or not) is refused on either.
    let guess = |c: &mut Client, n: usize| {
        let r = c.cmd(&format!(
            "AUTH PLAIN {}",
            b64(&format!("\0{ALICE}\0guess{n}"))
        ));
        (r.code, r.enhanced())
    };
    let connect = |ip: &str| connect_to(&submission, "balanced-submission", ip);
    for n in 0..3 {
        let mut c = connect("127.0.0.23");
        assert_eq!(guess(&mut c, n), (535, "5.7.8".into()), "guess {n}");
        c.cmd("QUIT");
    }
    for n in 3..5 {
        let mut c = connect("127.0.0.23");
        assert_eq!(guess(&mut c, n), (421, "4.7.0".into()), "guess {n}");
    }
    // Another client of the same balancer is not affected.
    let mut other = connect("127.0.0.24");
    assert_eq!(guess(&mut other, 9), (535, "5.7.8".into()));
    let log = a.log() + &b.log();
    assert!(log.contains("too many recent failures"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
