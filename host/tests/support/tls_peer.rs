//! The outbound TLS tests' side of a delivery (DANE, verified relays, REQUIRETLS): a scripted
//! peer offering STARTTLS with a given certificate, the one message alice submits, and what the
//! tests wait for and check afterwards.

use super::peer::{PeerOptions, Received, ScriptedPeer, TestCa};
use super::tls::Leaf;
use super::{ALICE, Client, TestServer, until_blocking};

/// A peer on 127.0.0.1 offering PIPELINING and STARTTLS with `leaf`; `options` adds the rest
/// (AUTH, more extensions).
pub async fn starttls_peer(leaf: &Leaf, options: PeerOptions) -> ScriptedPeer {
    let mut extensions = vec!["PIPELINING".to_string()];
    extensions.extend(options.extensions.iter().cloned());
    ScriptedPeer::start(PeerOptions {
        extensions,
        tls: Some(TestCa {
            ca_der: leaf.der.clone(),
            server: leaf.server_config(),
        }),
        ..options
    })
    .await
}

/// Alice submits one message to `to` over implicit TLS; the server takes it (250).
pub fn submit(server: &TestServer, to: &str, subject: &str, body: &str) {
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    let reply = c.send_mail(ALICE, &[to], &super::message(subject, body));
    assert_eq!(reply.code, 250, "{reply:?}");
    c.expect("QUIT", 221);
}

/// The first message the peer received (waits, bounded only against hangs).
pub fn first_delivered(peer: &ScriptedPeer, server: &TestServer) -> Received {
    until_blocking(
        "a message at the peer",
        || server.log(),
        || !peer.transcript().messages.is_empty(),
    );
    peer.transcript().messages[0].clone()
}

/// Asserts that the delivery was deferred with 4.7.5 for `why` (an RFC 8460 result type, or
/// words of the log line) after STARTTLS and before MAIL: the certificate was refused in the
/// handshake. Returns the log.
pub fn assert_refused_after_starttls(
    peer: &ScriptedPeer,
    server: &TestServer,
    why: &str,
) -> String {
    let log = server.wait_log("enhanced=4.7.5");
    assert!(log.contains(why), "{why} not in the log:\n{log}");
    let t = peer.transcript();
    assert!(t.commands.iter().any(|c| c == "STARTTLS"), "{t:?}");
    assert!(!t.commands.iter().any(|c| c.starts_with("MAIL")), "{t:?}");
    log
}
