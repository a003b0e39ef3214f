//! A fuzz-friendly entry: drive a session over arbitrary input with automatic answers.
//!
//! Used by the unit tests below with a fixed-seed generator, and usable from `cargo fuzz`.

use super::{Answer, Event, Session, SessionConfig};
use crate::policy::{Reply, TlsInfo};

/// Feeds `input` to a session (in pieces whose sizes come from the input itself) and answers every
/// event. Must never panic, whatever the input.
pub fn fuzz_session(input: &[u8]) {
    let config = SessionConfig {
        hostname: "fuzz.example".into(),
        max_message_size: 4096,
        max_recipients: 5,
        max_command_line: 64,
        max_text_line: 80,
        max_bad_commands: 50,
        max_auth_failures: 5,
        starttls: true,
        auth: true,
        auth_plaintext: true,
        auth_required: false,
        etrn: true,
    };
    let mut session = Session::new(config, None);
    session.greet();
    let mut rest = input;
    let mut turn = 0usize;
    while !rest.is_empty() && !session.is_closed() {
        let size = 1 + (rest[0] as usize % 97);
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        session.receive(piece);
        while let Some(event) = session.poll() {
            turn += 1;
            let answer = match event {
                Event::Close => break,
                Event::StartTls => {
                    session.tls_started(TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "TLS13_AES_128_GCM_SHA256".into(),
                    });
                    continue;
                }
                Event::Auth(c) if c.secret == "ok" => Answer::Authenticated(c.authcid),
                Event::Auth(_) => Answer::Refuse(Reply::new(535, "5.7.8", "no")),
                Event::Rcpt(_) if turn.is_multiple_of(7) => Answer::AcceptAs("x@y.example".into()),
                Event::Rcpt(_) if turn.is_multiple_of(5) => {
                    Answer::Refuse(Reply::new(550, "5.1.1", "no"))
                }
                Event::Message { data, .. } => {
                    assert!(data.len() <= 4096, "message over the size limit");
                    Answer::Queued(format!("q{turn}"))
                }
                _ if turn.is_multiple_of(11) => Answer::Refuse(Reply::new(451, "4.3.0", "later")),
                _ if turn.is_multiple_of(97) => Answer::Disconnect(Reply::new(421, "4.7.0", "bye")),
                _ => Answer::Accept,
            };
            session.answer(answer);
        }
        let _ = session.take_output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a fixed-seed generator, so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const TOKENS: &[&[u8]] = &[
        b"EHLO a.example\r\n",
        b"HELO a\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
        b"RCPT TO:<c@d.example> NOTIFY=SUCCESS\r\n",
        b"RCPT TO:<\"q\"@[1.2.3.4]>\r\n",
        b"DATA\r\n",
        b"BDAT 10\r\n",
        b"BDAT 3 LAST\r\n",
        b"BDAT 0 LAST\r\n",
        b"\r\n.\r\n",
        b".\r\n",
        b"\n.\n",
        b"\r.\r",
        b"..x\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"STARTTLS\r\n",
        b"AUTH PLAIN AGEAb2s=\r\n",
        b"AUTH LOGIN\r\n",
        b"YQ==\r\n",
        b"*\r\n",
        b"ETRN x.example\r\n",
        b"VRFY x\r\n",
        b"QUIT\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"\0",
    ];

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let mut input = Vec::new();
            for _ in 0..rng.below(40) {
                if rng.below(3) == 0 {
                    for _ in 0..rng.below(200) {
                        input.push(rng.next() as u8);
                    }
                } else {
                    input.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
                }
            }
            fuzz_session(&input);
        }
    }

    #[test]
    fn pathological_inputs_never_panic() {
        fuzz_session(&[]);
        fuzz_session(&vec![b'A'; 100_000]);
        fuzz_session(&vec![b'\n'; 10_000]);
        let mut long = b"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<c@d.e>\r\nDATA\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 50_000));
        long.extend_from_slice(b"\r\n.\r\n");
        fuzz_session(&long);
    }
}
