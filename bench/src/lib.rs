//! mailwit-bench: one load generator, several SMTP servers, one table.
//!
//! - [`loadgen`] sends mail (connections x messages, size, PIPELINING, STARTTLS) and times it.
//! - [`targets`] starts and stops the servers under test on free loopback ports.
//! - [`procstat`] reads their CPU time and memory from /proc.
//! - [`scenario`] defines the scenarios and measures one against a running target.
//! - [`report`] writes the markdown table, the JSON file and the SVG chart.

pub mod client;
pub mod loadgen;
pub mod procstat;
pub mod report;
pub mod scenario;
pub mod targets;

use std::path::PathBuf;

use report::{Machine, Report, TargetInfo};
use scenario::{Measurement, Scenario, Sizing};
use targets::{Capacity, Paths, Target};

/// Everything one comparison run needs.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub targets: Vec<Target>,
    pub sizing: Sizing,
    pub paths: Paths,
    pub conditions: String,
    pub progress: bool,
}

impl Comparison {
    pub fn scenarios(&self) -> Vec<Scenario> {
        scenario::standard(self.sizing)
    }

    /// Runs every scenario against every target, one target at a time. A target that cannot
    /// start gets "not available" rows; the run goes on with the next.
    pub async fn run(&self) -> Report {
        let scenarios = self.scenarios();
        let capacity = Capacity {
            max_connections: self.sizing.idle_connections.max(self.sizing.connections),
        };
        let mut measurements = Vec::new();
        let mut target_infos = Vec::new();
        let started_at_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());

        for target in &self.targets {
            let label = target.label();
            eprintln!("== {label}: starting");
            let paths = self.paths.clone();
            let start_target = target.clone();
            let started = tokio::task::spawn_blocking(move || {
                targets::start(&start_target, &paths, capacity)
            })
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("start panicked: {e}")));
            let running = match started {
                Ok(running) => running,
                Err(error) => {
                    let note = format!("{error:#}");
                    eprintln!(
                        "== {label}: not available: {}",
                        note.lines().next().unwrap_or("")
                    );
                    for s in &scenarios {
                        measurements.push(Measurement::unavailable(
                            &label,
                            &s.name,
                            "not available",
                            note.clone(),
                        ));
                    }
                    target_infos.push(TargetInfo {
                        label,
                        description: target.description().into(),
                        status: "not available".into(),
                        note: Some(note),
                    });
                    continue;
                }
            };
            eprintln!(
                "== {label}: listening on {} (pid {})",
                running.addr, running.pid
            );
            if let Err(error) = scenario::warm_up(&running).await {
                eprintln!("== {label}: warm-up failed: {error:#}");
            }
            scenario::wait_until_quiet(running.pid).await;
            for s in &scenarios {
                eprintln!("   {label}: {}", s.name);
                let m = scenario::measure(&running, s, self.sizing, self.progress).await;
                print_measurement(&m);
                measurements.push(m);
            }
            let log = running.log.clone();
            let _ = tokio::task::spawn_blocking(move || targets::stop(running)).await;
            eprintln!("== {label}: stopped (log: {})", log.display());
            target_infos.push(TargetInfo {
                label,
                description: target.description().into(),
                status: "ok".into(),
                note: None,
            });
        }

        Report {
            started_at_unix,
            machine: Machine::detect(),
            conditions: self.conditions.clone(),
            targets: target_infos,
            scenarios,
            measurements,
        }
    }
}

fn print_measurement(m: &Measurement) {
    match (&m.load, &m.idle) {
        (Some(load), _) => eprintln!(
            "      {}: {:.0} msg/s, p50 {:.2} ms, p99 {:.2} ms, {}/{} accepted{}",
            m.status,
            load.messages_per_sec,
            load.p50_ms,
            load.p99_ms,
            load.accepted,
            load.attempted,
            m.note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
        (None, Some(idle)) => eprintln!(
            "      {}: {}/{} held, {:.1} KiB RSS/conn, {:.1} KiB PSS/conn",
            m.status,
            idle.held,
            idle.requested,
            idle.rss_per_connection_bytes / 1024.0,
            idle.pss_per_connection_bytes / 1024.0
        ),
        _ => eprintln!("      {}: {}", m.status, m.note.as_deref().unwrap_or("")),
    }
}

/// bench/ in the source tree (templates, configs, results).
pub fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
