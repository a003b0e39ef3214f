//! A test plugin whose behaviour at each hook comes from its config: the key named like the hook
//! (`mail = "reject"`) picks a mode. Used by the host's containment, limit and reload tests.
//!
//! Modes: continue | accept | reject | tempfail | disconnect (verdicts; reply text is
//! "chaos <tag>" with `tag` from the config), loop (spin forever), alloc (allocate without bound),
//! panic, huge-reply (bad code, CR/LF and 100 KB text), huge-mods (data: 10 000 headers),
//! import-loop (call the clock import forever), spin (busy loop of `spin` iterations, then
//! continue), probe (rcpt: refuse only probe@ recipients with the tag), count (kv counter shared by instances; rejects with "count=N"), state (per-instance
//! call counter; rejects with "calls=N"), rewrite (rcpt: rewrite to `rewrite_to`), mods (data: add
//! `X-Chaos: <tag>` and continue), flaky (kv counter: panic for the first `fail_first` calls,
//! then refuse with "flaky N"), add-rcpt (data: add recipient `add_rcpt`);
//! route: maildir | discard | mx | relay (to `relay_host`:`relay_port`).

wit_bindgen::generate!({
    inline: "
        package mailwit-test:chaos;
        world chaos {
            import mailwit:plugin/log@0.2.0;
            import mailwit:plugin/config@0.2.0;
            import mailwit:plugin/kv@0.2.0;
            import mailwit:plugin/clock@0.2.0;
            export mailwit:plugin/connect@0.2.0;
            export mailwit:plugin/ehlo@0.2.0;
            export mailwit:plugin/auth@0.2.0;
            export mailwit:plugin/mail@0.2.0;
            export mailwit:plugin/rcpt@0.2.0;
            export mailwit:plugin/data@0.2.0;
            export mailwit:plugin/route@0.2.0;
            export mailwit:plugin/outbound@0.2.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use exports::mailwit::plugin::{auth, connect, data, ehlo, mail, outbound, rcpt, route};
use mailwit::plugin::config::{self, Value};
use mailwit::plugin::types::{Envelope, Recipient, Reply, ReversePath, SessionInfo, Verdict};
use mailwit::plugin::{clock, kv, log};

/// Hook calls this instance has seen (state lives across one session's hooks).
static CALLS: AtomicU32 = AtomicU32::new(0);

fn text(key: &str) -> Option<String> {
    match config::get(key) {
        Some(Value::Text(s)) => Some(s),
        _ => None,
    }
}

fn integer(key: &str) -> Option<i64> {
    match config::get(key) {
        Some(Value::Integer(i)) => Some(i),
        _ => None,
    }
}

fn reply(code: u16, enhanced: &str, text: String) -> Reply {
    Reply {
        code,
        enhanced: enhanced.into(),
        text,
    }
}

/// Runs the mode configured for `hook`; returns the verdict for the verdict modes.
fn act(hook: &str) -> Verdict {
    let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let mode = text(hook).unwrap_or_else(|| "continue".into());
    let tag = text("tag").unwrap_or_default();
    match mode.as_str() {
        "accept" => Verdict::Accept,
        "reject" => Verdict::Reject(reply(550, "5.7.1", format!("chaos {tag}"))),
        "tempfail" => Verdict::Tempfail(reply(451, "4.7.1", format!("chaos {tag}"))),
        "disconnect" => Verdict::Disconnect(reply(421, "4.7.0", format!("chaos {tag}"))),
        "loop" => {
            let mut i: u64 = 0;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
            }
        }
        "panic" => panic!("chaos panic in {hook}"),
        "huge-reply" => Verdict::Reject(reply(999, "x.y", "bad\r\nline ".repeat(10_000))),
        "import-loop" => loop {
            black_box(clock::now_ms());
        },
        "spin" => {
            let n = integer("spin").unwrap_or(1_000_000) as u64;
            let mut acc: u64 = 0;
            for i in 0..n {
                acc = black_box(acc.wrapping_mul(31).wrapping_add(i));
            }
            black_box(acc);
            Verdict::Continue
        }
        "count" => match kv::increment("count", 1, None) {
            Ok(n) => Verdict::Reject(reply(550, "5.7.1", format!("count={n}"))),
            Err(e) => Verdict::Tempfail(reply(451, "4.3.0", e)),
        },
        "state" => Verdict::Reject(reply(550, "5.7.1", format!("calls={calls}"))),
        "flaky" => {
            // Panics for the first `fail_first` calls across instances (a kv counter), then
            // refuses with "flaky n": a plugin that recovers, for the breaker's half-open test.
            let n = kv::increment("flaky", 1, None).unwrap_or(0);
            if n <= integer("fail_first").unwrap_or(0) {
                panic!("chaos flaky call {n} fails");
            }
            Verdict::Reject(reply(550, "5.7.1", format!("flaky {n}")))
        }
        "log" => {
            log::log(log::Level::Info, &format!("chaos {hook} {tag}"));
            Verdict::Continue
        }
        _ => Verdict::Continue,
    }
}

struct Chaos;

impl connect::Guest for Chaos {
    fn on_connect(_session: SessionInfo) -> Verdict {
        act("connect")
    }
}

impl ehlo::Guest for Chaos {
    fn on_ehlo(_session: SessionInfo, _name: String) -> Verdict {
        act("ehlo")
    }
}

impl auth::Guest for Chaos {
    fn check(_session: SessionInfo, credentials: auth::Credentials) -> auth::AuthResult {
        match text("auth").as_deref() {
            Some("ok") if credentials.secret == "secret" => {
                auth::AuthResult::Ok(credentials.authcid)
            }
            Some("ok") => auth::AuthResult::Invalid,
            Some("unknown") | None => auth::AuthResult::Unknown,
            _ => match act("auth") {
                Verdict::Continue => auth::AuthResult::Unknown,
                _ => auth::AuthResult::Invalid,
            },
        }
    }
}

impl mail::Guest for Chaos {
    fn on_mail(_session: SessionInfo, _reverse_path: ReversePath) -> Verdict {
        act("mail")
    }
}

impl rcpt::Guest for Chaos {
    fn on_rcpt(
        _session: SessionInfo,
        _from: ReversePath,
        recipient: Recipient,
    ) -> rcpt::RcptResult {
        if text("rcpt").as_deref() == Some("probe") {
            // Only probe@ recipients are refused, with the tag: shows which config is live.
            let verdict = if recipient.address.starts_with("probe@") {
                let tag = text("tag").unwrap_or_default();
                Verdict::Reject(reply(550, "5.7.1", format!("chaos {tag}")))
            } else {
                Verdict::Continue
            };
            return rcpt::RcptResult {
                verdict,
                rewrite: None,
            };
        }
        if text("rcpt").as_deref() == Some("rewrite") {
            CALLS.fetch_add(1, Ordering::Relaxed);
            return rcpt::RcptResult {
                verdict: Verdict::Continue,
                rewrite: text("rewrite_to"),
            };
        }
        rcpt::RcptResult {
            verdict: act("rcpt"),
            rewrite: None,
        }
    }
}

impl data::Guest for Chaos {
    fn on_data(
        _session: SessionInfo,
        _envelope: Envelope,
        message: &data::Message,
        _authentication: data::Authentication,
    ) -> data::DataResult {
        let tag = text("tag").unwrap_or_default();
        match text("data").as_deref() {
            Some("huge-mods") => data::DataResult {
                verdict: Verdict::Continue,
                modifications: (0..10_000)
                    .map(|i| {
                        data::Modification::AddHeader(mailwit::plugin::types::HeaderField {
                            name: format!("X-Flood-{i}"),
                            value: "x".repeat(64),
                        })
                    })
                    .collect(),
            },
            Some("add-rcpt") => data::DataResult {
                verdict: Verdict::Continue,
                modifications: vec![data::Modification::AddRecipient(
                    text("add_rcpt").unwrap_or_default(),
                )],
            },
            Some("mods") => data::DataResult {
                verdict: Verdict::Continue,
                modifications: vec![data::Modification::AddHeader(mailwit::plugin::types::HeaderField {
                    name: "X-Chaos".into(),
                    value: tag,
                })],
            },
            Some("inspect") => {
                // Echo what the message resource says, so the host test can check it.
                let subject = message.header("subject").unwrap_or_default();
                let body = message.read(message.body_offset(), 64);
                let text = format!(
                    "size={} subject={} body={}",
                    message.size(),
                    subject,
                    String::from_utf8_lossy(&body).trim_end()
                );
                data::DataResult {
                    verdict: Verdict::Reject(reply(550, "5.7.1", text)),
                    modifications: vec![],
                }
            }
            _ => data::DataResult {
                verdict: act("data"),
                modifications: vec![],
            },
        }
    }
}

impl route::Guest for Chaos {
    fn on_route(_from: ReversePath, recipient: Recipient) -> route::RouteDecision {
        match text("route").as_deref() {
            Some("maildir") => route::RouteDecision::Maildir(recipient.address),
            Some("discard") => route::RouteDecision::Discard,
            Some("mx") => route::RouteDecision::Mx,
            Some("relay") => route::RouteDecision::Relay(route::RelayTarget {
                host: text("relay_host").unwrap_or_else(|| "127.0.0.1".into()),
                port: integer("relay_port").unwrap_or(25) as u16,
                tls: route::TlsPolicy::None,
                credentials: None,
            }),
            Some("loop") | Some("panic") => {
                act("route");
                route::RouteDecision::Continue
            }
            _ => route::RouteDecision::Continue,
        }
    }
}

impl outbound::Guest for Chaos {
    /// `outbound = "edit"`: tempfail when a recipient starts with "defer", fail when one starts
    /// with "bounce", re-route to `reroute_port` when one starts with "reroute"; otherwise add
    /// `X-Outbound: <kind> <target> attempt=<n> <subject>` and remove `X-Internal`.
    fn on_outbound(
        attempt: outbound::OutboundAttempt,
        message: &outbound::Message,
    ) -> outbound::OutboundResult {
        let starts = |p: &str| attempt.recipients.iter().any(|r| r.starts_with(p));
        let action = if text("outbound").as_deref() != Some("edit") {
            outbound::OutboundAction::Proceed
        } else if starts("defer") {
            outbound::OutboundAction::Tempfail(reply(451, "4.7.1", "chaos outbound defers".into()))
        } else if starts("bounce") {
            outbound::OutboundAction::Fail(reply(550, "5.7.1", "chaos outbound refuses".into()))
        } else if starts("reroute") {
            let port = integer("reroute_port").unwrap_or(25) as u16;
            outbound::OutboundAction::Reroute(outbound::Reroute::Relay(("127.0.0.1".into(), port)))
        } else {
            outbound::OutboundAction::Proceed
        };
        let kind = match attempt.destination.kind {
            outbound::DestinationKind::Relay => "relay",
            outbound::DestinationKind::Mx => "mx",
            outbound::DestinationKind::Lmtp => "lmtp",
        };
        let subject = message.header("subject").unwrap_or_default();
        // `outbound_replace = "Name"`: also replace that field (a signed one should be refused).
        let replace = text("outbound_replace").map(|name| {
            outbound::HeaderEdit::Replace(mailwit::plugin::types::HeaderField {
                name,
                value: "replaced by chaos".into(),
            })
        });
        outbound::OutboundResult {
            action,
            headers: replace.into_iter().chain([
                outbound::HeaderEdit::Add(mailwit::plugin::types::HeaderField {
                    name: "X-Outbound".into(),
                    value: format!(
                        "{kind} {} attempt={} {subject}",
                        attempt.destination.target, attempt.attempt
                    ),
                }),
                outbound::HeaderEdit::Remove("X-Internal".into()),
            ])
            .collect(),
        }
    }
}

export!(Chaos);
