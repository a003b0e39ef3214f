//! mailwit-bench: `run` compares servers (see bench/README.md); `load` points the load
//! generator at any SMTP server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use mailwit_bench::loadgen::{self, LoadSpec};
use mailwit_bench::scenario::Sizing;
use mailwit_bench::targets::{Paths, Target};
use mailwit_bench::{Comparison, bench_dir, procstat};

#[derive(Parser)]
#[command(
    name = "mailwit-bench",
    about = "SMTP load generator and server comparison"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start each target, run every scenario against it, write table, JSON and chart.
    Run(RunArgs),
    /// Send load to one already running SMTP server and print the result.
    Load(LoadArgs),
    /// The spool's write path on the segment log, redb and fjall, side by side (on the disk).
    Engines(EnginesArgs),
    /// Re-render results.md and throughput.svg from a results.json.
    Report {
        /// The results.json to read.
        json: PathBuf,
        /// Output directory (default: the JSON file's directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Seconds-long run against smtp-sink only (small counts); what `cargo test` exercises.
    #[arg(long)]
    smoke: bool,
    /// Targets in order (smtp-sink, postfix, haraka, mailwit, mailwit-discard, mailwit-noplugins,
    /// mailwit-relay, mailwit:CONFIG.toml).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "smtp-sink,postfix,mailwit,mailwit-noplugins,mailwit-relay"
    )]
    targets: Vec<String>,
    /// Only these scenarios, by name (e.g. "smtp-source 10KiB x 50,sustained 10KiB x 50").
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Messages per load scenario.
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Messages in each sustained scenario (it stops at this count or after --sustained-secs).
    #[arg(long, default_value_t = 50_000)]
    sustained_messages: usize,
    #[arg(long, default_value_t = 60)]
    sustained_secs: u64,
    /// Connections in the multi-connection scenarios.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Connections held open in the idle scenario.
    #[arg(long, default_value_t = 5000)]
    idle: usize,
    /// Upper bound in seconds for one load scenario.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Where results go (results.md, results.json, throughput.svg).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The mailwit binary to run.
    #[arg(long)]
    mailwit_bin: Option<PathBuf>,
    /// npm prefix holding node_modules/Haraka.
    #[arg(long)]
    haraka_prefix: Option<PathBuf>,
    /// Scratch directory for the targets' config, queue and logs (removed unless --keep-work).
    /// Default: target/bench-work/<pid> in the source tree, on the machine's disk (not /tmp,
    /// which may be tmpfs).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[arg(long)]
    keep_work: bool,
    /// Words about the machine's state, printed above the table (e.g. "contended").
    #[arg(long, default_value = "")]
    conditions: String,
}

#[derive(Args)]
struct EnginesArgs {
    /// Engines in order (segment-log, redb, fjall).
    #[arg(long, value_delimiter = ',', default_value = "segment-log,redb,fjall")]
    engines: Vec<String>,
    /// Concurrent writers (sessions), each waiting for durability before its next operation.
    #[arg(long, default_value_t = 50)]
    writers: usize,
    /// Each engine stops after this many messages or --secs, whichever comes first.
    #[arg(long, default_value_t = 50_000)]
    messages: u64,
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Message size in octets.
    #[arg(long, default_value_t = 10 * 1024)]
    size: usize,
    /// Per-recipient state records per message (between the store and the done record).
    #[arg(long, default_value_t = 1)]
    states: u32,
    /// A body of random base64 (an attachment) instead of repeated words: what an engine that
    /// compresses cannot shrink.
    #[arg(long)]
    incompressible: bool,
    /// Interleaved rounds (A B C A B C ...), each with a share of the messages and time.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Scratch directory (default target/bench-work/engines-<pid>, on the disk; removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where engines.md and engines.json go (default bench/results).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only this engine in this process and print its result as JSON (used by the parent).
    #[arg(long, hide = true)]
    one: Option<String>,
}

#[derive(Args)]
struct LoadArgs {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(short, long, default_value_t = 1)]
    connections: usize,
    #[arg(short, long, default_value_t = 100)]
    messages_per_connection: usize,
    #[arg(short, long, default_value_t = 10 * 1024)]
    size: usize,
    #[arg(long)]
    starttls: bool,
    #[arg(long)]
    no_pipelining: bool,
    #[arg(long, default_value = "loadgen@client.bench.test")]
    from: String,
    #[arg(long, default_value = "bob@example.test")]
    to: String,
    #[arg(long, default_value_t = 120)]
    time_limit: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    procstat::raise_nofile_limit();
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Load(args) => load(args).await,
        Command::Engines(args) => engines(args).await,
        Command::Report { json, out } => {
            let report = mailwit_bench::report::Report::read_json(&json)?;
            let out = out.unwrap_or_else(|| json.parent().map(PathBuf::from).unwrap_or_default());
            write_outputs(&report, &out)
        }
    }
}

