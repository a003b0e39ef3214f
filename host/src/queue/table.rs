//! The queue manager's in-memory index: every queued message, plus two ordered sets so the
//! scheduler never scans the whole queue. `ready` holds messages due now, fresh mail before
//! retries and each oldest first; `timers` holds the others by the time they fall due. Held
//! messages and messages being delivered are in neither.

use super::state::MessageState;
use crate::spool::QueueId;
use std::collections::{BTreeMap, BTreeSet};

pub(super) struct Entry {
    pub state: MessageState,
    /// An attempt is running; the scheduler leaves the message alone.
    pub active: bool,
    /// Where the message is indexed (kept so it can be unindexed without a search).
    slot: Option<Slot>,
}

#[derive(Clone, Copy)]
enum Slot {
    /// In `ready` with this "is a retry" flag.
    Ready(bool),
    /// In `timers` at this time (ms since the epoch).
    Timer(u64),
}

#[derive(Default)]
pub(super) struct Table {
    entries: BTreeMap<QueueId, Entry>,
    ready: BTreeSet<(bool, QueueId)>,
    timers: BTreeSet<(u64, QueueId)>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, id: &QueueId) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn contains(&self, id: &QueueId) -> bool {
        self.entries.contains_key(id)
    }

    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Changes an entry's state; its place in the schedule is recomputed afterwards.
    pub fn update<R>(
        &mut self,
        id: &QueueId,
        now: u64,
        change: impl FnOnce(&mut Entry) -> R,
    ) -> Option<R> {
        let result = change(self.entries.get_mut(id)?);
        self.reslot(id, now);
        Some(result)
    }

    /// Changes every entry (operator-wide commands); reschedules them all.
    pub fn update_all(&mut self, now: u64, mut change: impl FnMut(&mut Entry)) {
        let ids: Vec<QueueId> = self.entries.keys().cloned().collect();
        for id in ids {
            self.update(&id, now, &mut change);
        }
    }

    /// Adds a message unless it is already known.
    pub fn insert(&mut self, id: QueueId, state: MessageState, now: u64) {
        if self.entries.contains_key(&id) {
            return;
        }
        let entry = Entry {
            state,
            active: false,
            slot: None,
        };
        self.entries.insert(id.clone(), entry);
        self.reslot(&id, now);
    }

    pub fn remove(&mut self, id: &QueueId) -> Option<Entry> {
        self.unslot(id);
        self.entries.remove(id)
    }

    /// The next message to deliver now, marked active, with its due recipients.
    pub fn take_ready(&mut self, now: u64) -> Option<(QueueId, Vec<usize>)> {
        // Timers that came due move to `ready` first.
        while let Some((due, id)) = self.timers.first().cloned() {
            if due > now {
                break;
            }
            self.reslot(&id, now);
        }
        let (_, id) = self.ready.pop_first()?;
        let entry = self.entries.get_mut(&id).expect("indexed entries exist");
        entry.slot = None;
        entry.active = true;
        let due = entry.state.due(now);
        Some((id, due))
    }

    /// When the earliest timer falls due.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.first().map(|(due, _)| *due)
    }

    fn unslot(&mut self, id: &QueueId) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        match entry.slot.take() {
            Some(Slot::Ready(retry)) => {
                self.ready.remove(&(retry, id.clone()));
            }
            Some(Slot::Timer(due)) => {
                self.timers.remove(&(due, id.clone()));
            }
            None => {}
        }
    }

    fn reslot(&mut self, id: &QueueId, now: u64) {
        self.unslot(id);
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.active || entry.state.held {
            return;
        }
        match entry.state.next_due() {
            None => {}
            Some(due) if due <= now => {
                let retry = entry.state.is_retry();
                self.ready.insert((retry, id.clone()));
                entry.slot = Some(Slot::Ready(retry));
            }
            Some(due) => {
                self.timers.insert((due, id.clone()));
                entry.slot = Some(Slot::Timer(due));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Envelope, Recipient};
    use crate::queue::state::{RcptStatus, outcome};
    use crate::spool::MessageMeta;

    fn state(id: &str) -> MessageState {
        MessageState::fresh(MessageMeta {
            id: QueueId(id.into()),
            arrived_ms: 0,
            size: 0,
            envelope: Envelope {
                reverse_path: Default::default(),
                recipients: vec![Recipient::default()],
            },
            quarantine: None,
            session_id: String::new(),
        })
    }

    fn deferred(id: &str, until: u64) -> MessageState {
        let mut s = state(id);
        let reply = crate::policy::Reply::new(451, "4.0.0", "later");
        s.apply(&outcome(0, RcptStatus::Deferred, &reply, until));
        s
    }

    #[test]
    fn fresh_mail_goes_before_retries_and_timers_fall_due() {
        let mut t = Table::default();
        let id = |s: &str| QueueId(s.into());
        t.insert(id("A"), deferred("A", 50), 100); // an old retry, due now
        t.insert(id("C"), deferred("C", 500), 100); // due later
        t.insert(id("B"), state("B"), 100); // fresh
        t.insert(id("D"), state("D"), 100); // fresh, newer
        assert_eq!(t.take_ready(100).unwrap().0, id("B"));
        assert_eq!(t.take_ready(100).unwrap().0, id("D"));
        assert_eq!(t.take_ready(100).unwrap().0, id("A"));
        assert!(t.take_ready(100).is_none());
        assert_eq!(t.next_timer(), Some(500));
        let (c, due) = t.take_ready(500).unwrap();
        assert_eq!((c, due), (id("C"), vec![0]));
        // Active entries are not scheduled until their attempt finishes.
        assert!(t.take_ready(10_000).is_none());
        t.update(&id("C"), 10_000, |e| e.active = false);
        assert_eq!(t.take_ready(10_000).unwrap().0, id("C"));
    }

    #[test]
    fn held_and_removed_messages_leave_the_schedule() {
        let mut t = Table::default();
        let id = QueueId("A".into());
        t.insert(id.clone(), deferred("A", 500), 0);
        t.update(&id, 0, |e| e.state.held = true);
        assert_eq!(t.next_timer(), None);
        t.update(&id, 0, |e| e.state.held = false);
        assert_eq!(t.next_timer(), Some(500));
        t.remove(&id);
        assert_eq!(t.next_timer(), None);
        assert!(t.take_ready(1000).is_none());
    }
}
