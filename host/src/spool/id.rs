//! Queue ids: unique, sortable by arrival, safe as file names.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// A spooled message's id: unique, sortable by arrival, safe as a file name.
/// 18 upper-case hex digits: 14 of a strictly increasing microsecond clock, 4 random.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct QueueId(pub String);

const CLOCK_DIGITS: usize = 14;
const RANDOM_DIGITS: usize = 4;

impl QueueId {
    /// Accepts exactly the ids the spool makes (so a stray file name is never taken for one).
    pub fn parse(s: &str) -> Option<QueueId> {
        let ok = s.len() == CLOCK_DIGITS + RANDOM_DIGITS
            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
        ok.then(|| QueueId(s.to_string()))
    }

    /// Microseconds since the Unix epoch at arrival (approximately: the clock part).
    pub fn micros(&self) -> u64 {
        u64::from_str_radix(&self.0[..CLOCK_DIGITS.min(self.0.len())], 16).unwrap_or(0)
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hands out ids from a clock that never repeats or goes back, even if the system clock does.
pub(super) struct IdGenerator {
    last_micros: Mutex<u64>,
}

impl IdGenerator {
    pub(super) fn new(newest_existing: Option<&QueueId>) -> Self {
        IdGenerator {
            last_micros: Mutex::new(newest_existing.map(QueueId::micros).unwrap_or(0)),
        }
    }

    pub(super) fn next(&self) -> QueueId {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let micros = {
            let mut last = self.last_micros.lock().unwrap();
            *last = now.max(*last + 1);
            *last
        };
        let random: u16 = rand::random();
        QueueId(format!("{micros:014X}{random:04X}"))
    }
}
