//! The plugins' kv survives a restart of the real binary (the embedded store in the state
//! directory is the default): a greylisted triplet is remembered, so the retry after a restart
//! passes. With `[kv] backend = "memory"` the same dialog is greylisted again (the contrast that
//! shows the test can fail).

use crate::support;

use support::{Client, TestServer, config};

fn greylist_config(kv: &str) -> String {
    config(
        "",
        &format!(
            "{kv}\n[plugins.grey]\nbuiltin = \"greylist\"\n\
             grants = [\"config\", \"kv\", \"clock\", \"log\"]\nconfig = {{ delay_secs = 0 }}\n\
             [pipelines.mx]\nrcpt = [\"grey\"]\n"
        ),
    )
}

/// One RCPT from a fresh connection; its reply code.
fn rcpt_code(server: &TestServer) -> u16 {
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.test", 250);
    client.expect("MAIL FROM:<sender@remote.test>", 250);
    let code = client.cmd("RCPT TO:<bob@example.test>").code;
    client.expect("QUIT", 221);
    code
}

#[test]
fn greylist_state_survives_a_restart_with_the_embedded_store() {
    let mut server = TestServer::with_config(&greylist_config(""));
    assert_eq!(rcpt_code(&server), 451, "first attempt is greylisted");
    assert!(server.state_dir().join("kv.redb").exists());
    assert!(server.terminate().success());
    server.spawn();
    assert_eq!(
        rcpt_code(&server),
        250,
        "the retry after a restart passes:\n{}",
        server.log()
    );
    // SIGKILL keeps it too: every kv write is committed before the plugin hears "ok".
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.test", 250);
    client.expect("MAIL FROM:<other@remote.test>", 250);
    client.expect("RCPT TO:<bob@example.test>", 451);
    server.kill();
    server.spawn();
    let mut client = Client::connect(server.addr("mx"));
    client.expect("EHLO client.test", 250);
    client.expect("MAIL FROM:<other@remote.test>", 250);
    client.expect("RCPT TO:<bob@example.test>", 250);
}

#[test]
fn memory_backend_forgets_on_restart() {
    let mut server = TestServer::with_config(&greylist_config("[kv]\nbackend = \"memory\"\n"));
    assert_eq!(rcpt_code(&server), 451);
    assert!(server.terminate().success());
    server.spawn();
    assert_eq!(rcpt_code(&server), 451, "the memory store starts over");
    assert!(!server.state_dir().join("kv.redb").exists());
}
