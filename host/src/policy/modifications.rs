//! Applying the data hook's modifications to the raw message and the envelope.
//!
//! Plugins are untrusted, so every modification is checked: header names are RFC 5322 field
//! names, values carry no CR, LF or NUL (no header injection), long values are folded to keep lines
//! under 998 octets, and counts and sizes are capped. An invalid modification is skipped and logged;
//! the rest still apply, in order.

use crate::mail::{Envelope, Recipient, address, header};

/// One change a data hook asks for; [`apply_modifications`] checks and applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    /// Append a header field at the end of the header.
    AddHeader {
        name: String,
        value: String,
    },
    /// Insert a header field at the top.
    InsertHeader {
        name: String,
        value: String,
    },
    /// Remove every field with this name.
    RemoveHeader(String),
    /// Replace the first field with this name, or add it.
    ReplaceHeader {
        name: String,
        value: String,
    },
    AddRecipient(String),
    RemoveRecipient(String),
    ChangeReversePath(String),
}

/// Longest header field name.
pub const MAX_HEADER_NAME: usize = 76;
/// Longest header value (before folding).
pub const MAX_HEADER_VALUE: usize = 8 * 1024;
/// Most modifications applied to one message.
pub const MAX_MODIFICATIONS: usize = 512;
/// Most recipients a message may end up with through `add-recipient`.
pub const MAX_RECIPIENTS: usize = 1000;
/// Longest address (RFC 5321 path limit).
pub const MAX_ADDRESS: usize = 256;

/// Applies `mods` in order; returns the new message bytes and updates `envelope`.
/// Header edits touch only the header section; the body is copied unchanged.
pub fn apply_modifications(
    message: &[u8],
    envelope: &mut Envelope,
    mods: &[Modification],
) -> Vec<u8> {
    let (blank_line, split) = header::boundary(message);
    let (head, body) = message.split_at(split);
    let mut fields = split_fields(&head[..blank_line]);
    let mut header_changed = false;
    if mods.len() > MAX_MODIFICATIONS {
        tracing::warn!(
            count = mods.len(),
            "only the first {MAX_MODIFICATIONS} modifications are applied"
        );
    }
    for m in mods.iter().take(MAX_MODIFICATIONS) {
        if let Err(why) = apply_one(m, &mut fields, envelope, &mut header_changed) {
            tracing::warn!(modification = ?m, "modification skipped: {why}");
        }
    }
    if !header_changed {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len() + 256);
    for field in &fields {
        out.extend_from_slice(field);
    }
    // The separator: the original blank line, or a new one when the message had no body.
    let separator: &[u8] = if blank_line < split {
        &head[blank_line..]
    } else {
        b"\r\n"
    };
    out.extend_from_slice(separator);
    out.extend_from_slice(body);
    out
}

/// Raw fields (each with its continuation lines and line ending) of a header section given
/// without its blank line.
fn split_fields(content: &[u8]) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = header::raw_fields(content)
        .into_iter()
        .map(|(start, end)| content[start..end].to_vec())
        .collect();
    // A last field without a line ending gets one, so appended fields start on their own line.
    if let Some(last) = fields.last_mut()
        && !last.ends_with(b"\n")
    {
        last.extend_from_slice(b"\r\n");
    }
    fields
}

fn apply_one(
    m: &Modification,
    fields: &mut Vec<Vec<u8>>,
    envelope: &mut Envelope,
    header_changed: &mut bool,
) -> Result<(), String> {
    match m {
        Modification::AddHeader { name, value } => {
            fields.push(render_field(name, value)?);
            *header_changed = true;
        }
        Modification::InsertHeader { name, value } => {
            fields.insert(0, render_field(name, value)?);
            *header_changed = true;
        }
        Modification::RemoveHeader(name) => {
            check_name(name)?;
            let before = fields.len();
            fields.retain(|f| !header::field_name(f).eq_ignore_ascii_case(name.as_bytes()));
            *header_changed |= fields.len() != before;
        }
        Modification::ReplaceHeader { name, value } => {
            let rendered = render_field(name, value)?;
            match fields
                .iter()
                .position(|f| header::field_name(f).eq_ignore_ascii_case(name.as_bytes()))
            {
                Some(i) => fields[i] = rendered,
                None => fields.push(rendered),
            }
            *header_changed = true;
        }
        Modification::AddRecipient(address) => {
            if !valid_address(address) {
                return Err("invalid address".into());
            }
            if envelope.recipients.len() >= MAX_RECIPIENTS {
                return Err(format!("already {MAX_RECIPIENTS} recipients"));
            }
            if !envelope
                .recipients
                .iter()
                .any(|r| r.address.eq_ignore_ascii_case(address))
            {
                envelope.recipients.push(Recipient {
                    address: address.clone(),
                    ..Recipient::default()
                });
            }
        }
        Modification::RemoveRecipient(address) => {
            envelope
                .recipients
                .retain(|r| !r.address.eq_ignore_ascii_case(address));
        }
        Modification::ChangeReversePath(address) => {
            if !address.is_empty() && !valid_address(address) {
                return Err("invalid reverse-path".into());
            }
            envelope.reverse_path.address = address.clone();
        }
    }
    Ok(())
}

