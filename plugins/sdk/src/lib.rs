//! The Rust SDK for mailwit plugins.
//!
//! A mailwit plugin is a WebAssembly component that exports one or more *hooks* (`connect`, `ehlo`,
//! `auth` and its challenge-response companion `auth_challenge`, `mail`, `rcpt`, `data`, `route`
//! and its ODMR companion `route_hold`, `delivery`, `outbound`) of the `mailwit:plugin@0.2.0` contract and
//! imports only the host capabilities it uses (`log`, `config`, `kv`, `dns`, `clock`; `message` is
//! always available). This crate holds the generated bindings, so a plugin crate needs neither the WIT
//! files nor `wit-bindgen`: it implements the hook traits and calls [`export!`].
//!
//! ```ignore
//! use mailwit_plugin::prelude::*;
//!
//! struct NoSpamTest;
//!
//! impl MailHook for NoSpamTest {
//!     fn on_mail(_session: SessionInfo, from: ReversePath) -> Verdict {
//!         match domain_of(&from.address) {
//!             Some(domain) if domain.eq_ignore_ascii_case("spam.test") => {
//!                 Verdict::reject(550, "5.7.1", "mail from spam.test is refused")
//!             }
//!             _ => Verdict::Continue,
//!         }
//!     }
//! }
//!
//! mailwit_plugin::export!(NoSpamTest: mail);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to name in the server's `[plugins.NAME]` table.
//!
//! The helpers are plain functions over the generated types ([`address`], [`reply`], [`headers`],
//! [`cram_md5`] for CRAM-MD5 secrets),
//! thin wrappers over host imports ([`config`], [`kv`], [`log`], [`dns`], [`clock`]), and all of them
//! compile on the native target too, so a plugin's pure logic can be unit-tested with `cargo test`
//! (calling a host import outside a Wasm host panics).

// The generated export macros name this crate by path; this makes the same paths work inside it.
extern crate self as mailwit_plugin;

pub mod address;
pub mod bindings;
pub mod config;
pub mod cram_md5;
pub mod headers;
pub mod http;
pub mod kv;
pub mod reply;

/// Logging through the host's tracing, tagged with the plugin's name and the session id.
pub mod log {
    pub use crate::bindings::mailwit::plugin::log::{Level, log};

