//! Mail itself, with no I/O and nothing of the rest of the server: the envelope, replies with
//! their RFC 3463 enhanced status codes, header sections, addresses, xtext and the 8BITMIME
//! downgrade.
//!
//! Every other layer uses these ([`crate::smtp`] parses into them, [`crate::policy`] hands them
//! to hooks, the spool stores them, delivery sends them); this module uses none of those, so it
//! builds anywhere (the fuzz crate compiles it as is).

pub mod address;
pub mod downgrade;
pub mod envelope;
pub mod header;
pub mod reply;
pub mod xtext;

pub use envelope::{BodyType, DsnRet, Envelope, Notify, Recipient, ReversePath};
pub use reply::Reply;
