//! The spool's write path on three stores, side by side (issue 11: "measure an embedded engine
//! against the segment log before choosing"). Each store gets the work the server gives its
//! spool: `writers` concurrent sessions, each storing a message (envelope + octets) and waiting
//! until it is durable, then a per-recipient state record (durable), then the message's end
//! (a done record, or a deletion), until `messages` are done or `secs` have passed.
//!
//! - `segment-log`: mailwit's own spool (`mailwit::spool::Spool`, the real API and its group
//!   commit: one `pwrite` + one `fdatasync` per batch of waiting records).
//! - `redb`: one write transaction per group (`Durability::Immediate`), the group being every
//!   operation waiting when the previous commit returned (redb serialises write transactions,
//!   so grouping is the harness's job, as it would be the spool's).
//! - `fjall`: one `WriteBatch` per group, committed with `PersistMode::SyncData`.
//!
//! Each store runs in a child process of its own, in interleaved rounds (so `getrusage`, `/proc/self/io` and the fsync
//! count are that store's alone), under `perf stat` counting `fsync`/`fdatasync` system calls
//! when `perf` is available.

mod fjall_store;
mod group;
mod redb_store;
mod segment_log;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// One store behind the spool's three operations.
pub trait Store: Send + Sync + 'static {
    type Id: Send + 'static;
    /// Makes the message durable; returns its id.
    fn store(
        &self,
        envelope: &[u8],
        message: Vec<u8>,
    ) -> impl Future<Output = Result<Self::Id>> + Send;
    /// Appends the `n`th per-recipient state record of the message, durably.
    fn state(
        &self,
        id: &Self::Id,
        n: u32,
        record: Vec<u8>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Ends the message (done record or deletion, with its states), durably.
    fn done(&self, id: &Self::Id, states: u32) -> impl Future<Output = Result<()>> + Send;
    /// Commit groups so far (each is one durable write of the store).
    fn groups(&self) -> u64;
}

pub const ENGINES: [&str; 3] = ["segment-log", "redb", "fjall"];

/// The load every store gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Load {
    pub writers: usize,
    pub messages: u64,
    pub secs: u64,
    pub size: usize,
    /// Per-recipient state records per message (the server writes one when a recipient's
    /// outcome does not end the message).
    pub states: u32,
    /// Random base64 body instead of repeated words (see [`message`]).
    #[serde(default)]
    pub incompressible: bool,
}

/// What one store did (the child's measurements; `fsyncs` from `perf stat` in the parent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub engine: String,
    pub messages: u64,
    pub seconds: f64,
    pub user_seconds: f64,
    pub system_seconds: f64,
    /// `/proc/self/io` write_bytes (octets this process sent toward the block layer).
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
    pub groups: u64,
    /// fsync + fdatasync system calls of the whole child process (perf stat), if counted.
    pub fsyncs: Option<u64>,
}

