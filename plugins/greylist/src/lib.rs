//! `greylist`: the first delivery attempt of an unknown (client network, sender, recipient) triplet
//! is refused at RCPT with 451 4.7.1; a retry after `delay_secs` passes, and the triplet is then
//! remembered as good for `pass_ttl_secs`. Real MTAs retry; most spam engines do not.
//! Needs the `kv` and `clock` grants. A kv failure fails open (logged).

mod triplet;

use mailwit_plugin::prelude::*;
use mailwit_plugin::{clock, config, kv, log};
use triplet::{Settings, Store};

struct Greylist;

/// The host's kv store.
struct Kv;

impl Store for Kv {
    fn get(&mut self, key: &str) -> Result<Option<u64>, String> {
        kv::get_u64(key)
    }
    fn put(&mut self, key: &str, value: u64, ttl_ms: u64) -> Result<(), String> {
        kv::put_u64(key, value, Some(ttl_ms))
    }
    fn delete(&mut self, key: &str) -> Result<(), String> {
        kv::delete(key).map(|_| ())
    }
}

impl RcptHook for Greylist {
    fn on_rcpt(session: SessionInfo, from: ReversePath, recipient: Recipient) -> RcptResult {
        let verdict = match config::cached::<Settings>() {
            Ok(settings) => settings
                .check(
                    &mut Kv,
                    clock::now_ms(),
                    &session,
                    &from.address,
                    &recipient.address,
                )
                .unwrap_or_else(|error| {
                    log::warn(&format!(
                        "greylist: kv failed, letting the message pass: {error}"
                    ));
                    Verdict::Continue
                }),
            Err(error) => {
                log::error(&format!("greylist: {error}"));
                Verdict::misconfigured("greylist")
            }
        };
        verdict.into()
    }
}

mailwit_plugin::export!(Greylist: rcpt);