    pub fn error(message: &str) {
        log(Level::Error, message)
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
}

/// DNS lookups through the host's resolver (needs the `dns` grant).
pub mod dns {
    pub use crate::bindings::mailwit::plugin::dns::*;
}

/// Wall-clock time from the host (needs the `clock` grant).
pub mod clock {
    pub use crate::bindings::mailwit::plugin::clock::now_ms;
}

/// The types of the contract, under the names a plugin author uses.
pub mod types {
    pub use crate::bindings::auth::exports::mailwit::plugin::auth::{AuthResult, Credentials};
    pub use crate::bindings::auth_challenge::exports::mailwit::plugin::auth_challenge::{
        ChallengeResponse, ChallengeResult,
    };
    pub use crate::bindings::data::exports::mailwit::plugin::data::{
        ArcResult, Authentication, DataResult, DkimResult, DmarcResult, Modification, SpfResult,
    };
    pub use crate::bindings::delivery::exports::mailwit::plugin::delivery::{
        DeliveryEvent, Outcome,
    };
    pub use crate::bindings::mailwit::plugin::message::Message;
    pub use crate::bindings::mailwit::plugin::types::{
        BodyType, DsnRet, Envelope, HeaderField, ListenerRole, Notify, Recipient, Reply,
        ReversePath, SessionInfo, TlsInfo, Verdict,
    };
    pub use crate::bindings::outbound::exports::mailwit::plugin::outbound::{
        Destination, DestinationKind, HeaderEdit, OutboundAction, OutboundAttempt, OutboundResult,
        Reroute,
    };
    pub use crate::bindings::rcpt::exports::mailwit::plugin::rcpt::RcptResult;
    pub use crate::bindings::route::exports::mailwit::plugin::route::{
        RelayTarget, RouteDecision, TlsPolicy,
    };
}

/// The hook traits. A plugin implements the ones it exports and names them in [`export!`].
pub mod hooks {
    pub use crate::bindings::auth::exports::mailwit::plugin::auth::Guest as AuthHook;
    pub use crate::bindings::auth_challenge::exports::mailwit::plugin::auth_challenge::Guest as AuthChallengeHook;
    pub use crate::bindings::connect::exports::mailwit::plugin::connect::Guest as ConnectHook;
    pub use crate::bindings::data::exports::mailwit::plugin::data::Guest as DataHook;
    pub use crate::bindings::delivery::exports::mailwit::plugin::delivery::Guest as DeliveryHook;
    pub use crate::bindings::ehlo::exports::mailwit::plugin::ehlo::Guest as EhloHook;
    pub use crate::bindings::mail::exports::mailwit::plugin::mail::Guest as MailHook;
    pub use crate::bindings::outbound::exports::mailwit::plugin::outbound::Guest as OutboundHook;
    pub use crate::bindings::rcpt::exports::mailwit::plugin::rcpt::Guest as RcptHook;
    pub use crate::bindings::route::exports::mailwit::plugin::route::Guest as RouteHook;
    /// `on_route_hold` returns `true` to hold the recipient for ODMR collection (ATRN); asked
    /// before the same plugin's `RouteHook::on_route`. Export it with `route` (see [`export!`]).
    pub use crate::bindings::route_hold::exports::mailwit::plugin::route_hold::Guest as RouteHoldHook;
}

/// `use mailwit_plugin::prelude::*;` brings the hook traits, the types and the common helpers.
pub mod prelude {
    pub use crate::address::{domain_of, local_part_of};
    pub use crate::headers::MessageExt;
    pub use crate::hooks::*;
    pub use crate::types::*;
}

/// Exports a type as the implementation of the named hooks, and only those:
/// `mailwit_plugin::export!(MyPlugin: mail, rcpt);`
///
/// Each hook name is one of `connect`, `ehlo`, `auth`, `auth_challenge` (with `auth`), `mail`,
/// `rcpt`, `data`, `route`, `route_hold` (with `route`), `delivery`, `outbound`; the type must
/// implement the matching trait from [`hooks`] (e.g. `MailHook`, `AuthChallengeHook`,
/// `RouteHoldHook`).
#[macro_export]
macro_rules! export {
    ($ty:ident : $($hook:ident),+ $(,)?) => {
        $( $crate::__export_hook!($hook, $ty); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_hook {
    (connect, $ty:ident) => {
        $crate::bindings::connect::export_connect!($ty with_types_in $crate::bindings::connect);
    };
    (ehlo, $ty:ident) => {
        $crate::bindings::ehlo::export_ehlo!($ty with_types_in $crate::bindings::ehlo);
    };
    (auth, $ty:ident) => {
        $crate::bindings::auth::export_auth!($ty with_types_in $crate::bindings::auth);
    };
    (auth_challenge, $ty:ident) => {
        $crate::bindings::auth_challenge::export_auth_challenge!($ty with_types_in $crate::bindings::auth_challenge);
    };
    (mail, $ty:ident) => {
        $crate::bindings::mail::export_mail!($ty with_types_in $crate::bindings::mail);
    };
    (rcpt, $ty:ident) => {
        $crate::bindings::rcpt::export_rcpt!($ty with_types_in $crate::bindings::rcpt);
    };
    (data, $ty:ident) => {
        $crate::bindings::data::export_data!($ty with_types_in $crate::bindings::data);
    };
    (route, $ty:ident) => {
        $crate::bindings::route::export_route!($ty with_types_in $crate::bindings::route);
    };
    (route_hold, $ty:ident) => {
        $crate::bindings::route_hold::export_route_hold!($ty with_types_in $crate::bindings::route_hold);
    };
    (outbound, $ty:ident) => {
        $crate::bindings::outbound::export_outbound!($ty with_types_in $crate::bindings::outbound);
    };
    (delivery, $ty:ident) => {
        $crate::bindings::delivery::export_delivery!($ty with_types_in $crate::bindings::delivery);
    };
    ($other:ident, $ty:ident) => {
        compile_error!(concat!(
            "unknown mailwit hook `",
            stringify!($other),
            "`: expected connect, ehlo, auth, auth_challenge, mail, rcpt, data, route, route_hold, delivery or outbound"
        ));
    };
}

#[doc(hidden)]
pub mod __rt {
    pub use wit_bindgen;
}
