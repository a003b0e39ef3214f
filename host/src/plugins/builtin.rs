//! First-party plugins embedded at build time by `host/build.rs`, by short name.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component bytes of a first-party plugin, e.g. `find("recipients")`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Short names of every embedded plugin.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN_PLUGINS.iter().map(|(n, _)| *n)
}
