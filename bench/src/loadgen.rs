//! The load generator: N connections each sending M messages of a given size, PIPELINING
//! (MAIL+RCPT+DATA in one write) when the server advertises it, optional STARTTLS, and a
//! latency sample per transaction (first command written -> final reply to the data).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::client::Connection;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub connections: usize,
    pub messages_per_connection: usize,
    /// Approximate size of each message in bytes (headers + body).
    pub message_size: usize,
    pub starttls: bool,
    /// Use PIPELINING when the server advertises it.
    pub pipelining: bool,
    /// Stop starting new transactions after this long (the run is bounded in time and count).
    pub time_limit: Duration,
    pub sender: String,
    pub recipient: String,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
}

impl LoadSpec {
    pub fn new(addr: SocketAddr) -> LoadSpec {
        LoadSpec {
            addr,
            connections: 1,
            messages_per_connection: 100,
            message_size: 10 * 1024,
            starttls: false,
            pipelining: true,
            time_limit: Duration::from_secs(120),
            sender: "loadgen@client.bench.test".into(),
            recipient: "bob@example.test".into(),
            progress: false,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// Transactions started (MAIL sent).
    pub attempted: u64,
    /// Messages the server acknowledged with 250 after the data.
    pub accepted: u64,
    /// Transactions the server refused with a 4xx/5xx at any stage.
    pub rejected: u64,
    /// Connections that failed (connect, TLS, I/O, timeout, malformed reply).
    pub connection_errors: u64,
    /// The first few error texts, to tell the operator why.
    pub error_samples: Vec<String>,
    pub elapsed_secs: f64,
    pub messages_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Whether PIPELINING was actually used (advertised and enabled).
    pub pipelined: bool,
    pub tls: bool,
    pub bytes_sent: u64,
}

#[derive(Default)]
struct ConnectionOutcome {
    attempted: u64,
    accepted: u64,
    rejected: u64,
    latencies_us: Vec<u32>,
    error: Option<String>,
    pipelined: bool,
    tls: bool,
    bytes_sent: u64,
}

/// Runs the load and returns the counts and latency percentiles.
pub async fn run(spec: &LoadSpec) -> Result<LoadResult> {
    if spec.connections == 0 {
        bail!("connections must be at least 1");
    }
    let total = (spec.connections * spec.messages_per_connection) as u64;
    let progress = progress_bar(spec.progress, total);
    let message: Arc<[u8]> = make_message(spec.message_size).into();
    let deadline = Instant::now() + spec.time_limit;
    let started = Instant::now();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..spec.connections {
        let spec = spec.clone();
        let message = message.clone();
        let progress = progress.clone();
        tasks.spawn(async move { run_connection(&spec, &message, deadline, &progress).await });
    }

    let mut result = LoadResult::default();
    let mut latencies: Vec<u32> = Vec::with_capacity(total as usize);
    let mut pipelined = true;
    let mut tls = true;
    let mut any_connection = false;
    while let Some(outcome) = tasks.join_next().await {
        let outcome = outcome?;
        result.attempted += outcome.attempted;
        result.accepted += outcome.accepted;
        result.rejected += outcome.rejected;
        result.bytes_sent += outcome.bytes_sent;
        latencies.extend_from_slice(&outcome.latencies_us);
        if let Some(error) = outcome.error {
            result.connection_errors += 1;
            if result.error_samples.len() < 5 && !result.error_samples.contains(&error) {
                result.error_samples.push(error);
            }
        } else {
            any_connection = true;
            pipelined &= outcome.pipelined;
            tls &= outcome.tls;
        }
    }
    progress.finish_and_clear();

    let elapsed = started.elapsed().as_secs_f64();
    result.elapsed_secs = elapsed;
    result.messages_per_sec = if elapsed > 0.0 {
        result.accepted as f64 / elapsed
    } else {
        0.0
    };
    latencies.sort_unstable();
    result.p50_ms = percentile_ms(&latencies, 0.50);
    result.p99_ms = percentile_ms(&latencies, 0.99);
    result.max_ms = latencies.last().map_or(0.0, |&us| us as f64 / 1000.0);
    result.pipelined = any_connection && pipelined && spec.pipelining;
    result.tls = any_connection && tls && spec.starttls;
    Ok(result)
}

async fn run_connection(
    spec: &LoadSpec,
    message: &[u8],
    deadline: Instant,
    progress: &ProgressBar,
) -> ConnectionOutcome {
    let mut outcome = ConnectionOutcome::default();
    if let Err(error) = drive_connection(spec, message, deadline, progress, &mut outcome).await {
        outcome.error = Some(format!("{error:#}"));
    }
    outcome
}

async fn drive_connection(
    spec: &LoadSpec,
    message: &[u8],
    deadline: Instant,
    progress: &ProgressBar,
    outcome: &mut ConnectionOutcome,
) -> Result<()> {
    let mut conn = Connection::open(spec.addr, spec.starttls).await?;
    let pipelining = spec.pipelining && conn.caps.pipelining;
    outcome.pipelined = pipelining;
    outcome.tls = conn.tls;
    let mail = format!("MAIL FROM:<{}>\r\n", spec.sender);
    let rcpt = format!("RCPT TO:<{}>\r\n", spec.recipient);
    let envelope = format!("{mail}{rcpt}DATA\r\n");

    for _ in 0..spec.messages_per_connection {
        if Instant::now() >= deadline {
            break;
        }
        outcome.attempted += 1;
        let begun = Instant::now();
        let accepted = if pipelining {
            conn.send(envelope.as_bytes()).await?;
            let mail_reply = conn.read_reply().await?;
            let rcpt_reply = conn.read_reply().await?;
            let data_reply = conn.read_reply().await?;
            if data_reply.code == 354 && !(mail_reply.is_positive() && rcpt_reply.is_positive()) {
                // A server that accepts DATA with no valid recipient: end the empty data quickly.
                conn.send(b".\r\n").await?;
                conn.read_reply().await?;
                false
            } else if data_reply.code == 354 {
                send_data(&mut conn, message).await?
            } else {
                false
            }
        } else {
            conn.send(mail.as_bytes()).await?;
            if !conn.read_reply().await?.is_positive() {
                false
            } else {
                conn.send(rcpt.as_bytes()).await?;
                if !conn.read_reply().await?.is_positive() {
                    false
                } else {
                    conn.send(b"DATA\r\n").await?;
                    if conn.read_reply().await?.code != 354 {
                        false
                    } else {
                        send_data(&mut conn, message).await?
                    }
                }
            }
        };
        outcome.bytes_sent += (envelope.len() + message.len()) as u64;
        if accepted {
            outcome.accepted += 1;
            let micros = begun.elapsed().as_micros().min(u32::MAX as u128) as u32;
            outcome.latencies_us.push(micros);
        } else {
            outcome.rejected += 1;
            conn.send(b"RSET\r\n").await?;
            conn.read_reply().await?;
        }
        progress.inc(1);
    }
    conn.quit().await;
    Ok(())
}

async fn send_data(conn: &mut Connection, message: &[u8]) -> Result<bool> {
    conn.send(message).await?;
    Ok(conn.read_reply().await?.code == 250)
}

/// A plain-text message of about `size` bytes, CRLF line endings, no line starting with a dot,
/// ending with the CRLF.CRLF end-of-data marker.
pub fn make_message(size: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(size + 128);
    message.extend_from_slice(
        b"From: Load Generator <loadgen@client.bench.test>\r\n\
          To: Bob <bob@example.test>\r\n\
          Subject: mailwit benchmark message\r\n\
          Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n\
          Message-ID: <bench@client.bench.test>\r\n\
          MIME-Version: 1.0\r\n\
          Content-Type: text/plain; charset=us-ascii\r\n\
          \r\n",
    );
    const WORDS: &[u8] =
        b"the quick brown fox jumps over the lazy dog while mail flows through the queue ";
    let mut line = 0usize;
    while message.len() + 5 < size {
        let remaining = size - message.len() - 5;
        let width = remaining.clamp(1, 76);
        let offset = (line * 7) % WORDS.len();
        for i in 0..width {
            message.push(WORDS[(offset + i) % WORDS.len()]);
        }
        if message.last() == Some(&b' ') {
            *message.last_mut().expect("non-empty") = b'x';
        }
        message.extend_from_slice(b"\r\n");
        line += 1;
    }
    message.extend_from_slice(b".\r\n");
    message
}

fn percentile_ms(sorted_us: &[u32], quantile: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 * quantile).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

fn progress_bar(wanted: bool, total: u64) -> ProgressBar {
    if !wanted || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("  {bar:40} {pos}/{len} msgs {per_sec} eta {eta}")
            .expect("valid template"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_requested_size_and_no_leading_dots() {
        for size in [300usize, 1024, 10 * 1024, 100 * 1024] {
            let message = make_message(size);
            assert!(message.ends_with(b"\r\n.\r\n"));
            let body = &message[..message.len() - 3];
            assert!(
                body.len().abs_diff(size) <= 8,
                "size {size} got {}",
                body.len()
            );
            assert!(
                !body
                    .split(|&b| b == b'\n')
                    .any(|line| line.starts_with(b"."))
            );
            assert!(!body.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        }
    }

    #[test]
    fn percentiles_pick_ranks() {
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&sorted, 0.5), 50.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }
}
