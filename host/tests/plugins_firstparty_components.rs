//! The first-party plugins as built by host/build.rs: each component exports exactly the hooks it
//! documents and imports exactly the host capabilities (grants) its README lists, so operators can
//! grant the minimum. Loaded with wasmtime the way the runtime loads them.

use std::collections::BTreeSet;

use mailwit::plugins::builtin;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

const CONTRACT: &str = "mailwit:plugin/";
const VERSION: &str = "@0.2.0";

/// (short name, hooks exported, grants needed)
const FIRST_PARTY: &[(&str, &[&str], &[&str])] = &[
    (
        "auth-static",
        &["auth", "auth-challenge"],
        &["config", "log"],
    ),
    ("content-filter", &["data"], &["config", "log"]),
    ("dnsbl", &["connect", "rcpt"], &["config", "dns", "log"]),
    ("greylist", &["rcpt"], &["clock", "config", "kv", "log"]),
    (
        "http-auth",
        &["auth", "rcpt"],
        &["config", "http", "kv", "log"],
    ),
    ("delivery-log", &["delivery"], &["kv", "log"]),
    ("dmarc", &["data"], &["config", "dns", "log"]),
    ("rate-limit", &["connect", "mail"], &["config", "kv", "log"]),
    ("recipients", &["rcpt"], &["config", "log"]),
    ("router", &["route", "route-hold"], &["config", "log"]),
    ("rspamd", &["data"], &["config", "http", "log"]),
];

fn engine() -> Engine {
    let mut config = Config::new();
    config.wasm_component_model(true);
    Engine::new(&config).unwrap()
}

/// The contract's interfaces a component imports and exports, by short name
/// (`types` and `message` are always available and not grants; any `wasi:http` import is the
/// "http" grant).
fn contract_surface(engine: &Engine, bytes: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    let component = Component::new(engine, bytes).expect("a valid component");
    let ty = component.component_type();
    let short = |name: &str| -> Option<String> {
        if name.starts_with("wasi:http/") {
            return Some("http".to_string());
        }
        let rest = name.strip_prefix(CONTRACT)?;
        let iface = rest
            .strip_suffix(VERSION)
            .unwrap_or_else(|| panic!("{name}: wrong contract version"));
        Some(iface.to_string())
    };
    let imports = ty
        .imports(engine)
        .filter_map(|(name, _)| short(name))
        .filter(|i| i != "types" && i != "message")
        .collect();
    let exports = ty
        .exports(engine)
        .filter_map(|(name, _)| short(name))
        .collect();
    (imports, exports)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_first_party_plugin_is_embedded_and_exports_only_its_hooks() {
    let engine = engine();
    for (name, hooks, grants) in FIRST_PARTY {
        let bytes = builtin::find(name).unwrap_or_else(|| panic!("{name} is not embedded"));
        let (imports, exports) = contract_surface(&engine, bytes);
        assert_eq!(exports, set(hooks), "{name}: exported hooks");
        assert_eq!(imports, set(grants), "{name}: imported capabilities");
    }
    let embedded: BTreeSet<&str> = builtin::BUILTIN_PLUGINS.iter().map(|(n, _)| *n).collect();
    let expected: BTreeSet<&str> = FIRST_PARTY.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(
        embedded, expected,
        "the SDK, examples and test plugins are not embedded"
    );
}

#[test]
fn readme_example_plugin_builds_as_a_two_hook_component() {
    let path = std::path::Path::new(env!("MAILWIT_PLUGIN_WASM_DIR")).join("hello_plugin.wasm");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (imports, exports) = contract_surface(&engine(), &bytes);
    assert_eq!(exports, set(&["data", "mail"]));
    assert_eq!(imports, set(&["config"]));
}

#[test]
fn readme_guide_shows_the_example_crate_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let source = std::fs::read_to_string(root.join("examples/hello/src/lib.rs")).unwrap();
    let code = &source[source.find("use mailwit_plugin").unwrap()..];
    assert!(
        readme.contains(&format!("// hello/src/lib.rs\n{code}```")),
        "plugins/README.md's example differs from plugins/examples/hello/src/lib.rs"
    );
}
