//! A tiny authoritative DNS server for the tests (MX and A records on a loopback UDP port).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

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
