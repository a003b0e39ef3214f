//! A test plugin that refuses every MAIL with what WASI let it reach, as
//! `file=... dir=... env=N connect=... now=SECS random=HEX`: reading /etc/passwd, listing ".",
//! the environment's size, a TCP connect to the config's `connect` address, the wall clock and
//! std's hash seed (drawn from `wasi:random`). It imports only `config`, so the host's WASI
//! grants ("clock", "random") are the only thing that changes what it sees.

wit_bindgen::generate!({
    inline: "
        package mailwit-test:wasi-probe;
        world probe {
            import mailwit:plugin/config@0.2.0;
            export mailwit:plugin/mail@0.2.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use exports::mailwit::plugin::mail;
use mailwit::plugin::config::{self, Value};
use mailwit::plugin::types::{Reply, ReversePath, SessionInfo, Verdict};

fn connect_to() -> Option<String> {
    match config::get("connect") {
        Some(Value::Text(s)) => Some(s),
        _ => None,
    }
}

/// What the plugin reaches through WASI: files, environment, sockets, clocks, randomness.
fn wasi_probe() -> String {
    let file = match std::fs::read("/etc/passwd") {
        Ok(bytes) => format!("read:{}", bytes.len()),
        Err(e) => format!("denied:{:?}", e.kind()),
    };
    let dir = match std::fs::read_dir(".") {
        Ok(entries) => format!("listed:{}", entries.count()),
        Err(e) => format!("denied:{:?}", e.kind()),
    };
    let env = std::env::vars().count();
    let connect = match connect_to() {
        Some(addr) => match std::net::TcpStream::connect(addr.as_str()) {
            Ok(_) => "connected".to_string(),
            Err(e) => format!("denied:{:?}", e.kind()),
        },
        None => "untried".into(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut bytes = [0u8; 8];
    let random = match getrandom_bytes(&mut bytes) {
        true => bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        false => "none".into(),
    };
    format!("file={file} dir={dir} env={env} connect={connect} now={now} random={random}")
}

/// 8 bytes of `wasi:random/random` through std's hash seed source: RandomState keys differ
/// per call only when the host's generator is real.
fn getrandom_bytes(out: &mut [u8; 8]) -> bool {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    out.copy_from_slice(&h.finish().to_le_bytes());
    true
}

struct Probe;

impl mail::Guest for Probe {
    fn on_mail(_session: SessionInfo, _reverse_path: ReversePath) -> Verdict {
        Verdict::Reject(Reply {
            code: 550,
            enhanced: "5.7.1".into(),
            text: wasi_probe(),
        })
    }
}

export!(Probe);