fn write_outputs(report: &mailwit_bench::report::Report, out: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let markdown = report.markdown();
    std::fs::write(out.join("results.md"), &markdown)?;
    report.write_json(&out.join("results.json"))?;
    report.write_chart(&out.join("throughput.svg"))?;
    println!("{markdown}");
    println!("{}", report.ratio_lines());
    println!(
        "wrote {}, {}, {}",
        out.join("results.md").display(),
        out.join("results.json").display(),
        out.join("throughput.svg").display()
    );
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    let bench = bench_dir();
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        let root = bench
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| bench.clone());
        root.join("target/bench-work")
            .join(std::process::id().to_string())
    });
    std::fs::create_dir_all(&work_dir).with_context(|| format!("create {}", work_dir.display()))?;
    let filesystem = procstat::filesystem_of(&work_dir).unwrap_or_else(|| "unknown".into());
    if filesystem == "tmpfs" || filesystem == "ramfs" {
        eprintln!(
            "warning: {} is on {filesystem}: durable targets' figures will not be the disk's",
            work_dir.display()
        );
    }
    let mut paths = Paths::from_bench_dir(bench.clone(), work_dir.clone());
    if let Some(bin) = args.mailwit_bin {
        paths.mailwit_bin = bin;
    }
    if let Some(prefix) = args.haraka_prefix {
        paths.haraka_prefix = prefix;
    }
    let (targets, sizing) = if args.smoke {
        (
            vec![Target::SmtpSink],
            Sizing {
                messages: 200,
                connections: 5,
                idle_connections: 100,
                time_limit: Duration::from_secs(20),
                sustained_messages: 300,
                sustained_time: Duration::from_secs(20),
            },
        )
    } else {
        let targets = args
            .targets
            .iter()
            .map(|t| Target::parse(t))
            .collect::<Result<Vec<_>>>()?;
        (
            targets,
            Sizing {
                messages: args.messages,
                connections: args.connections,
                idle_connections: args.idle,
                time_limit: Duration::from_secs(args.time_limit),
                sustained_messages: args.sustained_messages,
                sustained_time: Duration::from_secs(args.sustained_secs),
            },
        )
    };
    let nofile = procstat::raise_nofile_limit();
    if (nofile as usize) < sizing.idle_connections * 2 + 256 {
        eprintln!(
            "warning: open-file limit {nofile} is low for {} idle connections",
            sizing.idle_connections
        );
    }
    let comparison = Comparison {
        targets,
        sizing,
        paths,
        conditions: format!(
            "{}{}State (queues, spools, Maildirs) on {filesystem}; load average at start {}.",
            args.conditions,
            if args.conditions.is_empty() { "" } else { " " },
            procstat::load_average().map_or("unknown".into(), |l| format!("{l:.2}")),
        ),
        progress: true,
        only: args.scenarios,
    };
    let report = comparison.run().await;
    if !args.keep_work {
        let _ = std::fs::remove_dir_all(&work_dir);
    }

    let out = args.out.unwrap_or_else(|| bench.join("results"));
    write_outputs(&report, &out)?;
    let failed = report
        .measurements
        .iter()
        .filter(|m| m.status == "failed")
        .count();
    if args.smoke && failed > 0 {
        bail!("{failed} smoke measurements failed");
    }
    Ok(())
}

async fn engines(args: EnginesArgs) -> Result<()> {
    use mailwit_bench::engines;
    let load = engines::Load {
        writers: args.writers,
        messages: args.messages,
        secs: args.secs,
        size: args.size,
        states: args.states,
        incompressible: args.incompressible,
    };
    let dir = args.dir.unwrap_or_else(engines::default_dir);
    if let Some(engine) = args.one {
        let outcome = engines::run_one(&engine, &load, &dir).await?;
        println!("{}", serde_json::to_string(&outcome)?);
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let filesystem = procstat::filesystem_of(&dir).unwrap_or_else(|| "unknown".into());
    if filesystem == "tmpfs" || filesystem == "ramfs" {
        eprintln!("warning: {} is on {filesystem}, not a disk", dir.display());
    }
    let outcomes =
        tokio::task::block_in_place(|| engines::compare(&args.engines, &load, args.rounds, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    let outcomes = outcomes?;
    let markdown = engines::markdown(&outcomes, &load, args.rounds, &dir, &filesystem);
    let out = args.out.unwrap_or_else(|| bench_dir().join("results"));
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("engines.md"), &markdown)?;
    std::fs::write(
        out.join("engines.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "load": load,
            "rounds": args.rounds,
            "filesystem": filesystem,
            "load_average_after": procstat::load_average(),
            "outcomes": outcomes,
        }))?,
    )?;
    println!("{markdown}");
    println!(
        "wrote {}, {}",
        out.join("engines.md").display(),
        out.join("engines.json").display()
    );
    Ok(())
}

async fn load(args: LoadArgs) -> Result<()> {
    let mut spec = LoadSpec::new(args.addr);
    spec.connections = args.connections;
    spec.messages_per_connection = args.messages_per_connection;
    spec.message_size = args.size;
    spec.starttls = args.starttls;
    spec.pipelining = !args.no_pipelining;
    spec.sender = args.from;
    spec.recipient = args.to;
    spec.time_limit = Duration::from_secs(args.time_limit);
    spec.progress = true;
    let result = loadgen::run(&spec).await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    if result.accepted < result.attempted || result.connection_errors > 0 {
        bail!(
            "{} of {} messages accepted",
            result.accepted,
            result.attempted
        );
    }
    Ok(())
}