impl Outcome {
    /// Two runs of the same engine as one.
    fn plus(&self, other: &Outcome) -> Outcome {
        Outcome {
            engine: self.engine.clone(),
            messages: self.messages + other.messages,
            seconds: self.seconds + other.seconds,
            user_seconds: self.user_seconds + other.user_seconds,
            system_seconds: self.system_seconds + other.system_seconds,
            write_bytes: self.write_bytes + other.write_bytes,
            cancelled_write_bytes: self.cancelled_write_bytes + other.cancelled_write_bytes,
            groups: self.groups + other.groups,
            fsyncs: self.fsyncs.zip(other.fsyncs).map(|(a, b)| a + b),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
    fn per_message(&self, x: f64) -> f64 {
        x / (self.messages.max(1) as f64)
    }
}

/// Runs every named engine in a child process under `perf stat`, one after the other, in
/// `rounds` interleaved rounds (A B C A B C ...) that each take a `rounds`th of the messages and
/// of the time, so a disk whose speed drifts from minute to minute favours none; each engine's
/// rounds are summed.
pub fn compare(engines: &[String], load: &Load, rounds: u32, dir: &Path) -> Result<Vec<Outcome>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let perf = perf_works();
    if !perf {
        eprintln!("perf stat cannot count syscalls here: fsyncs per message will read n/a");
    }
    let rounds = rounds.max(1);
    let share = Load {
        messages: load.messages.div_ceil(rounds as u64),
        secs: load.secs.div_ceil(rounds as u64),
        ..load.clone()
    };
    let mut totals: Vec<Option<Outcome>> = vec![None; engines.len()];
    for round in 1..=rounds {
        for (engine, total) in engines.iter().zip(totals.iter_mut()) {
            eprintln!(
                "== {engine}, round {round}/{rounds}: {} writers, until {} messages or {} s",
                share.writers, share.messages, share.secs
            );
            let outcome = run_child(engine, &share, perf, dir)?;
            eprintln!("   {}", row(&outcome));
            *total = Some(match total.take() {
                None => outcome,
                Some(sum) => sum.plus(&outcome),
            });
        }
    }
    Ok(totals.into_iter().flatten().collect())
}

/// One engine in a child process (under `perf stat` when `perf`), in a fresh directory.
fn run_child(engine: &str, load: &Load, perf: bool, dir: &Path) -> Result<Outcome> {
    let exe = std::env::current_exe()?;
    let work = dir.join(engine);
    let _ = std::fs::remove_dir_all(&work);
    let counts = dir.join(format!("{engine}.perf"));
    let mut cmd = if perf {
        let mut c = std::process::Command::new("perf");
        c.args(["stat", "-x", ",", "-o"]).arg(&counts).args([
            "-e",
            "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
            "--",
        ]);
        c.arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    cmd.args(["engines", "--one", engine, "--dir"])
        .arg(&work)
        .args(["--writers", &load.writers.to_string()])
        .args(["--messages", &load.messages.to_string()])
        .args(["--secs", &load.secs.to_string()])
        .args(["--size", &load.size.to_string()])
        .args(["--states", &load.states.to_string()]);
    if load.incompressible {
        cmd.arg("--incompressible");
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
    let _ = std::fs::remove_dir_all(&work);
    if !out.status.success() {
        bail!("{engine} failed ({})", out.status);
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let mut outcome: Outcome = serde_json::from_str(line.lines().last().unwrap_or(""))
        .with_context(|| format!("{engine}: unreadable result {line:?}"))?;
    if perf {
        outcome.fsyncs = std::fs::read_to_string(&counts)
            .ok()
            .map(|t| sum_perf_counts(&t));
        let _ = std::fs::remove_file(&counts);
    }
    Ok(outcome)
}

fn perf_works() -> bool {
    std::process::Command::new("perf")
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            "syscalls:sys_enter_fdatasync",
            "--",
            "true",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `perf stat -x,` lines are `count,unit,event,...`; the counts summed.
fn sum_perf_counts(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.contains("syscalls:"))
        .filter_map(|l| l.split(',').next()?.trim().parse::<u64>().ok())
        .sum()
}

/// The child: runs one engine in `dir` and prints its [`Outcome`] as one JSON line.
pub async fn run_one(engine: &str, load: &Load, dir: &Path) -> Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    match engine {
        "segment-log" => {
            drive(
                engine,
                Arc::new(segment_log::SegmentLog::open(dir).await?),
                load,
            )
            .await
        }
        "redb" => drive(engine, Arc::new(redb_store::open(dir)?), load).await,
        "fjall" => drive(engine, Arc::new(fjall_store::open(dir)?), load).await,
        other => bail!("unknown engine {other:?} (known: {})", ENGINES.join(", ")),
    }
}

async fn drive<S: Store>(engine: &str, store: Arc<S>, load: &Load) -> Result<Outcome> {
    let message = message(load);
    // What the spool keeps next to the octets: the envelope, as JSON.
    let envelope = serde_json::to_vec(&serde_json::json!({
        "reverse_path": {"address": "loadgen@client.bench.test", "size": null, "body": null,
                         "smtputf8": false, "ret": null, "envid": null},
        "recipients": [{"address": "bob@example.test", "notify": null, "orcpt": null}],
        "session_id": "bench-session-0000",
    }))?;
    let state = br#"{"Outcome":{"rcpt":0,"status":"Delivered","reply":{"code":250,"enhanced":"2.0.0","text":"delivered to maildir"},"next_ms":0,"at_ms":1764590000000}}"#.to_vec();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(load.secs);
    let (usage0, io0) = (rusage(), proc_io());
    let groups0 = store.groups();
    let taken = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for _ in 0..load.writers {
        let (store, taken, finished) = (store.clone(), taken.clone(), finished.clone());
        let (message, envelope, state) = (message.clone(), envelope.clone(), state.clone());
        let (messages, states) = (load.messages, load.states);
        writers.push(tokio::spawn(async move {
            while Instant::now() < deadline && taken.fetch_add(1, Ordering::Relaxed) < messages {
                // The server holds the message in a buffer of its own: one copy per message.
                let id = store.store(&envelope, message.clone()).await?;
                for n in 0..states {
                    store.state(&id, n, state.clone()).await?;
                }
                store.done(&id, states).await?;
                finished.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (usage1, io1) = (rusage(), proc_io());
    Ok(Outcome {
        engine: engine.into(),
        messages: finished.load(Ordering::Relaxed),
        seconds,
        user_seconds: usage1.0 - usage0.0,
        system_seconds: usage1.1 - usage0.1,
        write_bytes: io1.0.saturating_sub(io0.0),
        cancelled_write_bytes: io1.1.saturating_sub(io0.1),
        groups: store.groups() - groups0,
        fsyncs: None,
    })
}

/// The load generator's text message, or (`incompressible`) the same headers over a body of
/// random base64 lines, like an attachment.
fn message(load: &Load) -> Vec<u8> {
    let mut message = crate::loadgen::make_message(load.size);
    if load.incompressible {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let body = message
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| p + 4);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let end = message.len() - 5; // keep the final CRLF.CRLF
        for (i, b) in message[body..end].iter_mut().enumerate() {
            if *b == b'\r' || *b == b'\n' {
                continue;
            }
            // xorshift: different octets every run of the body, no crate needed.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = B64[((x >> 58) as usize + i) % 64];
        }
    }
    message
}

/// User and system CPU seconds of this process (every thread, the engines' own included).
fn rusage() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime), secs(u.ru_stime))
}

/// `write_bytes` and `cancelled_write_bytes` from /proc/self/io.
fn proc_io() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("write_bytes:"), field("cancelled_write_bytes:"))
}

pub fn row(o: &Outcome) -> String {
    let cpu = o.user_seconds + o.system_seconds;
    format!(
        "| {} | {} | {:.1} | {:.0} | {:.3} | {:.0} % | {} | {:.3} | {:.1} |",
        o.engine,
        o.messages,
        o.seconds,
        o.per_second(),
        o.per_message(cpu) * 1000.0,
        if cpu > 0.0 {
            o.system_seconds / cpu * 100.0
        } else {
            0.0
        },
        o.fsyncs
            .map_or("n/a".into(), |f| format!("{:.3}", o.per_message(f as f64))),
        o.per_message(o.groups as f64),
        o.per_message(o.write_bytes as f64) / 1024.0,
    )
}

/// The markdown table of a comparison.
pub fn markdown(
    outcomes: &[Outcome],
    load: &Load,
    rounds: u32,
    dir: &Path,
    filesystem: &str,
) -> String {
    let mut s = format!(
        "Spool write path, {} writers, {} B messages ({}), {} state record(s) per message, until {} \
         messages or {} s per engine in {rounds} interleaved round(s); state in {} ({filesystem}).\n\n",
        load.writers,
        load.size,
        if load.incompressible {
            "random base64 body"
        } else {
            "text body"
        },
        load.states,
        load.messages,
        load.secs,
        dir.display()
    );
    s.push_str(
        "| engine | messages | s | msg/s | CPU ms/msg | kernel share | fsyncs/msg | groups/msg | written KiB/msg |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        s.push_str(&row(o));
        s.push('\n');
    }
    s
}

/// Where the comparison runs by default: target/bench-work/engines-<pid> on the source tree's disk.
pub fn default_dir() -> PathBuf {
    let bench = crate::bench_dir();
    bench
        .parent()
        .map(PathBuf::from)
        .unwrap_or(bench)
        .join("target/bench-work")
        .join(format!("engines-{}", std::process::id()))
}
