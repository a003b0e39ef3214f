//! What the queue manager needs to run: its configuration, hooks and agents, and the signer of
//! the messages it writes itself.

use super::route::LocalDomains;
use crate::config::queue::{QueueConfig, RoutesConfig};
use crate::delivery::Agents;
use crate::policy::QueueHooks;
use std::sync::Arc;

/// Signs the messages the queue writes itself (DSNs) with the sender domain's DKIM key: returns
/// the DKIM-Signature fields to put on top (empty: no key for that domain). Keys stay in the
/// host; the composition root hands the server's live signers in.
pub trait MessageSigner: Send + Sync {
    fn signatures(&self, message: &[u8]) -> Vec<u8>;
}

/// What the queue manager needs to run.
pub struct QueueOptions {
    pub config: QueueConfig,
    pub routes: RoutesConfig,
    /// Our name, for DSN Reporting-MTA and MAILER-DAEMON.
    pub hostname: String,
    pub hooks: Arc<dyn QueueHooks>,
    pub local: Arc<dyn LocalDomains>,
    pub agents: Arc<dyn Agents>,
}