/// A field name: 1..=76 printable ASCII characters except ':' (RFC 5322 ftext).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_HEADER_NAME {
        return Err(format!(
            "header name must be 1..={MAX_HEADER_NAME} characters"
        ));
    }
    if !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err("header name has characters outside RFC 5322 ftext".into());
    }
    Ok(())
}

/// "Name: value\r\n", folded at whitespace; refused when a line would exceed 998 octets.
fn render_field(name: &str, value: &str) -> Result<Vec<u8>, String> {
    check_name(name)?;
    if value.len() > MAX_HEADER_VALUE {
        return Err(format!("header value longer than {MAX_HEADER_VALUE} bytes"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("header value contains CR, LF or NUL".into());
    }
    let field = header::fold(name, value);
    if field.split("\r\n").any(|line| line.len() > 998) {
        return Err("header value has a word too long to fold under 998 octets".into());
    }
    Ok(field.into_bytes())
}

/// A plausible mailbox address: "local@domain" (or "postmaster"), no spaces, controls, or brackets.
pub fn valid_address(address: &str) -> bool {
    if address.is_empty() || address.len() > MAX_ADDRESS {
        return false;
    }
    if address
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>'))
    {
        return false;
    }
    if address.eq_ignore_ascii_case("postmaster") {
        return true;
    }
    match address::split(address) {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@example.test\r\nSubject: hi\r\nX-Old: 1\r\n\r\nbody line\r\n";

    fn add_header(name: &str, value: impl Into<String>) -> Modification {
        Modification::AddHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    fn env() -> Envelope {
        Envelope {
            reverse_path: Default::default(),
            recipients: vec![Recipient {
                address: "bob@example.test".into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn header_edits_keep_body_and_order() {
        let mut e = env();
        let mods = vec![
            add_header("X-Spam-Score", "1.5"),
            Modification::InsertHeader {
                name: "X-First".into(),
                value: "yes".into(),
            },
            Modification::RemoveHeader("x-old".into()),
            Modification::ReplaceHeader {
                name: "Subject".into(),
                value: "changed".into(),
            },
        ];
        let out = apply_modifications(MSG, &mut e, &mods);
        assert_eq!(
            out,
            b"X-First: yes\r\nFrom: a@example.test\r\nSubject: changed\r\nX-Spam-Score: 1.5\r\n\r\nbody line\r\n"
        );
    }

    #[test]
    fn injection_and_bad_names_are_refused() {
        let mut e = env();
        let mods = vec![
            add_header("X-Evil", "a\r\nBcc: victim@x"),
            add_header("Bad Name", "v"),
            add_header("X-Long", "w".repeat(MAX_HEADER_VALUE + 1)),
            Modification::AddRecipient("not an address".into()),
            Modification::ChangeReversePath("<x@y>".into()),
        ];
        let out = apply_modifications(MSG, &mut e, &mods);
        assert_eq!(out, MSG);
        assert_eq!(e, env());
    }

    #[test]
    fn long_values_fold_under_998_and_envelope_changes_apply() {
        let mut e = env();
        let value = vec!["word"; 400].join(" ");
        let mods = vec![
            add_header("X-Long", value),
            Modification::AddRecipient("carol@example.test".into()),
            Modification::AddRecipient("CAROL@example.test".into()),
            Modification::RemoveRecipient("BOB@example.test".into()),
            Modification::ChangeReversePath("".into()),
        ];
        let out = apply_modifications(MSG, &mut e, &mods);
        assert!(out.split(|&b| b == b'\n').all(|l| l.len() <= 998));
        assert!(out.ends_with(b"\r\n\r\nbody line\r\n"));
        let addresses: Vec<&str> = e.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(addresses, ["carol@example.test"]);
        assert_eq!(e.reverse_path.address, "");
    }

    #[test]
    fn message_without_body_gets_a_separator() {
        let mut e = env();
        let out = apply_modifications(b"Subject: x\r\n", &mut e, &[add_header("X-A", "1")]);
        assert_eq!(out, b"Subject: x\r\nX-A: 1\r\n\r\n");
    }

    #[test]
    fn mixed_line_endings_keep_the_header_body_boundary() {
        let add = [add_header("X-A", "1")];
        let cases: [(&[u8], &[u8]); 4] = [
            (
                b"Subject: x\n\r\nX-Body: 1\r\n",
                b"Subject: x\nX-A: 1\r\n\r\nX-Body: 1\r\n",
            ),
            (
                b"Subject: x\r\n\nX-Body: 1\n",
                b"Subject: x\r\nX-A: 1\r\n\nX-Body: 1\n",
            ),
            (
                b"Subject: x\n\nX-Body: 1\n",
                b"Subject: x\nX-A: 1\r\n\nX-Body: 1\n",
            ),
            (b"\r\nX-Body: 1\r\n", b"X-A: 1\r\n\r\nX-Body: 1\r\n"),
        ];
        for (message, expected) in cases {
            let out = apply_modifications(message, &mut env(), &add);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected)
            );
            let split = header::body_offset(&out);
            let original = header::body_offset(message);
            assert_eq!(&out[split..], &message[original..], "the body changed");
        }
    }
}
