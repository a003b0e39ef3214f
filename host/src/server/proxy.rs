//! PROXY protocol v1 (text) and v2 (binary), as HAProxy's `send-proxy` / `send-proxy-v2` and
//! cloud load balancers send it: the first bytes of a connection name the real client, so limits,
//! hooks, the Received header and logs see the client rather than the balancer.
//!
//! The header is read with exact reads (never past its end), so not one byte of SMTP is taken
//! from the session; the parsing is pure and tested on its own. A listener accepts the header
//! only from its `proxy_trusted` networks; anything else (an untrusted source, a malformed or
//! missing header) closes the connection without a reply, as HAProxy itself does.
//!
//! The `ppp` crate was declined: the exact-read framing has to be ours anyway, and the two
//! formats are ~100 lines that the tests below and the HAProxy tests check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature (12 bytes).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included (spec section 2.1).
const V1_MAX: usize = 107;
/// Longest v2 address block (plus TLVs) we accept.
const V2_MAX_PAYLOAD: usize = 4096;

/// What a PROXY header says. `None`: the balancer speaks for itself (v2 LOCAL, v1 UNKNOWN,
/// e.g. health checks): the connection's own addresses stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("PROXY header malformed: {0}")]
    Malformed(&'static str),
    #[error("PROXY header not received: {0}")]
    Io(String),
}

/// Reads one PROXY header (v1 or v2) from the start of `stream`, not one byte further.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, ProxyError> {
    let io = |e: std::io::Error| ProxyError::Io(e.to_string());
    // Both versions are at least 15 bytes long, so 8 can always be read without waiting for
    // bytes the balancer will not send before our greeting.
    let mut start = [0u8; 16];
    stream.read_exact(&mut start[..8]).await.map_err(io)?;
    if start[..8] == V2_SIGNATURE[..8] {
        stream.read_exact(&mut start[8..]).await.map_err(io)?;
        let length = v2_length(&start)?;
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload).await.map_err(io)?;
        return parse_v2(&start, &payload);
    }
    if !start.starts_with(b"PROXY ") {
        return Err(ProxyError::Malformed("no PROXY signature"));
    }
    let mut line = start[..8].to_vec();
    // Byte by byte up to CRLF: at most ~100 small reads, once per proxied connection.
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyError::Malformed("v1 line longer than 107 bytes"));
        }
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.map_err(io)?;
        line.push(byte[0]);
    }
    parse_v1(&line)
}

/// Parses a complete v1 line (`PROXY TCP4 src dst sport dport\r\n`).
pub fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed("v1 not ASCII"))?;
    let text = text
        .strip_suffix("\r\n")
        .ok_or(ProxyError::Malformed("v1 line without CRLF"))?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(ProxyHeader {
            source: None,
            destination: None,
        }),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, ProxyError> {
                let ip: IpAddr = s
                    .parse()
                    .map_err(|_| ProxyError::Malformed("v1 bad address"))?;
                match (*family, ip) {
                    ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(ip),
                    _ => Err(ProxyError::Malformed("v1 address of the wrong family")),
                }
            };
            let port = |s: &str| -> Result<u16, ProxyError> {
                // No sign, no leading zeros (the spec's own rule).
                if s.is_empty()
                    || (s.len() > 1 && s.starts_with('0'))
                    || !s.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(ProxyError::Malformed("v1 bad port"));
                }
                s.parse().map_err(|_| ProxyError::Malformed("v1 bad port"))
            };
            Ok(ProxyHeader {
                source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
                destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
            })
        }
        _ => Err(ProxyError::Malformed("v1 fields")),
    }
}

/// The payload length a v2 fixed header announces (checked against our cap).
fn v2_length(start: &[u8; 16]) -> Result<usize, ProxyError> {
    if start[..12] != V2_SIGNATURE[..] {
        return Err(ProxyError::Malformed("v2 signature"));
    }
    if start[12] >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version"));
    }
    let length = u16::from_be_bytes([start[14], start[15]]) as usize;
    if length > V2_MAX_PAYLOAD {
        return Err(ProxyError::Malformed("v2 payload too long"));
    }
    Ok(length)
}

