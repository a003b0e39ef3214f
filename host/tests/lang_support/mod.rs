//! Python and JavaScript test plugins for the integration tests: each is built once with its
//! SDK's documented command (`plugins/python/build.sh`, `plugins/js/build.sh`) and cached under
//! the target directory by a hash of everything it is made from, so tests never rebuild it. It is
//! also compiled once into a plugin cache shared by every test server ([`cache_setting`]):
//! compiling an 18 MB Python component takes most of a minute on a busy machine.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One build at a time in this process (tests run on parallel threads).
static BUILDING: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[derive(Clone, Copy)]
pub enum Lang {
    Python,
    Js,
}

impl Lang {
    fn sdk(self) -> PathBuf {
        repo().join("plugins").join(match self {
            Lang::Python => "python",
            Lang::Js => "js",
        })
    }

    /// The SDK files a component depends on (not node_modules, not built output).
    fn sdk_inputs(self) -> Vec<PathBuf> {
        let sdk = self.sdk();
        match self {
            Lang::Python => vec![
                sdk.join("build.py"),
                sdk.join("mailwit/__init__.py"),
                sdk.join("mailwit/_dispatch.py"),
            ],
            Lang::Js => vec![
                sdk.join("build.mjs"),
                sdk.join("mailwit.js"),
                sdk.join("package-lock.json"),
            ],
        }
    }
}

/// Every regular file under `dir` (sorted), skipping built components.
fn files(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("__pycache__") && !path.ends_with("node_modules") {
                files(&path, out);
            }
        } else if path.extension().is_none_or(|e| e != "wasm") {
            out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
        }
    }
}

/// The component built from the plugin directory `dir` (relative to the repository root, e.g.
/// "plugins/python/examples/content_rules"), building it on first use.
pub fn component(lang: Lang, dir: &str) -> PathBuf {
    let plugin_dir = repo().join(dir);
    let mut inputs = BTreeMap::new();
    files(&plugin_dir, &mut inputs);
    files(&repo().join("wit"), &mut inputs);
    for file in lang.sdk_inputs() {
        inputs.insert(file.clone(), std::fs::read(&file).unwrap_or_default());
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (path, bytes) in &inputs {
        path.strip_prefix(repo()).unwrap_or(path).hash(&mut hasher);
        bytes.hash(&mut hasher);
    }
    let name = plugin_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lang-plugins");
    let out = cache.join(format!("{name}-{:016x}.wasm", hasher.finish()));
    if out.exists() {
        return out;
    }
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let script = lang.sdk().join("build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&plugin_dir)
        .arg("-o")
        .arg(&tmp)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} {} failed (is {} installed? .ci/run installs it):\n{}{}",
        script.display(),
        plugin_dir.display(),
        match lang {
            Lang::Python => "componentize-py",
            Lang::Js => "node/npm",
        },
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// The compiled-plugin cache every test server shares.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("lang-plugins/compiled")
}

/// `[server]` lines pointing a test server at the shared cache.
pub fn cache_setting() -> String {
    format!("plugin_cache_dir = {:?}", cache_dir().display().to_string())
}

/// Compiles `component` into the shared cache (the server's engine settings, so the server finds
/// it there), once.
fn precompile(component: &Path) {
    let engine = mailwit::plugins::engine::WasmEngine::shared(false).expect("engine");
    let bytes = std::fs::read(component).unwrap();
    mailwit::plugins::loader::compile_cached(&engine, &bytes, Some(&cache_dir()))
        .unwrap_or_else(|e| panic!("compiling {}: {e:#}", component.display()));
}

/// Built and compiled into the shared cache.
fn ready(lang: Lang, dir: &str) -> PathBuf {
    let path = component(lang, dir);
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    precompile(&path);
    path
}

pub fn python(dir: &str) -> PathBuf {
    ready(Lang::Python, dir)
}

pub fn js(dir: &str) -> PathBuf {
    ready(Lang::Js, dir)
}

/// A language SDK's chaos plugin (`plugins/<lang>/testing/<lang>-chaos`) in three roles on the
/// mx pipeline's mail hook: `looper` runs past its 200 ms time limit and `hog` past its 96 MiB
/// memory limit (both `on_error = "continue"`), then `failing` throws or raises in mode
/// `failing_mode` (`on_error = "reject"`). Over two connections each MAIL gets 554 5.3.0 and the session goes on; the log
/// names each failure, the last one as `failure_log`.
pub fn assert_chaos_contained(chaos: &Path, failing: &str, failing_mode: &str, failure_log: &str) {
    use crate::support::{Client, TestServer, config};
    let chaos = chaos.display();
    let plugin = |name: &str, mode: &str, memory_mib: u32, time_ms: u32, on_error: &str| {
        format!(
            "[plugins.{name}]\npath = \"{chaos}\"\ngrants = [\"config\", \"log\"]\n\
             config = {{ mail = \"{mode}\" }}\n\
             limits = {{ memory_mib = {memory_mib}, time_ms = {time_ms} }}\n\
             on_error = \"{on_error}\"\n\n"
        )
    };
    let text = config(
        &cache_setting(),
        &format!(
            "{}{}{}[pipelines.mx]\nmail = [\"looper\", \"hog\", \"{failing}\"]\n",
            plugin("looper", "loop", 128, 200, "continue"),
            plugin("hog", "alloc", 96, 5000, "continue"),
            plugin(failing, failing_mode, 128, 5000, "reject"),
        ),
    );
    let server = TestServer::with_config(&text);
    for _round in 0..2 {
        let mut client = Client::connect(server.addr("mx"));
        client.expect("EHLO c.example.test", 250);
        let reply = client.cmd("MAIL FROM:<alice@example.test>");
        assert_eq!(reply.code, 554, "{reply:?}");
        assert_eq!(reply.enhanced(), "5.3.0");
        client.expect("NOOP", 250);
        client.expect("QUIT", 221);
    }
    let log = server.log();
    assert!(log.contains("time limit of 200 ms exceeded"), "{log}");
    assert!(log.contains("memory limit of 96 MiB exceeded"), "{log}");
    assert!(log.contains(failure_log), "{log}");
}
