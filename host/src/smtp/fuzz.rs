//! Fuzz-friendly entries: drive a session over arbitrary input with automatic answers, and check
//! the DATA and BDAT decoders against simple reference implementations.
//!
//! Used by the unit tests below with a fixed-seed generator, and by `fuzz/` (cargo-fuzz).

use super::events::{Answer, Event, SessionConfig, TlsInfo};
use super::session::Session;
use super::text::{DataDecoder, Defect, TextCheck};
use crate::mail::Reply;

/// Feeds `input` to a session (in pieces whose sizes come from the input itself) and answers every
/// event. Must never panic, whatever the input.
pub fn fuzz_session(input: &[u8]) {
    // Piece sizes come from the input itself, so a fuzzer explores framing too.
    transcript(input, &mut |rest| 1 + (rest[0] as usize % 97));
}

/// Drives a session over `input`, cut into pieces of the sizes `piece` picks; returns all output.
fn transcript(input: &[u8], piece: &mut dyn FnMut(&[u8]) -> usize) -> Vec<u8> {
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
        cram_md5: true,
        atrn: true,
    };
    let mut session = Session::new(config, None);
    session.greet();
    let mut transcript = session.take_output();
    let mut rest = input;
    let mut turn = 0usize;
    while !rest.is_empty() && !session.is_closed() {
        let size = piece(rest).clamp(1, rest.len());
        let (now, tail) = rest.split_at(size);
        rest = tail;
        session.receive(now);
        while let Some(event) = session.poll() {
            turn += 1;
            let answer = match event {
                Event::Close | Event::Turn { .. } => break,
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
                    assert!(data.len() <= 4096 + 2, "message over the size limit");
                    Answer::Queued(format!("q{turn}"))
                }
                _ if turn.is_multiple_of(11) => Answer::Refuse(Reply::new(451, "4.3.0", "later")),
                _ if turn.is_multiple_of(97) => Answer::Disconnect(Reply::new(421, "4.7.0", "bye")),
                _ => Answer::Accept,
            };
            session.answer(answer);
        }
        transcript.extend_from_slice(&session.take_output());
    }
    transcript
}

const CHECK_MAX_LINE: usize = 80;
const CHECK_MAX_SIZE: usize = 4096;

/// The DATA decoder against a reference and against itself fed in pieces. `data[0]` picks the
/// piece size; the rest is what a client sends after `DATA\r\n`. Panics on any violation of:
/// - the end of data is found exactly at the first `CRLF.CRLF` (the DATA line's CRLF counts as
///   the first CRLF) and nowhere else, and bytes after it are not consumed (SMTP smuggling);
/// - without a defect, the message is the reference dot-unstuffing;
/// - a bare CR or LF before the end is reported as a defect;
/// - splitting the input differently changes nothing;
/// - an oversized message is not kept in memory.
pub fn check_data_decoder(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, input.len());
    let pieces = decode(input, 1 + split as usize % 13);
    assert_eq!(whole.0, pieces.0, "consumed differs with the split");
    assert_eq!(whole.1, pieces.1, "end of data differs with the split");
    assert_eq!(whole.3, pieces.3, "defect differs with the split");
    if whole.3.is_none() {
        assert_eq!(whole.2, pieces.2, "message differs with the split");
    }
    let (consumed, ended, out, defect) = whole;
    match reference_end(input) {
        Some(end) => {
            assert!(ended, "missed the end of data at {end}");
            assert_eq!(consumed, end, "end of data at the wrong place");
            // The message is everything before the terminating ".\r\n" (its CRLF included).
            let body = &input[..end - 3];
            if has_bare_line_ending(body) {
                assert!(defect.is_some(), "bare CR/LF not reported");
            }
            if defect.is_none() {
                assert_eq!(out, reference_unstuff(body), "wrong unstuffing");
            }
        }
        None => {
            assert!(!ended, "end of data where there is none (smuggling)");
            assert_eq!(consumed, input.len());
        }
    }
    if defect == Some(Defect::TooBig) {
        assert!(out.is_empty(), "an oversized message is kept in memory");
    }
    assert!(out.len() <= CHECK_MAX_SIZE);
}

/// (consumed, ended, output, defect)
fn decode(input: &[u8], piece: usize) -> (usize, bool, Vec<u8>, Option<Defect>) {
    let mut decoder = DataDecoder::new(CHECK_MAX_LINE, CHECK_MAX_SIZE);
    let mut out = Vec::new();
    let mut consumed = 0;
    for chunk in input.chunks(piece.max(1)) {
        let (n, end) = decoder.feed(chunk, &mut out);
        consumed += n;
        if end {
            return (consumed, true, out, decoder.defect());
        }
        assert_eq!(
            n,
            chunk.len(),
            "bytes left unconsumed before the end of data"
        );
    }
    (consumed, false, out, decoder.defect())
}

/// Where the data ends: just after the first ".\r\n" that starts a line, where a line starts
/// only after CRLF (or at the very beginning, after the DATA command's CRLF).
fn reference_end(input: &[u8]) -> Option<usize> {
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(input);
    framed
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|p| p + 5 - 2)
}

/// The message: lines split on CRLF, a leading dot removed.
fn reference_unstuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line_start = true;
    let mut i = 0;
    while i < body.len() {
        if line_start && body[i] == b'.' {
            i += 1;
            line_start = false;
            continue;
        }
        line_start = body[i..].starts_with(b"\r\n");
        if line_start {
            out.extend_from_slice(b"\r\n");
            i += 2;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

fn has_bare_line_ending(body: &[u8]) -> bool {
    body.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => body.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || body[i - 1] != b'\r',
        _ => false,
    })
}

