//! Loading one plugin: read the component, compile it (or load the cached compilation), check its
//! `mailwit:plugin` version, its imports against its grants and its exports, and pre-instantiate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use sha2::Digest;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre};

use super::bindings::exports::mailwit::plugin as hooks;
use super::contract::{SUPPORTED_VERSIONS, WIT_PACKAGE, WIT_VERSION};
use super::engine::{MAX_MEMORY_MIB, WasmEngine};
use super::state::HostState;
use crate::config::plugins::{Grant, PluginConfig};
use crate::policy::Hook;

/// A compiled, checked, pre-instantiated plugin, ready to instantiate per session.
pub struct LoadedPlugin {
    pub name: String,
    pub config: PluginConfig,
    /// "builtin:NAME" or the component's path.
    pub source: String,
    pub engine: Arc<WasmEngine>,
    pub pre: InstancePre<HostState>,
    pub hooks: BTreeSet<Hook>,
    /// The contract version it was built against (`WIT_VERSION` or an earlier one the host speaks).
    pub contract: &'static str,
    /// Export lookups of a current-contract plugin.
    pub indices: HookIndices,
    /// Per hook, the hook function of an earlier-contract plugin (called through typed functions
    /// on the current Rust types, see `compat_v01`).
    pub legacy: BTreeMap<Hook, ComponentExportIndex>,
    /// The `mailwit:plugin` host imports it uses (e.g. "log", "kv"), and "http" for wasi:http.
    pub imports: BTreeSet<String>,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    /// One permit per instance allowed by `limits.instances` (none: only the engine's pool).
    pub instance_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Where its wasi:http requests may go (grant "http" with `http.allow`).
    pub http: Option<Arc<super::http::HttpPolicy>>,
}

/// Export lookups done once per plugin, so each call only type-checks and calls.
#[derive(Default)]
pub struct HookIndices {
    pub connect: Option<hooks::connect::GuestIndices>,
    pub ehlo: Option<hooks::ehlo::GuestIndices>,
    pub auth: Option<hooks::auth::GuestIndices>,
    /// Challenge-response mechanisms (CRAM-MD5); only with `auth` (see `wit/hooks.wit`).
    pub auth_challenge: Option<hooks::auth_challenge::GuestIndices>,
    /// ODMR holds decided by a route plugin; only with `route` (see `wit/hooks.wit`).
    pub route_hold: Option<hooks::route_hold::GuestIndices>,
    pub mail: Option<hooks::mail::GuestIndices>,
    pub rcpt: Option<hooks::rcpt::GuestIndices>,
    pub data: Option<hooks::data::GuestIndices>,
    pub route: Option<hooks::route::GuestIndices>,
    pub delivery: Option<hooks::delivery::GuestIndices>,
    pub outbound: Option<hooks::outbound::GuestIndices>,
}

/// Where plugin bytes and compiled code live.
pub struct LoadContext<'a> {
    /// Relative `path`s are resolved against this (the configuration file's directory).
    pub base_dir: &'a Path,
    /// `<state>/plugin-cache`; `None` compiles every time.
    pub cache_dir: Option<&'a Path>,
}

pub fn load(name: &str, config: &PluginConfig, cx: &LoadContext<'_>) -> Result<LoadedPlugin> {
    load_inner(name, config, cx).with_context(|| format!("plugin `{name}`"))
}

