//! The `mailwit` command line: serve, check-config, hash-password (reload and queue come from the
//! admin module).

use clap::{Parser, Subcommand};
use mailwit::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "mailwit", version, about = "A programmable ESMTP server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per subcommand; each has its own `run` below.
#[derive(Subcommand)]
enum Command {
    /// Run the server (without --config: the embedded quickstart).
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Overrides `[server] state_dir`.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Validate a configuration; exits non-zero with `file:line:column: key: message`.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a password on standard input, print its argon2 PHC hash for a users file.
    HashPassword {
        /// Print the CRAM-MD5 secret instead (`{CRAM-MD5}` + HMAC-MD5 contexts): for odmr
        /// listeners; password-equivalent, so keep the file private.
        #[arg(long)]
        cram_md5: bool,
    },
    /// Inspect and steer the running server's queue (over `<state>/admin.sock`).
    Queue(mailwit::admin::cli::QueueArgs),
    /// Reload plugins and pipelines of the running server.
    Reload(mailwit::admin::cli::ReloadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve { config, state_dir } => serve(config, state_dir),
        Command::CheckConfig { config } => check_config(config),
        Command::HashPassword { cram_md5 } => hash_password(cram_md5),
        Command::Queue(args) => return admin(mailwit::admin::cli::run_queue(&args)),
        Command::Reload(args) => return admin(mailwit::admin::cli::run_reload(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailwit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an admin-socket command; its exit code is the process's.
fn admin(command: impl std::future::Future<Output = i32>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    ExitCode::from(runtime.block_on(command).clamp(0, 255) as u8)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn load(config: Option<PathBuf>) -> anyhow::Result<Config> {
    match config {
        Some(path) => Ok(Config::load(&path)?),
        None => {
            tracing::info!("no --config given: serving the embedded quickstart");
            Ok(Config::quickstart())
        }
    }
}

fn serve(config: Option<PathBuf>, state_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = load(config)?;
    if let Some(dir) = state_dir {
        config.server.state_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(mailwit::app::run(config))
}

fn check_config(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let plugins = mailwit::app::check(&config)?;
    println!(
        "{}: ok ({} listeners, {} local domains)",
        path.display(),
        config.listeners.len(),
        config.local.domains.len()
    );
    if !config.plugins.is_empty() {
        print!("{plugins}");
    }
    Ok(())
}

fn hash_password(cram_md5: bool) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "empty password on standard input");
    if cram_md5 {
        println!(
            "{}",
            mailwit::auth::CramSecret::from_password(password).encode()
        );
    } else {
        println!("{}", mailwit::auth::hash_password(password)?);
    }
    Ok(())
}
