//! Real TLS and DNSSEC peers for the outbound-trust tests: a test CA issuing good, expired and
//! wrong-name certificates (rcgen), self-signed certificates, and an authoritative BIND `named`
//! serving a zone the test signs with its own keys (`dnssec-keygen`, `dnssec-signzone`), whose
//! key is handed to mailwit as `[dns] trust_anchors`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate and its key, as DER and PEM.
#[derive(Clone)]
pub struct Leaf {
    pub der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    /// DER of the SubjectPublicKeyInfo (for TLSA selector 1).
    pub spki: Vec<u8>,
    /// The chain presented after the leaf (the CA for DANE-TA).
    pub chain: Vec<CertificateDer<'static>>,
}

impl Leaf {
    /// A rustls server configuration presenting this certificate (and its chain).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut chain = vec![self.der.clone()];
        chain.extend(self.chain.iter().cloned());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::Pkcs8(self.key_der.clone().into()))
            .unwrap();
        Arc::new(config)
    }
}

/// Validity of a test certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Current,
    Expired,
}

/// A test certificate authority.
pub struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_der: ca.der().clone(),
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses) issued by this CA.
    pub fn leaf(&self, names: &[&str], validity: Validity) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            key_der: key.serialize_der(),
            spki: rcgen::PublicKeyData::subject_public_key_info(&key),
            chain: vec![self.ca_der.clone()],
        }
    }

    /// The CA certificate as a PEM file in `dir`.
    pub fn ca_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }
}

/// A self-signed certificate for `names`.
pub fn self_signed(names: &[&str]) -> Leaf {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    Leaf {
        der: cert.der().clone(),
        key_der: key.serialize_der(),
        spki: rcgen::PublicKeyData::subject_public_key_info(&key),
        chain: Vec::new(),
    }
}

/// Hex, for TLSA records.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

pub fn sha512(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha512::digest(bytes).to_vec()
}

