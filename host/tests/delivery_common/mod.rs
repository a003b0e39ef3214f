//! Real peers for the delivery tests: Postfix's smtp-sink, a small DNS responder and a small
//! TLS-capable SMTP server (for what smtp-sink lacks: STARTTLS, AUTH with 235, SIZE, SMTPUTF8,
//! CHUNKING, selective per-recipient replies).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use mailwit::delivery::smtp_client::{ClientConfig, Timeouts};
use mailwit::policy::{Notify, Recipient, ReversePath, TlsPolicy};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A port free on `ip` right now.
pub fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// A client configuration with short timeouts, no TLS unless a test says so.
pub fn client() -> ClientConfig {
    let mut c = ClientConfig::new("client.mailwit.test");
    c.timeouts = Timeouts::all(Duration::from_secs(10));
    c.tls = TlsPolicy::None;
    c
}

pub fn sender(address: &str) -> ReversePath {
    ReversePath {
        address: address.into(),
        ..ReversePath::default()
    }
}

pub fn rcpt(address: &str) -> Recipient {
    Recipient {
        address: address.into(),
        notify: None,
        orcpt: None,
    }
}

pub fn rcpt_dsn(address: &str, notify: Notify) -> Recipient {
    Recipient {
        address: address.into(),
        notify: Some(notify),
        orcpt: Some(format!("rfc822;{address}")),
    }
}

pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: alice@origin.test\r\nTo: bob@dest.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@origin.test>\r\n\r\n{body}"
    )
    .into_bytes()
}

/// Postfix's smtp-sink on 127.0.0.1 (or another loopback address), dumping each message to a
/// file. Killed on drop.
pub struct Sink {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Sink {
    pub fn start(args: &[&str]) -> Sink {
        let port = free_port("127.0.0.1");
        Sink::start_on("127.0.0.1", port, args)
    }

    pub fn start_on(ip: &str, port: u16, args: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        // smtp-sink drops to "nobody" and writes the dumps as that user.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let template = format!("{}/msg.", dir.path().display());
        let mut cmd = Command::new("/usr/sbin/smtp-sink");
        if nix_is_root() {
            cmd.args(["-u", "nobody"]);
        }
        cmd.args(["-d", &template])
            .args(args)
            .arg(format!("{ip}:{port}"))
            .arg("64")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("smtp-sink (Debian package postfix) is installed");
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let sink = Sink { child, addr, dir };
        sink.wait_listening();
        sink
    }

