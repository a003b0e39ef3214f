//! Postfix's smtp-sink as a real peer: an SMTP or LMTP server that dumps each transaction to a
//! file in a directory made by [`super::helper_dir`] (it runs as `nobody` when the tests run as
//! root). Killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;
use super::helper_dir::{helper_dir, helper_subdir, helper_user_args};

/// smtp-sink listening on TCP.
pub struct Sink {
    child: Child,
    pub addr: SocketAddr,
    dumps: PathBuf,
    /// Holds the dump directory unless the caller gave one.
    _dir: Option<tempfile::TempDir>,
}

impl Sink {
    /// On 127.0.0.1, a free port; `args` are smtp-sink options (e.g. `-L`, `-f RCPT`).
    pub fn start(args: &[&str]) -> Sink {
        let port = free_port("127.0.0.1");
        Sink::start_on("127.0.0.1", port, args)
    }

    /// On `ip:port` (any loopback address).
    pub fn start_on(ip: &str, port: u16, args: &[&str]) -> Sink {
        let dir = helper_dir();
        let dumps = dir.path().to_path_buf();
        Sink::spawn(ip, port, args, dumps, Some(dir))
    }

    /// On 127.0.0.1:`port`, dumping into `dumps`, a directory inside a [`helper_dir`] that the
    /// caller keeps (created here for the helper user; the dumps outlive the sink).
    pub fn start_dumping_to(port: u16, dumps: &Path, args: &[&str]) -> Sink {
        Sink::spawn("127.0.0.1", port, args, dumps.to_path_buf(), None)
    }

    fn spawn(
        ip: &str,
        port: u16,
        args: &[&str],
        dumps: PathBuf,
        dir: Option<tempfile::TempDir>,
    ) -> Sink {
        helper_subdir(&dumps);
        let template = format!("{}/msg.", dumps.display());
        let child = spawn_sink(&["-d", &template], args, &format!("{ip}:{port}"), 64);
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let sink = Sink {
            child,
            addr,
            dumps,
            _dir: dir,
        };
        wait_until("smtp-sink listening", || {
            std::net::TcpStream::connect(sink.addr).is_ok()
        });
        sink
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The completely dumped transactions so far, sorted, as text (smtp-sink writes a dump while
    /// it replies, so a file without its final newline is still being written and is left out).
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dumps)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned())
            .filter(|m| m.ends_with('\n'))
            .collect();
        out.sort();
        out
    }

    /// Waits (bounded) until `n` transactions are dumped; smtp-sink writes the file as it replies.
    pub fn wait_messages(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.messages()
    }

    pub fn dump_dir(&self) -> &Path {
        &self.dumps
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// smtp-sink listening on a unix socket in a [`helper_dir`]; it dumps nothing.
pub struct UnixSink {
    child: Child,
    pub path: PathBuf,
    dir: tempfile::TempDir,
}

impl UnixSink {
    pub fn start(args: &[&str]) -> UnixSink {
        let dir = helper_dir();
        let path = dir.path().join("sink.sock");
        let child = spawn_sink(&[], args, &format!("unix:{}", path.display()), 16);
        wait_until("smtp-sink on its unix socket", || {
            std::os::unix::net::UnixStream::connect(&path).is_ok()
        });
        UnixSink { child, path, dir }
    }

    /// The helper directory the socket is in (a place where nothing listens, for other paths).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for UnixSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// smtp-sink on TCP without dumps, for throughput runs (measures the client, not the disk).
pub struct FastSink {
    child: Child,
    pub addr: SocketAddr,
}

impl FastSink {
    pub fn start(args: &[&str], backlog: u32) -> FastSink {
        let port = free_port("127.0.0.1");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = spawn_sink(&[], args, &addr.to_string(), backlog);
        wait_until("smtp-sink listening", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        FastSink { child, addr }
    }
}

impl Drop for FastSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_sink(dump_args: &[&str], args: &[&str], endpoint: &str, backlog: u32) -> Child {
    Command::new("/usr/sbin/smtp-sink")
        .args(helper_user_args())
        .args(dump_args)
        .args(args)
        .arg(endpoint)
        .arg(backlog.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (Debian package postfix) is installed")
}

/// Polls `ready` every 25 ms; panics after 10 s (a helper that did not start).
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what}: not ready after 10 s");
}