fn load_inner(name: &str, config: &PluginConfig, cx: &LoadContext<'_>) -> Result<LoadedPlugin> {
    check_limits(config)?;
    let http = http_policy(name, config)?;
    let (bytes, source) = read_component(config, cx.base_dir)?;
    let engine = WasmEngine::shared(config.limits.fuel.is_some())?;
    let (component, from_cache) = compile_cached(&engine, &bytes, cx.cache_dir)?;
    let (hooks, imports, contract) = inspect(&engine, &component, &config.grants)?;
    let pre = engine
        .linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .context("linking the component against the host imports")?;
    let (indices, legacy) = if contract == WIT_VERSION {
        let mut indices = hook_indices(&pre, &hooks)?;
        let auth_challenge = hooks::auth_challenge::GuestIndices::new;
        let route_hold = hooks::route_hold::GuestIndices::new;
        indices.auth_challenge =
            companion_index(&component, &pre, &hooks, &AUTH_CHALLENGE, auth_challenge)?;
        indices.route_hold = companion_index(&component, &pre, &hooks, &ROUTE_HOLD, route_hold)?;
        (indices, BTreeMap::new())
    } else {
        (
            HookIndices::default(),
            legacy_indices(&component, &hooks, contract)?,
        )
    };
    Ok(LoadedPlugin {
        name: name.to_string(),
        config: config.clone(),
        source,
        engine,
        pre,
        hooks,
        contract,
        indices,
        legacy,
        imports,
        from_cache,
        instance_slots: config
            .limits
            .instances
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize))),
        http,
    })
}

/// The "http" grant and the `http` table go together.
fn http_policy(name: &str, config: &PluginConfig) -> Result<Option<Arc<super::http::HttpPolicy>>> {
    match (config.grants.contains(&Grant::Http), &config.http) {
        (false, None) => Ok(None),
        (true, Some(http)) => Ok(Some(Arc::new(super::http::HttpPolicy::from_config(
            name, http,
        )?))),
        (true, None) => bail!(
            "grants include \"http\" but no `http = {{ allow = [...] }}` says where the plugin may go"
        ),
        (false, Some(_)) => {
            bail!("`http` is set but `grants` does not include \"http\"")
        }
    }
}

fn check_limits(config: &PluginConfig) -> Result<()> {
    let limits = &config.limits;
    if limits.memory_mib == 0 || limits.memory_mib > MAX_MEMORY_MIB {
        bail!(
            "limits.memory_mib must be 1..={MAX_MEMORY_MIB}, not {}",
            limits.memory_mib
        );
    }
    if limits.time_ms == 0 {
        bail!("limits.time_ms must be at least 1");
    }
    if limits.instances == Some(0) {
        bail!("limits.instances must be at least 1 (omit it for no per-plugin limit)");
    }
    if limits.fuel == Some(0) {
        bail!("limits.fuel must be at least 1 (omit it for no fuel limit)");
    }
    if config.breaker.failures == 0 {
        bail!("breaker.failures must be at least 1");
    }
    Ok(())
}

/// The component's bytes and a description of where they came from.
fn read_component(config: &PluginConfig, base_dir: &Path) -> Result<(Vec<u8>, String)> {
    match (&config.path, &config.builtin) {
        (Some(_), Some(_)) => bail!("set either `path` or `builtin`, not both"),
        (None, None) => bail!("set `path` (a .wasm component) or `builtin` (a first-party plugin)"),
        (None, Some(short)) => {
            let bytes = super::builtin::find(short).ok_or_else(|| {
                let known: Vec<&str> = super::builtin::names().collect();
                anyhow!(
                    "no first-party plugin named {short:?} (built in: {})",
                    known.join(", ")
                )
            })?;
            Ok((bytes.to_vec(), format!("builtin:{short}")))
        }
        (Some(path), None) => {
            let path = resolve(base_dir, path);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok((bytes, path.display().to_string()))
        }
    }
}

pub fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

