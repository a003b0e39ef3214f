//! The spool's tuning and the counters that measure what durability costs.

use std::time::Duration;

/// Tuning of the segment log (the defaults suit a server; tests make segments small).
#[derive(Debug, Clone, Copy)]
pub struct SpoolOptions {
    /// A segment stops taking appends once it holds this many octets.
    pub segment_bytes: u64,
    /// How long a closed segment waits before its remaining messages are copied forward.
    pub compact_after: Duration,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            segment_bytes: 64 << 20,
            compact_after: Duration::from_secs(30),
        }
    }
}

/// Counters for measuring the cost of durability (kept under one lock in the spool: they change
/// once per batch or per message, never often enough for the lock to matter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub stored: u64,
    /// `fdatasync`s of segment data (one per group-commit batch).
    pub file_fsyncs: u64,
    /// Directory fsyncs (a segment created or deleted).
    pub dir_fsyncs: u64,
    /// Group-commit batches.
    pub batches: u64,
    /// Segments deleted.
    pub reclaimed: u64,
    /// Messages copied forward by compaction.
    pub compacted: u64,
}
