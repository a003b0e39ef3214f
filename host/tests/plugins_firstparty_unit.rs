//! Runs the plugins workspace's own unit tests (the SDK helpers and each first-party plugin's pure
//! logic, on the native target) as part of the host's `cargo test --workspace`, so CI covers them.

use std::path::Path;
use std::process::Command;

/// The SDK, the first-party plugins and the README example (not the runtime's test plugins).
const PACKAGES: &[&str] = &[
    "mailwit-plugin",
    "mailwit-plugin-auth-static",
    "mailwit-plugin-content-filter",
    "mailwit-plugin-dnsbl",
    "mailwit-plugin-greylist",
    "mailwit-plugin-rate-limit",
    "mailwit-plugin-recipients",
    "mailwit-plugin-router",
    "hello-plugin",
];

#[test]
fn sdk_and_first_party_plugin_unit_tests_pass() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .arg("test")
        .args(PACKAGES.iter().flat_map(|p| ["-p", p]))
        .arg("--target-dir")
        .arg(plugins.join("target"));
    // The outer build's settings are for the host crate, not for this workspace.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd.output().expect("running cargo test in plugins/");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "plugin unit tests failed:\n{stdout}\n{stderr}"
    );
    // Every crate's harness ran tests and none failed.
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        passed >= 40,
        "expected the plugin unit tests to run, counted {passed}:\n{stdout}"
    );
}
