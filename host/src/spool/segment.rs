//! Segment files: `<queue>/<16 hex digits>.seg`, numbered in the order they were created. Only
//! the newest is appended to; the others are read (by the index and by deliveries) and deleted
//! once nothing in them is needed.
//!
//! Reading a segment back distinguishes three cases at the first record that does not check out:
//! - a torn tail (a crash during an append that was never acknowledged): the record runs past the
//!   end of the file, or its header is damaged and nothing valid follows. Ignored with a warning;
//! - a corrupt record in the middle (its checksum fails but its length leads to a valid record):
//!   the record's octets are copied to `<queue>/quarantine/` with an error log line, and reading
//!   goes on after it;
//! - a record that checks out but cannot be decoded (a newer format?): quarantined the same way.
//!
//! Either way opening the spool succeeds: a damaged file never makes the server fail to start.

use super::record::{self, Entry, Frame};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(super) fn file_name(seq: u64) -> String {
    format!("{seq:016X}.seg")
}

pub(super) fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 16 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(stem, 16).ok())
        .flatten()
}

/// Segment numbers present in `dir`, ascending.
pub(super) fn list(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(seq) = entry?.file_name().to_str().and_then(parse_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Creates segment `seq` with its header, durable (file and directory fsynced) before returning.
pub(super) fn create(dir: &Path, seq: u64) -> std::io::Result<File> {
    let path = dir.join(file_name(seq));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all_at(record::SEGMENT_MAGIC, 0)?;
    file.sync_all()?;
    fsync_dir(dir)?;
    Ok(file)
}

/// Opens an existing segment for reading (deliveries read message records from it).
pub(super) fn open(dir: &Path, seq: u64) -> std::io::Result<File> {
    File::open(dir.join(file_name(seq)))
}

/// Where a record lies: its offset in the segment and its framed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub offset: u64,
    pub len: u32,
}

/// What reading one segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ScanReport {
    /// Octets at the end that are not a complete record (a torn append).
    pub torn_tail: u64,
    /// Records set aside into the quarantine directory.
    pub quarantined: usize,
}

/// Reads segment `seq` in `dir`, calling `visit` for every valid record in order. Damaged records
/// are copied to `quarantine` when it is given (read-only scans pass None).
pub(super) fn scan(
    dir: &Path,
    seq: u64,
    quarantine: Option<&Path>,
    mut visit: impl FnMut(Span, Entry<'_>),
) -> std::io::Result<ScanReport> {
    let path = dir.join(file_name(seq));
    let buf = std::fs::read(&path)?;
    let mut report = ScanReport::default();
    let header = record::SEGMENT_MAGIC.len();
    if buf.len() < header || buf.iter().all(|&b| b == 0) {
        // Created, then a crash before the header was durable: nothing was ever acknowledged here.
        report.torn_tail = buf.len() as u64;
        return Ok(report);
    }
    if &buf[..header] != record::SEGMENT_MAGIC {
        tracing::error!(segment = %path.display(), "not a mailwit spool segment; quarantined whole");
        set_aside(quarantine, seq, 0, &buf, &mut report);
        return Ok(report);
    }
    let mut at = header;
    while at < buf.len() {
        match record::frame_at(&buf, at) {
            Frame::Valid { body, end } => {
                match record::decode(body) {
                    Ok(entry) => {
                        let span = Span {
                            offset: at as u64,
                            len: (end - at) as u32,
                        };
                        visit(span, entry);
                    }
                    Err(why) => {
                        tracing::error!(segment = %path.display(), offset = at, error = %why,
                            "unreadable spool record quarantined");
                        set_aside(quarantine, seq, at, &buf[at..end], &mut report);
                    }
                }
                at = end;
            }
            Frame::Invalid {
                claimed_end: Some(end),
            } if end < buf.len() && matches!(record::frame_at(&buf, end), Frame::Valid { .. }) => {
                tracing::error!(segment = %path.display(), offset = at, octets = end - at,
                    "spool record with a bad checksum quarantined");
                set_aside(quarantine, seq, at, &buf[at..end], &mut report);
                at = end;
            }
            Frame::Invalid { .. } => {
                report.torn_tail = (buf.len() - at) as u64;
                tracing::warn!(segment = %path.display(), offset = at, octets = report.torn_tail,
                    "ignoring a torn record at the end of a spool segment (an append cut by a crash)");
                break;
            }
        }
    }
    Ok(report)
}

/// Copies damaged octets to `<quarantine>/<segment>-<offset>.rec` (same name on every start, so
/// reopening does not pile up copies).
fn set_aside(
    quarantine: Option<&Path>,
    seq: u64,
    offset: usize,
    octets: &[u8],
    report: &mut ScanReport,
) {
    report.quarantined += 1;
    let Some(dir) = quarantine else { return };
    let path: PathBuf = dir.join(format!("{seq:016X}-{offset:012X}.rec"));
    if path.exists() {
        return;
    }
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let mut f = File::create(&path)?;
        f.write_all(octets)?;
        f.sync_all()
    });
    match written {
        Ok(()) => {
            tracing::error!(file = %path.display(), "damaged spool record copied for an operator")
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot copy damaged spool record")
        }
    }
}

/// Makes a directory's entries (a created, renamed or deleted file) durable.
pub(crate) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
