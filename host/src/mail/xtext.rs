//! RFC 3461 §4 xtext, the encoding of ENVID and ORCPT values: printable ASCII except "+" and "=",
//! other octets as "+XX".

/// Encodes `s`: "+", "=" and octets outside "!".."~" become "+XX".
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Decodes strictly, as a client's parameter is checked: None for anything that is not xtext,
/// and for escapes of control characters or 8-bit octets (decoded values end up in DSN fields).
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                let byte = u8::from_str_radix(hex, 16).ok()?;
                if !(32..=126).contains(&byte) {
                    return None;
                }
                out.push(byte);
                i += 3;
            }
            b'=' => return None,
            b @ 33..=126 => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Decodes what was stored, never failing: valid "+XX" escapes are decoded, anything else is
/// kept as it is ("+2B" -> "+", "bad+zz" stays).
pub fn decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_both_decoders() {
        assert_eq!(encode("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(decode("a+2Bb+3Dc+20d").as_deref(), Some("a+b=c d"));
        assert_eq!(decode("a=b"), None);
        assert_eq!(decode("a+0A"), None);
        assert_eq!(decode_lossy("a+2Bb+3D"), "a+b=");
        assert_eq!(decode_lossy("bad+zz"), "bad+zz");
    }
}
