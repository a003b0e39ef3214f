//! The server in-process with scripted policy hooks (what a plugin pipeline supplies): hook
//! verdicts become replies, rewrites and quarantine are applied, auth falls back to the users
//! file, and the relay safety net holds whatever a hook says.

use crate::support::{Client, b64};
use mailwit::config::Config;
use mailwit::policy::{
    AuthResult, Credentials, Envelope, HookFactory, Message, RcptResult, Recipient, Reply,
    ReversePath, SessionHooks, SessionInfo, Verdict,
};
use mailwit::server::Server;
use mailwit::spool::{QueueId, Spool};
use std::sync::Arc;

struct Scripted;

impl HookFactory for Scripted {
    fn session_hooks(&self, _listener: &str) -> Box<dyn SessionHooks> {
        Box::new(Scripted)
    }
}

#[async_trait::async_trait]
impl SessionHooks for Scripted {
    async fn connect(&mut self, session: &SessionInfo) -> Verdict {
        if session.client.ip().to_string() == "127.0.0.9" {
            return Verdict::Reject(Reply::new(554, "5.7.1", "not from there"));
        }
        Verdict::Continue
    }

    async fn ehlo(&mut self, _session: &SessionInfo, name: &str) -> Verdict {
        match name {
            "blocked.test" => Verdict::Reject(Reply::new(550, "5.7.1", "blocked name")),
            "bye.test" => Verdict::Disconnect(Reply::new(421, "4.7.0", "bye now")),
            _ => Verdict::Continue,
        }
    }

    async fn auth(&mut self, _session: &SessionInfo, c: &Credentials) -> AuthResult {
        match (c.authcid.as_str(), c.secret.as_str()) {
            ("plugin-user", "plugin-pass") => AuthResult::Ok("plugin-user".into()),
            ("plugin-user", _) => AuthResult::Invalid,
            _ => AuthResult::Unknown,
        }
    }

    async fn rcpt(
        &mut self,
        _session: &SessionInfo,
        _from: &ReversePath,
        rcpt: &Recipient,
    ) -> RcptResult {
        let (verdict, rewrite) = match rcpt.address.as_str() {
            // A careless plugin that accepts anything: the relay net must still hold.
            a if a.starts_with("open@") => (Verdict::Accept, None),
            "sales@example.test" => (Verdict::Continue, Some("bob@example.test".to_string())),
            "later@example.test" => (
                Verdict::Tempfail(Reply::new(451, "4.7.1", "greylisted")),
                None,
            ),
            _ => (Verdict::Continue, None),
        };
        RcptResult { verdict, rewrite }
    }

    async fn data(
        &mut self,
        _session: &SessionInfo,
        _envelope: &Envelope,
        message: Message<'_>,
    ) -> mailwit::policy::DataResult {
        let text = String::from_utf8_lossy(message.bytes);
        let verdict = if text.contains("SPAM") {
            Verdict::Reject(Reply::new(550, "5.7.1", "spam refused"))
        } else if text.contains("QUARANTINE") {
            Verdict::Quarantine("suspicious".into())
        } else if text.contains("DISCARD") {
            Verdict::Discard
        } else {
            Verdict::Continue
        };
        mailwit::policy::DataResult {
            verdict,
            modifications: Vec::new(),
        }
    }
}

