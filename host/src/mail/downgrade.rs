//! 8BITMIME downgrade (RFC 6152 §3): an 8-bit message for a peer without 8BITMIME is rewritten
//! to 7 bits, each 8-bit MIME leaf body re-encoded as quoted-printable (RFC 2045 §6.7), instead
//! of being bounced with 5.6.3.
//!
//! Only bodies are rewritten. A header with 8-bit bytes (raw UTF-8 subjects, RFC 6532) has no
//! faithful 7-bit form without re-encoding words (RFC 2047) and is left to the 5.6.3 bounce, as
//! are 8-bit `message/*` parts and malformed multiparts. The rewrite changes the bytes, so it must
//! happen before any DKIM signature is made over them: the server's own signing downgrades first
//! (so what it signs never needs a downgrade on the way), while signatures made earlier by the
//! sender break, which is why peers with 8BITMIME always get the message untouched.

/// The 7-bit form of `message`, or `None` when it cannot be made (see the module docs).
pub fn downgrade_8bit(message: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 8);
    entity(message, true, &mut out)?;
    Some(out)
}

/// One MIME entity (header + body); `top` adds MIME-Version where a header gains MIME fields.
fn entity(bytes: &[u8], top: bool, out: &mut Vec<u8>) -> Option<()> {
    let (header, body) = split(bytes);
    if !header.is_ascii() {
        return None;
    }
    if body.is_ascii() {
        out.extend_from_slice(bytes);
        return Some(());
    }
    let fields = fields(header);
    let content_type = field(&fields, "content-type").unwrap_or_default();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media.starts_with("multipart/") {
        let boundary = parameter(&content_type, "boundary")?;
        out.extend_from_slice(header);
        out.extend_from_slice(b"\r\n");
        return multipart(body, &boundary, out);
    }
    if media.starts_with("message/") {
        return None;
    }
    // A leaf: drop its Content-Transfer-Encoding (8bit, 7bit or absent) and say quoted-printable.
    let encoding = field(&fields, "content-transfer-encoding")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if encoding == "binary" {
        return None;
    }
    for (name, raw) in &fields {
        if !name.eq_ignore_ascii_case("content-transfer-encoding") {
            out.extend_from_slice(raw);
        }
    }
    if top && field(&fields, "mime-version").is_none() {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    quoted_printable(body, out);
    Some(())
}

/// The parts between `--boundary` lines, each downgraded; preamble and epilogue kept (they
/// must be 7-bit: nobody reads them, but they count as message bytes).
fn multipart(body: &[u8], boundary: &str, out: &mut Vec<u8>) -> Option<()> {
    let delimiter = format!("--{boundary}");
    let lines = line_starts(body);
    let mut marks = Vec::new(); // (line start, line end incl. CRLF, closing)
    for (start, end) in lines {
        let line = trim_crlf(&body[start..end]);
        let Some(rest) = line.strip_prefix(delimiter.as_bytes()) else {
            continue;
        };
        let rest = trim_trailing_space(rest);
        if rest.is_empty() {
            marks.push((start, end, false));
        } else if rest == b"--" {
            marks.push((start, end, true));
            break;
        }
    }
    let (first, _, _) = *marks.first()?;
    if !marks.last()?.2 || !body[..first].is_ascii() {
        return None;
    }
    out.extend_from_slice(&body[..first]);
    for pair in marks.windows(2) {
        let (start, end, _) = pair[0];
        let (next, _, _) = pair[1];
        out.extend_from_slice(&body[start..end]);
        // The CRLF before the next delimiter belongs to the delimiter (RFC 2046 §5.1.1).
        let part = &body[end..next];
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        entity(part, false, out)?;
        out.extend_from_slice(b"\r\n");
    }
    let (start, _, _) = *marks.last()?;
    let epilogue = &body[start..];
    if !epilogue.is_ascii() {
        return None;
    }
    out.extend_from_slice(epilogue);
    Some(())
}

/// Header (with its final CRLF) and body (after the empty line).
fn split(bytes: &[u8]) -> (&[u8], &[u8]) {
    if bytes.starts_with(b"\r\n") {
        return (&[], &bytes[2..]);
    }
    match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&bytes[..i + 2], &bytes[i + 4..]),
        None => (bytes, &[]),
    }
}

/// Header fields as (name, raw bytes including folded lines and CRLF).
fn fields(header: &[u8]) -> Vec<(String, &[u8])> {
    let mut out: Vec<(String, &[u8])> = Vec::new();
    let mut start = None::<usize>;
    for (line_start, _) in line_starts(header) {
        let folded = matches!(header[line_start], b' ' | b'\t');
        if folded {
            continue;
        }
        if let Some(s) = start {
            out.push(named(&header[s..line_start]));
        }
        start = Some(line_start);
    }
    if let Some(s) = start {
        out.push(named(&header[s..]));
    }
    out
}

