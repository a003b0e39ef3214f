//! The first-party `http-auth` plugin in the real server against an account service started by
//! the test: ok, invalid, unknown passing to the next backend (the users file), the kv cache,
//! service down → 454 4.7.0 at AUTH, and recipient existence at RCPT.

use crate::support::http_service::{HttpReply, HttpService};
use crate::support::{ALICE, ALICE_PASSWORD, Client, TestServer, b64, config, message};

/// carol / carol-pass is an account of the service; carol with any other password is invalid;
/// every other user is unknown to it. Recipients: bob exists, anyone else is unknown.
fn account_service() -> HttpService {
    HttpService::start(|request| {
        let query: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let answer = match request.path.as_str() {
            "/auth" => match (query["user"].as_str(), query["password"].as_str()) {
                (Some("carol"), Some("carol-pass")) => {
                    serde_json::json!({"result": "ok", "identity": "carol@example.test"})
                }
                (Some("carol"), _) => serde_json::json!({"result": "invalid"}),
                _ => serde_json::json!({"result": "unknown"}),
            },
            "/rcpt" => match query["recipient"].as_str() {
                Some("bob@example.test") => serde_json::json!({"result": "exists"}),
                _ => serde_json::json!({"result": "unknown"}),
            },
            _ => return HttpReply::Send(404, "text/plain", b"no".to_vec()),
        };
        HttpReply::Send(200, "application/json", answer.to_string().into_bytes())
    })
}

fn server(service: &HttpService) -> TestServer {
    let extra = format!(
        r#"
[plugins.accounts]
builtin = "http-auth"
grants = ["config", "log", "kv", "http"]
http = {{ allow = ["{addr}"] }}
config = {{ url = "http://{addr}/auth", recipients_url = "http://{addr}/rcpt", recipient_domains = ["example.test"] }}

[pipelines.submissions]
auth = ["accounts"]

[pipelines.mx]
rcpt = ["accounts"]
"#,
        addr = service.addr
    );
    TestServer::with_config(&config("", &extra))
}

fn auth(server: &TestServer, user: &str, password: &str) -> crate::support::Reply {
    let mut client = Client::connect_tls(server.addr("submissions"));
    client.expect("EHLO client.example.test", 250);
    let reply = client.cmd(&format!(
        "AUTH PLAIN {}",
        b64(&format!("\0{user}\0{password}"))
    ));
    client.cmd("QUIT");
    reply
}

fn auth_requests(service: &HttpService) -> usize {
    service
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/auth")
        .count()
}

#[test]
fn auth_and_recipients_are_asked_of_the_account_service() {
    let service = account_service();
    let server = server(&service);

    // ok: the service's identity; the password went to the service as JSON.
    let reply = auth(&server, "carol", "carol-pass");
    assert_eq!(reply.code, 235, "{reply:?}\n{}", server.log());
    let asked = service.requests.lock().unwrap()[0].clone();
    assert_eq!(asked.header("content-type"), Some("application/json"));
    let query: serde_json::Value = serde_json::from_slice(&asked.body).unwrap();
    assert_eq!(query["user"], "carol");
    assert_eq!(query["password"], "carol-pass");
    assert_eq!(query["client_ip"], "127.0.0.1");
    assert_eq!(query["mechanism"], "PLAIN");
    assert!(
        server.log().contains("carol@example.test"),
        "{}",
        server.log()
    );

    // The same credentials again: answered from the kv cache.
    let reply = auth(&server, "carol", "carol-pass");
    assert_eq!(reply.code, 235, "{reply:?}");
    assert_eq!(auth_requests(&service), 1);

    // invalid: 535 5.7.8 (and not passed on to the users file).
    let reply = auth(&server, "carol", "wrong");
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (535, "5.7.8"),
        "{reply:?}"
    );

    // unknown: the next backend (the server's users file) authenticates alice.
    let reply = auth(&server, ALICE, ALICE_PASSWORD);
    assert_eq!(reply.code, 235, "{reply:?}\n{}", server.log());
    assert_eq!(auth_requests(&service), 3);

    // RCPT: bob exists, nobody does not; another domain is not asked.
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.example.test", 250);
    client.expect(&format!("MAIL FROM:<{ALICE}>"), 250);
    client.expect("RCPT TO:<bob@example.test>", 250);
    let reply = client.cmd("RCPT TO:<nobody@example.test>");
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (550, "5.1.1"),
        "{reply:?}"
    );
    client.expect("DATA", 354);
    client.send(message("hello", "Hi Bob."));
    let reply = client.cmd(".");
    assert_eq!(reply.code, 250, "{reply:?}");
    client.cmd("QUIT");
    server.wait_maildir("bob@example.test", 1);

    // The service goes away: a user not in the cache gets 454 4.7.0, a cached one still logs in,
    // and an uncached recipient gets 451 4.3.0.
    let addr = service.addr;
    drop(service);
    // The accept loop has stopped: nothing listens on the port any more.
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let reply = auth(&server, "dave", "dave-pass");
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (454, "4.7.0"),
        "{reply:?}"
    );
    let reply = auth(&server, "carol", "carol-pass");
    assert_eq!(reply.code, 235, "{reply:?}");
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.example.test", 250);
    client.expect(&format!("MAIL FROM:<{ALICE}>"), 250);
    client.expect("RCPT TO:<bob@example.test>", 250);
    let reply = client.cmd("RCPT TO:<carol@example.test>");
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (451, "4.3.0"),
        "{reply:?}"
    );
    assert!(
        server.log().contains("account service failed"),
        "{}",
        server.log()
    );
}