    fn wait_listening(&self) {
        for _ in 0..200 {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("smtp-sink did not start on {}", self.addr);
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The completely dumped transactions so far, sorted, as text (smtp-sink writes a dump while
    /// it replies, so a file without its final newline is still being written and is left out).
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir.path())
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
        self.dir.path()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// What the DNS responder knows.
#[derive(Clone)]
pub enum Rr {
    Mx(u16, &'static str),
    A(&'static str),
}

/// A tiny authoritative DNS server on UDP 127.0.0.1:<port>: names in `zone` answer their records
/// of the asked type (NOERROR with no answer when none); names listed in `nxdomain` or unknown
/// answer NXDOMAIN.
pub struct DnsServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    pub queries: Arc<Mutex<Vec<(String, RecordType)>>>,
}

impl DnsServer {
    pub async fn start(zone: Vec<(&'static str, Rr)>) -> DnsServer {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let mut names: HashMap<String, Vec<Rr>> = HashMap::new();
        for (name, rr) in zone {
            names
                .entry(format!("{}.", name.trim_end_matches('.')).to_ascii_lowercase())
                .or_default()
                .push(rr);
        }
        let queries = Arc::new(Mutex::new(Vec::new()));
        let log = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&names, &request, &log);
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
            }
        });
        DnsServer {
            addr,
            task,
            queries,
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(
    names: &HashMap<String, Vec<Rr>>,
    request: &Message,
    log: &Mutex<Vec<(String, RecordType)>>,
) -> Message {
    let mut reply = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    let Some(query) = request.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(query.clone());
    let qname = query.name().to_ascii().to_ascii_lowercase();
    log.lock()
        .unwrap()
        .push((qname.clone(), query.query_type()));
    let Some(records) = names.get(&qname) else {
        reply.metadata.response_code = ResponseCode::NXDomain;
        return reply;
    };
    for rr in records {
        let data = match (rr, query.query_type()) {
            (Rr::Mx(pref, exchange), RecordType::MX) => {
                let exchange = if *exchange == "." {
                    Name::root()
                } else {
                    Name::from_ascii(format!("{exchange}.")).unwrap()
                };
                RData::MX(MX::new(*pref, exchange))
            }
            (Rr::A(ip), RecordType::A) => RData::A(A(ip.parse().unwrap())),
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(query.name().clone(), 60, data));
    }
    reply
}

/// Options of the test SMTP server.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Extension lines after the greeting line of EHLO, e.g. "PIPELINING", "SIZE 1000".
    pub extensions: Vec<String>,
    /// Offer STARTTLS with a certificate for "mx.test" signed by `tls_ca`.
    pub tls: Option<TestCa>,
    /// Accept AUTH with these credentials (user, password); replies 235.
    pub auth: Option<(String, String)>,
    /// Speak LMTP: LHLO, and after the data one reply per accepted recipient (local parts
    /// starting with "full" get 552 5.2.2 there).
    pub lmtp: bool,
    /// Hang up right after accepting this many messages in a session (a peer that drops idle
    /// sessions).
    pub close_after: Option<usize>,
}

/// A CA and a server certificate for "mx.test" and 127.0.0.1.
#[derive(Clone)]
pub struct TestCa {
    pub ca_der: rustls_pki_types::CertificateDer<'static>,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mailwit test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["mx.test".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        TestCa {
            ca_der: ca.der().clone(),
            server: Arc::new(server),
        }
    }
}

/// What the test server saw.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    /// Every command line, in order, across sessions (AUTH payloads included).
    pub commands: Vec<String>,
    /// Each message received: (MAIL line, RCPT lines accepted, bytes as received, TLS active).
    pub messages: Vec<Received>,
    pub sessions: usize,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub mail: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    pub tls: bool,
    pub authenticated: bool,
}

/// A small SMTP server on 127.0.0.1:0 for what smtp-sink cannot do. Recipients whose local part
/// starts with "reject" get 550 5.1.1, "defer" get 450 4.2.1.
pub struct TestServer {
    pub addr: SocketAddr,
    pub transcript: Arc<Mutex<Transcript>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(options: ServerOptions) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let transcript = Arc::new(Mutex::new(Transcript::default()));
        let t = transcript.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (t, o) = (t.clone(), options.clone());
                tokio::spawn(async move {
                    let _ = session(stream, o, t).await;
                });
            }
        });
        TestServer {
            addr,
            transcript,
            task,
        }
    }

    pub fn transcript(&self) -> Transcript {
        self.transcript.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn session(
    stream: tokio::net::TcpStream,
    options: ServerOptions,
    transcript: Arc<Mutex<Transcript>>,
) -> std::io::Result<()> {
    transcript.lock().unwrap().sessions += 1;
    let mut io: BufReader<Box<dyn Io>> = BufReader::new(Box::new(stream));
    let mut tls = false;
    let mut authenticated = false;
    let mut mail: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut bdat_buffer: Vec<u8> = Vec::new();
    let mut accepted_here = 0;
    io.get_mut()
        .write_all(b"220 mx.test ESMTP test\r\n")
        .await?;
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_string();
        transcript.lock().unwrap().commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("").to_string();
        let reply: String = match verb.as_str() {
            "EHLO" | "LHLO" => {
                let mut ext = options.extensions.clone();
                if options.tls.is_some() && !tls {
                    ext.push("STARTTLS".into());
                }
                if options.auth.is_some() {
                    ext.push("AUTH PLAIN LOGIN".into());
                }
                let mut r = String::from("250-mx.test\r\n");
                for (i, e) in ext.iter().enumerate() {
                    let sep = if i + 1 == ext.len() { ' ' } else { '-' };
                    r.push_str(&format!("250{sep}{e}\r\n"));
                }
                if ext.is_empty() {
                    r = "250 mx.test\r\n".into();
                }
                r
            }
            "HELO" => "250 mx.test\r\n".into(),
            "STARTTLS" if options.tls.is_some() && !tls => {
                io.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await?;
                let acceptor =
                    tokio_rustls::TlsAcceptor::from(options.tls.as_ref().unwrap().server.clone());
                let plain = std::mem::replace(
                    io.get_mut(),
                    Box::new(tokio::io::duplex(1).0) as Box<dyn Io>,
                );
                let stream = acceptor.accept(plain).await?;
                io = BufReader::new(Box::new(stream));
                tls = true;
                continue;
            }
            "AUTH" => {
                let Some((user, pass)) = options.auth.clone() else {
                    io.get_mut().write_all(b"502 5.5.1 no auth\r\n").await?;
                    continue;
                };
                let words: Vec<&str> = line.split(' ').collect();
                let b64 = |s: &str| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(s.trim())
                        .unwrap_or_default()
                };
                let ok = match words.get(1).map(|m| m.to_ascii_uppercase()).as_deref() {
                    Some("PLAIN") => {
                        b64(words.get(2).unwrap_or(&"")) == format!("\0{user}\0{pass}").as_bytes()
                    }
                    Some("LOGIN") => {
                        io.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                        let mut u = String::new();
                        io.read_line(&mut u).await?;
                        io.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        let mut p = String::new();
                        io.read_line(&mut p).await?;
                        b64(&u) == user.as_bytes() && b64(&p) == pass.as_bytes()
                    }
                    _ => false,
                };
                authenticated = ok;
                if ok {
                    "235 2.7.0 Authentication successful\r\n".into()
                } else {
                    "535 5.7.8 Authentication credentials invalid\r\n".into()
                }
            }
            "MAIL" => {
                mail = Some(line.clone());
                rcpts.clear();
                bdat_buffer.clear();
                "250 2.1.0 Ok\r\n".into()
            }
            "RCPT" => {
                let local = upper.split('<').nth(1).unwrap_or("").to_ascii_lowercase();
                if mail.is_none() {
                    "503 5.5.1 need MAIL\r\n".into()
                } else if local.starts_with("reject") {
                    "550 5.1.1 no such user\r\n".into()
                } else if local.starts_with("defer") {
                    "450 4.2.1 mailbox busy\r\n".into()
                } else {
                    rcpts.push(line.clone());
                    "250 2.1.5 Ok\r\n".into()
                }
            }
            "DATA" => {
                if rcpts.is_empty() {
                    "554 5.5.1 no valid recipients\r\n".into()
                } else {
                    io.get_mut().write_all(b"354 go ahead\r\n").await?;
                    let mut data = Vec::new();
                    loop {
                        let mut l = Vec::new();
                        if io.read_until(b'\n', &mut l).await? == 0 {
                            return Ok(());
                        }
                        if l == b".\r\n" {
                            break;
                        }
                        let l = if l.starts_with(b".") { &l[1..] } else { &l[..] };
                        data.extend_from_slice(l);
                    }
                    let reply = if options.lmtp {
                        rcpts
                            .iter()
                            .map(|r| {
                                if r.to_ascii_lowercase().contains("<full") {
                                    "552 5.2.2 mailbox full\r\n"
                                } else {
                                    "250 2.1.5 delivered\r\n"
                                }
                            })
                            .collect::<String>()
                    } else {
                        "250 2.0.0 queued\r\n".to_string()
                    };
                    transcript.lock().unwrap().messages.push(Received {
                        mail: mail.take().unwrap_or_default(),
                        rcpts: std::mem::take(&mut rcpts),
                        data,
                        tls,
                        authenticated,
                    });
                    accepted_here += 1;
                    if options.close_after == Some(accepted_here) {
                        io.get_mut().write_all(reply.as_bytes()).await?;
                        return Ok(());
                    }
                    reply
                }
            }
            "BDAT" => {
                let words: Vec<&str> = upper.split(' ').collect();
                let n: usize = words.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                let last = words.get(2) == Some(&"LAST");
                let mut chunk = vec![0u8; n];
                io.read_exact(&mut chunk).await?;
                bdat_buffer.extend_from_slice(&chunk);
                if rcpts.is_empty() {
                    "554 5.5.1 no valid recipients\r\n".into()
                } else if last {
                    transcript.lock().unwrap().messages.push(Received {
                        mail: mail.take().unwrap_or_default(),
                        rcpts: std::mem::take(&mut rcpts),
                        data: std::mem::take(&mut bdat_buffer),
                        tls,
                        authenticated,
                    });
                    "250 2.0.0 queued\r\n".into()
                } else {
                    format!("250 2.0.0 {n} octets\r\n")
                }
            }
            "RSET" => {
                mail = None;
                rcpts.clear();
                "250 2.0.0 Ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".into(),
            "QUIT" => {
                io.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "500 5.5.2 unknown command\r\n".into(),
        };
        io.get_mut().write_all(reply.as_bytes()).await?;
    }
}
