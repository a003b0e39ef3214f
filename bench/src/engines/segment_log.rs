//! mailwit's own spool, through the API the server uses (`store`, `append_state`, `discard`).

use std::path::Path;

use anyhow::Result;
use mailwit::mail::envelope::{Envelope, Recipient, ReversePath};
use mailwit::spool::{Incoming, QueueId, Spool};

use super::Store;

pub struct SegmentLog {
    spool: Spool,
    envelope: Envelope,
}

impl SegmentLog {
    pub async fn open(dir: &Path) -> Result<SegmentLog> {
        let spool = Spool::open(dir.join("queue")).await?;
        // The queue manager's end of the arrivals channel: drained, as the server does.
        if let Some(mut arrivals) = spool.arrivals() {
            tokio::spawn(async move { while arrivals.recv().await.is_some() {} });
        }
        let envelope = Envelope {
            reverse_path: ReversePath {
                address: "loadgen@client.bench.test".into(),
                ..Default::default()
            },
            recipients: vec![Recipient {
                address: "bob@example.test".into(),
                ..Default::default()
            }],
        };
        Ok(SegmentLog { spool, envelope })
    }
}

impl Store for SegmentLog {
    type Id = QueueId;

    async fn store(&self, _envelope: &[u8], message: Vec<u8>) -> Result<QueueId> {
        // The spool serialises the envelope itself (JSON in the message record).
        let incoming = Incoming {
            envelope: self.envelope.clone(),
            message,
            quarantine: None,
            session_id: "bench-session-0000".into(),
        };
        Ok(self.spool.store(incoming).await?)
    }

    async fn state(&self, id: &QueueId, _n: u32, record: Vec<u8>) -> Result<()> {
        Ok(self.spool.append_state(id, vec![record]).await?)
    }

    async fn done(&self, id: &QueueId, _states: u32) -> Result<()> {
        Ok(self.spool.discard(id).await?)
    }

    fn groups(&self) -> u64 {
        self.spool.stats().batches
    }
}
