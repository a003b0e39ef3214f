//! A small authoritative DNS server for the mail-authentication tests, on loopback UDP and TCP
//! (same port), serving a zone the test builds: TXT (several strings per record), A, AAAA, MX,
//! PTR, CNAME (followed one level, like the RFC 7208 suite's driver) and names that time out
//! (no answer at all). Unknown names answer NXDOMAIN, known names without the asked type NOERROR
//! with no answer. It runs on its own threads, so sync and async tests can use it alike.
#![allow(dead_code)]

use hickory_resolver::proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Rr {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx(u16, String),
    /// One TXT record made of these character-strings (joined by the reader).
    Txt(Vec<Vec<u8>>),
    Ptr(String),
    Cname(String),
    /// Queries for a type this name has no record of get no answer (a timeout).
    Timeout,
}

/// Names (lowercase, no trailing dot) and their records.
#[derive(Default, Clone)]
pub struct Zone {
    names: HashMap<String, Vec<Rr>>,
}

impl Zone {
    pub fn new() -> Zone {
        Zone::default()
    }

    pub fn add(&mut self, name: &str, rr: Rr) -> &mut Zone {
        self.names.entry(key(name)).or_default().push(rr);
        self
    }

    pub fn txt(&mut self, name: &str, text: &str) -> &mut Zone {
        // Split into 255-octet strings, as a zone file would have to.
        let strings = text.as_bytes().chunks(255).map(<[u8]>::to_vec).collect();
        self.add(name, Rr::Txt(strings))
    }

    pub fn a(&mut self, name: &str, ip: &str) -> &mut Zone {
        match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => self.add(name, Rr::A(v4)),
            IpAddr::V6(v6) => self.add(name, Rr::Aaaa(v6)),
        }
    }

    /// Makes sure `name` exists (NOERROR/NODATA rather than NXDOMAIN).
    pub fn touch(&mut self, name: &str) -> &mut Zone {
        self.names.entry(key(name)).or_default();
        self
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    pub fn start(zone: Zone) -> DnsServer {
        // One port for both transports: bind UDP first, then TCP on the same port.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(zone));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        {
            let zone = zone.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(request) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let limit = request
                        .edns
                        .as_ref()
                        .map_or(512, |e| e.max_payload().max(512));
                    if let Some(reply) = answer(&zone.lock().unwrap(), &request) {
                        let mut bytes = reply.to_vec().unwrap();
                        if bytes.len() > limit as usize {
                            // Too big for UDP: say so; the resolver retries over TCP.
                            let mut truncated = reply.truncate();
                            truncated.metadata.truncation = true;
                            bytes = truncated.to_vec().unwrap();
                        }
                        let _ = udp.send_to(&bytes, peer);
                    }
                }
            });
        }
        tcp.set_nonblocking(true).unwrap();
        {
            let zone = zone.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut stream, _)) => {
                            let zone = zone.clone();
                            std::thread::spawn(move || {
                                let _ = stream.set_nonblocking(false);
                                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                                loop {
                                    let mut len = [0u8; 2];
                                    if stream.read_exact(&mut len).is_err() {
                                        return;
                                    }
                                    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                                    if stream.read_exact(&mut buf).is_err() {
                                        return;
                                    }
                                    let Ok(request) = Message::from_vec(&buf) else {
                                        return;
                                    };
                                    let Some(reply) = answer(&zone.lock().unwrap(), &request)
                                    else {
                                        // A timeout: hold the connection silent.
                                        std::thread::sleep(Duration::from_secs(5));
                                        return;
                                    };
                                    let bytes = reply.to_vec().unwrap();
                                    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                                    framed.extend_from_slice(&bytes);
                                    if stream.write_all(&framed).is_err() {
                                        return;
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        }
        DnsServer { addr, zone, stop }
    }

    /// Replaces the zone (the next query sees the new data).
    pub fn set_zone(&self, zone: Zone) {
        *self.zone.lock().unwrap() = zone;
    }

    /// `[dns]` for a mailwit configuration that asks this server.
    pub fn config_toml(&self) -> String {
        format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\nattempts = 1\n",
            self.addr
        )
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The reply to one query, or None for a timeout.
fn answer(zone: &Zone, request: &Message) -> Option<Message> {
    let mut reply = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        reply.set_edns(edns);
    }
    let Some(query) = request.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return Some(reply);
    };
    reply.add_query(query.clone());
    // The labels' own octets: SPF asks for names such as `foo:bar/baz.example.com`, which
    // to_ascii() would escape.
    let qname = key(&query
        .name()
        .iter()
        .map(|label| String::from_utf8_lossy(label).into_owned())
        .collect::<Vec<_>>()
        .join("."));
    let Some(records) = zone.names.get(&qname) else {
        if qname.starts_with("error.") {
            return None;
        }
        reply.metadata.response_code = ResponseCode::NXDomain;
        return Some(reply);
    };
    let qtype = query.query_type();
    let mut answers = rdata_of(records, qtype);
    if answers.is_empty() && qtype != RecordType::CNAME {
        // A CNAME: answer it and its target's records of the type (one level).
        if let Some(Rr::Cname(target)) = records.iter().find(|r| matches!(r, Rr::Cname(_))) {
            reply.add_answer(Record::from_rdata(
                query.name().clone(),
                60,
                RData::CNAME(CNAME(name(target))),
            ));
            if let Some(target_records) = zone.names.get(&key(target)) {
                for data in rdata_of(target_records, qtype) {
                    reply.add_answer(Record::from_rdata(name(target), 60, data));
                }
            }
            return Some(reply);
        }
    }
    if answers.is_empty() && records.iter().any(|r| matches!(r, Rr::Timeout)) {
        return None;
    }
    for data in answers.drain(..) {
        reply.add_answer(Record::from_rdata(query.name().clone(), 60, data));
    }
    Some(reply)
}

fn rdata_of(records: &[Rr], qtype: RecordType) -> Vec<RData> {
    records
        .iter()
        .filter_map(|rr| match (rr, qtype) {
            (Rr::A(ip), RecordType::A) => Some(RData::A(A(*ip))),
            (Rr::Aaaa(ip), RecordType::AAAA) => Some(RData::AAAA(AAAA(*ip))),
            (Rr::Mx(pref, host), RecordType::MX) => Some(RData::MX(MX::new(*pref, name(host)))),
            (Rr::Txt(strings), RecordType::TXT) => Some(RData::TXT(TXT::from_bytes(
                strings.iter().map(Vec::as_slice).collect(),
            ))),
            (Rr::Ptr(host), RecordType::PTR) => Some(RData::PTR(PTR(name(host)))),
            (Rr::Cname(host), RecordType::CNAME) => Some(RData::CNAME(CNAME(name(host)))),
            _ => None,
        })
        .collect()
}

fn name(host: &str) -> Name {
    if host.is_empty() || host == "." {
        return Name::root();
    }
    let host = host.trim_end_matches('.');
    let mut name = Name::from_str_relaxed(host)
        .or_else(|_| Name::from_labels(host.split('.').map(str::as_bytes)))
        .unwrap_or_else(|_| Name::root());
    name.set_fqdn(true);
    name
}
