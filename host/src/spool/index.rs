//! The in-memory index, rebuilt at start by reading every segment: where each queued message's
//! record lies, its metadata and its states, and per segment how many queued messages live in it
//! (a segment with none is deleted; one with few is compacted).

use super::id::QueueId;
use super::message::MessageMeta;
use super::segment::Span;
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

pub(super) struct Indexed {
    pub meta: MessageMeta,
    /// The queue manager's records, oldest first.
    pub states: Vec<Vec<u8>>,
    pub seq: u64,
    pub span: Span,
}

pub(super) struct Segment {
    pub file: Arc<File>,
    /// Octets written (the next append's offset for the active segment).
    pub size: u64,
    /// Queued messages whose record is in this segment.
    pub live: usize,
    pub live_bytes: u64,
    /// When this segment stopped being the active one (None while active or never seen active).
    pub closed_at: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Index {
    pub messages: BTreeMap<QueueId, Indexed>,
    pub segments: BTreeMap<u64, Segment>,
}

impl Index {
    /// Records that `meta`'s message is at `span` of segment `seq` (replacing an older copy).
    pub fn put(&mut self, meta: MessageMeta, states: Vec<Vec<u8>>, seq: u64, span: Span) {
        let id = meta.id.clone();
        self.forget(&id);
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.live += 1;
            seg.live_bytes += span.len as u64;
        }
        self.messages.insert(
            id,
            Indexed {
                meta,
                states,
                seq,
                span,
            },
        );
    }

    /// Appends states to a queued message; states of a message no longer queued are ignored.
    pub fn add_states(&mut self, id: &QueueId, states: Vec<Vec<u8>>) {
        if let Some(m) = self.messages.get_mut(id) {
            m.states.extend(states);
        }
    }

    /// Drops a message from the index (it is done, or about to be replaced by a newer copy).
    pub fn forget(&mut self, id: &QueueId) -> bool {
        let Some(old) = self.messages.remove(id) else {
            return false;
        };
        if let Some(seg) = self.segments.get_mut(&old.seq) {
            seg.live -= 1;
            seg.live_bytes -= old.span.len as u64;
        }
        true
    }

    /// The newest queue id known (to keep new ids increasing across restarts).
    pub fn newest(&self) -> Option<&QueueId> {
        self.messages.keys().next_back()
    }

    /// The queued messages whose record is in segment `seq`.
    pub fn living_in(&self, seq: u64) -> Vec<QueueId> {
        self.messages
            .iter()
            .filter(|(_, m)| m.seq == seq)
            .map(|(id, _)| id.clone())
            .collect()
    }
}
