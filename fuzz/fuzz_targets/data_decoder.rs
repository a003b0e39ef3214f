//! The DATA dot-unstuffing decoder against a simple reference, and against itself fed in pieces.
//!
//! Input layout: the first byte picks how the rest is split into pieces; the rest is what the
//! client sends after `DATA\r\n`. Properties (the SMTP smuggling defence):
//! - the end of data is found exactly at the first `CRLF.CRLF` (the DATA line's CRLF counts as the
//!   first CRLF) and nowhere else; bytes after it are not consumed;
//! - without a defect, the decoded message is the reference unstuffing;
//! - a bare CR or LF before the end is reported as a defect;
//! - splitting the input differently changes nothing.
#![no_main]
use mailwit_fuzz::smtp::data::{DataDecoder, Defect};

const MAX_LINE: usize = 80;
const MAX_SIZE: usize = 4096;

/// (consumed, ended, output, defect)
fn decode(input: &[u8], piece: usize) -> (usize, bool, Vec<u8>, Option<Defect>) {
    let mut decoder = DataDecoder::new(MAX_LINE, MAX_SIZE);
    let mut out = Vec::new();
    let mut consumed = 0;
    for chunk in input.chunks(piece.max(1)) {
        let (n, end) = decoder.feed(chunk, &mut out);
        consumed += n;
        if end {
            return (consumed, true, out, decoder.defect());
        }
        assert_eq!(n, chunk.len(), "bytes left unconsumed before the end of data");
    }
    (consumed, false, out, decoder.defect())
}

/// Where the data ends: just after the first ".\r\n" that starts a line, where a line starts only
/// after CRLF (or at the very beginning, after the DATA command's CRLF).
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

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
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
            let bare = has_bare_line_ending(body);
            if bare {
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
    assert!(out.len() <= MAX_SIZE);
});
