//! The servers under test: how each is configured, started on a free loopback port, found
//! ready, measured (its root pid) and stopped. Every target gets a private work directory;
//! nothing touches a system-wide installation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

/// Where the harness finds its templates and the programs it runs.
#[derive(Debug, Clone)]
pub struct Paths {
    /// bench/ (templates live in bench/targets and bench/configs).
    pub bench_dir: PathBuf,
    /// target/release/mailwit (or another build of it).
    pub mailwit_bin: PathBuf,
    /// The npm prefix that holds node_modules/Haraka.
    pub haraka_prefix: PathBuf,
    /// Scratch space: one sub-directory per target.
    pub work_dir: PathBuf,
}

impl Paths {
    pub fn from_bench_dir(bench_dir: PathBuf, work_dir: PathBuf) -> Paths {
        let root = bench_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| bench_dir.clone());
        Paths {
            mailwit_bin: root.join("target/release/mailwit"),
            haraka_prefix: bench_dir.join(".haraka"),
            bench_dir,
            work_dir,
        }
    }
}

/// A kind of server the harness knows how to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Target {
    /// Postfix's smtp-sink: the protocol limit (no disk, no policy).
    SmtpSink,
    /// Postfix 3.7 smtpd with a durable queue and the discard transport.
    Postfix,
    /// Haraka from npm with the stock discard queue plugin.
    Haraka,
    /// mailwit with a config file from bench/configs/.
    Mailwit { label: String, config: String },
}

impl Target {
    pub fn label(&self) -> String {
        match self {
            Target::SmtpSink => "smtp-sink".into(),
            Target::Postfix => "postfix".into(),
            Target::Haraka => "haraka".into(),
            Target::Mailwit { label, .. } => label.clone(),
        }
    }

    /// Parses a target name from the command line.
    pub fn parse(name: &str) -> Result<Target> {
        Ok(match name {
            "smtp-sink" => Target::SmtpSink,
            "postfix" => Target::Postfix,
            "haraka" => Target::Haraka,
            "mailwit" => Target::Mailwit {
                label: "mailwit".into(),
                config: "mailwit-plugins.toml".into(),
            },
            "mailwit-discard" => Target::Mailwit {
                label: "mailwit-discard".into(),
                config: "mailwit-discard.toml".into(),
            },
            "mailwit-noplugins" => Target::Mailwit {
                label: "mailwit-noplugins".into(),
                config: "mailwit-noplugins.toml".into(),
            },
            "mailwit-relay" => Target::Mailwit {
                label: "mailwit-relay".into(),
                config: "mailwit-relay.toml".into(),
            },
            // Any mailwit config: `mailwit:my.toml` (relative to bench/configs) or an absolute path.
            other if other.starts_with("mailwit:") => {
                let config = &other["mailwit:".len()..];
                let stem = std::path::Path::new(config)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or(config);
                Target::Mailwit {
                    label: stem.to_string(),
                    config: config.to_string(),
                }
            }
            other => bail!(
                "unknown target {other:?} (smtp-sink, postfix, haraka, mailwit, mailwit-discard, mailwit-noplugins, mailwit-relay, mailwit:CONFIG.toml)"
            ),
        })
    }

    /// One line saying what the row measures, for the report.
    pub fn description(&self) -> &'static str {
        match self {
            Target::SmtpSink => "Postfix smtp-sink: protocol only, nothing stored",
            Target::Postfix => "Postfix smtpd, durable queue (fsync), discard transport",
            Target::Haraka => "Haraka (npm), queue/discard plugin, nothing stored",
            Target::Mailwit { config, .. } => match config.as_str() {
                "mailwit-plugins.toml" => {
                    "mailwit, durable spool, 4 Wasm plugins, Maildir delivery"
                }
                "mailwit-discard.toml" => "mailwit, durable spool, 4 Wasm plugins, discard route",
                "mailwit-noplugins.toml" => "mailwit, durable spool, no plugins, Maildir delivery",
                "mailwit-relay.toml" => {
                    "mailwit, durable spool, 4 Wasm plugins, relay route to a separate smtp-sink (its CPU not counted)"
                }
                _ => "mailwit with a config from bench/configs",
            },
        }
    }
}

