//! Two mailwit instances share one Redis (Debian's redis-server, started by the test on a free
//! loopback port): a greylisted triplet first seen by instance A passes later through instance
//! B; a rate limit is reached across both. Redis killed mid-traffic: the plugins' kv calls fail,
//! their own error policy applies (both fail open), the servers keep answering; when Redis
//! returns, shared state works again.

use crate::support;

use support::ops::Redis;
use support::{Client, TestServer, config, message};

fn shared_config(redis: &Redis) -> String {
    config(
        "",
        &format!(
            "[kv]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"test\"\n\
             [plugins.grey]\nbuiltin = \"greylist\"\n\
             grants = [\"config\", \"kv\", \"clock\", \"log\"]\nconfig = {{ delay_secs = 0 }}\n\
             [plugins.limit]\nbuiltin = \"rate-limit\"\ngrants = [\"config\", \"kv\", \"log\"]\n\
             config = {{ messages_per_sender_domain = {{ limit = 3, window_secs = 3600 }} }}\n\
             [pipelines.mx]\nmail = [\"limit\"]\nrcpt = [\"grey\"]\n",
            redis.url()
        ),
    )
}

/// MAIL then RCPT on a fresh connection: (MAIL code, RCPT code or 0).
fn attempt(server: &TestServer, from: &str, to: &str) -> (u16, u16) {
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.test", 250);
    let mail = client.cmd(&format!("MAIL FROM:<{from}>")).code;
    let rcpt = if mail == 250 {
        client.cmd(&format!("RCPT TO:<{to}>")).code
    } else {
        0
    };
    client.cmd("QUIT");
    (mail, rcpt)
}

#[test]
fn two_instances_share_greylist_and_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(&dir.path().join("redis"));
    let a = TestServer::with_config(&shared_config(&redis));
    let b = TestServer::with_config(&shared_config(&redis));

    // Greylisting: first seen through A, the retry through B passes.
    assert_eq!(attempt(&a, "x@grey.test", "bob@example.test"), (250, 451));
    assert_eq!(attempt(&b, "x@grey.test", "bob@example.test"), (250, 250));

    // Rate limit per sender domain, 3 per hour, counted across both instances.
    assert_eq!(attempt(&a, "1@limit.test", "alice@example.test").0, 250);
    assert_eq!(attempt(&b, "2@limit.test", "alice@example.test").0, 250);
    assert_eq!(attempt(&a, "3@limit.test", "alice@example.test").0, 250);
    assert_eq!(attempt(&b, "4@limit.test", "alice@example.test").0, 451);
    assert_eq!(attempt(&a, "5@limit.test", "alice@example.test").0, 451);
}

#[test]
fn redis_down_fails_the_kv_calls_not_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(&dir.path().join("redis"));
    let server = TestServer::with_config(&shared_config(&redis));
    assert_eq!(
        attempt(&server, "x@before.test", "bob@example.test"),
        (250, 451)
    );

    redis.stop();
    // Both plugins fail open on a kv error (their policy): mail flows, nothing crashes.
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.test", 250);
    let reply = client.send_mail(
        "x@down.test",
        &["bob@example.test"],
        &message("down", "redis is down"),
    );
    assert_eq!(reply.code, 250, "{reply:?}");
    client.expect("QUIT", 221);
    let log = server.log();
    assert!(log.contains("kv failed"), "{log}");

    // Redis returns (empty: no persistence): shared state works again.
    redis.restart();
    let deadline = std::time::Instant::now() + support::PATIENCE;
    let mut attempts = 0;
    loop {
        // A new triplet is greylisted once the connection is back.
        attempts += 1;
        let triplet = format!("y{attempts}@after.test");
        match attempt(&server, &triplet, "bob@example.test") {
            (250, 451) => break,
            (250, 250) => {} // still reconnecting: failed open
            other => panic!("unexpected {other:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}