/// Compiles `bytes`, or loads the compilation cached under the content hash and engine key.
pub fn compile_cached(
    engine: &WasmEngine,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> Result<(Component, bool)> {
    let Some(dir) = cache_dir else {
        return Ok((compile(engine, bytes)?, false));
    };
    let digest = sha2::Sha256::digest(bytes);
    let file = dir.join(format!("{:x}-{}.cwasm", digest, engine.compatibility_key()));
    if file.exists() {
        // SAFETY: the cache directory belongs to this server and is written only by
        // `Component::serialize` below (atomically, via rename); wasmtime still checks the
        // header and engine compatibility of what it loads.
        match unsafe { Component::deserialize_file(&engine.engine, &file) } {
            Ok(component) => return Ok((component, true)),
            Err(e) => {
                tracing::warn!(file = %file.display(), "ignoring unusable plugin cache entry: {e:#}")
            }
        }
    }
    let component = compile(engine, bytes)?;
    if let Err(e) = store_cache(&component, dir, &file) {
        tracing::warn!(dir = %dir.display(), "cannot cache compiled plugin: {e:#}");
    }
    Ok((component, false))
}

fn compile(engine: &WasmEngine, bytes: &[u8]) -> Result<Component> {
    Component::new(&engine.engine, bytes)
        .map_err(anyhow::Error::from)
        .context("compiling the component (is it a wasm32-wasip2 component?)")
}

fn store_cache(component: &Component, dir: &Path, file: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let serialized = component.serialize()?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// Checks versions and grants; returns the hooks exported, the host imports used and the
/// contract version the plugin was built against.
pub fn inspect(
    engine: &WasmEngine,
    component: &Component,
    grants: &[Grant],
) -> Result<(BTreeSet<Hook>, BTreeSet<String>, &'static str)> {
    let ty = component.component_type();
    let mut imports = BTreeSet::new();
    let mut contract: Option<&'static str> = None;
    let mut agree = |name: &str, found: &'static str| -> Result<()> {
        match contract {
            Some(seen) if seen != found => bail!(
                "mixes {WIT_PACKAGE}@{seen} and @{found} (`{name}`); build it against one version"
            ),
            _ => {
                contract = Some(found);
                Ok(())
            }
        }
    };
    for (name, _) in ty.imports(&engine.engine) {
        if name.starts_with("wasi:") {
            check_wasi_import(name, grants)?;
            if name.starts_with("wasi:http/") {
                imports.insert(Grant::Http.name().to_string());
            }
            continue;
        }
        let Some((interface, version)) = mailwit_interface(name) else {
            bail!("imports `{name}`, which this host does not provide");
        };
        agree(name, check_version(name, version)?)?;
        match interface {
            "types" | "message" => {}
            other => {
                let Some(grant) = Grant::for_interface(other) else {
                    bail!("imports `{name}`, which {WIT_PACKAGE}@{WIT_VERSION} does not define");
                };
                if !grants.contains(&grant) {
                    bail!(
                        "imports `{WIT_PACKAGE}/{other}` but `grants` does not include \"{other}\" \
                         (add it to the plugin's grants if it should have that capability)"
                    );
                }
                imports.insert(other.to_string());
            }
        }
    }
    let mut hooks = BTreeSet::new();
    for (name, _) in ty.exports(&engine.engine) {
        let Some((interface, version)) = mailwit_interface(name) else {
            continue;
        };
        let found = check_version(name, version)?;
        agree(name, found)?;
        if [AUTH_CHALLENGE, ROUTE_HOLD]
            .iter()
            .any(|c| c.interface == interface)
            && found != WIT_VERSION
        {
            bail!("exports `{name}`, which {WIT_PACKAGE}@{found} does not define");
        }
        if let Some(hook) = Hook::from_name(interface) {
            if hook == Hook::Outbound && found != WIT_VERSION {
                bail!("exports `{name}`, which {WIT_PACKAGE}@{found} does not define");
            }
            hooks.insert(hook);
        }
    }
    if hooks.is_empty() {
        bail!(
            "exports no {WIT_PACKAGE} hook (connect, ehlo, auth, mail, rcpt, data, route, delivery, outbound)"
        );
    }
    Ok((hooks, imports, contract.unwrap_or(WIT_VERSION)))
}

/// An export of contract 0.2 that extends a hook: it is asked where that hook is asked (the auth
/// pipeline, the route chain), so a plugin that exports it must export the hook too.
struct Companion {
    interface: &'static str,
    extends: Hook,
    /// Why it needs the hook it extends.
    why: &'static str,
    /// The hook's answer that leaves the decision to others, for a plugin that only needs it
    /// for the companion.
    neutral: &'static str,
}

/// The challenge-response (CRAM-MD5) companion of the `auth` hook.
const AUTH_CHALLENGE: Companion = Companion {
    interface: "auth-challenge",
    extends: Hook::Auth,
    why: "a challenge-response backend is asked in the auth pipeline",
    neutral: "unknown",
};

/// The ODMR hold companion of the `route` hook.
const ROUTE_HOLD: Companion = Companion {
    interface: "route-hold",
    extends: Hook::Route,
    why: "a hold is decided in the route chain",
    neutral: "continue",
};

/// The export lookups of `companion` in a current-contract plugin, if it exports it.
fn companion_index<T>(
    component: &Component,
    pre: &InstancePre<HostState>,
    hooks: &BTreeSet<Hook>,
    companion: &Companion,
    new: impl FnOnce(&InstancePre<HostState>) -> wasmtime::Result<T>,
) -> Result<Option<T>> {
    let Companion {
        interface,
        extends,
        why,
        neutral,
    } = companion;
    let name = format!("{WIT_PACKAGE}/{interface}@{WIT_VERSION}");
    if component.get_export_index(None, &name).is_none() {
        return Ok(None);
    }
    if !hooks.contains(extends) {
        bail!(
            "exports `{interface}` without `{extends}`: {why}, so export `{extends}` too (it may \
             answer `{neutral}`)"
        );
    }
    guest_indices(pre, &name, new).map(Some)
}

/// The WASI packages linked for every plugin, through a context that grants nothing real
/// (`state::wasi_context`): what the Python, JavaScript and Rust std runtimes import at start-up.
/// `clocks` and `random` are real only with the "clock" and "random" grants.
pub const LINKED_WASI: [&str; 6] = [
    "wasi:io/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// `wasi:http` needs the "http" grant; any other WASI import is refused by name rather than left
/// to a linker error.
fn check_wasi_import(name: &str, grants: &[Grant]) -> Result<()> {
    if LINKED_WASI.iter().any(|p| name.starts_with(p)) {
        return Ok(());
    }
    if name.starts_with("wasi:http/") {
        if grants.contains(&Grant::Http) {
            return Ok(());
        }
        bail!(
            "imports `{name}` but `grants` does not include \"http\" (add it, with \
             `http = {{ allow = [...] }}`, if the plugin should reach those services)"
        );
    }
    bail!(
        "imports `{name}`, which no plugin is given (WASI is limited to io, cli, clocks, random, \
         filesystem and sockets, none of which reaches anything real without a grant)"
    )
}

/// ("kv", Some("0.1.0")) for "mailwit:plugin/kv@0.1.0".
fn mailwit_interface(name: &str) -> Option<(&str, Option<&str>)> {
    let rest = name.strip_prefix(WIT_PACKAGE)?.strip_prefix('/')?;
    Some(match rest.split_once('@') {
        Some((interface, version)) => (interface, Some(version)),
        None => (rest, None),
    })
}

/// The supported contract version `version` is compatible with.
fn check_version(name: &str, version: Option<&str>) -> Result<&'static str> {
    let Some(version) = version else {
        bail!(
            "was built against an unversioned {WIT_PACKAGE} (`{name}`); this host provides \
             {WIT_PACKAGE}@{WIT_VERSION}"
        );
    };
    match SUPPORTED_VERSIONS
        .into_iter()
        .find(|supported| compatible(version, supported))
    {
        Some(supported) => Ok(supported),
        None => bail!(
            "was built against {WIT_PACKAGE}@{version}, but this host provides \
             {WIT_PACKAGE}@{WIT_VERSION} (and loads plugins built against {}); rebuild the \
             plugin with a compatible SDK",
            SUPPORTED_VERSIONS[1..].join(", ")
        ),
    }
}

/// The hook function each hook of an earlier-contract plugin exports, e.g. `on-mail` in
/// `mailwit:plugin/mail@0.1.0`.
fn legacy_indices(
    component: &Component,
    hooks: &BTreeSet<Hook>,
    contract: &str,
) -> Result<BTreeMap<Hook, ComponentExportIndex>> {
    let mut out = BTreeMap::new();
    for &hook in hooks {
        let function = match hook {
            Hook::Auth => "check".to_string(),
            other => format!("on-{other}"),
        };
        let interface = format!("{WIT_PACKAGE}/{hook}@{contract}");
        let index = component
            .get_export_index(None, &interface)
            .and_then(|i| component.get_export_index(Some(&i), &function))
            .ok_or_else(|| anyhow!("export `{interface}` has no function `{function}`"))?;
        out.insert(hook, index);
    }
    Ok(out)
}

/// Semver compatibility: same major, and for 0.x the same minor.
pub fn compatible(plugin: &str, host: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        Some((major, minor))
    }
    match (parts(plugin), parts(host)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

fn hook_indices(pre: &InstancePre<HostState>, exported: &BTreeSet<Hook>) -> Result<HookIndices> {
    let mut indices = HookIndices::default();
    for hook in exported {
        let export = format!("{WIT_PACKAGE}/{hook}");
        // Each hook's bindings module has its own `GuestIndices` type: one row per hook.
        macro_rules! lookup {
            ($module:ident) => {
                Some(guest_indices(
                    pre,
                    &export,
                    hooks::$module::GuestIndices::new,
                )?)
            };
        }
        match hook {
            Hook::Connect => indices.connect = lookup!(connect),
            Hook::Ehlo => indices.ehlo = lookup!(ehlo),
            Hook::Auth => indices.auth = lookup!(auth),
            Hook::Mail => indices.mail = lookup!(mail),
            Hook::Rcpt => indices.rcpt = lookup!(rcpt),
            Hook::Data => indices.data = lookup!(data),
            Hook::Route => indices.route = lookup!(route),
            Hook::Delivery => indices.delivery = lookup!(delivery),
            Hook::Outbound => indices.outbound = lookup!(outbound),
        }
    }
    Ok(indices)
}

/// One interface's export lookups (`GuestIndices::new` of its bindings module), an error naming
/// `export` when the plugin's export does not match the contract.
fn guest_indices<T>(
    pre: &InstancePre<HostState>,
    export: &str,
    new: impl FnOnce(&InstancePre<HostState>) -> wasmtime::Result<T>,
) -> Result<T> {
    new(pre)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("export `{export}` does not match the contract"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_rules_for_zero_versions() {
        // (plugin, host, compatible): 0.x needs the same minor, later majors the same major.
        for (plugin, host, expected) in [
            ("0.1.0", "0.1.0", true),
            ("0.1.7", "0.1.0", true),
            ("0.2.0", "0.1.0", false),
            ("1.4.0", "1.0.0", true),
            ("2.0.0", "1.0.0", false),
            ("garbage", "0.1.0", false),
        ] {
            assert_eq!(
                compatible(plugin, host),
                expected,
                "{plugin} against {host}"
            );
        }
        assert_eq!(check_version("x", Some("0.1.3")).unwrap(), "0.1.0");
        assert_eq!(check_version("x", Some("0.2.0")).unwrap(), "0.2.0");
        assert!(check_version("x", Some("0.3.0")).is_err());
        assert!(check_wasi_import("wasi:clocks/wall-clock@0.2.9", &[]).is_ok());
        assert!(check_wasi_import("wasi:sockets/tcp@0.2.9", &[]).is_ok());
        let e = check_wasi_import("wasi:http/outgoing-handler@0.2.0", &[]).unwrap_err();
        assert!(e.to_string().contains("wasi:http/outgoing-handler"), "{e}");
        assert!(e.to_string().contains("\"http\""), "{e}");
        assert!(check_wasi_import("wasi:http/outgoing-handler@0.2.0", &[Grant::Http]).is_ok());
        assert!(check_wasi_import("wasi:keyvalue/store@0.2.0", &[Grant::Http]).is_err());
        assert_eq!(
            mailwit_interface("mailwit:plugin/kv@0.1.0"),
            Some(("kv", Some("0.1.0")))
        );
        assert_eq!(mailwit_interface("wasi:cli/stderr@0.2.0"), None);
    }
}
