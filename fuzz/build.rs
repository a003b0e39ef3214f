//! Extracts the pure part of the plugin host's message accessors (header parsing, no wasmtime)
//! from `host/src/plugins/imports/message.rs` so the fuzz targets test that very source: the file
//! up to its first `impl HostMessage`, without its wasmtime/bindings imports and inner doc comments.
//! If the file's layout changes, this fails loudly rather than fuzzing a stale copy.

use std::path::Path;

fn main() {
    let source = Path::new("../host/src/plugins/imports/message.rs");
    println!("cargo:rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(source).expect("message.rs");
    let end = text
        .find("\nimpl HostMessage for HostState")
        .expect("message.rs: `impl HostMessage for HostState` not found; update fuzz/build.rs");
    let pure: String = text[..end]
        .lines()
        .filter(|l| {
            !(l.starts_with("//!")
                || l.starts_with("use wasmtime")
                || l.starts_with("use crate::plugins::bindings")
                || l.starts_with("use crate::plugins::state"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("message_pure.rs");
    std::fs::write(out, pure).unwrap();
}
