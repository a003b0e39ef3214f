//! A scripted SMTP/LMTP peer for what Postfix's smtp-sink cannot do: STARTTLS, AUTH with 235,
//! SIZE, SMTPUTF8, CHUNKING, selective per-recipient replies.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Options of the scripted peer.
#[derive(Clone, Default)]
pub struct PeerOptions {
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

/// What the scripted peer saw.
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
pub struct ScriptedPeer {
    pub addr: SocketAddr,
    pub transcript: Arc<Mutex<Transcript>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedPeer {
    pub async fn start(options: PeerOptions) -> ScriptedPeer {
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
        ScriptedPeer {
            addr,
            transcript,
            task,
        }
    }

    pub fn transcript(&self) -> Transcript {
        self.transcript.lock().unwrap().clone()
    }
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn session(
    stream: tokio::net::TcpStream,
    options: PeerOptions,
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
