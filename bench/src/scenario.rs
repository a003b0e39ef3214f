//! The scenarios one comparison runs, and how one scenario is measured against a running
//! target: load from the generator, server CPU seconds over its process tree, peak RSS.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::client::Connection;
use crate::loadgen::{self, LoadResult, LoadSpec};
use crate::procstat;
use crate::targets::Running;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    /// Short name used in tables, JSON and the chart, e.g. "10KiB x 50".
    pub name: String,
    pub kind: ScenarioKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// Send `messages` messages of `message_size` bytes over `connections` connections.
    Load {
        connections: usize,
        messages: usize,
        message_size: usize,
        starttls: bool,
        /// Which client sends (older results.json files have none: the generator).
        #[serde(default)]
        client: Client,
        /// This scenario's own time bound (the sustained ones), instead of the run's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_limit_secs: Option<u64>,
    },
    /// Open `connections` connections (greeting + EHLO) and hold them: memory per connection.
    Idle { connections: usize },
}

/// The client that sends a load scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Client {
    /// This crate's generator: PIPELINING (MAIL+RCPT+DATA in one write) when offered.
    #[default]
    Generator,
    /// Postfix's `smtp-source -d`: no pipelining, one command per round trip.
    SmtpSource,
}

/// How big and how long: the full run and the smoke run differ only here.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Messages per load scenario (split evenly over its connections).
    pub messages: usize,
    /// Connections for the multi-connection scenarios.
    pub connections: usize,
    /// Connections held open in the idle scenario.
    pub idle_connections: usize,
    /// Upper bound on the time of one load scenario.
    pub time_limit: Duration,
    /// Messages in a sustained scenario (default 50,000) ...
    pub sustained_messages: usize,
    /// ... or its time, whichever ends it first (default 60 s).
    pub sustained_time: Duration,
}

/// The scenarios of issues 5 and 11, scaled by `sizing`.
pub fn standard(sizing: Sizing) -> Vec<Scenario> {
    let n = sizing.connections;
    let load = |name: String, connections, message_size, starttls, client| Scenario {
        name,
        kind: ScenarioKind::Load {
            connections,
            messages: sizing.messages,
            message_size,
            starttls,
            client,
            time_limit_secs: None,
        },
    };
    // Long enough for the file system's steady state (deleted inodes pile up for tens of
    // seconds): 50,000 messages or 60 s, whichever comes first.
    let sustained = |name: String, client| Scenario {
        name,
        kind: ScenarioKind::Load {
            connections: n,
            messages: sizing.sustained_messages,
            message_size: 10 * 1024,
            starttls: false,
            client,
            time_limit_secs: Some(sizing.sustained_time.as_secs().max(1)),
        },
    };
    let generator = Client::Generator;
    vec![
        load("10KiB x 1".into(), 1, 10 * 1024, false, generator),
        load(format!("10KiB x {n}"), n, 10 * 1024, false, generator),
        // One session, one command per round trip: every hook's cost is on the critical path.
        load(
            "smtp-source 10KiB x 1".into(),
            1,
            10 * 1024,
            false,
            Client::SmtpSource,
        ),
        load(
            format!("smtp-source 10KiB x {n}"),
            n,
            10 * 1024,
            false,
            Client::SmtpSource,
        ),
        load(format!("100KiB x {n}"), n, 100 * 1024, false, generator),
        load(
            format!("STARTTLS 10KiB x {n}"),
            n,
            10 * 1024,
            true,
            generator,
        ),
        sustained(format!("sustained 10KiB x {n}"), generator),
        sustained(
            format!("sustained smtp-source 10KiB x {n}"),
            Client::SmtpSource,
        ),
        Scenario {
            name: format!("idle x {}", sizing.idle_connections),
            kind: ScenarioKind::Idle {
                connections: sizing.idle_connections,
            },
        },
    ]
}

/// One scenario's outcome against one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub target: String,
    pub scenario: String,
    /// "ok", "not available" (target could not run), "not supported" (e.g. no STARTTLS) or
    /// "failed" (see note).
    pub status: String,
    pub note: Option<String>,
    pub load: Option<LoadResult>,
    /// Server CPU (user+system, whole process tree) during the scenario and until the server
    /// went quiet afterwards (queued mail delivered).
    pub server_cpu_secs: Option<f64>,
    pub cpu_secs_per_1000_messages: Option<f64>,
    /// The same CPU split: user and kernel (utime and stime from /proc/<pid>/stat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_user_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_system_secs: Option<f64>,
    /// Peak of the summed VmRSS of the server's processes while the scenario ran.
    pub peak_rss_bytes: Option<u64>,
    pub idle: Option<IdleResult>,
    /// The machine's 1-minute load average as the scenario started (`uptime`): other work on
    /// the cores makes rates noisy, so every row says how busy the machine was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_average: Option<f64>,
}