struct InProcess {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    spool: Arc<Spool>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    fn start() -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse(&crate::support::config("", ""), "test.toml", None).unwrap();
        config.server.state_dir = dir.path().to_path_buf();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (server, spool) = runtime.block_on(async {
            let spool = Arc::new(Spool::open(dir.path().join("queue")).await.unwrap());
            let server = Server::start(Arc::new(config), Arc::new(Scripted), spool.clone(), None)
                .await
                .unwrap();
            (server, spool)
        });
        InProcess {
            runtime,
            server: Some(server),
            spool,
            _dir: dir,
        }
    }

    fn addr(&self, name: &str) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().address(name).unwrap()
    }

    fn stored(&self) -> Vec<QueueId> {
        self.spool.list().unwrap()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

#[test]
fn connect_and_ehlo_verdicts() {
    let s = InProcess::start();
    let mut refused = Client::connect_raw_from(s.addr("mx"), Some("127.0.0.9"));
    let reply = refused.reply();
    assert_eq!(
        (reply.code, reply.enhanced().as_str()),
        (554, "5.7.1"),
        "{reply:?}"
    );
    assert!(refused.is_closed());

    let mut c = Client::connect(s.addr("mx"));
    let blocked = c.cmd("EHLO blocked.test");
    assert_eq!(blocked.code, 550, "{blocked:?}");
    c.expect("EHLO fine.test", 250);
    let bye = c.cmd("EHLO bye.test");
    assert_eq!(
        (bye.code, bye.enhanced().as_str()),
        (421, "4.7.0"),
        "{bye:?}"
    );
    assert!(c.is_closed());
}

#[test]
fn rcpt_verdicts_rewrites_and_the_relay_net() {
    let s = InProcess::start();
    let mut c = Client::connect(s.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<a@remote.test>", 250);
    // The hook accepts, but an unauthenticated client still cannot relay.
    let relay = c.cmd("RCPT TO:<open@elsewhere.test>");
    assert_eq!((relay.code, relay.enhanced().as_str()), (554, "5.7.1"));
    // A hook's accept of a local address skips the mailbox check.
    c.expect("RCPT TO:<open@example.test>", 250);
    let later = c.cmd("RCPT TO:<later@example.test>");
    assert_eq!((later.code, later.enhanced().as_str()), (451, "4.7.1"));
    // A rewrite replaces the recipient in the envelope.
    c.expect("RCPT TO:<sales@example.test>", 250);
    c.expect("DATA", 354);
    c.send("Subject: rewritten\r\n\r\nhello\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    c.expect("QUIT", 221);
    let ids = s.stored();
    assert_eq!(ids.len(), 1);
    let meta = s.spool.load_meta(&ids[0]).unwrap();
    let rcpts: Vec<&str> = meta
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(rcpts, ["open@example.test", "bob@example.test"]);
}

#[test]
fn data_verdicts() {
    let s = InProcess::start();
    let mut c = Client::connect(s.addr("mx"));
    c.expect("EHLO client.test", 250);
    let send = |c: &mut Client, body: &str| {
        c.send_mail(
            "a@remote.test",
            &["bob@example.test"],
            &crate::support::message("t", body),
        )
    };
    let spam = send(&mut c, "buy SPAM now");
    assert_eq!((spam.code, spam.enhanced().as_str()), (550, "5.7.1"));
    let discarded = send(&mut c, "DISCARD me");
    assert_eq!(discarded.code, 250);
    let quarantined = send(&mut c, "QUARANTINE me");
    assert_eq!(quarantined.code, 250);
    c.expect("QUIT", 221);
    // Only the quarantined one is stored, and held.
    let ids = s.stored();
    assert_eq!(ids.len(), 1);
    let meta = s.spool.load_meta(&ids[0]).unwrap();
    assert_eq!(meta.quarantine.as_deref(), Some("suspicious"));
}

#[test]
fn auth_hook_first_then_users_file() {
    let s = InProcess::start();
    let login = |user: &str, pass: &str| {
        let mut c = Client::connect_tls(s.addr("submissions"));
        c.expect("EHLO client.test", 250);
        c.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{user}\0{pass}"))))
            .code
    };
    assert_eq!(login("plugin-user", "plugin-pass"), 235);
    assert_eq!(login("plugin-user", "alice-secret"), 535);
    // Unknown to the hook: the built-in users file decides.
    assert_eq!(
        login(crate::support::ALICE, crate::support::ALICE_PASSWORD),
        235
    );
    assert_eq!(login(crate::support::ALICE, "nope"), 535);
}
