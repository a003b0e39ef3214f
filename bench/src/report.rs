//! Turning measurements into the three outputs: a markdown table (with ratios to Postfix and
//! smtp-sink), a JSON file with every number, and an SVG chart of throughput per target.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::scenario::Measurement;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub started_at_unix: u64,
    pub machine: Machine,
    /// Free-form words about the conditions (e.g. "contended: shared with other builds").
    pub conditions: String,
    pub targets: Vec<TargetInfo>,
    pub scenarios: Vec<crate::scenario::Scenario>,
    pub measurements: Vec<Measurement>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetInfo {
    pub label: String,
    pub description: String,
    pub status: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

impl Report {
    fn find(&self, target: &str, scenario: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.target == target && m.scenario == scenario)
    }

    fn rate(&self, target: &str, scenario: &str) -> Option<f64> {
        let m = self.find(target, scenario)?;
        (m.status == "ok").then_some(())?;
        m.load
            .as_ref()
            .map(|l| l.messages_per_sec)
            .filter(|r| *r > 0.0)
    }

    /// The markdown text: machine line, one table for load scenarios, one for idle memory.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Machine: {} x {} ({:.1} GiB RAM, Linux {}). {}\n",
            m.cpus, m.cpu_model, m.memory_gib, m.kernel, self.conditions
        );
        out.push_str("| scenario | target | msg/s | p50 ms | p99 ms | server CPU ms / msg | kernel % | peak RSS MiB | x Postfix | % of smtp-sink | accepted / sent | load |\n");
        out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
        for scenario in &self.scenarios {
            if matches!(scenario.kind, crate::scenario::ScenarioKind::Idle { .. }) {
                continue;
            }
            for target in &self.targets {
                let Some(m) = self.find(&target.label, &scenario.name) else {
                    continue;
                };
                let _ = write!(out, "| {} | {} ", scenario.name, target.label);
                match (&m.load, m.status.as_str()) {
                    (Some(load), "ok") => {
                        let vs_postfix = self
                            .rate("postfix", &scenario.name)
                            .map_or("–".into(), |p| {
                                format!("{:.2}", load.messages_per_sec / p)
                            });
                        let vs_sink = self
                            .rate("smtp-sink", &scenario.name)
                            .map_or("–".into(), |s| {
                                format!("{:.0}%", 100.0 * load.messages_per_sec / s)
                            });
                        // smtp-source reports no latencies.
                        let latency = |ms: f64| {
                            if ms > 0.0 {
                                format!("{ms:.2}")
                            } else {
                                "–".into()
                            }
                        };
                        let _ = writeln!(
                            out,
                            "| {:.0} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
                            load.messages_per_sec,
                            latency(load.p50_ms),
                            latency(load.p99_ms),
                            m.cpu_secs_per_1000_messages
                                .map_or("–".into(), |c| format!("{c:.2}")),
                            m.kernel_share()
                                .map_or("–".into(), |k| format!("{:.0}%", k * 100.0)),
                            m.peak_rss_bytes
                                .map_or("–".into(), |b| format!("{:.1}", mib(b))),
                            vs_postfix,
                            vs_sink,
                            load.accepted,
                            load.attempted,
                            m.load_average.map_or("–".into(), |l| format!("{l:.1}")),
                        );
                    }
                    _ => {
                        let why = short_note(m);
                        let _ = writeln!(out, "| {} | | | | | | | | {why} | |", m.status);
                    }
                }
            }
        }
        let idle: Vec<_> = self
            .scenarios
            .iter()
            .filter(|s| matches!(s.kind, crate::scenario::ScenarioKind::Idle { .. }))
            .collect();
        for scenario in idle {
            let _ = writeln!(out, "\nIdle connections ({}):\n", scenario.name);
            out.push_str("| target | held | RSS before MiB | RSS held MiB | RSS / conn KiB | PSS / conn KiB |\n");
            out.push_str("|---|---:|---:|---:|---:|---:|\n");
            for target in &self.targets {
                let Some(m) = self.find(&target.label, &scenario.name) else {
                    continue;
                };
                match (&m.idle, m.status.as_str()) {
                    (Some(idle), "ok") => {
                        let _ = writeln!(
                            out,
                            "| {} | {} / {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                            target.label,
                            idle.held,
                            idle.requested,
                            mib(idle.rss_before_bytes),
                            mib(idle.rss_after_bytes),
                            idle.rss_per_connection_bytes / 1024.0,
                            idle.pss_per_connection_bytes / 1024.0,
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            out,
                            "| {} | {}: {} | | | | |",
                            target.label,
                            m.status,
                            short_note(m)
                        );
                    }
                }
            }
        }
        let tax = self.plugin_tax_lines();
        if !tax.is_empty() {
            out.push_str("\nPlugin tax (`mailwit`, four plugins, against `mailwit-noplugins`, same run):\n\n");
            out.push_str(&tax);
        }
        out.push_str("\nTargets:\n");
        for target in &self.targets {
            let _ = write!(out, "- {}: {}", target.label, target.description);
            if target.status != "ok" {
                let _ = write!(out, " — **{}**", target.status);
            }
            if let Some(note) = &target.note {
                let _ = write!(out, " ({})", first_line(note));
            }
            out.push('\n');
        }
        out
    }

    /// Reads a report written by [`Report::write_json`] (to re-render table and chart).
    pub fn read_json(path: &Path) -> Result<Report> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
    }

    /// Grouped bars: one group per load scenario, one bar per target, messages per second.
    pub fn write_chart(&self, path: &Path) -> Result<()> {
        use plotters::prelude::*;
        use plotters::style::text_anchor::{HPos, Pos, VPos};

        let scenarios: Vec<&str> = self
            .scenarios
            .iter()
            .filter(|s| matches!(s.kind, crate::scenario::ScenarioKind::Load { .. }))
            .map(|s| s.name.as_str())
            .collect();
        // Only targets with at least one measured rate get a colour and a bar slot.
        let targets: Vec<&str> = self
            .targets
            .iter()
            .map(|t| t.label.as_str())
            .filter(|t| scenarios.iter().any(|s| self.rate(t, s).is_some()))
            .collect();
        let max_rate = scenarios
            .iter()
            .flat_map(|s| targets.iter().filter_map(move |t| self.rate(t, s)))
            .fold(0.0f64, f64::max)
            .max(1.0);

        let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Messages per second by scenario (higher is better)",
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..scenarios.len().max(1) as f64, 0f64..max_rate * 1.15)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("messages / s")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;

        let group_width = 0.8;
        let bar_width = group_width / targets.len().max(1) as f64;
        for (t_index, target) in targets.iter().enumerate() {
            let color = Palette99::pick(t_index).to_rgba().filled();
            let bars: Vec<_> = scenarios
                .iter()
                .enumerate()
                .filter_map(|(s_index, scenario)| {
                    let rate = self.rate(target, scenario)?;
                    let x0 = s_index as f64 + 0.1 + t_index as f64 * bar_width;
                    Some(Rectangle::new(
                        [(x0, 0.0), (x0 + bar_width * 0.9, rate)],
                        color,
                    ))
                })
                .collect();
            let values: Vec<_> = scenarios
                .iter()
                .enumerate()
                .filter_map(|(s_index, scenario)| {
                    let rate = self.rate(target, scenario)?;
                    let x = s_index as f64 + 0.1 + (t_index as f64 + 0.45) * bar_width;
                    Some(Text::new(
                        format!("{rate:.0}"),
                        (x, rate),
                        TextStyle::from(("sans-serif", 11).into_font())
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    ))
                })
                .collect();
            chart.draw_series(values)?;
            chart
                .draw_series(bars)?
                .label(*target)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color));
        }
        for (s_index, scenario) in scenarios.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(s_index as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                scenario.to_string(),
                (px - 6 * scenario.len() as i32 / 2, py + 12),
                ("sans-serif", 14),
            ))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        let m = &self.machine;
        root.draw(&Text::new(
            format!(
                "{} x {}, {}",
                m.cpus,
                m.cpu_model,
                self.conditions.split(';').next().unwrap_or("")
            ),
            (16, 522),
            ("sans-serif", 11),
        ))?;
        root.present()?;
        Ok(())
    }

    /// One line per load scenario measured on both `mailwit` and `mailwit-noplugins`: the
    /// throughput lost to the four plugins and the server CPU they add per message.
    pub fn plugin_tax_lines(&self) -> String {
        let mut out = String::new();
        for scenario in &self.scenarios {
            let (Some(with), Some(without)) = (
                self.find("mailwit", &scenario.name),
                self.find("mailwit-noplugins", &scenario.name),
            ) else {
                continue;
            };
            let (Some(rate_with), Some(rate_without)) = (
                self.rate("mailwit", &scenario.name),
                self.rate("mailwit-noplugins", &scenario.name),
            ) else {
                continue;
            };
            let cpu = match (
                with.cpu_secs_per_1000_messages,
                without.cpu_secs_per_1000_messages,
            ) {
                (Some(a), Some(b)) => format!(
                    ", server CPU {a:.3} vs {b:.3} ms/msg ({:+.0}%)",
                    100.0 * (a - b) / b.max(1e-9)
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "- {}: {:.0} vs {:.0} msg/s, tax {:.0}%{cpu}",
                scenario.name,
                rate_with,
                rate_without,
                100.0 * (1.0 - rate_with / rate_without)
            );
        }
        out
    }

    /// Plain-text ratio lines for the terminal: each target's rate against Postfix and smtp-sink.
    pub fn ratio_lines(&self) -> String {
        let mut out = String::new();
        for scenario in &self.scenarios {
            if matches!(scenario.kind, crate::scenario::ScenarioKind::Idle { .. }) {
                continue;
            }
            for target in &self.targets {
                let Some(rate) = self.rate(&target.label, &scenario.name) else {
                    continue;
                };
                let postfix = self.rate("postfix", &scenario.name);
                let sink = self.rate("smtp-sink", &scenario.name);
                let _ = writeln!(
                    out,
                    "{:<22} {:<18} {:>8.0} msg/s  {:>6} x Postfix  {:>5} of smtp-sink",
                    scenario.name,
                    target.label,
                    rate,
                    postfix.map_or("–".into(), |p| format!("{:.2}", rate / p)),
                    sink.map_or("–".into(), |s| format!("{:.0}%", 100.0 * rate / s)),
                );
            }
        }
        out
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn short_note(m: &Measurement) -> String {
    let note = m.note.as_deref().map(first_line).unwrap_or("");
    let mut short: String = note.chars().take(100).collect();
    if note.chars().count() > 100 {
        short.push('…');
    }
    short.replace('|', "/")
}
