//! The bytes of the log: a segment file header, then framed records, each checksummed so a torn
//! or corrupted record is recognised and never taken for data.
//!
//! ```text
//! segment:  "mailwit-segment1"                 16 octets, once at the start of the file
//! record:   magic u32 | body length u32 | crc32 of body u32 | body    (little endian)
//! body:     kind u8 | queue id (18 octets) | kind-specific rest
//!   message: meta length u32 | meta JSON | state count u32 | (length u32 | state)* | message octets
//!   state:   state count u32 | (length u32 | state)*
//!   done:    (nothing)
//! ```
//!
//! A "state" is an opaque octet string the queue manager appends (its per-recipient outcome
//! records); the spool keeps them in order per message. A message record carries states too when
//! compaction moves a live message to a newer segment, so the copy holds everything known so far.

use super::id::QueueId;
use super::message::MessageMeta;

/// First octets of every segment file (format version 1 of the segment log).
pub(super) const SEGMENT_MAGIC: &[u8; 16] = b"mailwit-segment1";
const RECORD_MAGIC: u32 = 0x3152_574D; // "MWR1" little endian
/// magic, body length, crc
pub(super) const FRAME_HEADER: usize = 12;
const ID_LEN: usize = 18;

const KIND_MESSAGE: u8 = 1;
const KIND_STATE: u8 = 2;
const KIND_DONE: u8 = 3;

/// A decoded record body.
#[derive(Debug)]
pub(super) enum Entry<'a> {
    Message {
        meta: MessageMeta,
        states: Vec<Vec<u8>>,
        message: &'a [u8],
    },
    State {
        id: QueueId,
        states: Vec<Vec<u8>>,
    },
    Done {
        id: QueueId,
    },
}

/// What is found at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// A complete record whose checksum matches; the next one starts at `end`.
    Valid { body: &'a [u8], end: usize },
    /// Not a complete valid record. `claimed_end` is where it would end if its header is intact
    /// and that end lies within the buffer (so a following record can be looked for there).
    Invalid { claimed_end: Option<usize> },
}

/// A message record (with the states known so far, for a compaction copy).
pub(super) fn message(
    meta: &MessageMeta,
    states: &[Vec<u8>],
    message: &[u8],
) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    let states_len: usize = states.iter().map(|s| 4 + s.len()).sum();
    let mut out = start(
        KIND_MESSAGE,
        &meta.id,
        4 + json.len() + 4 + states_len + message.len(),
    )?;
    put_u32(&mut out, json.len());
    out.extend_from_slice(&json);
    put_states(&mut out, states);
    out.extend_from_slice(message);
    Ok(finish(out))
}

/// A record appending `states` to message `id`.
pub(super) fn state(id: &QueueId, states: &[Vec<u8>]) -> std::io::Result<Vec<u8>> {
    let states_len: usize = states.iter().map(|s| 4 + s.len()).sum();
    let mut out = start(KIND_STATE, id, 4 + states_len)?;
    put_states(&mut out, states);
    Ok(finish(out))
}

/// A record saying message `id` has left the queue.
pub(super) fn done(id: &QueueId) -> std::io::Result<Vec<u8>> {
    Ok(finish(start(KIND_DONE, id, 0)?))
}

fn start(kind: u8, id: &QueueId, rest: usize) -> std::io::Result<Vec<u8>> {
    if id.0.len() != ID_LEN {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{id} is not a spool queue id"),
        ));
    }
    let mut out = Vec::with_capacity(FRAME_HEADER + 1 + ID_LEN + rest);
    out.resize(FRAME_HEADER, 0);
    out.push(kind);
    out.extend_from_slice(id.0.as_bytes());
    Ok(out)
}

/// Fills in the frame header of a record built by `start`.
fn finish(mut out: Vec<u8>) -> Vec<u8> {
    let body_len = (out.len() - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&out[FRAME_HEADER..]);
    out[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&body_len.to_le_bytes());
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    out
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_states(out: &mut Vec<u8>, states: &[Vec<u8>]) {
    put_u32(out, states.len());
    for s in states {
        put_u32(out, s.len());
        out.extend_from_slice(s);
    }
}

/// The record at `at` in `buf`.
pub(super) fn frame_at(buf: &[u8], at: usize) -> Frame<'_> {
    let Some(header) = buf.get(at..at + FRAME_HEADER) else {
        return Frame::Invalid { claimed_end: None };
    };
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 octets"));
    if word(0) != RECORD_MAGIC {
        return Frame::Invalid { claimed_end: None };
    }
    let end = at + FRAME_HEADER + word(4) as usize;
    let Some(body) = buf.get(at + FRAME_HEADER..end) else {
        return Frame::Invalid { claimed_end: None };
    };
    if crc32fast::hash(body) != word(8) {
        return Frame::Invalid {
            claimed_end: Some(end),
        };
    }
    Frame::Valid { body, end }
}

/// Decodes a body whose checksum matched. An error means a record this version cannot read.
pub(super) fn decode(body: &[u8]) -> Result<Entry<'_>, String> {
    let mut r = Reader { buf: body, at: 0 };
    let kind = r.take(1)?[0];
    let id = std::str::from_utf8(r.take(ID_LEN)?)
        .ok()
        .and_then(QueueId::parse)
        .ok_or("bad queue id")?;
    match kind {
        KIND_MESSAGE => {
            let meta_len = r.u32()?;
            let meta: MessageMeta = serde_json::from_slice(r.take(meta_len)?)
                .map_err(|e| format!("bad message metadata: {e}"))?;
            if meta.id != id {
                return Err(format!("record for {id} holds metadata of {}", meta.id));
            }
            let states = r.states()?;
            let message = &body[r.at..];
            if message.len() as u64 != meta.size {
                return Err(format!(
                    "{id}: message is {} octets, metadata says {}",
                    message.len(),
                    meta.size
                ));
            }
            Ok(Entry::Message {
                meta,
                states,
                message,
            })
        }
        KIND_STATE => {
            let states = r.states()?;
            Ok(Entry::State { id, states })
        }
        KIND_DONE => Ok(Entry::Done { id }),
        other => Err(format!("unknown record kind {other}")),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let part = self
            .buf
            .get(self.at..self.at + n)
            .ok_or("record body too short")?;
        self.at += n;
        Ok(part)
    }

    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 octets")) as usize)
    }

    fn states(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let count = self.u32()?;
        let mut states = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let len = self.u32()?;
            states.push(self.take(len)?.to_vec());
        }
        Ok(states)
    }
}
