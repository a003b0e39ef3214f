//! Shared helpers for the engine's integration tests: start the real `mailwit` binary on a temp
//! state dir with every listener on port 0, find the bound ports in `<state>/listeners.json`,
//! talk SMTP over raw sockets (plain or TLS), and look at the spool and Maildirs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Guards against hangs; never an assertion about speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub const ALICE: &str = "alice@example.test";
pub const ALICE_PASSWORD: &str = "alice-secret";

/// The quickstart's users file (alice / alice-secret).
pub fn users_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/users")
}

/// A configuration like the quickstart, every listener on a free port. `extra` is appended
/// (more tables); `server_extra` goes inside `[server]`.
pub fn config(server_extra: &str, extra: &str) -> String {
    format!(
        r#"[server]
hostname = "mail.example.test"
shutdown_grace = 10
{server_extra}

[[listeners]]
name = "mx"
address = "127.0.0.1:0"
role = "mx"

[[listeners]]
name = "submission"
address = "127.0.0.1:0"
role = "submission"

[[listeners]]
name = "submissions"
address = "127.0.0.1:0"
role = "submissions"

[local]
domains = ["example.test"]
mailboxes = ["alice@example.test", "bob@example.test"]
aliases = {{ postmaster = "alice@example.test" }}

[auth]
users_file = "{users}"
{extra}
"#,
        users = users_file().display()
    )
}

/// A running `mailwit serve`, killed on drop.
pub struct TestServer {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub addrs: HashMap<String, SocketAddr>,
    log_path: PathBuf,
}

impl TestServer {
    /// The default test configuration.
    pub fn start() -> TestServer {
        Self::with_config(&config("", ""))
    }

    pub fn with_config(text: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("mailwit.toml");
        std::fs::write(&config_path, text).unwrap();
        let mut server = TestServer {
            child: None,
            log_path: dir.path().join("server.log"),
            dir,
            config_path,
            addrs: HashMap::new(),
        };
        server.spawn();
        server
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Starts the binary and waits until it wrote listeners.json.
    pub fn spawn(&mut self) {
        let state = self.state_dir();
        let listeners = state.join("listeners.json");
        let _ = std::fs::remove_file(&listeners);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailwit"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .arg("--state-dir")
            .arg(&state)
            .env("RUST_LOG", "info,mailwit=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start mailwit");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&listeners)
                && let Ok(map) = serde_json::from_str::<HashMap<String, String>>(&text)
            {
                self.addrs = map
                    .into_iter()
                    .map(|(k, v)| (k, v.parse().unwrap()))
                    .collect();
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mailwit exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mailwit not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.addrs[listener]
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (bounded, only against hangs) until the server's log contains `text`; returns it.
    pub fn wait_log(&self, text: &str) -> String {
        super::until_blocking(
            &format!("{text:?} in the log"),
            || self.log(),
            || self.log().contains(text),
        );
        self.log()
    }

    /// `mailwit reload` against this server's state directory: (success, stdout + stderr).
    pub fn reload(&self) -> (bool, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailwit"))
            .arg("reload")
            .arg("--state-dir")
            .arg(self.state_dir())
            .output()
            .expect("run mailwit reload");
        (out.status.success(), super::printed(&out))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Files in `<state>/mail/<domain>/<user>/new`.
    pub fn maildir(&self, address: &str) -> Vec<PathBuf> {
        let (user, domain) = address.split_once('@').unwrap();
        let dir = self
            .state_dir()
            .join("mail")
            .join(domain)
            .join(user)
            .join("new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Waits until `address`'s Maildir holds at least `count` messages, returns them.
    pub fn wait_maildir(&self, address: &str, count: usize) -> Vec<PathBuf> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let files = self.maildir(address);
            if files.len() >= count {
                return files;
            }
            assert!(
                Instant::now() < deadline,
                "{address}: {} of {count} messages delivered\n{}",
                files.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The messages the spool holds (`<state>/queue/`, read while the server runs).
    pub fn spooled(&self) -> Vec<Vec<u8>> {
        mailwit::spool::snapshot(&self.state_dir().join("queue"))
            .map(|queued| queued.into_iter().map(|m| m.message).collect())
            .unwrap_or_default()
    }

    /// Every accepted transaction's message the server holds, spooled or delivered to any
    /// Maildir, each once: a message being delivered can briefly be in both places, and one
    /// delivered to two mailboxes is two files; all carry the same Received header (with its
    /// unique transaction id), so they are told apart from that header on.
    pub fn all_messages(&self) -> Vec<Vec<u8>> {
        // The spool first: a message delivered meanwhile is then found in its Maildir.
        let mut held = self.spooled();
        let mut files: Vec<PathBuf> = Vec::new();
        let mail = self.state_dir().join("mail");
        for domain in read_dir(&mail) {
            for user in read_dir(&domain) {
                for sub in ["new", "cur"] {
                    files.extend(read_dir(&user.join(sub)));
                }
            }
        }
        held.extend(files.iter().filter_map(|f| std::fs::read(f).ok()));
        let mut seen = std::collections::BTreeSet::new();
        for bytes in held {
            let from = bytes
                .windows(10)
                .position(|w| w == b"Received: ")
                .unwrap_or(0);
            seen.insert(bytes[from..].to_vec());
        }
        seen.into_iter().collect()
    }
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Either side of a connection: plain TCP or rustls over it.
pub enum Wire {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(buf),
            Wire::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Wire::Plain(s) => s.write(buf),
            Wire::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Wire::Plain(s) => s.flush(),
            Wire::Tls(s) => s.flush(),
        }
    }
}

/// A raw SMTP client for scripted dialogs.
pub struct Client {
    reader: BufReader<Wire>,
}

/// One (possibly multi-line) reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
    /// The enhanced status code of the last line, e.g. "5.7.1".
    pub fn enhanced(&self) -> String {
        let last = self.lines.last().map(String::as_str).unwrap_or("");
        last.get(4..)
            .unwrap_or("")
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string()
    }
}

impl Client {
    /// Connects without reading the greeting.
    pub fn connect_raw(addr: SocketAddr) -> Client {
        Self::connect_raw_from(addr, None)
    }

    /// Connects without reading the greeting; None if the server is not there.
    pub fn try_connect_raw(addr: SocketAddr) -> Option<Client> {
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(PATIENCE)).ok()?;
        Some(Client {
            reader: BufReader::new(Wire::Plain(stream)),
        })
    }

    /// Connects from a given local IP (any 127.x.y.z), without reading the greeting.
    pub fn connect_raw_from(addr: SocketAddr, from: Option<&str>) -> Client {
        let stream = match from {
            None => TcpStream::connect(addr).unwrap(),
            Some(ip) => {
                let socket = socket2_bind(ip);
                socket.connect(addr).unwrap()
            }
        };
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Client {
            reader: BufReader::new(Wire::Plain(stream)),
        }
    }

    /// Connects and expects the 220 greeting.
    pub fn connect(addr: SocketAddr) -> Client {
        let mut c = Self::connect_raw(addr);
        let greeting = c.reply();
        assert_eq!(greeting.code, 220, "{greeting:?}");
        c
    }

    /// Implicit TLS: handshake first, then the greeting.
    pub fn connect_tls(addr: SocketAddr) -> Client {
        let mut c = Self::connect_raw(addr);
        c.upgrade();
        let greeting = c.reply();
        assert_eq!(greeting.code, 220, "{greeting:?}");
        c
    }

    /// Runs the TLS handshake on the plain connection (after STARTTLS's 220, or at once for
    /// implicit TLS). Bytes the server sent but we had not read are an error (none expected).
    pub fn upgrade(&mut self) {
        assert!(self.reader.buffer().is_empty(), "unread bytes before TLS");
        let wire = std::mem::replace(self.reader.get_mut(), Wire::Plain(dummy_stream()));
        let Wire::Plain(tcp) = wire else {
            panic!("already TLS")
        };
        let name = rustls::pki_types::ServerName::try_from("mail.example.test").unwrap();
        let conn = rustls::ClientConnection::new(tls_client_config(), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
        }
        self.reader = BufReader::new(Wire::Tls(Box::new(tls)));
    }

    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match self.reader.get_ref() {
            Wire::Tls(s) => s.conn.protocol_version(),
            Wire::Plain(_) => None,
        }
    }

    /// The DER of the certificate the server presented (None before TLS).
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self.reader.get_ref() {
            Wire::Tls(s) => s
                .conn
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| c.to_vec()),
            Wire::Plain(_) => None,
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let w = self.reader.get_mut();
        w.write_all(bytes.as_ref()).unwrap();
        w.flush().unwrap();
    }

    /// Sends, ignoring errors (the server may have closed).
    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        let w = self.reader.get_mut();
        w.write_all(bytes.as_ref())?;
        w.flush()
    }