/// Parses a v2 header: the 16-byte fixed part and its payload.
pub fn parse_v2(start: &[u8; 16], payload: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let length = v2_length(start)?;
    if payload.len() != length {
        return Err(ProxyError::Malformed("v2 length"));
    }
    let local = ProxyHeader {
        source: None,
        destination: None,
    };
    match start[12] & 0x0f {
        0 => return Ok(local), // LOCAL: health check from the balancer itself
        1 => {}
        _ => return Err(ProxyError::Malformed("v2 command")),
    }
    let family = start[13] >> 4;
    let transport = start[13] & 0x0f;
    if family != 0 && transport != 1 {
        return Err(ProxyError::Malformed("v2 transport is not a stream"));
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match family {
        0 => Ok(local), // AF_UNSPEC
        1 => {
            let a = payload
                .get(..12)
                .ok_or(ProxyError::Malformed("v2 IPv4 block short"))?;
            let src = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let dst = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
            Ok(ProxyHeader {
                source: Some(SocketAddr::new(src.into(), port(&a[8..10]))),
                destination: Some(SocketAddr::new(dst.into(), port(&a[10..12]))),
            })
        }
        2 => {
            let a = payload
                .get(..36)
                .ok_or(ProxyError::Malformed("v2 IPv6 block short"))?;
            let src: [u8; 16] = a[..16].try_into().expect("16 bytes");
            let dst: [u8; 16] = a[16..32].try_into().expect("16 bytes");
            Ok(ProxyHeader {
                source: Some(SocketAddr::new(
                    Ipv6Addr::from(src).into(),
                    port(&a[32..34]),
                )),
                destination: Some(SocketAddr::new(
                    Ipv6Addr::from(dst).into(),
                    port(&a[34..36]),
                )),
            })
        }
        // AF_UNIX carries no IP address: the balancer's own address stands.
        3 => Ok(local),
        _ => Err(ProxyError::Malformed("v2 address family")),
    }
}

/// Whether `peer` is in one of the trusted networks.
pub fn trusted(peer: IpAddr, networks: &[ipnet::IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|n| n.contains(&peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<ProxyHeader, ProxyError>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let header = read_header(&mut cursor).await;
        let mut rest = Vec::new();
        cursor.read_to_end(&mut rest).await.unwrap();
        (header, rest)
    }

    #[tokio::test]
    async fn v1_tcp4_and_tcp6_leave_the_smtp_bytes() {
        let (h, rest) = read(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\r\nEHLO x\r\n").await;
        let h = h.unwrap();
        assert_eq!(h.source, Some("192.0.2.7:40000".parse().unwrap()));
        assert_eq!(h.destination, Some("10.0.0.1:25".parse().unwrap()));
        assert_eq!(rest, b"EHLO x\r\n");
        let (h, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n").await;
        assert_eq!(h.unwrap().source, Some("[2001:db8::1]:1".parse().unwrap()));
        let (h, rest) = read(b"PROXY UNKNOWN\r\nQUIT\r\n").await;
        assert_eq!(h.unwrap().source, None);
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[tokio::test]
    async fn v1_malformed_is_refused() {
        // (header, what is wrong with it): the reason names the rule each case breaks.
        #[rustfmt::skip]
        let cases: [(&str, &str); 7] = [
            ("PROXY TCP4 192.0.2.7 10.0.0.1 40000\r\n",       "a port is missing"),
            ("PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",       "an IPv6 source under TCP4"),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 040000 25\r\n",   "a port with a leading zero"),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 70000 25\r\n",    "a port above 65535"),
            ("PROXY TCP5 a b 1 2\r\n",                        "an unknown protocol"),
            ("EHLO mail.example.test\r\n",                    "no PROXY header at all"),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n",           "a bare LF ends the line"),
        ];
        for (header, wrong) in cases {
            assert!(
                read(header.as_bytes()).await.0.is_err(),
                "{wrong}: {header:?}"
            );
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(
            read(long.as_bytes()).await.0,
            Err(ProxyError::Malformed(_))
        ));
    }

    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test]
    async fn v2_inet_inet6_local_and_tlvs() {
        let mut block = vec![192, 0, 2, 9, 10, 0, 0, 1];
        block.extend_from_slice(&4242u16.to_be_bytes());
        block.extend_from_slice(&25u16.to_be_bytes());
        block.extend_from_slice(&[0x04, 0, 1, 0]); // a NOOP TLV, ignored
        let mut bytes = v2(1, 0x11, &block);
        bytes.extend_from_slice(b"QUIT\r\n");
        let (h, rest) = read(&bytes).await;
        assert_eq!(h.unwrap().source, Some("192.0.2.9:4242".parse().unwrap()));
        assert_eq!(rest, b"QUIT\r\n");
        let mut block6 = Ipv6Addr::LOCALHOST.octets().to_vec();
        block6.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
        block6.extend_from_slice(&[0, 7, 0, 25]);
        let (h, _) = read(&v2(1, 0x21, &block6)).await;
        assert_eq!(h.unwrap().source, Some("[::1]:7".parse().unwrap()));
        let (h, _) = read(&v2(0, 0x00, &[])).await;
        assert_eq!(h.unwrap().source, None);
    }

    #[tokio::test]
    async fn v2_malformed_is_refused() {
        assert!(read(&v2(1, 0x11, &[1, 2, 3])).await.0.is_err()); // short block
        assert!(read(&v2(2, 0x11, &[0; 12])).await.0.is_err()); // bad command
        assert!(read(&v2(1, 0x12, &[0; 12])).await.0.is_err()); // datagram
        let mut bad_version = v2(1, 0x11, &[0; 12]);
        bad_version[12] = 0x11;
        assert!(read(&bad_version).await.0.is_err());
        // Announced longer than sent: the read fails, no hang.
        let mut truncated = v2(1, 0x11, &[0; 12]);
        truncated.truncate(20);
        assert!(matches!(read(&truncated).await.0, Err(ProxyError::Io(_))));
    }

    #[test]
    fn trusted_networks_include_mapped_ipv4() {
        let nets: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(trusted("127.0.0.1".parse().unwrap(), &nets));
        assert!(trusted("::ffff:127.0.0.1".parse().unwrap(), &nets));
        assert!(!trusted("192.0.2.1".parse().unwrap(), &nets));
    }
}
