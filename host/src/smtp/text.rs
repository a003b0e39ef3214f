//! Message text as it arrives: the DATA dot-unstuffing decoder (RFC 5321 §4.5.2) and the text
//! checks BDAT content gets. Pure byte scanning, no session state; the stages (`data`, `bdat`)
//! and the fuzz targets drive it.
//!
//! The end of data is `CRLF "." CRLF` and nothing else (the CRLF that ended the DATA command counts
//! as the first). A bare CR or bare LF never ends the data or starts a line: the message is read to
//! its real end and refused with 554 5.6.0, so "\n.\n", "\r.\r", "\n.\r\n" or "\r\n.\n" can never
//! smuggle a second message. A text line over the limit, or a message over the size limit, is also
//! read to its end without being buffered and then refused; the session goes on.
//!
//! Runs of ordinary bytes are found with `memchr2` and copied in bulk.

use memchr::memchr2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After CRLF (or the DATA command): a line starts here.
    LineStart,
    /// A '.' at the start of a line (not copied: it is either stuffing or the terminator).
    Dot,
    /// ".\r" at the start of a line: LF here ends the data.
    DotCr,
    /// Inside a line.
    Middle,
    /// A CR inside a line (copied): LF here ends the line.
    Cr,
}

/// Why a completed message is refused, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    TooBig,
    BareLineEnding,
    LongLine,
}

#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    /// Content octets of the current line (no CRLF, no stuffing dot).
    line_len: usize,
    max_line_content: usize,
    max_size: usize,
    /// Octets decoded so far (counted even once discarding).
    size: usize,
    received_any: bool,
    too_big: bool,
    bare_line_ending: bool,
    long_line: bool,
}

impl DataDecoder {
    /// `max_text_line` includes the CRLF.
    pub fn new(max_text_line: usize, max_size: usize) -> Self {
        DataDecoder {
            state: State::LineStart,
            line_len: 0,
            max_line_content: max_text_line.saturating_sub(2),
            max_size,
            size: 0,
            received_any: false,
            too_big: false,
            bare_line_ending: false,
            long_line: false,
        }
    }

    /// No byte of data arrived yet (for the DATA initiation timer).
    pub fn started(&self) -> bool {
        self.received_any
    }

    pub fn defect(&self) -> Option<Defect> {
        if self.too_big {
            Some(Defect::TooBig)
        } else if self.bare_line_ending {
            Some(Defect::BareLineEnding)
        } else if self.long_line {
            Some(Defect::LongLine)
        } else {
            None
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.size += bytes.len();
        if self.too_big {
            return;
        }
        if self.size > self.max_size {
            self.too_big = true;
            *out = Vec::new();
            return;
        }
        out.extend_from_slice(bytes);
    }

    fn count_line(&mut self, n: usize) {
        self.line_len += n;
        if self.line_len > self.max_line_content {
            self.long_line = true;
        }
    }

    /// Decodes `input` into `out`. Returns how many bytes were consumed and whether the end of data
    /// was reached (bytes after it are not consumed: they are the next commands).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        if !input.is_empty() {
            self.received_any = true;
        }
        let mut i = 0;
        while i < input.len() {
            // One transition: how many bytes it consumes (0: the byte is read again in the next
            // state) and the next state.
            let (used, next) = match (self.state, input[i]) {
                (State::Middle, b'\r') => {
                    self.emit(out, b"\r");
                    (1, State::Cr)
                }
                (State::Middle, b'\n') => {
                    // Bare LF: copied, refused at the end.
                    self.emit(out, b"\n");
                    self.bare_line_ending = true;
                    self.line_len = 0;
                    (1, State::Middle)
                }
                (State::Middle, _) => {
                    // A run of ordinary bytes, copied in bulk.
                    let run = memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                    self.count_line(run);
                    self.emit(out, &input[i..i + run]);
                    (run, State::Middle)
                }
                (State::Cr, b'\n') => {
                    self.emit(out, b"\n");
                    self.line_len = 0;
                    (1, State::LineStart)
                }
                (State::Cr, _) => {
                    // Bare CR: the byte is reprocessed as ordinary data.
                    self.bare_line_ending = true;
                    self.count_line(1);
                    (0, State::Middle)
                }
                (State::LineStart, b'.') => (1, State::Dot),
                (State::LineStart, _) => (0, State::Middle),
                (State::Dot, b'\r') => (1, State::DotCr),
                // Transparency: the leading dot is dropped, the rest of the line is data.
                (State::Dot, _) => (0, State::Middle),
                (State::DotCr, b'\n') => {
                    self.state = State::LineStart;
                    return (i + 1, true);
                }
                (State::DotCr, _) => {
                    // ".\r" then something else: a bare CR after an unstuffed dot.
                    self.emit(out, b"\r");
                    self.bare_line_ending = true;
                    self.count_line(1);
                    (0, State::Middle)
                }
            };
            i += used;
            self.state = next;
        }
        (i, false)
    }
}

/// Checks BDAT content (no transparency, explicit lengths) for the same text rules as DATA: CRLF
/// line endings only, lines within the limit. BINARYMIME is not offered, so BDAT carries text.
#[derive(Debug, Clone)]
pub struct TextCheck {
    prev_cr: bool,
    line_len: usize,
    max_line_content: usize,
    bare_line_ending: bool,
    long_line: bool,
}

impl TextCheck {
    pub fn new(max_text_line: usize) -> Self {
        TextCheck {
            prev_cr: false,
            line_len: 0,
            max_line_content: max_text_line.saturating_sub(2),
            bare_line_ending: false,
            long_line: false,
        }
    }

