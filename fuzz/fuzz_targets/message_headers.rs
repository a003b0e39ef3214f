//! The header accessors plugins see (`mail::header`: fields, lookup, body offset) and the checked
//! application of a data hook's modifications, on arbitrary messages and modifications.
//!
//! Input: parts separated by 0xFF; the first is the message, each further part a modification
//! (first byte: kind; the rest "name=value", lossily UTF-8). The message gets CRLF line endings
//! only, as every message the SMTP session accepts has (bare CR and LF are refused there); the
//! accessors alone also see the raw bytes.
//! Properties: no panic; the body (everything after the header section) is never changed by
//! header edits; no modification can add more header fields than it names (no injection).
#![no_main]
use mailwit_fuzz::mail::header::{self, body_offset};
use mailwit_fuzz::policy::{Envelope, Modification, Recipient, apply_modifications};

fn modification(spec: &[u8]) -> Option<Modification> {
    let (&kind, rest) = spec.split_first()?;
    let text = String::from_utf8_lossy(rest).into_owned();
    let (name, value) = match text.split_once('=') {
        Some((n, v)) => (n.to_string(), v.to_string()),
        None => (text.clone(), String::new()),
    };
    Some(match kind % 7 {
        0 => Modification::AddHeader { name, value },
        1 => Modification::InsertHeader { name, value },
        2 => Modification::ReplaceHeader { name, value },
        3 => Modification::RemoveHeader(name),
        4 => Modification::AddRecipient(text),
        5 => Modification::RemoveRecipient(text),
        _ => Modification::ChangeReversePath(text),
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let raw = parts.next().unwrap_or_default();
    let raw_header = &raw[..body_offset(raw)];
    for (name, _) in header::list(raw_header).take(20) {
        assert!(header::find(raw_header, &name).is_some(), "{name:?} listed but not found");
    }
    let message: Vec<u8> = raw
        .iter()
        .filter(|&&b| b != b'\r')
        .flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] })
        .collect();
    let message = &message[..];
    let mods: Vec<Modification> = parts.filter_map(modification).collect();

    let split = body_offset(message);
    assert!(split <= message.len());
    let fields: Vec<(String, String)> = header::list(&message[..split]).collect();
    // Every listed name can be looked up (names that are not UTF-8 are compared lossily).
    for (name, _) in fields.iter().take(20) {
        assert!(header::find(&message[..split], name).is_some(), "{name:?} listed but not found");
    }
    let original = header::fields(&message[..split]).count();
    assert_eq!(original, fields.len());

    let mut envelope = Envelope {
        recipients: vec![Recipient {
            address: "bob@example.test".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let out = apply_modifications(message, &mut envelope, &mods);
    let body = &message[split..];
    let new_split = body_offset(&out);
    assert_eq!(&out[new_split..], body, "the body changed");
    let adds = mods
        .iter()
        .filter(|m| {
            matches!(
                m,
                Modification::AddHeader { .. }
                    | Modification::InsertHeader { .. }
                    | Modification::ReplaceHeader { .. }
            )
        })
        .count();
    let now = header::fields(&out[..new_split]).count();
    assert!(now <= original + adds, "{now} fields from {original} + {adds} additions");
});
