//! mailwit-bench: one load generator, several SMTP servers, one table.
//!
//! - [`loadgen`] sends mail (connections x messages, size, PIPELINING, STARTTLS) and times it.
//! - [`targets`] starts and stops the servers under test on free loopback ports.
//! - [`procstat`] reads their CPU time and memory from /proc.
//! - [`scenario`] defines the scenarios and measures one against a running target.
//! - [`engines`] runs the spool's write path on the segment log, redb and fjall, side by side.
//! - [`report`] writes the markdown table, the JSON file and the SVG chart.

pub mod client;
pub mod engines;
pub mod loadgen;
pub mod procstat;
pub mod report;
pub mod scenario;
pub mod smtp_source;
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
    /// Only the scenarios with these names (all when empty).
    pub only: Vec<String>,
}

impl Comparison {
    pub fn scenarios(&self) -> Vec<Scenario> {
        scenario::standard(self.sizing)
            .into_iter()
            .filter(|s| self.only.is_empty() || self.only.contains(&s.name))
            .collect()
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
            let mut accepted = 0;
            match scenario::warm_up(&running).await {
                Ok(warm) => accepted += warm.accepted,
                Err(error) => eprintln!("== {label}: warm-up failed: {error:#}"),
            }
            scenario::wait_until_quiet(running.pid).await;
            for s in &scenarios {
                eprintln!("   {label}: {}", s.name);
                let m = scenario::measure(&running, s, self.sizing, self.progress).await;
                print_measurement(&m);
                measurements.push(m);
            }
            accepted += measurements
                .iter()
                .filter(|m: &&Measurement| m.target == label)
                .filter_map(|m| m.load.as_ref().map(|l| l.accepted))
                .sum::<u64>();
            let log = running.log.clone();
            let maildir = running.work.join("state/mail");
            let _ = tokio::task::spawn_blocking(move || targets::stop(running)).await;
            eprintln!("== {label}: stopped (log: {})", log.display());
            // A server that delivers to Maildir must account for every message it accepted.
            let note = maildir.is_dir().then(|| {
                let delivered = count_maildir_messages(&maildir);
                let line = format!("{delivered} messages in Maildirs after {accepted} accepted");
                eprintln!("== {label}: {line}");
                line
            });
            target_infos.push(TargetInfo {
                label,
                description: target.description().into(),
                status: "ok".into(),
                note,
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

/// Files in every `new/` and `cur/` directory below `root` (Maildir messages).
fn count_maildir_messages(root: &std::path::Path) -> u64 {
    let mut count = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let is_mail_dir = matches!(
            dir.file_name().and_then(|n| n.to_str()),
            Some("new" | "cur")
        );
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(entry.path()),
                Ok(kind) if kind.is_file() && is_mail_dir => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// bench/ in the source tree (templates, configs, results).
pub fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn maildir_messages_are_counted_in_new_and_cur_only() {
        let root = tempfile::tempdir().unwrap();
        let bob = root.path().join("example.test/bob");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(bob.join(sub)).unwrap();
        }
        std::fs::write(bob.join("tmp/1.partial"), "x").unwrap();
        std::fs::write(bob.join("new/2.msg"), "x").unwrap();
        std::fs::write(bob.join("new/3.msg"), "x").unwrap();
        std::fs::write(bob.join("cur/4.msg:2,S"), "x").unwrap();
        assert_eq!(super::count_maildir_messages(root.path()), 3);
    }
}