    pub fn scan(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.prev_cr {
                self.prev_cr = false;
                if chunk[0] == b'\n' {
                    self.line_len = 0;
                    chunk = &chunk[1..];
                    continue;
                }
                self.bare_line_ending = true;
                self.line_len += 1;
            }
            match memchr2(b'\r', b'\n', chunk) {
                None => {
                    self.line_len += chunk.len();
                    chunk = &[];
                }
                Some(p) => {
                    self.line_len += p;
                    if chunk[p] == b'\r' {
                        self.prev_cr = true;
                    } else {
                        self.bare_line_ending = true;
                        self.line_len = 0;
                    }
                    chunk = &chunk[p + 1..];
                }
            }
            if self.line_len > self.max_line_content {
                self.long_line = true;
            }
        }
    }

    /// At the last chunk: a final CR without LF is bare too.
    pub fn finish(&mut self) -> Option<Defect> {
        if self.prev_cr {
            self.bare_line_ending = true;
        }
        if self.bare_line_ending {
            Some(Defect::BareLineEnding)
        } else if self.long_line {
            Some(Defect::LongLine)
        } else {
            None
        }
    }
}

/// Byte sequences that look like the end of data to a lax reader but are not: the smuggling
/// attempts the decoder (and, in `super::tests`, the whole session) is tested against.
#[cfg(test)]
pub(super) const END_OF_DATA_LOOKALIKES: &[&str] = &[
    "\n.\n",
    "\r.\r",
    "\n.\r\n",
    "\r\n.\n",
    "\r.\r\n",
    "\r\n.\r",
    "\r\n\0.\r\n",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns (message, consumed, done, defect).
    fn decode(input: &[u8], step: usize) -> (Vec<u8>, usize, bool, Option<Defect>) {
        let mut d = DataDecoder::new(1000, 1 << 20);
        let mut out = Vec::new();
        let mut consumed = 0;
        while consumed < input.len() {
            let end = (consumed + step).min(input.len());
            let (n, done) = d.feed(&input[consumed..end], &mut out);
            consumed += n;
            if done {
                return (out, consumed, true, d.defect());
            }
        }
        (out, consumed, false, d.defect())
    }

    #[test]
    fn unstuffs_and_stops_at_crlf_dot_crlf() {
        let input = b"Subject: x\r\n\r\n..leading dot\r\n.x\r\nend\r\n.\r\nQUIT\r\n";
        for step in [1, 2, 3, 7, 1000] {
            let (msg, consumed, done, defect) = decode(input, step);
            assert!(done);
            assert_eq!(defect, None);
            assert_eq!(msg, b"Subject: x\r\n\r\n.leading dot\r\nx\r\nend\r\n");
            assert_eq!(&input[consumed..], b"QUIT\r\n");
        }
    }

    #[test]
    fn empty_message() {
        let (msg, consumed, done, _) = decode(b".\r\n", 1);
        assert!(done);
        assert_eq!(consumed, 3);
        assert!(msg.is_empty());
    }

    #[test]
    fn smuggling_variants_never_end_the_data() {
        for sneaky in END_OF_DATA_LOOKALIKES.iter().map(|s| s.as_bytes()) {
            let mut input = b"a".to_vec();
            input.extend_from_slice(sneaky);
            input.extend_from_slice(b"MAIL FROM:<x@y.z>\r\n");
            for step in [1, 4, 1000] {
                let (_, _, done, _) = decode(&input, step);
                assert!(!done, "{sneaky:?} ended the data");
                let mut full = input.clone();
                full.extend_from_slice(b"\r\n.\r\n");
                let (_, consumed, done, defect) = decode(&full, step);
                assert!(done);
                assert_eq!(consumed, full.len());
                if sneaky.contains(&0) {
                    assert_eq!(defect, None);
                } else {
                    assert_eq!(defect, Some(Defect::BareLineEnding), "{sneaky:?}");
                }
            }
        }
    }

    #[test]
    fn long_line_and_size_are_flagged_without_buffering() {
        let mut d = DataDecoder::new(10, 1 << 20);
        let mut out = Vec::new();
        assert_eq!(d.feed(b"123456789\r\n", &mut out), (11, false));
        assert_eq!(d.defect(), Some(Defect::LongLine));

        let mut d = DataDecoder::new(1000, 100);
        let mut out = Vec::new();
        let chunk = [b'x'; 64];
        for _ in 0..1000 {
            d.feed(&chunk, &mut out);
        }
        assert!(out.capacity() <= 128, "discarded data must not be kept");
        assert_eq!(d.feed(b"\r\n.\r\n", &mut out), (5, true));
        assert_eq!(d.defect(), Some(Defect::TooBig));
    }

    #[test]
    fn text_check_across_chunks() {
        let mut c = TextCheck::new(1000);
        c.scan(b"a\r");
        c.scan(b"\nb\r\n");
        assert_eq!(c.finish(), None);
        let mut c = TextCheck::new(1000);
        c.scan(b"a\nb\r\n");
        assert_eq!(c.finish(), Some(Defect::BareLineEnding));
        let mut c = TextCheck::new(1000);
        c.scan(b"a\r");
        assert_eq!(c.finish(), Some(Defect::BareLineEnding));
        let mut c = TextCheck::new(6);
        c.scan(b"abc");
        c.scan(b"de\r\n");
        assert_eq!(c.finish(), Some(Defect::LongLine));
    }
}
