//! The quickstart's plugin composition (examples/plugins/quickstart-plugins.toml) in the real server,
//! driven over SMTP: recipients refuses unknown mailboxes with 550 5.1.1 and rewrites aliases,
//! content-filter refuses GTUBE and reject_words with 554 5.7.1, auth-static authenticates alice
//! with her argon2 hash, and an edited reject_words list applies to the next transaction on the
//! same connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::support::{Client, b64};
use mailwit::config::Config;
use mailwit::plugins::generation::PluginSettings;
use mailwit::plugins::{Plugins, RuntimeOptions};
use mailwit::server::Server;
use mailwit::spool::Spool;

const QUICKSTART_PLUGINS: &str = include_str!("../../examples/plugins/quickstart-plugins.toml");
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

struct InProcess {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    plugins: Arc<Plugins>,
    spool: Arc<Spool>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    fn start() -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let text = crate::support::config("", QUICKSTART_PLUGINS);
        let mut config = Config::parse(&text, "test.toml", None).unwrap();
        config.server.state_dir = dir.path().to_path_buf();
        let listener_pipelines = BTreeMap::from([
            ("mx".to_string(), "inbound".to_string()),
            ("submission".to_string(), "submission".to_string()),
            ("submissions".to_string(), "submission".to_string()),
        ]);
        let options = RuntimeOptions {
            listener_pipelines,
            ..Default::default()
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (server, spool, plugins) = runtime.block_on(async {
            let plugins = Plugins::from_config(&config, None, options).unwrap();
            let spool = Arc::new(Spool::open(dir.path().join("queue")).await.unwrap());
            let server = Server::start(
                Arc::new(config),
                plugins.hook_factory(),
                spool.clone(),
                None,
            )
            .await
            .unwrap();
            (server, spool, plugins)
        });
        InProcess {
            runtime,
            server: Some(server),
            plugins,
            spool,
            _dir: dir,
        }
    }

    fn addr(&self, name: &str) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().address(name).unwrap()
    }

    /// Every stored message, as (recipients, bytes).
    fn stored(&self) -> Vec<(Vec<String>, String)> {
        let mut out = Vec::new();
        for id in self.spool.list().unwrap() {
            let m = self.spool.load(&id).unwrap();
            let rcpts = m
                .meta
                .envelope
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .collect();
            out.push((rcpts, String::from_utf8_lossy(&m.message).into_owned()));
        }
        out
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

fn data(c: &mut Client, subject: &str, body: &str) -> crate::support::Reply {
    c.expect("DATA", 354);
    c.send(format!("{}.\r\n", crate::support::message(subject, body)));
    c.reply()
}

#[test]
fn recipients_and_content_filter_decide_over_smtp() {
    let s = InProcess::start();
    let mut c = Client::connect(s.addr("mx"));
    c.expect("EHLO client.test", 250);

    c.expect("MAIL FROM:<sender@remote.test>", 250);
    let unknown = c.cmd("RCPT TO:<mallory@example.test>");
    assert_eq!(
        (unknown.code, unknown.enhanced().as_str()),
        (550, "5.1.1"),
        "{unknown:?}"
    );
    c.expect("RCPT TO:<abuse@example.test>", 250);
    c.expect("RCPT TO:<bob+lists@example.test>", 250);
    let gtube = data(&mut c, "test", GTUBE);
    assert_eq!(
        (gtube.code, gtube.enhanced().as_str()),
        (554, "5.7.1"),
        "{gtube:?}"
    );

    c.expect("MAIL FROM:<sender@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    let word = data(&mut c, "Hello", "Buy VIAGRA here");
    assert_eq!(
        (word.code, word.enhanced().as_str()),
        (554, "5.7.1"),
        "{word:?}"
    );

    c.expect("MAIL FROM:<sender@remote.test>", 250);
    c.expect("RCPT TO:<abuse@example.test>", 250);
    c.expect("RCPT TO:<bob+lists@example.test>", 250);
    let clean = data(&mut c, "Lunch", "see you at noon");
    assert_eq!(clean.code, 250, "{clean:?}");
    c.expect("QUIT", 221);

    let stored = s.stored();
    assert_eq!(stored.len(), 1, "only the clean message is stored");
    let (rcpts, text) = &stored[0];
    assert_eq!(
        rcpts,
        &["alice@example.test", "bob@example.test"],
        "aliases and sub-addresses rewritten"
    );
    // The X-Spam-* modifications are checked in plugins_firstparty_pipeline.rs: the server does not
    // apply data-hook modifications yet (TODO in server/stages.rs).
    assert!(text.contains("see you at noon"), "{text}");
}

#[test]
fn edited_reject_words_apply_to_the_next_transaction_on_the_same_connection() {
    let s = InProcess::start();
    let mut c = Client::connect(s.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<sender@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    assert_eq!(data(&mut c, "offer", "cheap crypto").code, 250);

    let edited =
        QUICKSTART_PLUGINS.replace("\"lottery winner\"]", "\"lottery winner\", \"crypto\"]");
    assert_ne!(edited, QUICKSTART_PLUGINS);
    s.plugins
        .reload_with(&PluginSettings::from_toml(&edited).unwrap())
        .unwrap();

    c.expect("MAIL FROM:<sender@remote.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    let refused = data(&mut c, "offer", "cheap crypto");
    assert_eq!(
        (refused.code, refused.enhanced().as_str()),
        (554, "5.7.1"),
        "{refused:?}"
    );
    c.expect("QUIT", 221);
    assert_eq!(s.stored().len(), 1);
}

#[test]
fn auth_static_authenticates_submission_clients() {
    let s = InProcess::start();
    let login = |user: &str, pass: &str| {
        let mut c = Client::connect_tls(s.addr("submissions"));
        c.expect("EHLO client.test", 250);
        c.cmd(&format!("AUTH PLAIN {}", b64(&format!("\0{user}\0{pass}"))))
            .code
    };
    assert_eq!(
        login(crate::support::ALICE, crate::support::ALICE_PASSWORD),
        235
    );
    assert_eq!(login(crate::support::ALICE, "not-her-password"), 535);
    assert_eq!(
        login("bob@example.test", crate::support::ALICE_PASSWORD),
        535
    );
}