/// Whether BIND's tools are installed (Debian `bind9`, `bind9-utils`).
pub fn have_bind() -> bool {
    ["named", "dnssec-keygen", "dnssec-signzone"]
        .iter()
        .all(|tool| {
            Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
}

/// An authoritative `named` on 127.0.0.1 (UDP and TCP) serving `test.`, signed with a key made
/// for this test, plus unsigned child zones delegated from it without DS records (provably
/// insecure). Killed on drop.
pub struct SignedZone {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// `test. IN DNSKEY 257 3 13 …`: the trust anchor for mailwit.
    pub anchor: PathBuf,
    child: Child,
    key_file: PathBuf,
    children: Vec<String>,
    serial: std::sync::atomic::AtomicU32,
}

const SOA_TEMPLATE: &str =
    "@ IN SOA ns.test. admin.test. SERIAL 3600 600 86400 300\n@ IN NS ns.test.\n";
const SOA: &str = "@ IN SOA ns.test. admin.test. 1 3600 600 86400 300\n@ IN NS ns.test.\n";

/// Writes `test.zone` (serial `serial`, the records, delegations to the unsigned `children`) in
/// `d` and signs it into `test.zone.signed` with `key_file`.
fn sign_zone(
    d: &Path,
    key_file: &Path,
    serial: u32,
    signed: &[String],
    children: &[String],
    corrupt_tlsa: &[String],
) {
    let soa = SOA_TEMPLATE.replace("SERIAL", &serial.to_string());
    let mut zone = format!("$TTL 300\n{soa}ns IN A 127.0.0.1\n");
    for line in signed {
        zone.push_str(line);
        zone.push('\n');
    }
    for child in children {
        zone.push_str(&format!("{child} IN NS ns.test.\n"));
    }
    zone.push_str(&format!("$INCLUDE {}\n", key_file.display()));
    std::fs::write(d.join("test.zone"), zone).unwrap();
    let out = Command::new("dnssec-signzone")
        .args(["-q", "-z", "-O", "full", "-o", "test.", "-K"])
        .arg(d)
        // The dsset file goes to the temp dir, not the working directory.
        .arg("-d")
        .arg(d)
        .arg("-f")
        .arg(d.join("test.zone.signed"))
        .arg(d.join("test.zone"))
        .arg(key_file)
        .output()
        .expect("dnssec-signzone");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !corrupt_tlsa.is_empty() {
        corrupt_signatures(&d.join("test.zone.signed"), corrupt_tlsa);
    }
}

/// What goes into the zones.
#[derive(Default)]
pub struct Zones {
    /// Records of the signed zone `test.`, zone-file lines relative to `test.`
    /// (e.g. `mx.dane IN A 127.0.0.1`).
    pub signed: Vec<String>,
    /// Unsigned child zones: (name under `test.`, records relative to the child's apex).
    pub unsigned: Vec<(String, Vec<String>)>,
    /// Owner names (relative to `test.`) whose TLSA signature is to be corrupted after signing.
    pub corrupt_tlsa: Vec<String>,
}

impl Zones {
    /// The signed zone `test.` with these records, and nothing else.
    pub fn signed(records: Vec<String>) -> Zones {
        Zones {
            signed: records,
            ..Zones::default()
        }
    }
}

impl SignedZone {
    pub fn start(zones: Zones) -> SignedZone {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_udp_and_tcp_port();
        let out = Command::new("dnssec-keygen")
            .args([
                "-q",
                "-a",
                "ECDSAP256SHA256",
                "-f",
                "KSK",
                "-n",
                "ZONE",
                "-K",
            ])
            .arg(d)
            .arg("test.")
            .output()
            .expect("dnssec-keygen (Debian bind9-utils)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let key_file = d.join(format!("{key}.key"));
        let dnskey = std::fs::read_to_string(&key_file).unwrap();
        let anchor = d.join("trust-anchor.key");
        let anchor_line = dnskey
            .lines()
            .find(|l| l.contains("DNSKEY") && !l.starts_with(';'))
            .unwrap()
            .to_string();
        std::fs::write(&anchor, format!("{anchor_line}\n")).unwrap();

        let children: Vec<String> = zones.unsigned.iter().map(|(c, _)| c.clone()).collect();
        sign_zone(
            d,
            &key_file,
            1,
            &zones.signed,
            &children,
            &zones.corrupt_tlsa,
        );
        let soa = SOA;

        let mut conf = format!(
            "options {{ directory \"{dir}\"; listen-on port {port} {{ 127.0.0.1; }}; \
             listen-on-v6 {{ none; }}; recursion no; pid-file none; dnssec-validation no; \
             notify no; }};\n\
             zone \"test.\" {{ type primary; file \"test.zone.signed\"; }};\n",
            dir = d.display()
        );
        for (child, records) in &zones.unsigned {
            let mut text = format!("$TTL 300\n{soa}");
            for line in records {
                text.push_str(line);
                text.push('\n');
            }
            let file = format!("{child}.zone");
            std::fs::write(d.join(&file), text).unwrap();
            conf.push_str(&format!(
                "zone \"{child}.test.\" {{ type primary; file \"{file}\"; }};\n"
            ));
        }
        std::fs::write(d.join("named.conf"), conf).unwrap();
        let log = std::fs::File::create(d.join("named.log")).unwrap();
        let child = Command::new("named")
            .args(["-g", "-c"])
            .arg(d.join("named.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("named (Debian bind9)");
        let zone = SignedZone {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            anchor,
            dir,
            child,
            key_file,
            children,
            serial: std::sync::atomic::AtomicU32::new(1),
        };
        zone.wait_running();
        zone
    }

    /// Replaces the signed zone's records with `signed` (same key, next serial) and has named
    /// load it (SIGHUP); returns once named logged the new serial. Give changing records a
    /// short TTL (e.g. `name 1 IN TXT …`) so resolvers do not keep the old ones.
    pub fn update(&self, signed: &[String]) {
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        sign_zone(
            self.dir.path(),
            &self.key_file,
            serial,
            signed,
            &self.children,
            &[],
        );
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let loaded = format!("loaded serial {serial}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default();
            if log.contains(&loaded) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "named did not load serial {serial}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default();
            if log.contains("running") {
                return;
            }
            assert!(
                !log.contains("exiting (due to fatal error)") && Instant::now() < deadline,
                "named did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `[dns]` table for mailwit: this server, DNSSEC on, our key as the trust anchor.
    pub fn dns_config(&self) -> String {
        format!(
            "[dns]\nnameservers = [\"{}\"]\ndnssec = true\ntrust_anchors = \"{}\"\ntimeout = \"5s\"\n",
            self.addr,
            self.anchor.display()
        )
    }
}

impl Drop for SignedZone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flips one character of the signature of each named TLSA RRset's RRSIG: the records stay,
/// their signature no longer verifies (a forged answer).
fn corrupt_signatures(signed: &Path, owners: &[String]) {
    let text = std::fs::read_to_string(signed).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_target = fields.len() > 5
            && fields[3] == "RRSIG"
            && fields[4] == "TLSA"
            && owners
                .iter()
                .any(|o| fields[0].eq_ignore_ascii_case(&format!("{o}.test.")));
        if is_target {
            // The signature is the last field(s); change a character in the middle of the last.
            let last = fields.len() - 1;
            let mut sig: Vec<char> = fields[last].chars().collect();
            let i = sig.len() / 2;
            sig[i] = if sig[i] == 'A' { 'B' } else { 'A' };
            let mut f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
            f[last] = sig.into_iter().collect();
            out.push_str(&f.join(" "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    std::fs::write(signed, out).unwrap();
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_udp_and_tcp_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A tiny HTTPS server on 127.0.0.1 answering every request with `status` and `body` (an
/// MTA-STS policy host). Stops when dropped.
pub struct HttpsServer {
    pub addr: SocketAddr,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    response: Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

fn http_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

impl HttpsServer {
    pub async fn start(leaf: &Leaf, status: &str, body: &str) -> HttpsServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
        let response = Arc::new(std::sync::Mutex::new(http_response(status, body)));
        let current = response.clone();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                let response = current.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        HttpsServer {
            addr,
            requests,
            response,
            task,
        }
    }

    /// Answers later requests with `status` and `body` (a domain publishing a new policy).
    pub fn set_response(&self, status: &str, body: &str) {
        *self.response.lock().unwrap() = http_response(status, body);
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