/// Sizes the harness needs the server to cope with.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Most connections open at once (the idle scenario).
    pub max_connections: usize,
}

/// A started server.
pub struct Running {
    pub target: Target,
    pub addr: SocketAddr,
    /// Root of the process tree to measure.
    pub pid: u32,
    child: Option<Child>,
    stop_command: Option<Command>,
    pub work: PathBuf,
    /// A log file worth reading when something fails.
    pub log: PathBuf,
    /// A process the target needs but that is not measured (the relay route's smtp-sink).
    helper: Option<Box<Running>>,
}

/// Starts a target and waits until it greets. A missing program is an error the caller
/// reports as "not available".
pub fn start(target: &Target, paths: &Paths, capacity: Capacity) -> Result<Running> {
    let work = paths.work_dir.join(target.label());
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clean {}", work.display()))?;
    }
    make_dir(&work)?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let running = match target {
        Target::SmtpSink => start_smtp_sink(target, addr, &work, capacity)?,
        Target::Postfix => start_postfix(target, paths, addr, &work, capacity)?,
        Target::Haraka => start_haraka(target, paths, addr, &work)?,
        Target::Mailwit { config, .. } => start_mailwit(target, paths, config, addr, &work)?,
    };
    match wait_ready(addr, Duration::from_secs(60)) {
        Ok(()) => Ok(running),
        Err(error) => {
            let log = tail(&running.log, 20);
            stop(running);
            Err(anyhow!("{error:#}; log tail:\n{log}"))
        }
    }
}

