//! The header section of a message (RFC 5322 §2.2): where it ends, its fields, unfolding and
//! folding. The one definition of each, shared by the plugin accessors, the data hook's
//! modifications, DSNs and the SMTP client.

/// Where the header section ends, as (start, end) of the blank line that ends it: an empty line is
/// "\r\n" or "\n" whatever the previous line ended with, so CRLF CRLF, LF LF and the mixed
/// "\n\r\n" and "\r\n\n" all end it. Without a blank line both are `bytes.len()` (no body).
pub fn boundary(bytes: &[u8]) -> (usize, usize) {
    let mut line_start = 0;
    while line_start < bytes.len() {
        let rest = &bytes[line_start..];
        if rest.starts_with(b"\n") {
            return (line_start, line_start + 1);
        }
        if rest.starts_with(b"\r\n") {
            return (line_start, line_start + 2);
        }
        match memchr::memchr(b'\n', rest) {
            Some(i) => line_start += i + 1,
            None => break,
        }
    }
    (bytes.len(), bytes.len())
}

/// Offset of the first body octet: just past the first empty line, or the whole message when
/// there is no body.
pub fn body_offset(bytes: &[u8]) -> usize {
    boundary(bytes).1
}

/// The header section without the blank line that ends it (the whole message when there is none).
pub fn section(message: &[u8]) -> &[u8] {
    &message[..boundary(message).0]
}

/// Byte ranges of the raw fields of a header section, each with its continuation lines and line
/// ending. A continuation line before any field starts a field of its own; empty lines (the
/// blank line that ends the section, when it is included) are skipped.
pub fn raw_fields(header: &[u8]) -> Vec<(usize, usize)> {
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < header.len() {
        let line_end = memchr::memchr(b'\n', &header[pos..]).map_or(header.len(), |i| pos + i + 1);
        let line = &header[pos..line_end];
        if (line[0] == b' ' || line[0] == b'\t') && !fields.is_empty() {
            fields.last_mut().unwrap().1 = line_end;
        } else if !line.iter().all(|&b| b == b'\r' || b == b'\n') {
            fields.push((pos, line_end));
        }
        pos = line_end;
    }
    fields
}

/// The fields of a header section as (name, raw value with its folding). Lines without a colon
/// are skipped.
pub fn fields(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    raw_fields(header)
        .into_iter()
        .filter_map(move |(start, end)| {
            let field = &header[start..end];
            let colon = field.iter().position(|&b| b == b':')?;
            let name = trim(&field[..colon]);
            (!name.is_empty()).then_some((name, &field[colon + 1..]))
        })
}

/// Every field in order as (name, unfolded value); names that are not UTF-8 are made so lossily.
pub fn list(header: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    fields(header).map(|(name, value)| (String::from_utf8_lossy(name).into_owned(), unfold(value)))
}

/// The unfolded value of the first field named `name` (ASCII case-insensitive). Names are compared
/// in the lossy UTF-8 form [`list`] gives them, so every listed name can be looked up.
pub fn find(header: &[u8], name: &str) -> Option<String> {
    fields(header)
        .find(|(n, _)| String::from_utf8_lossy(n).eq_ignore_ascii_case(name))
        .map(|(_, value)| unfold(value))
}

/// The name of one raw field (up to its colon, trailing blanks removed).
pub fn field_name(field: &[u8]) -> &[u8] {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let mut name = &field[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    name
}

/// Removes the line breaks of folded lines and surrounding whitespace (RFC 5322 unfolding).
pub fn unfold(value: &[u8]) -> String {
    let unfolded: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    String::from_utf8_lossy(trim(&unfolded)).into_owned()
}

/// "Name: value" CRLF, folded at spaces (RFC 5322 §2.2.3) so lines stay within 76 octets, inside
/// the 78 that §2.1.1 recommends, where the words allow; a longer word stays whole on its line.
pub fn fold(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push_str(name);
    out.push_str(": ");
    let mut line_len = out.len();
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 {
            if line_len + 1 + word.len() > 76 && line_len > 1 {
                out.push_str("\r\n");
                line_len = 0;
            }
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out.push_str("\r\n");
    out
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if first.is_ascii_whitespace() {
            bytes = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = bytes {
        if last.is_ascii_whitespace() {
            bytes = rest;
        } else {
            break;
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_is_the_header_without_its_blank_line() {
        assert_eq!(section(b"A: b\r\n\r\nbody"), b"A: b\r\n");
        assert_eq!(section(b"\r\nbody"), b"");
        assert_eq!(section(b"A: b"), b"A: b");
    }

    #[test]
    fn fold_keeps_lines_short_and_words_whole() {
        let f = fold("Diagnostic-Code", &"word ".repeat(40));
        assert!(f.lines().all(|l| l.len() <= 78), "{f}");
        assert!(f.ends_with("\r\n"));
        assert_eq!(fold("X", "a b"), "X: a b\r\n");
    }
}
