//! Migration from the spool format of earlier versions: one `ID.msg` file per message
//! (`mailwit-spool 1\n`, a JSON metadata line, the message), one `ID.state` file of JSON lines per
//! message (the queue manager's records) and `ID.tmp` files of unacknowledged writes.
//!
//! On open, every `ID.msg` is copied with its states (same id) into the active segment, the
//! segment is synced, and only then are the old files deleted. A crash in between repeats the
//! copy on the next start; the later copy of an id replaces the earlier one, so nothing is
//! duplicated. A file that cannot be read is moved to `quarantine/` with an error log line.

use super::commit::Active;
use super::id::QueueId;
use super::index::Index;
use super::message::MessageMeta;
use super::record;
use super::segment::Span;
use super::segment::fsync_dir;
use std::io::BufRead;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8] = b"mailwit-spool 1\n";

/// Migrates old-format files in `dir` into `active`; returns how many messages moved.
pub(super) fn migrate(
    dir: &Path,
    index: &mut Index,
    active: &mut Active,
) -> std::io::Result<usize> {
    let mut messages = Vec::new();
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        let Some(id) = QueueId::parse(stem) else {
            continue;
        };
        match ext {
            "msg" => messages.push(id),
            "state" | "tmp" => leftovers.push(entry.path()),
            _ => {}
        }
    }
    if messages.is_empty() && leftovers.is_empty() {
        return Ok(0);
    }
    messages.sort();
    tracing::warn!(
        messages = messages.len(),
        dir = %dir.display(),
        "migrating the spool from the one-file-per-message format to the segment log"
    );
    let mut moved = Vec::new();
    for id in &messages {
        let msg_path = dir.join(format!("{id}.msg"));
        let (meta, message) = match read_msg(&msg_path) {
            Ok(parts) => parts,
            Err(e) => {
                let aside = dir.join("quarantine").join(format!("{id}.msg"));
                tracing::error!(queue_id = %id, error = %e, file = %aside.display(),
                    "unreadable old-format spool file moved aside, not migrated");
                std::fs::create_dir_all(aside.parent().expect("has a parent"))?;
                std::fs::rename(&msg_path, &aside)?;
                continue;
            }
        };
        let states = read_states(&dir.join(format!("{id}.state")))?;
        let bytes = record::message(&meta, &states, &message)?;
        let span = Span {
            offset: active.size,
            len: bytes.len() as u32,
        };
        active.file.write_all_at(&bytes, active.size)?;
        active.size += bytes.len() as u64;
        moved.push((meta, states, span));
    }
    active.file.sync_data()?;
    let count = moved.len();
    for (meta, states, span) in moved {
        index.put(meta, states, active.seq, span);
    }
    if let Some(seg) = index.segments.get_mut(&active.seq) {
        seg.size = active.size;
    }
    // The copies are durable: the old files can go.
    for id in &messages {
        remove_if_present(&dir.join(format!("{id}.msg")))?;
    }
    for path in leftovers {
        remove_if_present(&path)?;
    }
    fsync_dir(dir)?;
    tracing::warn!(messages = count, "spool migration finished");
    Ok(count)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn read_msg(path: &Path) -> std::io::Result<(MessageMeta, Vec<u8>)> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut magic = Vec::new();
    reader.read_until(b'\n', &mut magic)?;
    if magic != MAGIC {
        return Err(invalid("not an old-format mailwit spool file".into()));
    }
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    let meta: MessageMeta =
        serde_json::from_slice(&line).map_err(|e| invalid(format!("bad spool header: {e}")))?;
    let mut message = Vec::with_capacity(meta.size as usize);
    std::io::Read::read_to_end(&mut reader, &mut message)?;
    if message.len() as u64 != meta.size {
        return Err(invalid(format!(
            "message is {} octets, header says {}",
            message.len(),
            meta.size
        )));
    }
    Ok((meta, message))
}

/// The lines of an old `ID.state` up to a torn last line (a crash mid-append).
fn read_states(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let log = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut states = Vec::new();
    for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if serde_json::from_slice::<serde_json::Value>(line).is_err() {
            break;
        }
        states.push(line.to_vec());
    }
    Ok(states)
}
