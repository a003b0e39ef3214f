//! Postfix's own load generator, `smtp-source`, as a second client: no PIPELINING, one command
//! and one reply at a time (HELO, MAIL, RCPT, DATA, the message, `.`), N sessions that each keep
//! their connection (`-d`). Servers whose cost per message hides behind pipelining show it here.
//!
//! `smtp-source -c` prints a running count of completed DATA commands; the count at exit (or when
//! the time limit stops it) is the number of accepted messages.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt;

use crate::loadgen::LoadResult;

/// What to send.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub addr: SocketAddr,
    pub sessions: usize,
    pub messages: usize,
    pub message_size: usize,
    /// The run is stopped (SIGKILL) after this long; what was counted by then is the result.
    pub time_limit: Duration,
    pub sender: String,
    pub recipient: String,
}

/// Where `smtp-source` is (PATH, else Debian's /usr/sbin).
pub fn binary() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("smtp-source"))
        .find(|p| p.is_file())
}

/// The command line, as the README quotes it.
pub fn command_line(spec: &SourceSpec) -> Vec<String> {
    vec![
        "-c".into(),
        "-d".into(),
        "-s".into(),
        spec.sessions.to_string(),
        "-m".into(),
        spec.messages.to_string(),
        "-l".into(),
        spec.message_size.to_string(),
        "-f".into(),
        spec.sender.clone(),
        "-t".into(),
        spec.recipient.clone(),
        spec.addr.to_string(),
    ]
}

pub async fn run(spec: &SourceSpec) -> Result<LoadResult> {
    let bin = binary().context("smtp-source is not installed (Debian package postfix)")?;
    let mut child = tokio::process::Command::new(&bin)
        .args(command_line(spec))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let started = Instant::now();
    let out_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf).await;
        buf
    });
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let (status, timed_out) = match tokio::time::timeout(spec.time_limit, child.wait()).await {
        Ok(status) => (Some(status?), false),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            (None, true)
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let out = out_task.await.unwrap_or_default();
    let err = err_task.await.unwrap_or_default();
    let accepted = last_count(&out);
    let mut result = LoadResult {
        attempted: if timed_out {
            accepted
        } else {
            spec.messages as u64
        },
        accepted,
        elapsed_secs: elapsed,
        messages_per_sec: if elapsed > 0.0 {
            accepted as f64 / elapsed
        } else {
            0.0
        },
        bytes_sent: accepted * spec.message_size as u64,
        ..LoadResult::default()
    };
    if status.is_some_and(|s| !s.success()) {
        result.connection_errors = 1;
    }
    for line in String::from_utf8_lossy(&err)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(5)
    {
        result.error_samples.push(line.trim().to_string());
    }
    Ok(result)
}

/// The last number `smtp-source -c` printed (counts separated by carriage returns).
fn last_count(out: &[u8]) -> u64 {
    String::from_utf8_lossy(out)
        .split(['\r', '\n'])
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_last_running_count_is_the_result() {
        assert_eq!(super::last_count(b"1\r2\r3\r"), 3);
        assert_eq!(super::last_count(b"1\r2\r\n"), 2);
        assert_eq!(super::last_count(b""), 0);
    }
}
