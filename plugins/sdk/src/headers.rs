//! Helpers for the data hook: reading the message the host holds, and building modifications.

use crate::types::{HeaderField, Message, Modification};

/// Reads from the host-held message in chunks the host accepts.
const CHUNK: u32 = 64 * 1024;

/// Convenience reads over the [`Message`] resource.
pub trait MessageExt {
    /// Octets `[from, from + max)` of the message (fewer at its end), pulled in chunks.
    fn read_range(&self, from: u64, max: u64) -> Vec<u8>;
    /// The body (after the blank line), at most `max` octets.
    fn body(&self, max: u64) -> Vec<u8>;
    /// The whole message (header and body), at most `max` octets.
    fn raw(&self, max: u64) -> Vec<u8>;
    /// Every field with this name (case-insensitive), in order, unfolded.
    fn header_all(&self, name: &str) -> Vec<String>;
}

impl MessageExt for Message {
    fn read_range(&self, from: u64, max: u64) -> Vec<u8> {
        let end = self.size().min(from.saturating_add(max));
        let mut out = Vec::with_capacity(end.saturating_sub(from).min(16 << 20) as usize);
        let mut offset = from;
        while offset < end {
            let want = (end - offset).min(CHUNK as u64) as u32;
            let chunk = self.read(offset, want);
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            out.extend_from_slice(&chunk);
        }
        out
    }

    fn body(&self, max: u64) -> Vec<u8> {
        self.read_range(self.body_offset(), max)
    }

    fn raw(&self, max: u64) -> Vec<u8> {
        self.read_range(0, max)
    }

    fn header_all(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .collect()
    }
}

impl Modification {
    /// Append a header field at the end of the header.
    pub fn add_header(name: &str, value: impl Into<String>) -> Modification {
        Modification::AddHeader(field(name, value))
    }
    /// Insert a header field at the top of the header (where trace fields go).
    pub fn insert_header(name: &str, value: impl Into<String>) -> Modification {
        Modification::InsertHeader(field(name, value))
    }
    /// Replace the first field with this name, or add it.
    pub fn replace_header(name: &str, value: impl Into<String>) -> Modification {
        Modification::ReplaceHeader(field(name, value))
    }
    /// Remove every field with this name.
    pub fn remove_header(name: &str) -> Modification {
        Modification::RemoveHeader(name.to_string())
    }
}

fn field(name: &str, value: impl Into<String>) -> HeaderField {
    HeaderField {
        name: name.to_string(),
        value: value.into(),
    }
}

/// A case-insensitive header lookup on a `(name, value)` list, as [`Message::headers`] returns it:
/// for pure logic that is tested without a host.
pub fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_modifications_and_finds_headers() {
        assert!(matches!(
            Modification::add_header("X-Spam-Score", "1.0"),
            Modification::AddHeader(HeaderField { name, value }) if name == "X-Spam-Score" && value == "1.0"
        ));
        assert!(
            matches!(Modification::remove_header("X-A"), Modification::RemoveHeader(n) if n == "X-A")
        );
        let headers = vec![("Subject".to_string(), "hi".to_string())];
        assert_eq!(find(&headers, "subject"), Some("hi"));
        assert_eq!(find(&headers, "from"), None);
    }
}