fn named(raw: &[u8]) -> (String, &[u8]) {
    let name = raw
        .iter()
        .position(|&b| b == b':')
        .map(|i| String::from_utf8_lossy(&raw[..i]).trim().to_string())
        .unwrap_or_default();
    (name, raw)
}

/// The unfolded value of the first field called `name`.
fn field(fields: &[(String, &[u8])], name: &str) -> Option<String> {
    let (_, raw) = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let value = String::from_utf8_lossy(&raw[colon + 1..]);
    Some(
        value
            .replace("\r\n", "")
            .replace('\t', " ")
            .trim()
            .to_string(),
    )
}

/// A parameter of a structured field value (`boundary="abc"` or `boundary=abc`).
fn parameter(value: &str, name: &str) -> Option<String> {
    for param in value.split(';').skip(1) {
        let (key, v) = param.split_once('=')?;
        if key.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            return (!v.is_empty()).then(|| v.to_string());
        }
    }
    None
}

/// (start, end) of each line, `end` past its CRLF (or the end of the input).
fn line_starts(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i + 1);
        out.push((start, end));
        start = end;
    }
    out
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_trailing_space(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 2045 §6.7 quoted-printable: CRLF stays a hard line break, lines are cut at 76
/// characters with soft breaks, and `=`, 8-bit bytes, controls and trailing white space are
/// escaped.
fn quoted_printable(body: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (start, end) in line_starts(body) {
        let raw = &body[start..end];
        let line = trim_crlf(raw);
        let hard_break = raw.len() != line.len();
        let mut width = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let plain =
                ((b'!'..=b'~').contains(&b) && b != b'=') || (matches!(b, b' ' | b'\t') && !last);
            let len = if plain { 1 } else { 3 };
            if width + len > 75 {
                out.extend_from_slice(b"=\r\n");
                width = 0;
            }
            if plain {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            width += len;
        }
        if hard_break {
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn plain_8bit_message_becomes_quoted_printable() {
        let msg = "Subject: caf\u{e9}s\r\n".replace('\u{e9}', "e")
            + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + "Caf\u{e9} = bon\r\n.dot\r\ntrailing \r\n";
        let out = downgrade_8bit(msg.as_bytes()).unwrap();
        assert!(out.is_ascii());
        assert_eq!(
            text(&out),
            "Subject: cafes\r\nContent-Type: text/plain; charset=utf-8\r\n\
             MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             Caf=C3=A9 =3D bon\r\n.dot\r\ntrailing=20\r\n"
        );
    }

    #[test]
    fn long_lines_get_soft_breaks() {
        let body = "\u{e9}".repeat(40) + "\r\n";
        let msg = format!("MIME-Version: 1.0\r\n\r\n{body}");
        let out = text(&downgrade_8bit(msg.as_bytes()).unwrap());
        for line in out.split("\r\n") {
            assert!(line.len() <= 76, "{line}");
        }
        assert!(out.contains("=\r\n"));
        assert_eq!(out.matches("MIME-Version").count(), 1);
    }

    #[test]
    fn multipart_parts_are_downgraded_one_by_one() {
        let msg = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"b1\"\r\n\r\n\
                   preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nascii part\r\n\
                   --b1\r\nContent-Type: text/plain; charset=latin1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
                   \u{fc}ber\r\n--b1--\r\nepilogue\r\n";
        let out = text(&downgrade_8bit(msg.as_bytes()).unwrap());
        assert_eq!(
            out,
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"b1\"\r\n\r\n\
             preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nascii part\r\n\
             --b1\r\nContent-Type: text/plain; charset=latin1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=BCber\r\n--b1--\r\nepilogue\r\n"
        );
    }

    #[test]
    fn what_cannot_be_downgraded() {
        assert!(downgrade_8bit("Subject: \u{e9}\r\n\r\nx\r\n".as_bytes()).is_none());
        let no_end = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\u{e9}\r\n";
        assert!(downgrade_8bit(no_end.as_bytes()).is_none());
        let inner = "Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\n\u{e9}\r\n";
        assert!(downgrade_8bit(inner.as_bytes()).is_none());
        let binary = "Content-Transfer-Encoding: binary\r\n\r\n\u{e9}\r\n";
        assert!(downgrade_8bit(binary.as_bytes()).is_none());
        // 7-bit input comes back unchanged.
        let ascii = b"Subject: x\r\n\r\nhello\r\n";
        assert_eq!(downgrade_8bit(ascii).unwrap(), ascii);
    }
}
