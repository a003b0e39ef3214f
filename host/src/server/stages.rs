//! Answers the session's events, one function per SMTP stage: first the connection's policy
//! hooks (plugins), then the core's defaults and safety nets (built-in users file, relay control,
//! local mailboxes, Received header, durable spool before 250).

use super::received::Trace;
use super::relay::{self, RecipientDomain};
use super::shared::Shared;
use crate::mailauth::Origin;
use crate::policy::{
    AuthResult, Credentials, Envelope, ListenerRole, Message, Recipient, Reply, ReversePath,
    SessionHooks, SessionInfo, TlsInfo, Verdict,
};
use crate::smtp::{Answer, Event, Session};
use crate::spool::Incoming;
use std::sync::Arc;
use std::time::Duration;

/// The engine side of one session: its hooks and what they are told about it.
pub struct SessionPolicy {
    shared: Arc<Shared>,
    hooks: Box<dyn SessionHooks>,
    info: SessionInfo,
    /// EHLO (true) or HELO (false), for the Received header.
    extended: bool,
    transactions: u64,
    /// The mail an accepted ATRN claimed, delivered after the turn.
    collection: Option<crate::queue::Collection>,
}

impl SessionPolicy {
    pub fn new(
        shared: Arc<Shared>,
        hooks: Box<dyn SessionHooks>,
        info: SessionInfo,
    ) -> SessionPolicy {
        SessionPolicy {
            shared,
            hooks,
            info,
            extended: false,
            transactions: 0,
            collection: None,
        }
    }

