//! The queue manager: everything the spool holds leaves it delivered, bounced, or still visibly
//! queued.
//!
//! - [`state`]: per-recipient state (pending, deferred with last error and next attempt, delivered,
//!   failed) as an append-only, fsynced log per message, replayed on start.
//! - [`manager`]: the scheduler. Woken by every store (the spool's arrivals channel), by
//!   operator commands and by the earliest retry time; fresh mail is dispatched ahead of
//!   retries; a global and a per-destination concurrency limit apply.
//! - [`route`]: the route hook, then the `[routes]` table.
//! - [`schedule`]: exponential back-off with jitter, lifetime.
//! - [`bounce`]: when a DSN goes out (NOTIFY rules, never for `<>`), spooled from `<>`.
//! - [`dsn`]: the DSN itself (RFC 3464 report format).
//! - `options`: what the queue manager needs to run ([`QueueOptions`], [`MessageSigner`]).
//! - `view`: the queue as `mailwit queue list/show/summary` present it ([`MessageView`],
//!   [`RecipientView`], [`DomainSummary`]).
//!
//! At-least-once: outcomes are recorded after the agent answered, so a crash in between repeats
//! the delivery (a duplicate) rather than losing it.

pub mod bounce;
pub mod dsn;
mod manager;
mod options;
mod outbound;
pub mod route;
pub mod schedule;
pub mod state;
mod table;
mod view;

pub use manager::{Collection, Queue};
pub use options::{MessageSigner, QueueOptions};
pub use route::{LocalDomains, NoLocalDomains};
pub use state::{RcptStatus, ReplyRecord};
pub use view::{DomainSummary, MessageView, RecipientView};
