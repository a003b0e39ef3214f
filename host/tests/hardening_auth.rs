//! AUTH failures are remembered per client IP across connections: reconnecting does not reset
//! the count, and past `max_auth_failures_per_ip` AUTH from that IP is refused with 421 4.7.0
//! (even with the right password) while other addresses still authenticate.

use crate::support::{ALICE, ALICE_PASSWORD, Client, TestServer, b64, config};

fn connect_tls_from(server: &TestServer, ip: &str) -> Client {
    let mut c = Client::connect_raw_from(server.addr("submissions"), Some(ip));
    c.upgrade();
    assert_eq!(c.reply().code, 220);
    c.expect("EHLO guesser.test", 250);
    c
}

fn guess(c: &mut Client, n: usize) -> (u16, String) {
    let reply = c.cmd(&format!(
        "AUTH PLAIN {}",
        b64(&format!("\0{ALICE}\0guess{n}"))
    ));
    (reply.code, reply.enhanced())
}

#[test]
fn auth_failures_from_one_ip_add_up_across_connections_then_421() {
    let server = TestServer::with_config(&config(
        "[server.limits]\nmax_auth_failures = 5\nmax_auth_failures_per_ip = 3\n",
        "",
    ));
    let right = format!(
        "AUTH PLAIN {}",
        b64(&format!("\0{ALICE}\0{ALICE_PASSWORD}"))
    );

    let mut first = connect_tls_from(&server, "127.0.0.1");
    assert_eq!(guess(&mut first, 0), (535, "5.7.8".into()));
    assert_eq!(guess(&mut first, 1), (535, "5.7.8".into()));
    first.expect("QUIT", 221);

    // A new connection does not start from zero: the third failure reaches the IP's limit, and
    // the next AUTH is refused (right password or not) and the session closed.
    let mut second = connect_tls_from(&server, "127.0.0.1");
    assert_eq!(guess(&mut second, 2), (535, "5.7.8".into()));
    let reply = second.cmd(&right);
    assert_eq!((reply.code, reply.enhanced().as_str()), (421, "4.7.0"));
    assert!(second.is_closed());

    let mut third = connect_tls_from(&server, "127.0.0.1");
    let reply = third.cmd(&right);
    assert_eq!((reply.code, reply.enhanced().as_str()), (421, "4.7.0"));

    // Another address is not affected.
    let mut other = connect_tls_from(&server, "127.0.0.2");
    other.login_alice();
    other.expect("QUIT", 221);
    assert!(server.log().contains("too many recent failures"));
}