    /// The collection an accepted ATRN claimed (taken once, at the turn).
    pub fn take_collection(&mut self) -> Option<crate::queue::Collection> {
        self.collection.take()
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// See [`SessionHooks::holds_idle_resources`].
    pub fn holds_idle_resources(&self) -> bool {
        self.hooks.holds_idle_resources()
    }

    /// See [`SessionHooks::release_idle`].
    pub fn release_idle(&mut self) {
        self.hooks.release_idle();
    }

    pub async fn connect(&mut self) -> Verdict {
        self.hooks.connect(&self.info).await
    }

    /// After STARTTLS everything the client said before is forgotten (RFC 3207 4.2).
    pub fn tls_started(&mut self, tls: TlsInfo) {
        self.info.tls = Some(tls);
        self.info.helo = None;
        self.info.authenticated = None;
    }

    /// Answers one event (every event except StartTls and Close, which the IO loop handles).
    pub async fn answer(&mut self, session: &Session, event: Event) -> Answer {
        match event {
            Event::Ehlo { name, extended } => self.ehlo(name, extended).await,
            Event::Auth(credentials) => self.auth(session, credentials).await,
            Event::Mail(from) => self.mail(from).await,
            Event::Rcpt(rcpt) => self.rcpt(session, rcpt).await,
            Event::Message { envelope, data } => self.message(envelope, data).await,
            Event::Etrn { domain } => self.etrn(domain),
            Event::Atrn { domains } => self.atrn(domains).await,
            Event::StartTls | Event::Close | Event::Turn { .. } => Answer::Accept,
        }
    }

    /// ETRN (RFC 1985): start a queue run for a domain, for clients `[queue] etrn_clients` lists.
    fn etrn(&mut self, domain: String) -> Answer {
        let queue = match &self.shared.queue {
            Some(queue) if self.shared.config.queue.etrn_allowed(self.info.client.ip()) => queue,
            _ => {
                return Answer::Refuse(Reply::new(458, "4.7.0", "ETRN not allowed for you"));
            }
        };
        let name = domain.trim_start_matches(['@', '#']);
        let flushed = queue.flush(Some(name));
        tracing::info!(%domain, flushed, "ETRN");
        Answer::Accept
    }

    /// ATRN (RFC 2645): the authenticated user collects the held mail of its domains
    /// (`[odmr] users`); all of them when it names none.
    async fn atrn(&mut self, domains: Vec<String>) -> Answer {
        let Some(queue) = &self.shared.queue else {
            return Answer::Refuse(Reply::new(
                451,
                "4.3.0",
                "Unable to process ATRN request now",
            ));
        };
        let user = self.info.authenticated.clone().unwrap_or_default();
        let allowed = self.shared.config.odmr.domains_of(&user);
        let domains = if domains.is_empty() {
            allowed.clone()
        } else {
            domains
        };
        if domains.is_empty() {
            tracing::info!(%user, "ATRN refused: no ODMR domains for this user");
            return Answer::Refuse(Reply::new(
                450,
                "4.7.1",
                "ATRN request refused: no domains to collect",
            ));
        }
        if let Some(denied) = domains.iter().find(|d| !allowed.contains(d)) {
            tracing::info!(%user, domain = %denied, "ATRN refused: domain not allowed");
            return Answer::Refuse(Reply::new(
                450,
                "4.7.1",
                format!("ATRN request refused: {denied} is not yours to collect"),
            ));
        }
        match queue.collect(&domains).await {
            Err(busy) => {
                tracing::info!(%user, domain = %busy, "ATRN refused: domain being collected");
                Answer::Refuse(Reply::new(
                    451,
                    "4.4.5",
                    format!(
                        "Unable to process ATRN request now: {busy} is being collected by another session"
                    ),
                ))
            }
            Ok(None) => {
                tracing::info!(%user, domains = %domains.join(","), "ATRN: no mail");
                Answer::Refuse(Reply::new(453, "4.3.0", "You have no mail"))
            }
            Ok(Some(collection)) => {
                tracing::info!(%user, domains = %domains.join(","), messages = collection.len(), "ATRN: turning the connection");
                self.collection = Some(collection);
                Answer::Accept
            }
        }
    }

    async fn ehlo(&mut self, name: String, extended: bool) -> Answer {
        self.info.helo = Some(name.clone());
        self.extended = extended;
        verdict_answer(self.hooks.ehlo(&self.info, &name).await)
    }

    async fn auth(&mut self, session: &Session, credentials: Credentials) -> Answer {
        let ip = self.info.client.ip();
        if self.shared.auth_failures.blocked(ip).await {
            tracing::info!(%ip, "AUTH refused: too many recent failures from this address");
            return Answer::Disconnect(Reply::new(
                421,
                "4.7.0",
                "Too many authentication failures from your address, try again later",
            ));
        }
        // Plugins first (a challenge-response only reaches those that export `auth-challenge`),
        // then the users file for a user no plugin knew.
        let mut result = self.hooks.auth(&self.info, &credentials).await;
        if result == AuthResult::Unknown {
            result = self.shared.users.check(&credentials).await;
        }
        match result {
            AuthResult::Ok(identity) => {
                tracing::Span::current().record("auth", tracing::field::display(&identity));
                tracing::info!(mechanism = %credentials.mechanism, %identity, "authenticated");
                self.info.authenticated = Some(identity.clone());
                Answer::Authenticated(identity)
            }
            AuthResult::Tempfail(text) => Answer::Refuse(Reply::new(
                454,
                "4.7.0",
                if text.is_empty() {
                    "Temporary authentication failure".into()
                } else {
                    text
                },
            )),
            AuthResult::Invalid | AuthResult::Unknown => {
                // Each failure costs the client more time before the reply (then the session
                // closes after max_auth_failures): password guessing gets slow. The count is
                // the session's or the IP's recent one, whichever is larger, so reconnecting
                // does not reset it.
                let from_ip = self.shared.auth_failures.record(ip).await;
                let failures = u64::from((session.auth_failures() + 1).max(from_ip));
                tracing::info!(mechanism = %credentials.mechanism, user = %credentials.authcid, failures, "authentication failed");
                tokio::time::sleep(Duration::from_millis(250 * failures.min(8))).await;
                Answer::Refuse(Reply::new(
                    535,
                    "5.7.8",
                    "Authentication credentials invalid",
                ))
            }
        }
    }

    async fn mail(&mut self, from: ReversePath) -> Answer {
        if self.info.role == crate::policy::ListenerRole::Odmr {
            // RFC 2645 §4: the ODMR port serves EHLO, AUTH, ATRN and QUIT; mail goes in
            // through mx or submission.
            return Answer::Refuse(Reply::new(
                502,
                "5.5.1",
                "This port only serves ATRN (RFC 2645); submit mail elsewhere",
            ));
        }
        // Between transactions: the hooks may move to a newer configuration generation.
        self.hooks.begin_transaction().await;
        verdict_answer(self.hooks.mail(&self.info, &from).await)
    }

    async fn rcpt(&mut self, session: &Session, mut rcpt: Recipient) -> Answer {
        let local = &self.shared.config.local;
        let authenticated = self.info.authenticated.is_some();
        // The safety net comes first: no plugin can open a relay for an unauthenticated client.
        let original = rcpt.address.clone();
        // An ODMR domain's mail is accepted here for its customer (we are its MX): like a
        // local domain for relay control.
        let held = crate::mail::address::split(&rcpt.address)
            .is_some_and(|(_, domain)| self.shared.config.is_odmr_domain(domain));
        match relay::check(&rcpt.address, authenticated || held, local) {
            Ok(RecipientDomain::Local(address)) | Ok(RecipientDomain::Remote(address)) => {
                rcpt.address = address
            }
            Err(reply) => {
                tracing::info!(rcpt = %rcpt.address, "relay denied");
                return Answer::Refuse(reply);
            }
        }
        let from = session
            .envelope()
            .map(|e| e.reverse_path.clone())
            .unwrap_or_default();
        let result = self.hooks.rcpt(&self.info, &from, &rcpt).await;
        if let Some(rewrite) = result.rewrite {
            rcpt.address = rewrite;
        }
        match result.verdict {
            Verdict::Continue => {}
            Verdict::Accept => return accept_as(&original, rcpt.address),
            other => return verdict_answer(other),
        }
        // Core default: a local domain's recipient must be a mailbox (or an alias of one).
        match crate::mail::address::split(&rcpt.address) {
            Some((_, domain)) if local.is_local_domain(domain) => {
                match local.resolve(&rcpt.address) {
                    Some(mailbox) => accept_as(&original, mailbox),
                    None => Answer::Refuse(Reply::new(
                        550,
                        "5.1.1",
                        format!("<{original}>: Recipient address rejected: User unknown"),
                    )),
                }
            }
            _ if authenticated => accept_as(&original, rcpt.address),
            // A plugin rewrote a local address to a remote one for an unauthenticated client:
            // that is the plugin's forwarding decision, made after the relay check.
            _ => accept_as(&original, rcpt.address),
        }
    }

    async fn message(&mut self, mut envelope: Envelope, data: Vec<u8>) -> Answer {
        self.transactions += 1;
        let transaction = format!("{}.{}", self.info.id, self.transactions);
        let from = envelope.reverse_path.address.clone();
        // Inbound mail (mx listener, no AUTH) is verified before the data hook, so plugins can
        // decide on the results; forged Authentication-Results claiming our id go away here.
        let (auth_results, data) =
            if self.info.role == ListenerRole::Mx && self.info.authenticated.is_none() {
                let origin = Origin {
                    client_ip: self.info.client.ip(),
                    helo: self.info.helo.as_deref().unwrap_or(""),
                    mail_from: &from,
                };
                self.shared.mailauth.verify_inbound(&origin, data).await
            } else {
                (None, data)
            };
        if let Some(results) = &auth_results {
            tracing::info!(
                %transaction,
                spf = results.spf_mail_from.result.as_str(),
                dkim = ?results.dkim.iter().map(|d| d.result.as_str()).collect::<Vec<_>>(),
                dmarc = results.dmarc.as_ref().map_or("none", |d| d.result.as_str()),
                arc = results.arc.result.as_str(),
                "authentication results"
            );
            self.hooks.authentication_results(results.to_policy());
        }
        let result = self
            .hooks
            .data(&self.info, &envelope, Message { bytes: &data })
            .await;
        if let Some(results) = &auth_results {
            self.shared
                .mailauth
                .record_dmarc(results, self.info.client.ip(), &result.verdict);
        }
        let mut quarantine = None;
        match result.verdict {
            Verdict::Continue | Verdict::Accept => {}
            Verdict::Quarantine(reason) => quarantine = Some(reason),
            Verdict::Discard => {
                tracing::info!(%transaction, %from, recipients = envelope.recipients.len(), size = data.len(), outcome = "discarded", "transaction");
                self.shared.metrics.transaction("discarded");
                return Answer::Queued(format!("{transaction} (discarded)"));
            }
            other => {
                let answer = verdict_answer(other);
                tracing::info!(%transaction, %from, recipients = envelope.recipients.len(), size = data.len(), outcome = "rejected", "transaction");
                self.shared.metrics.transaction("rejected");
                return answer;
            }
        }
        // Header and envelope edits from the data hook (validated and capped by the policy module).
        // The message as received is kept when the hook changed it: an ARC seal records the
        // verification of what arrived.
        let (received, data) = if result.modifications.is_empty() {
            (None, data)
        } else {
            let modified =
                crate::policy::apply_modifications(&data, &mut envelope, &result.modifications);
            (Some(data), modified)
        };
        if envelope.recipients.is_empty() {
            // The data hook removed every recipient: nothing to deliver.
            tracing::info!(%transaction, %from, size = data.len(), outcome = "no-recipients", "transaction");
            self.shared.metrics.transaction("no_recipients");
            return Answer::Queued(format!("{transaction} (no recipients left)"));
        }
        let trace = Trace {
            helo: self.info.helo.as_deref(),
            client_ip: self.info.client.ip(),
            hostname: &self.shared.config.server.hostname,
            extended: self.extended,
            tls: self.info.tls.as_ref(),
            authenticated: self.info.authenticated.is_some(),
            id: &transaction,
            single_recipient: match envelope.recipients.as_slice() {
                [one] => Some(one.address.as_str()),
                _ => None,
            },
            date: chrono::Local::now().fixed_offset(),
        };
        let header = trace.header();
        let results_header = auth_results
            .as_ref()
            .map(|r| r.header())
            .unwrap_or_default();
        let mut message = Vec::with_capacity(header.len() + results_header.len() + data.len());
        message.extend_from_slice(header.as_bytes());
        message.extend_from_slice(results_header.as_bytes());
        message.extend_from_slice(&data);
        // DKIM signing comes last, after every change to the message (plugin modifications,
        // Received): mail of authenticated senders whose From domain has a key.
        let signers = self.shared.mailauth.signers.current();
        if self.info.authenticated.is_some() && !signers.is_empty() {
            let mut signatures = signers.sign(&message);
            // What we sign must reach every peer unchanged: an 8-bit body is made 7-bit
            // (quoted-printable, RFC 6152 §3) before signing, so no peer without 8BITMIME
            // forces a downgrade that would break the signature. BINARYMIME is left alone.
            if !signatures.is_empty()
                && !message.is_ascii()
                && envelope.reverse_path.body != Some(crate::mail::BodyType::BinaryMime)
                && let Some(seven_bit) = crate::mail::downgrade::downgrade_8bit(&message)
            {
                message = seven_bit;
                signatures = signers.sign(&message);
            }
            if !signatures.is_empty() {
                let mut signed = signatures;
                signed.extend_from_slice(&message);
                message = signed;
            }
        }
        // ARC sealing (`[arc] seal`): verified inbound mail that leaves for another domain (a
        // plugin's forward) gets the next ARC set on top, over the message as it leaves.
        if auth_results.is_some() && self.shared.mailauth.sealer.is_some() {
            let config = &self.shared.config;
            let forwarded = envelope.recipients.iter().any(|r| {
                crate::mail::address::split(&r.address).is_some_and(|(_, domain)| {
                    !config.local.is_local_domain(domain) && !config.is_odmr_domain(domain)
                })
            });
            let origin = Origin {
                client_ip: self.info.client.ip(),
                helo: self.info.helo.as_deref().unwrap_or(""),
                mail_from: &from,
            };
            // Like DKIM signing: what we seal must reach the next hop unchanged, so an 8-bit
            // body goes out 7-bit (quoted-printable) rather than be downgraded after the seal.
            if forwarded
                && !message.is_ascii()
                && envelope.reverse_path.body != Some(crate::mail::BodyType::BinaryMime)
                && let Some(seven_bit) = crate::mail::downgrade::downgrade_8bit(&message)
            {
                message = seven_bit;
            }
            if forwarded
                && let Some(set) = self
                    .shared
                    .mailauth
                    .seal_forwarded(&origin, received.as_deref().unwrap_or(&data), &message)
                    .await
            {
                let mut sealed = set;
                sealed.extend_from_slice(&message);
                message = sealed;
            }
        }
        let size = message.len();
        let recipients = envelope.recipients.len();
        let incoming = Incoming {
            envelope,
            message,
            quarantine,
            session_id: self.info.id.clone(),
        };
        // 250 only once the spool says the message is durable (fsynced file and directory).
        let limit = Duration::from_secs(self.shared.config.server.timeouts.data_termination);
        match tokio::time::timeout(limit, self.shared.spool.store(incoming)).await {
            Ok(Ok(id)) => {
                tracing::info!(%transaction, queue_id = %id, %from, recipients, size, outcome = "queued", "transaction");
                let metrics = &self.shared.metrics;
                metrics.transaction("queued");
                metrics.messages_accepted.inc();
                metrics.message_size.observe(size as f64);
                Answer::Queued(id.to_string())
            }
            Ok(Err(e)) => {
                tracing::error!(%transaction, error = %e, outcome = "spool-error", "transaction");
                self.shared.metrics.transaction("spool_error");
                Answer::Refuse(Reply::new(
                    451,
                    "4.3.0",
                    "Local error in processing, try again later",
                ))
            }
            Err(_) => {
                tracing::error!(%transaction, outcome = "spool-timeout", "transaction");
                self.shared.metrics.transaction("spool_error");
                Answer::Refuse(Reply::new(
                    451,
                    "4.4.2",
                    "Timeout while storing the message, try again later",
                ))
            }
        }
    }
}

/// Accept, telling the session the address to record if it changed (aliases, rewrites).
fn accept_as(original: &str, address: String) -> Answer {
    if address == original {
        Answer::Accept
    } else {
        Answer::AcceptAs(address)
    }
}

/// A hook's verdict as an answer; `Continue` means the core's default, which is to accept.
fn verdict_answer(verdict: Verdict) -> Answer {
    match verdict {
        Verdict::Continue | Verdict::Accept | Verdict::Discard | Verdict::Quarantine(_) => {
            Answer::Accept
        }
        Verdict::Reject(reply) | Verdict::Tempfail(reply) => Answer::Refuse(reply),
        Verdict::Disconnect(reply) => Answer::Disconnect(reply),
    }
}
