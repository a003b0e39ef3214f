//! Host-side representations of the WIT resources a plugin is handed (the `with:` mapping of
//! [`super::bindings`]): they hold host data and know nothing of stores or imports, so the
//! bindings, the store state and the imports all depend on them and not on each other.

use std::sync::Arc;

use crate::mail::header;

/// Host-side handle of the message (the resource's representation).
pub struct MessageHandle {
    pub(crate) bytes: Arc<[u8]>,
    /// Length of the header section including the blank line that ends it.
    pub(crate) body_offset: usize,
}

impl MessageHandle {
    pub fn new(bytes: Arc<[u8]>) -> Self {
        let body_offset = header::body_offset(&bytes);
        MessageHandle { bytes, body_offset }
    }

    /// Every header field in order as (name, unfolded value).
    pub fn headers(&self) -> impl Iterator<Item = (String, String)> + '_ {
        header::list(&self.bytes[..self.body_offset])
    }

    /// The first field named `name` (ASCII case-insensitive). Names are compared in the same lossy
    /// UTF-8 form `headers` lists them in, so every listed name can be looked up.
    pub fn header(&self, name: &str) -> Option<String> {
        header::find(&self.bytes[..self.body_offset], name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_unfold_and_body_offset_is_after_blank_line() {
        let raw: &[u8] =
            b"Subject: hello\r\n  world\r\nFrom: a@example.test\r\nX-Empty:\r\n\r\nbody\r\n";
        let m = MessageHandle::new(Arc::from(raw));
        assert_eq!(m.header("subject").as_deref(), Some("hello  world"));
        assert_eq!(m.header("FROM").as_deref(), Some("a@example.test"));
        assert_eq!(m.header("x-empty").as_deref(), Some(""));
        assert_eq!(m.header("To"), None);
        assert_eq!(m.headers().count(), 3);
        assert_eq!(&raw[m.body_offset..], b"body\r\n");
        assert_eq!(header::body_offset(b"\r\nonly body"), 2);
        assert_eq!(header::body_offset(b"No-Body: x\r\n"), 12);
    }

    #[test]
    fn header_section_ends_at_the_first_blank_line_whatever_the_line_endings() {
        // (message, header section length including the blank line)
        let cases: [(&[u8], usize); 9] = [
            (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", 14),
            (b"A: 1\nB: 2\n\nbody\n", 11),
            (b"A: 1\nB: 2\n\r\nbody", 12),
            (b"A: 1\r\nB: 2\r\n\nbody", 13),
            (b"A: 1\r\nB: 2\n\r\nbody\r\n\r\nmore", 13),
            (b"\r\nonly body", 2),
            (b"\nonly body", 1),
            (b"No-Body: x\r\n", 12),
            (b"No-Body: x\r\n\r", 13),
        ];
        for (raw, header_len) in cases {
            assert_eq!(
                header::body_offset(raw),
                header_len,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let m = MessageHandle::new(Arc::from(&b"A: 1\nSubject: s\n\r\nX-In-Body: no\r\n"[..]));
        assert_eq!(m.header("subject").as_deref(), Some("s"));
        assert_eq!(m.header("x-in-body"), None);
        assert_eq!(m.headers().count(), 2);
        assert_eq!(header::boundary(b"A: 1\n\r\nb"), (5, 7));
        assert_eq!(header::boundary(b"A: 1"), (4, 4));
    }

    #[test]
    fn a_listed_name_that_is_not_utf8_can_be_looked_up() {
        let raw: &[u8] = b"X-\xffBad: v1\r\nX-Ok: v2\r\n\r\nbody";
        let m = MessageHandle::new(Arc::from(raw));
        let listed: Vec<(String, String)> = m.headers().collect();
        assert_eq!(listed.len(), 2);
        for (name, value) in &listed {
            assert_eq!(m.header(name).as_ref(), Some(value), "{name:?}");
        }
        assert_eq!(m.header("x-\u{fffd}bad").as_deref(), Some("v1"));
    }
}