/// The BDAT text check against a reference (bare CR/LF first, then long lines), and
/// split-invariant. `data[0]` picks the piece size.
pub fn check_bdat_text(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let scan = |piece: usize| {
        let mut check = TextCheck::new(CHECK_MAX_LINE);
        for chunk in input.chunks(piece.max(1)) {
            check.scan(chunk);
        }
        check.finish()
    };
    let whole = scan(input.len());
    assert_eq!(
        whole,
        scan(1 + split as usize % 7),
        "split changes the verdict"
    );
    let reference = if has_bare_line_ending(input) {
        Some(Defect::BareLineEnding)
    } else {
        let long = input
            .split(|&b| b == b'\n')
            .any(|line| line.strip_suffix(b"\r").unwrap_or(line).len() > CHECK_MAX_LINE - 2);
        long.then_some(Defect::LongLine)
    };
    assert_eq!(whole, reference);
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
        random_inputs(0x9E37_79B9_7F4A_7C15, 3000);
    }

    /// A longer run: `MAILWIT_FUZZ_ITERATIONS=1000000 cargo test … -- --ignored fuzz_long`.
    #[test]
    #[ignore]
    fn fuzz_long() {
        let iterations = std::env::var("MAILWIT_FUZZ_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        random_inputs(0x0123_4567_89AB_CDEF, iterations);
    }

    fn random_input(rng: &mut Rng, tokens: &[&[u8]]) -> Vec<u8> {
        let mut input = Vec::new();
        for _ in 0..rng.below(40) {
            if rng.below(3) == 0 {
                for _ in 0..rng.below(200) {
                    input.push(rng.next() as u8);
                }
            } else {
                input.extend_from_slice(tokens[rng.below(tokens.len())]);
            }
        }
        input
    }

    fn random_inputs(seed: u64, iterations: usize) {
        let mut rng = Rng(seed);
        for _ in 0..iterations {
            fuzz_session(&random_input(&mut rng, TOKENS));
        }
    }

    /// The transcript does not depend on how the input is cut into reads. (STARTTLS is left out:
    /// it discards what was read with it, by design.)
    #[test]
    fn framing_never_changes_the_transcript() {
        let tokens: Vec<&[u8]> = TOKENS
            .iter()
            .copied()
            .filter(|t| !t.starts_with(b"STARTTLS"))
            .collect();
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..500 {
            let input = random_input(&mut rng, &tokens);
            if input
                .windows(8)
                .any(|w| w.eq_ignore_ascii_case(b"STARTTLS"))
            {
                continue;
            }
            let whole = transcript(&input, &mut |rest| rest.len());
            let bytewise = transcript(&input, &mut |_| 1);
            assert_eq!(
                whole,
                bytewise,
                "input {:?}",
                String::from_utf8_lossy(&input)
            );
            let mut cuts = Rng(input.len() as u64 + 1);
            let random = transcript(&input, &mut |_| 1 + cuts.below(300));
            assert_eq!(whole, random, "input {:?}", String::from_utf8_lossy(&input));
        }
    }

    /// Bytes that matter to the decoders: line endings, dots, NUL, ordinary text.
    const DATA_TOKENS: &[&[u8]] = &[
        b"\r\n",
        b"\r",
        b"\n",
        b".",
        b"..",
        b"\0",
        b"x",
        b"text line",
        b"\r\n.\r\n",
        b"\n.\n",
        b"\r.\r",
        b"\r\n.\n",
        b"\n.\r\n",
        b"MAIL FROM:<a@b>\r\n",
    ];

    fn random_data(rng: &mut Rng) -> Vec<u8> {
        let mut input = vec![rng.next() as u8];
        for _ in 0..rng.below(60) {
            if rng.below(8) == 0 {
                input.extend(std::iter::repeat_n(b'y', rng.below(200)));
            } else {
                input.extend_from_slice(DATA_TOKENS[rng.below(DATA_TOKENS.len())]);
            }
        }
        input
    }

    #[test]
    fn data_decoder_matches_the_reference_and_finds_no_smuggled_end() {
        let mut rng = Rng(0x0DA7_A0DA_7A0D_A7A1);
        for _ in 0..20_000 {
            check_data_decoder(&random_data(&mut rng));
        }
    }

    #[test]
    fn bdat_text_check_matches_the_reference() {
        let mut rng = Rng(0xB0A7_B0A7_B0A7_B0A7);
        for _ in 0..20_000 {
            check_bdat_text(&random_data(&mut rng));
        }
    }

    /// The seed corpus of fuzz/ (smuggling variants) replayed in the ordinary test run.
    #[test]
    fn fuzz_seed_corpus_passes() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let replay = |target: &str, check: fn(&[u8])| {
            let dir = corpus.join(target);
            let mut count = 0;
            for entry in std::fs::read_dir(&dir).unwrap() {
                check(&std::fs::read(entry.unwrap().path()).unwrap());
                count += 1;
            }
            assert!(count > 0, "no seeds in {}", dir.display());
        };
        replay("data_decoder", check_data_decoder);
        replay("bdat_scanner", check_bdat_text);
        replay("session", fuzz_session);
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