/// Stops the server and everything it started.
pub fn stop(mut running: Running) {
    let helper = running.helper.take();
    let tree = crate::procstat::process_tree(running.pid);
    if let Some(mut command) = running.stop_command.take() {
        let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
    } else {
        signal(running.pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && tree.iter().any(|&pid| alive(pid)) {
        if let Some(child) = running.child.as_mut() {
            let _ = child.try_wait();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in tree {
        if alive(pid) {
            signal(pid, libc::SIGKILL);
        }
    }
    if let Some(mut child) = running.child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(helper) = helper {
        stop(*helper);
    }
}

fn start_smtp_sink(
    target: &Target,
    addr: SocketAddr,
    work: &Path,
    capacity: Capacity,
) -> Result<Running> {
    let program = find_program("smtp-sink", &["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"])
        .ok_or_else(|| anyhow!("smtp-sink not installed (Debian package postfix)"))?;
    let log = work.join("smtp-sink.log");
    let mut command = Command::new(program);
    // As root smtp-sink insists on dropping privileges to a named user.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        command.args(["-u", "nobody"]);
    }
    // -m: smtp-sink serves at most 256 connections at once unless told otherwise.
    let connections = (capacity.max_connections + 64).max(1024).to_string();
    command
        .args(["-m", &connections])
        .arg(addr.to_string())
        .arg(&connections)
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .stdin(Stdio::null());
    let child = command.spawn().context("start smtp-sink")?;
    Ok(Running {
        target: target.clone(),
        addr,
        pid: child.id(),
        child: Some(child),
        stop_command: None,
        work: work.to_path_buf(),
        log,
        helper: None,
    })
}

fn start_postfix(
    target: &Target,
    paths: &Paths,
    addr: SocketAddr,
    work: &Path,
    capacity: Capacity,
) -> Result<Running> {
    let postfix = find_program("postfix", &["/usr/sbin/postfix"])
        .ok_or_else(|| anyhow!("postfix not installed (apt-get install postfix)"))?;
    let etc = work.join("etc");
    make_dir(&etc)?;
    make_dir(&work.join("spool"))?;
    make_dir(&work.join("data"))?;
    chown_to_user(&work.join("data"), "postfix")?;
    // Postfix spawns one smtpd per connection: the idle scenario needs that many processes.
    let process_limit = (capacity.max_connections + 100).max(200);
    let fill = |text: String| {
        text.replace("@WORK@", &work.display().to_string())
            .replace("@PORT@", &addr.port().to_string())
            .replace("@PROCESS_LIMIT@", &process_limit.to_string())
    };
    for file in ["main.cf", "master.cf"] {
        let template = read(&paths.bench_dir.join("targets/postfix").join(file))?;
        write(&etc.join(file), &fill(template))?;
    }
    let (key, cert) = self_signed_pem()?;
    write(&work.join("tls.pem"), &format!("{key}{cert}"))?;
    let log = work.join("maillog");
    let run_postfix = |action: &str| -> Result<()> {
        let output = Command::new(&postfix)
            .arg("-c")
            .arg(&etc)
            .arg(action)
            .output()?;
        if !output.status.success() {
            bail!(
                "postfix {action} failed: {}{}\nmaillog:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                tail(&log, 20)
            );
        }
        Ok(())
    };
    run_postfix("check")?;
    run_postfix("start")?;
    let pid_file = work.join("spool/pid/master.pid");
    let pid = read(&pid_file)?.trim().parse().context("master.pid")?;
    let mut stop_command = Command::new(&postfix);
    stop_command.arg("-c").arg(&etc).arg("stop");
    Ok(Running {
        target: target.clone(),
        addr,
        pid,
        child: None,
        stop_command: Some(stop_command),
        work: work.to_path_buf(),
        log,
        helper: None,
    })
}

fn start_haraka(target: &Target, paths: &Paths, addr: SocketAddr, work: &Path) -> Result<Running> {
    let haraka = paths.haraka_prefix.join("node_modules/Haraka/bin/haraka");
    if !haraka.exists() {
        bail!(
            "Haraka not installed (npm install --prefix {} Haraka)",
            paths.haraka_prefix.display()
        );
    }
    let node = find_program("node", &["/usr/bin/node", "/usr/local/bin/node"])
        .ok_or_else(|| anyhow!("node not installed"))?;
    // Haraka's own installer lays out a config directory with its defaults
    // (connection.ini and friends); then our few files override them.
    let install = Command::new(&node)
        .arg(&haraka)
        .arg("-i")
        .arg(work)
        .output()
        .context("haraka -i")?;
    if !install.status.success() {
        bail!(
            "haraka -i failed: {}",
            String::from_utf8_lossy(&install.stderr)
        );
    }
    let config = work.join("config");
    // dhparams.pem is RFC 7919's ffdhe2048 group: without it Haraka's tls plugin runs
    // `openssl dhparam 2048` at start, which burns CPU during the first scenario.
    for file in [
        "smtp.ini",
        "plugins",
        "host_list",
        "log.ini",
        "dhparams.pem",
    ] {
        let template = read(&paths.bench_dir.join("targets/haraka").join(file))?;
        write(
            &config.join(file),
            &template.replace("@PORT@", &addr.port().to_string()),
        )?;
    }
    write(&config.join("me"), "haraka.bench.test\n")?;
    let (key, cert) = self_signed_pem()?;
    write(&config.join("tls_key.pem"), &key)?;
    write(&config.join("tls_cert.pem"), &cert)?;
    let log = work.join("haraka.log");
    let child = Command::new(&node)
        .arg(&haraka)
        .arg("-c")
        .arg(work)
        // The stock queue/discard plugin discards only when told to, this way or by a note.
        .env("YES_REALLY_DO_DISCARD", "1")
        .stdin(Stdio::null())
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .spawn()
        .context("start Haraka")?;
    Ok(Running {
        target: target.clone(),
        addr,
        pid: child.id(),
        child: Some(child),
        stop_command: None,
        work: work.to_path_buf(),
        log,
        helper: None,
    })
}

fn start_mailwit(
    target: &Target,
    paths: &Paths,
    config: &str,
    addr: SocketAddr,
    work: &Path,
) -> Result<Running> {
    if !paths.mailwit_bin.exists() {
        bail!(
            "{} not built (cargo build --release)",
            paths.mailwit_bin.display()
        );
    }
    let configs = paths.bench_dir.join("configs");
    let template = read(&configs.join(config))?;
    let state = work.join("state");
    make_dir(&state)?;
    // A relay route needs a peer: its own smtp-sink, started first and stopped with the target.
    let sink = if template.contains("@SINK_PORT@") {
        let sink_work = work.join("relay-sink");
        make_dir(&sink_work)?;
        let sink_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let sink = start_smtp_sink(
            &Target::SmtpSink,
            sink_addr,
            &sink_work,
            Capacity {
                max_connections: 256,
            },
        )?;
        wait_ready(sink_addr, Duration::from_secs(20))?;
        Some(Box::new(sink))
    } else {
        None
    };
    let sink_port = sink.as_ref().map_or(0, |s| s.addr.port());
    let filled = template
        .replace("@PORT@", &addr.port().to_string())
        .replace("@STATE@", &state.display().to_string())
        .replace("@CONFIGS@", &configs.display().to_string())
        .replace("@SINK_PORT@", &sink_port.to_string());
    match spawn_mailwit(target, paths, config, addr, work, &filled, &state) {
        Ok(mut running) => {
            running.helper = sink;
            Ok(running)
        }
        Err(error) => {
            if let Some(sink) = sink {
                stop(*sink);
            }
            Err(error)
        }
    }
}

/// Writes the filled config, has `mailwit check-config` accept it, and starts `mailwit serve`.
fn spawn_mailwit(
    target: &Target,
    paths: &Paths,
    config: &str,
    addr: SocketAddr,
    work: &Path,
    filled: &str,
    state: &Path,
) -> Result<Running> {
    // The filled copy goes in the work directory under the template's file name (the template
    // may be given as an absolute path, which `join` would return unchanged).
    let file_name = Path::new(config)
        .file_name()
        .context("config has no file name")?;
    let config_path = work.join(file_name);
    write(&config_path, filled)?;
    let check = Command::new(&paths.mailwit_bin)
        .args(["check-config", "--config"])
        .arg(&config_path)
        .output()
        .context("run mailwit check-config")?;
    if !check.status.success() {
        bail!(
            "mailwit check-config rejected {config}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let log = work.join("mailwit.log");
    let child = Command::new(&paths.mailwit_bin)
        .args(["serve", "--config"])
        .arg(&config_path)
        .arg("--state-dir")
        .arg(state)
        .env(
            "RUST_LOG",
            std::env::var("MAILWIT_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .spawn()
        .context("start mailwit")?;
    Ok(Running {
        target: target.clone(),
        addr,
        pid: child.id(),
        child: Some(child),
        stop_command: None,
        work: work.to_path_buf(),
        log,
        helper: None,
    })
}

/// Asks the OS for a free loopback port (bind to port 0, read it, release it).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Ready means: accepts a connection and sends a 220 greeting.
fn wait_ready(addr: SocketAddr, limit: Duration) -> Result<()> {
    use std::io::Read;
    let deadline = Instant::now() + limit;
    let mut last_error = String::from("never tried");
    while Instant::now() < deadline {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(mut stream) => {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut greeting = [0u8; 3];
                match stream.read_exact(&mut greeting) {
                    Ok(()) if &greeting == b"220" => {
                        let _ = std::io::Write::write_all(&mut stream, b"QUIT\r\n");
                        return Ok(());
                    }
                    Ok(()) => {
                        last_error = format!("greeting {:?}", String::from_utf8_lossy(&greeting))
                    }
                    Err(error) => last_error = error.to_string(),
                }
            }
            Err(error) => last_error = error.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("server not ready: no 220 greeting on {addr} within {limit:?} ({last_error})")
}

/// A throw-away ECDSA key and certificate (PEM) for the targets' STARTTLS.
fn self_signed_pem() -> Result<(String, String)> {
    let certified = rcgen::generate_simple_self_signed(vec!["bench.test".to_string()])?;
    Ok((certified.signing_key.serialize_pem(), certified.cert.pem()))
}

fn find_program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(std::env::var_os("PATH").into_iter().flat_map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        }))
        .find(|path| path.is_file())
}

fn chown_to_user(path: &Path, user: &str) -> Result<()> {
    let status = Command::new("chown").arg(user).arg(path).status()?;
    if !status.success() {
        bail!("chown {user} {} failed", path.display());
    }
    Ok(())
}

/// Directories are world-readable: Postfix's daemons run as user postfix and must reach
/// their queue below the work directory.
fn make_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

/// The last lines of a log, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; pid comes from a process we started.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; treat state Z as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3)) != Some("Z"),
        Err(_) => false,
    }
}