    /// Reads one reply (all its lines).
    pub fn reply(&mut self) -> Reply {
        self.try_reply().expect("a reply")
    }

    /// One reply, or None on EOF/error.
    pub fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let more = line.as_bytes().get(3) == Some(&b'-');
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            lines.push(line);
            if !more {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Sends a command line (CRLF added) and returns its reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n"));
        self.reply()
    }

    /// Sends a command and asserts the reply code.
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let reply = self.cmd(line);
        assert_eq!(reply.code, code, "{line} -> {reply:?}");
        reply
    }

    /// Whether the server closed the connection (EOF on read).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }

    /// AUTH PLAIN as alice.
    pub fn login_alice(&mut self) {
        let token = b64(&format!("\0{ALICE}\0{ALICE_PASSWORD}"));
        self.expect(&format!("AUTH PLAIN {token}"), 235);
    }

    /// A full DATA transaction; returns the final reply.
    pub fn send_mail(&mut self, from: &str, to: &[&str], body: &str) -> Reply {
        self.expect(&format!("MAIL FROM:<{from}>"), 250);
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), 250);
        }
        self.expect("DATA", 354);
        self.send(body);
        self.send(".\r\n");
        self.reply()
    }
}

fn dummy_stream() -> TcpStream {
    // Only a placeholder during the swap in `upgrade`; connect to a listener we own.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    TcpStream::connect(listener.local_addr().unwrap()).unwrap()
}

/// Binds a client socket to a chosen loopback address (a second client IP for per-IP limits).
fn socket2_bind(ip: &str) -> Binder {
    Binder(ip.parse().unwrap())
}

struct Binder(std::net::IpAddr);

impl Binder {
    fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        // std has no bind-before-connect; use tokio's TcpSocket on a throwaway runtime.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ip = self.0;
        rt.block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            let stream = socket.connect(addr).await?;
            stream.into_std()
        })
        .and_then(|s| {
            s.set_nonblocking(false)?;
            Ok(s)
        })
    }
}

pub fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A simple RFC 5322 message with CRLF line ends.
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.test>\r\n\r\n{body}\r\n"
    )
}

/// rustls client config that accepts any certificate (the server's is self-signed).
pub fn tls_client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
    )
}

/// Same, pinned to one TLS version.
pub fn tls_client_config_version(
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
    )
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
