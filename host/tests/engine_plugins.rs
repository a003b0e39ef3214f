//! The server with a real Wasm plugin in a listener's pipeline: its verdict reaches the client,
//! listeners without the pipeline are unaffected, and `mailwit reload` swaps behaviour without
//! a restart.

use crate::support::{Client, TestServer, config};

fn echo_wasm() -> String {
    format!("{}/mailwit_test_echo.wasm", env!("MAILWIT_PLUGIN_WASM_DIR"))
}

fn plugin_config(mail_hooks: &str) -> String {
    let toml = config(
        "",
        &format!(
            "[plugins.echo]\npath = \"{}\"\ngrants = [\"log\"]\n\n[pipelines.inbound]\nmail = [{mail_hooks}]\n",
            echo_wasm()
        ),
    );
    toml.replacen(
        "role = \"mx\"\n",
        "role = \"mx\"\npipeline = \"inbound\"\n",
        1,
    )
}

#[test]
fn plugin_verdict_reaches_the_client_and_reload_swaps_it() {
    let server = TestServer::with_config(&plugin_config("\"echo\""));
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    let refused = c.cmd("MAIL FROM:<reject@remote.test>");
    assert_eq!((refused.code, refused.enhanced().as_str()), (550, "5.7.1"));
    assert!(refused.text().contains("echo says no"), "{refused:?}");
    c.expect("MAIL FROM:<fine@remote.test>", 250);
    c.expect("QUIT", 221);

    // The submission listener has no pipeline: the plugin is not asked there.
    let mut c = Client::connect_tls(server.addr("submissions"));
    c.expect("EHLO client.test", 250);
    c.login_alice();
    c.expect("MAIL FROM:<reject@example.test>", 250);
    c.expect("QUIT", 221);

    // Take the plugin out of the pipeline and reload through the admin socket.
    std::fs::write(&server.config_path, plugin_config("")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .arg("reload")
        .arg("--state-dir")
        .arg(server.state_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reload failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let mut c = Client::connect(server.addr("mx"));
    c.expect("EHLO client.test", 250);
    c.expect("MAIL FROM:<reject@remote.test>", 250);
    c.expect("QUIT", 221);
}

#[test]
fn check_config_reports_the_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailwit.toml");
    std::fs::write(&path, plugin_config("\"echo\"")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("echo"), "{stdout}");

    // A pipeline naming a plugin that does not exist is an error.
    std::fs::write(&path, plugin_config("\"nope\"")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailwit"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}