impl Measurement {
    pub fn unavailable(target: &str, scenario: &str, status: &str, note: String) -> Measurement {
        Measurement {
            target: target.into(),
            scenario: scenario.into(),
            status: status.into(),
            note: Some(note),
            load: None,
            server_cpu_secs: None,
            cpu_secs_per_1000_messages: None,
            server_user_secs: None,
            server_system_secs: None,
            peak_rss_bytes: None,
            idle: None,
            load_average: None,
        }
    }

    /// The kernel's share of the server's CPU time, if measured.
    pub fn kernel_share(&self) -> Option<f64> {
        let (u, s) = (self.server_user_secs?, self.server_system_secs?);
        (u + s > 0.0).then(|| s / (u + s))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleResult {
    pub requested: usize,
    /// Connections that got a greeting and an EHLO reply and were held.
    pub held: usize,
    pub failed: usize,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub pss_before_bytes: u64,
    pub pss_after_bytes: u64,
    pub rss_per_connection_bytes: f64,
    pub pss_per_connection_bytes: f64,
    pub error_samples: Vec<String>,
}

/// A short load so caches, JITs, process pools and TLS session state are warm.
pub async fn warm_up(running: &Running) -> Result<LoadResult> {
    let mut spec = LoadSpec::new(running.addr);
    spec.connections = 2;
    spec.messages_per_connection = 25;
    spec.time_limit = Duration::from_secs(30);
    loadgen::run(&spec).await
}

pub async fn measure(
    running: &Running,
    scenario: &Scenario,
    sizing: Sizing,
    progress: bool,
) -> Measurement {
    let load_average = procstat::load_average();
    let mut measurement = measure_scenario(running, scenario, sizing, progress).await;
    measurement.load_average = load_average;
    measurement
}

async fn measure_scenario(
    running: &Running,
    scenario: &Scenario,
    sizing: Sizing,
    progress: bool,
) -> Measurement {
    let target = running.target.label();
    let result = match &scenario.kind {
        ScenarioKind::Load {
            connections,
            messages,
            message_size,
            starttls,
            client,
            time_limit_secs,
        } => {
            let time_limit = time_limit_secs.map_or(sizing.time_limit, Duration::from_secs);
            if *client == Client::SmtpSource {
                let spec = crate::smtp_source::SourceSpec {
                    addr: running.addr,
                    sessions: *connections,
                    messages: *messages,
                    message_size: *message_size,
                    time_limit,
                    sender: "loadgen@client.bench.test".into(),
                    recipient: "bob@example.test".into(),
                };
                if crate::smtp_source::binary().is_none() {
                    return Measurement::unavailable(
                        &target,
                        &scenario.name,
                        "not available",
                        "smtp-source is not installed (Debian package postfix)".into(),
                    );
                }
                let result = measure_load(running, false, || crate::smtp_source::run(&spec)).await;
                return finish(result, target, scenario);
            }
            let mut spec = LoadSpec::new(running.addr);
            spec.connections = *connections;
            spec.messages_per_connection = messages.div_ceil(*connections);
            spec.message_size = *message_size;
            spec.starttls = *starttls;
            spec.time_limit = time_limit;
            spec.progress = progress;
            if *starttls && !offers_starttls(running).await {
                return Measurement::unavailable(
                    &target,
                    &scenario.name,
                    "not supported",
                    "the server does not offer STARTTLS".into(),
                );
            }
            measure_load(running, spec.starttls, || loadgen::run(&spec)).await
        }
        ScenarioKind::Idle { connections } => measure_idle(running, *connections).await,
    };
    finish(result, target, scenario)
}

fn finish(result: Result<Measurement>, target: String, scenario: &Scenario) -> Measurement {
    match result {
        Ok(mut measurement) => {
            measurement.target = target;
            measurement.scenario = scenario.name.clone();
            measurement
        }
        Err(error) => {
            Measurement::unavailable(&target, &scenario.name, "failed", format!("{error:#}"))
        }
    }
}

/// Runs one load (from either client) and bills the server's CPU to it.
async fn measure_load<F, Fut>(running: &Running, starttls: bool, load: F) -> Result<Measurement>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<LoadResult>>,
{
    let pid = running.pid;
    let split_before = procstat::cpu_split(pid);
    let peak = procstat::PeakRss::start(pid);
    let load = load().await?;
    settle_cpu(pid).await;
    let split = procstat::cpu_split(pid) - split_before;
    let peak_rss = peak.finish().await;
    let cpu = split.user + split.system;
    let (status, note) = if load.accepted == 0 {
        ("failed", Some(describe_failure(&load)))
    } else if load.accepted < load.attempted || load.connection_errors > 0 {
        ("ok", Some(describe_failure(&load)))
    } else if starttls && !load.tls {
        ("failed", Some("STARTTLS was not used".into()))
    } else {
        ("ok", None)
    };
    Ok(Measurement {
        target: String::new(),
        scenario: String::new(),
        status: status.into(),
        note,
        server_cpu_secs: Some(cpu),
        cpu_secs_per_1000_messages: (load.accepted > 0)
            .then(|| cpu * 1000.0 / load.accepted as f64),
        server_user_secs: Some(split.user),
        server_system_secs: Some(split.system),
        peak_rss_bytes: Some(peak_rss),
        load: Some(load),
        idle: None,
        load_average: None,
    })
}

/// Whether EHLO advertises STARTTLS (smtp-sink, for one, has no TLS).
async fn offers_starttls(running: &Running) -> bool {
    match Connection::open(running.addr, false).await {
        Ok(conn) => {
            let offered = conn.caps.starttls;
            conn.quit().await;
            offered
        }
        Err(_) => true, // let the measurement itself report the connection problem
    }
}

fn describe_failure(load: &LoadResult) -> String {
    let mut note = format!(
        "{} of {} accepted, {} refused, {} connection errors",
        load.accepted, load.attempted, load.rejected, load.connection_errors
    );
    for sample in &load.error_samples {
        note.push_str("; ");
        note.push_str(sample);
    }
    note
}

/// Waits (at most a minute) until a freshly started server stops doing start-up work, so
/// that work is not billed to the first scenario.
pub async fn wait_until_quiet(pid: u32) {
    settle_cpu_within(pid, Duration::from_secs(60)).await;
}

/// After the load ends, servers with a queue keep working (delivering what they accepted).
/// Wait until the process tree's CPU counter stops moving (bounded), so that work counts.
async fn settle_cpu(pid: u32) -> f64 {
    settle_cpu_within(pid, Duration::from_secs(15)).await
}

async fn settle_cpu_within(pid: u32, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    let mut last = procstat::cpu_seconds(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = procstat::cpu_seconds(pid);
        if now - last < 0.015 || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

async fn measure_idle(running: &Running, connections: usize) -> Result<Measurement> {
    let pid = running.pid;
    settle_cpu(pid).await;
    let before = procstat::memory(pid);
    let peak = procstat::PeakRss::start(pid);

    // Open in waves so the listen backlog is never the thing being measured.
    let wave = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let wave = wave.clone();
        let addr = running.addr;
        tasks.spawn(async move {
            let _permit = wave.acquire_owned().await.expect("semaphore open");
            tokio::time::timeout(Duration::from_secs(20), Connection::open(addr, false))
                .await
                .map_err(|_| anyhow::anyhow!("no greeting within 20s"))?
        });
    }
    let mut held = Vec::with_capacity(connections);
    let mut result = IdleResult {
        requested: connections,
        ..IdleResult::default()
    };
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(conn) => held.push(conn),
            Err(error) => {
                result.failed += 1;
                let text = format!("{error:#}");
                if result.error_samples.len() < 3 && !result.error_samples.contains(&text) {
                    result.error_samples.push(text);
                }
            }
        }
    }
    // Let the server finish whatever allocation follows a new session.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = procstat::memory(pid);
    let peak_rss = peak.finish().await;
    result.held = held.len();
    result.rss_before_bytes = before.rss;
    result.rss_after_bytes = after.rss;
    result.pss_before_bytes = before.pss;
    result.pss_after_bytes = after.pss;
    if result.held > 0 {
        result.rss_per_connection_bytes =
            after.rss.saturating_sub(before.rss) as f64 / result.held as f64;
        result.pss_per_connection_bytes =
            after.pss.saturating_sub(before.pss) as f64 / result.held as f64;
    }
    // Closing 5,000 sockets politely would measure QUIT handling; just drop them.
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let status = if result.held == 0 { "failed" } else { "ok" };
    let note = (result.failed > 0).then(|| {
        format!(
            "{} of {} held; {}",
            result.held,
            result.requested,
            result.error_samples.join("; ")
        )
    });
    Ok(Measurement {
        target: String::new(),
        scenario: String::new(),
        status: status.into(),
        note,
        load: None,
        server_cpu_secs: None,
        cpu_secs_per_1000_messages: None,
        server_user_secs: None,
        server_system_secs: None,
        peak_rss_bytes: Some(peak_rss),
        idle: Some(result),
        load_average: None,
    })
}
