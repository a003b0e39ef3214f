//! `mailwit check-config`: load every plugin, validate pipelines, print plugins x hooks.

use std::path::Path;

use anyhow::Result;

use super::generation::PluginSettings;
use super::runtime::{Plugins, RuntimeOptions};
use crate::policy::Hook;

/// Loads and validates every plugin of `config` (paths relative to the current directory) and
/// returns the plugins x hooks table.
pub fn check_report(config: &crate::config::Config) -> Result<String> {
    check_report_at(config, Path::new("."), RuntimeOptions::default())
}

/// As [`check_report`], with plugin paths relative to `base_dir`.
pub fn check_report_at(
    config: &crate::config::Config,
    base_dir: &Path,
    options: RuntimeOptions,
) -> Result<String> {
    let plugins = Plugins::from_settings(PluginSettings::from_config(config), base_dir, options)?;
    Ok(table(&plugins))
}

/// One row per plugin: "used" = exported and in a pipeline, "yes" = exported, "-" = not exported.
pub fn table(plugins: &Plugins) -> String {
    let generation = plugins.current();
    let mut rows: Vec<Vec<String>> = vec![{
        let mut header = vec!["plugin".to_string()];
        header.extend(Hook::ALL.iter().map(|h| h.name().to_string()));
        header.push("imports".into());
        header.push("source".into());
        header
    }];
    for (name, entry) in &generation.plugins {
        let mut row = vec![name.clone()];
        for hook in Hook::ALL {
            let used = generation
                .pipelines
                .values()
                .any(|p| p.chain(hook).iter().any(|e| e.name() == name));
            row.push(
                if used {
                    "used"
                } else if entry.loaded.hooks.contains(&hook) {
                    "yes"
                } else {
                    "-"
                }
                .to_string(),
            );
        }
        let imports: Vec<&str> = entry.loaded.imports.iter().map(String::as_str).collect();
        row.push(if imports.is_empty() {
            "-".into()
        } else {
            imports.join(",")
        });
        row.push(entry.loaded.source.clone());
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "{} plugins, {} pipelines: OK\n",
        generation.plugins.len(),
        generation.pipelines.len()
    ));
    out
}
