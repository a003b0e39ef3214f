//! `mailwit queue …` and `mailwit reload`: clap definitions and their execution against a running
//! server's admin socket. main.rs embeds [`QueueArgs`] and [`ReloadArgs`] in its subcommand enum
//! and calls [`run_queue`] / [`run_reload`].

use super::client;
use super::protocol::{Request, Response};
use crate::queue::{MessageView, RcptStatus};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Where to find the running server.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The server's state directory (holds admin.sock).
    #[arg(long, default_value = "var")]
    pub state_dir: PathBuf,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum QueueCommand {
    /// Every queued message with its recipients' states.
    List,
    /// One message in detail (last reply and next attempt per recipient).
    Show {
        id: String,
    },
    /// Try deferred mail now: all of it, or for one destination domain.
    Flush {
        domain: Option<String>,
    },
    /// Try one message's deferred recipients now.
    Retry {
        id: String,
    },
    /// Stop delivering a message until released.
    Hold {
        id: String,
    },
    Release {
        id: String,
    },
    /// Delete a message without delivering or bouncing it.
    Remove {
        id: String,
    },
    /// Queued recipients and oldest age per destination domain (like qshape).
    Summary,
}

#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub target: Target,
}

impl QueueCommand {
    fn request(&self) -> Result<Request, String> {
        let id = |s: &str| {
            crate::spool::QueueId::parse(s).ok_or_else(|| format!("{s:?} is not a queue id"))
        };
        Ok(match self {
            QueueCommand::List => Request::List,
            QueueCommand::Show { id: i } => Request::Show { id: id(i)? },
            QueueCommand::Flush { domain } => Request::Flush {
                domain: domain.clone(),
            },
            QueueCommand::Retry { id: i } => Request::Retry { id: id(i)? },
            QueueCommand::Hold { id: i } => Request::Hold { id: id(i)? },
            QueueCommand::Release { id: i } => Request::Release { id: id(i)? },
            QueueCommand::Remove { id: i } => Request::Remove { id: id(i)? },
            QueueCommand::Summary => Request::Summary,
        })
    }
}

/// Runs `mailwit queue …`; returns the process exit code (0 ok, 1 error answer, 2 unreachable).
pub async fn run_queue(args: &QueueArgs) -> i32 {
    match args.command.request() {
        Ok(request) => send(&args.target, request).await,
        Err(e) => {
            eprintln!("mailwit queue: {e}");
            2
        }
    }
}

/// Runs `mailwit reload`.
pub async fn run_reload(args: &ReloadArgs) -> i32 {
    send(&args.target, Request::Reload).await
}

async fn send(target: &Target, request: Request) -> i32 {
    let response = match client::request(&target.state_dir, request).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailwit: {e}");
            return 2;
        }
    };
    if target.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&response).unwrap_or_default()
        );
    } else {
        print!("{}", render(&response));
    }
    match response {
        Response::Error { .. } => 1,
        _ => 0,
    }
}

/// The human-readable form of an answer.
pub fn render(response: &Response) -> String {
    let mut out = String::new();
    match response {
        Response::Ok { message } => out += &format!("{message}\n"),
        Response::Error { message } => out += &format!("error: {message}\n"),
        Response::Messages { messages } => {
            if messages.is_empty() {
                out += "queue is empty\n";
            }
            for m in messages {
                out += &message_line(m);
                for r in &m.recipients {
                    out += &format!("    {:<9} {}", status(r.status), r.address);
                    if let Some(reply) = &r.last_reply {
                        out += &format!("  ({} {} {})", reply.code, reply.enhanced, reply.text);
                    }
                    out += "\n";
                }
            }
            if !messages.is_empty() {
                out += &format!("-- {} messages\n", messages.len());
            }
        }
        Response::Message { message: m } => {
            out += &message_line(m);
            let now = crate::spool::now_ms();
            for r in &m.recipients {
                out += &format!(
                    "    {:<9} {}  attempts {}",
                    status(r.status),
                    r.address,
                    r.attempts
                );
                if r.status == RcptStatus::Deferred {
                    let wait = r.next_attempt_ms.saturating_sub(now) / 1000;
                    out += &format!("  next in {wait}s");
                }
                out += "\n";
                if let Some(reply) = &r.last_reply {
                    out += &format!("        {} {} {}\n", reply.code, reply.enhanced, reply.text);
                }
            }
        }
        Response::Summary { domains } => {
            out += &format!(
                "{:<40} {:>10} {:>10} {:>12}\n",
                "domain", "recipients", "deferred", "oldest"
            );
            for d in domains {
                out += &format!(
                    "{:<40} {:>10} {:>10} {:>12}{}\n",
                    d.domain,
                    d.recipients,
                    d.deferred,
                    age(d.oldest_age_secs),
                    if d.odmr_held { "  held for ATRN" } else { "" }
                );
            }
            let total: usize = domains.iter().map(|d| d.recipients).sum();
            out += &format!("{:<40} {:>10}\n", "total", total);
        }
    }
    out
}

fn message_line(m: &MessageView) -> String {
    let arrived = chrono::DateTime::from_timestamp_millis(m.arrived_ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    let mut flags = String::new();
    if m.held {
        flags += " HELD";
    }
    if let Some(q) = &m.quarantine {
        flags += &format!(" (quarantine: {q})");
    }
    if m.active {
        flags += " active";
    }
    let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
    format!(
        "{}  {:>8}  {}  {}{}\n",
        m.id, m.size, arrived, sender, flags
    )
}

fn status(s: RcptStatus) -> &'static str {
    match s {
        RcptStatus::Pending => "pending",
        RcptStatus::Deferred => "deferred",
        RcptStatus::Delivered => "delivered",
        RcptStatus::Failed => "failed",
    }
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
