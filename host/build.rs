//! Builds the plugins workspace (`plugins/`) for wasm32-wasip2 so that `cargo build` of the host
//! yields everything the quickstart needs. First-party plugins are embedded in the binary (see
//! `plugins::builtin`); the directory of all built components is exported to tests as
//! `MAILWIT_PLUGIN_WASM_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let plugins = root.join("plugins");
    let wit = root.join("wit");

    println!("cargo:rerun-if-changed={}", wit.display());
    println!(
        "cargo:rerun-if-changed={}",
        plugins.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        plugins.join("Cargo.lock").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        plugins.join(".cargo").join("config.toml").display()
    );
    for crate_dir in plugin_crates(&plugins) {
        println!("cargo:rerun-if-changed={}", crate_dir.display());
    }

    ensure_wasm_target();

    let target_dir = plugins.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags and target settings are for the host, not for the guests.
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
    let status = cmd
        .status()
        .expect("running cargo for the plugins workspace");
    if !status.success() {
        panic!("building plugins/ for wasm32-wasip2 failed (the errors are above)");
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    println!(
        "cargo:rustc-env=MAILWIT_PLUGIN_WASM_DIR={}",
        wasm_dir.display()
    );
    write_builtin_table(&plugins, &wasm_dir);
}

/// The plugins are built for wasm32-wasip2. A toolchain installed before `rust-toolchain.toml`
/// listed that target lacks it (rustup adds a toolchain file's targets only when it installs the
/// toolchain), so add it here with rustup rather than fail; without rustup, say what to install.
fn ensure_wasm_target() {
    const TARGET: &str = "wasm32-wasip2";
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let Some(sysroot) = sysroot else {
        return; // the plugin build below reports what is wrong with rustc
    };
    if sysroot.join("lib/rustlib").join(TARGET).is_dir() {
        return;
    }
    // The toolchain directory's name is the rustup toolchain (e.g. 1.95.0-x86_64-unknown-linux-gnu).
    let toolchain = sysroot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Some(toolchain) = &toolchain {
        rustup.args(["--toolchain", toolchain]);
    }
    match rustup.status() {
        Ok(status) if status.success() => println!(
            "cargo:warning=installed the {TARGET} target with rustup (the plugins are built for it)"
        ),
        _ => panic!(
            "the Rust target {TARGET} is missing from {} and `rustup target add {TARGET}` did not \
             work; install that target for this toolchain (the plugins in plugins/ are built for it)",
            sysroot.display()
        ),
    }
}

/// Every crate directory in the plugins workspace (the SDK, first-party plugins, the examples of
/// plugins/README.md, test plugins).
fn plugin_crates(plugins: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for group in [
        plugins.to_path_buf(),
        plugins.join("examples"),
        plugins.join("testing"),
    ] {
        let Ok(entries) = std::fs::read_dir(&group) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.join("Cargo.toml").exists() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// First-party plugins are the crates directly under `plugins/` (not the SDK, not `examples/`, not
/// `testing/`); each is embedded under its directory name, e.g. `recipients`.
fn write_builtin_table(plugins: &Path, wasm_dir: &Path) {
    let mut rows = String::new();
    for crate_dir in plugin_crates(plugins) {
        if crate_dir.parent() != Some(plugins) || crate_dir.ends_with("sdk") {
            continue;
        }
        let short = crate_dir.file_name().unwrap().to_string_lossy().to_string();
        let package = format!("mailwit_plugin_{}", short.replace('-', "_"));
        let wasm = wasm_dir.join(format!("{package}.wasm"));
        if wasm.exists() {
            rows.push_str(&format!(
                "    ({short:?}, include_bytes!({:?})),\n",
                wasm.display().to_string()
            ));
        } else {
            println!(
                "cargo:warning=plugin crate {} did not produce {}",
                crate_dir.display(),
                wasm.display()
            );
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("builtin_plugins.rs");
    let table = format!(
        "/// First-party plugins built into the binary: (short name, component bytes).\npub static BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n{rows}];\n"
    );
    std::fs::write(out, table).unwrap();
}
