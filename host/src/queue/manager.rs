//! The scheduler and one delivery attempt of one message.

use super::bounce;
use super::dsn::Action as DsnAction;
use super::options::{MessageSigner, QueueOptions};
use super::route::{self, Routed};
use super::schedule;
use super::state::{self, MessageState, RcptStatus, Record};
use super::table::{Entry, Table};
use super::view::{DomainSummary, MessageView, RecipientView};
use crate::delivery::{Attempt, Destination, Outbound, RecipientOutcome};
use crate::mail::address;
use crate::policy::{DeliveryEvent, DeliveryOutcome, Recipient, Reply};
use crate::spool::{QueueId, Spool, SpooledMessage, now_ms};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

/// A handle to the running queue manager (cheap to clone).
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    spool: Arc<Spool>,
    opts: QueueOptions,
    /// `[queue]`, `[routes]` and the agents built from them, replaced by a reload; an attempt
    /// in flight keeps the settings it started with.
    settings: arc_swap::ArcSwap<Settings>,
    messages: Mutex<Table>,
    wake: Notify,
    stopped: AtomicBool,
    global: Arc<Semaphore>,
    per_destination: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// ODMR domains an ATRN session is collecting right now (one session per domain).
    collecting: Mutex<HashSet<String>>,
    /// Signs the DSNs (None: they go unsigned).
    dsn_signer: Option<Arc<dyn MessageSigner>>,
}

/// The part of the queue's options a reload replaces.
struct Settings {
    config: crate::config::queue::QueueConfig,
    routes: crate::config::queue::RoutesConfig,
    agents: Arc<dyn crate::delivery::Agents>,
}

/// What one destination said about some of the message's recipients.
struct HopReport {
    rcpt: usize,
    outcome: RecipientOutcome,
    remote_mta: Option<String>,
    /// The next hop took the DSN request (so it reports success itself).
    dsn_passed_on: bool,
    /// The destination is the final one (Maildir, LMTP): success is "delivered", not "relayed".
    final_hop: bool,
}

impl Queue {
    /// Loads every spooled message's state and starts the scheduler. Messages whose recipients
    /// are all final (a crash hit between the last record and the removal) are removed now.
    pub async fn start(spool: Arc<Spool>, opts: QueueOptions) -> std::io::Result<Queue> {
        Self::start_signed(spool, opts, None).await
    }

    /// [`Queue::start`] with the DSNs it writes signed by `dsn_signer` (the DKIM key of the
    /// MAILER-DAEMON's domain, when `[[dkim.sign]]` has one).
    pub async fn start_signed(
        spool: Arc<Spool>,
        opts: QueueOptions,
        dsn_signer: Option<Arc<dyn MessageSigner>>,
    ) -> std::io::Result<Queue> {
        let arrivals = spool
            .arrivals()
            .ok_or_else(|| std::io::Error::other("the spool already has a queue manager"))?;
        let (loaded, finished) = load_all(&spool)?;
        for id in finished {
            spool.discard(&id).await?;
        }
        let inner = Arc::new(Inner {
            global: Arc::new(Semaphore::new(opts.config.concurrency.max(1))),
            spool,
            settings: arc_swap::ArcSwap::from_pointee(Settings {
                config: opts.config.clone(),
                routes: opts.routes.clone(),
                agents: opts.agents.clone(),
            }),
            opts,
            messages: Mutex::new(loaded),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            per_destination: Mutex::new(HashMap::new()),
            collecting: Mutex::new(HashSet::new()),
            dsn_signer,
        });
        tracing::info!(
            queued = inner.messages.lock().unwrap().len(),
            "queue manager started"
        );
        tokio::spawn(run(inner.clone(), arrivals));
        Ok(Queue { inner })
    }

    /// Stops scheduling new attempts (those running finish and are recorded).
    pub fn shutdown(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// After [`Queue::shutdown`]: waits up to `grace` for the attempts in flight to finish and
    /// be recorded. Returns how many were still running (the process may exit under them: their
    /// recipients are tried again after the restart, at-least-once).
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running = self.in_flight();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Messages with an attempt (or an ATRN collection) running now.
    pub fn in_flight(&self) -> usize {
        self.inner
            .messages
            .lock()
            .unwrap()
            .values()
            .filter(|e| e.active)
            .count()
    }

    /// Makes deferred mail due now: all of it, or only recipients at `domain` (ETRN, `queue
    /// flush DOMAIN`). Returns how many messages were affected.
    pub fn flush(&self, domain: Option<&str>) -> usize {
        let domain = domain.map(|d| d.trim_end_matches('.').to_ascii_lowercase());
        let mut count = 0;
        self.inner
            .messages
            .lock()
            .unwrap()
            .update_all(now_ms(), |entry| {
                // Messages being delivered right now are left alone: their outcome decides.
                if entry.active {
                    return;
                }
                let mut touched = false;
                for (i, r) in entry.state.rcpts.iter_mut().enumerate() {
                    let address = &entry.state.meta.envelope.recipients[i].address;
                    let matches = domain
                        .as_ref()
                        .is_none_or(|d| address::domain(address) == *d);
                    if r.status == RcptStatus::Deferred && matches {
                        r.next_attempt_ms = 0;
                        touched = true;
                    }
                }
                count += touched as usize;
            });
        self.inner.wake.notify_one();
        count
    }

    /// Makes one message's deferred recipients due now.
    pub fn retry(&self, id: &QueueId) -> bool {
        let found = self
            .inner
            .messages
            .lock()
            .unwrap()
            .update(id, now_ms(), |entry| {
                for r in &mut entry.state.rcpts {
                    if r.status == RcptStatus::Deferred {
                        r.next_attempt_ms = 0;
                    }
                }
            })
            .is_some();
        self.inner.wake.notify_one();
        found
    }

    /// Holds a message (no delivery until released). Persisted. Returns false if unknown.
    pub async fn hold(&self, id: &QueueId) -> std::io::Result<bool> {
        self.set_held(id, true).await
    }

    pub async fn release(&self, id: &QueueId) -> std::io::Result<bool> {
        self.set_held(id, false).await
    }

    async fn set_held(&self, id: &QueueId, held: bool) -> std::io::Result<bool> {
        if !self.inner.messages.lock().unwrap().contains(id) {
            return Ok(false);
        }
        let record = Record::Hold {
            held,
            at_ms: now_ms(),
        };
        self.inner
            .spool
            .append_state(id, state::encode(std::slice::from_ref(&record))?)
            .await?;
        let found = self
            .inner
            .messages
            .lock()
            .unwrap()
            .update(id, now_ms(), |entry| entry.state.apply(&record))
            .is_some();
        self.inner.wake.notify_one();
        Ok(found)
    }

    /// Deletes a message from the queue without delivering or bouncing it.
    pub async fn remove(&self, id: &QueueId) -> std::io::Result<bool> {
        if self.inner.messages.lock().unwrap().remove(id).is_none() {
            return Ok(false);
        }
        self.inner.spool.discard(id).await?;
        Ok(true)
    }

    pub fn list(&self) -> Vec<MessageView> {
        let map = self.inner.messages.lock().unwrap();
        map.values().map(view).collect()
    }

    pub fn show(&self, id: &QueueId) -> Option<MessageView> {
        self.inner.messages.lock().unwrap().get(id).map(view)
    }

    pub fn len(&self) -> usize {
        self.inner.messages.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queued recipients per destination domain, most first.
    pub fn summary(&self) -> Vec<DomainSummary> {
        let now = now_ms();
        let settings = self.inner.settings.load();
        let map = self.inner.messages.lock().unwrap();
        let mut by_domain: BTreeMap<String, DomainSummary> = BTreeMap::new();
        for entry in map.values() {
            let age = now.saturating_sub(entry.state.meta.arrived_ms) / 1000;
            for (i, r) in entry.state.rcpts.iter().enumerate() {
                if r.status.is_final() {
                    continue;
                }
                let domain = address::domain(&entry.state.meta.envelope.recipients[i].address);
                let s = by_domain
                    .entry(domain.clone())
                    .or_insert_with(|| DomainSummary {
                        domain,
                        recipients: 0,
                        deferred: 0,
                        oldest_age_secs: 0,
                        odmr_held: false,
                    });
                s.recipients += 1;
                s.deferred += (r.status == RcptStatus::Deferred) as usize;
                // A [routes] hold is known from the config; a route plugin's hold from the
                // deferral it left on the recipient.
                s.odmr_held |= settings.routes.is_odmr(&s.domain)
                    || r.last_reply.as_ref().is_some_and(|reply| {
                        route::is_hold_reply(reply.code, &reply.enhanced, &reply.text)
                    });
                s.oldest_age_secs = s.oldest_age_secs.max(age);
            }
        }
        let mut out: Vec<_> = by_domain.into_values().collect();
        out.sort_by(|a, b| {
            b.recipients
                .cmp(&a.recipients)
                .then(a.domain.cmp(&b.domain))
        });
        out
    }

    /// Applies a reloaded `[queue]` and `[routes]` with the delivery agents built from them:
    /// the next attempts use them, attempts in flight finish on the old ones. The total
    /// `concurrency` stays as started (a restart changes it); per-destination limits apply to
    /// destinations from now on.
    pub fn reconfigure(
        &self,
        config: crate::config::queue::QueueConfig,
        routes: crate::config::queue::RoutesConfig,
        agents: Arc<dyn crate::delivery::Agents>,
    ) {
        self.inner.settings.store(Arc::new(Settings {
            config,
            routes,
            agents,
        }));
        self.inner.per_destination.lock().unwrap().clear();
        // Routes or retry times may have changed what is due.
        self.inner.wake.notify_one();
    }

    /// ATRN: claims every queued message with a recipient in one of `domains` (ODMR-held
    /// domains), taking them out of the scheduler until the [`Collection`] is delivered or
    /// dropped. `Err(domain)` when another ATRN session is collecting that domain; `Ok(None)`
    /// when nothing is queued for them. A message in the middle of a scheduled attempt (a held
    /// deferral being recorded takes milliseconds) is waited for, up to a few seconds; one
    /// still busy then is left to the next collection.
    pub async fn collect(&self, domains: &[String]) -> Result<Option<Collection>, String> {
        let domains: Vec<String> = domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        {
            let mut busy = self.inner.collecting.lock().unwrap();
            if let Some(taken) = domains.iter().find(|d| busy.contains(*d)) {
                return Err(taken.clone());
            }
            busy.extend(domains.iter().cloned());
        }
        let mut collection = Collection {
            inner: self.inner.clone(),
            domains,
            ids: Vec::new(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let busy = {
                let now = now_ms();
                let mut table = self.inner.messages.lock().unwrap();
                let matching: Vec<(QueueId, bool)> = table
                    .values()
                    .filter(|e| !e.state.held && !collection.ids.contains(&e.state.meta.id))
                    .filter(|e| !collection.recipients_of(&e.state).is_empty())
                    .map(|e| (e.state.meta.id.clone(), e.active))
                    .collect();
                for (id, active) in &matching {
                    if !active {
                        table.update(id, now, |e| e.active = true);
                        collection.ids.push(id.clone());
                    }
                }
                matching.iter().any(|(_, active)| *active)
            };
            if !busy || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        collection.ids.sort();
        if collection.ids.is_empty() {
            return Ok(None);
        }
        Ok(Some(collection))
    }
}

/// Messages claimed by one ATRN session. Dropping it hands whatever was not delivered back to
/// the scheduler and frees its domains for the next session.
pub struct Collection {
    inner: Arc<Inner>,
    domains: Vec<String>,
    /// Claimed and not yet delivered, oldest id first.
    ids: Vec<QueueId>,
}

impl Collection {
    /// How many messages are claimed and not yet delivered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// The not yet final recipients of a message that belong to this collection's domains.
    fn recipients_of(&self, state: &MessageState) -> Vec<usize> {
        state
            .rcpts
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                !r.status.is_final()
                    && self.domains.contains(&address::domain(
                        &state.meta.envelope.recipients[*i].address,
                    ))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Sends every claimed message over `conn` (the turned ATRN connection), one transaction
    /// each, and records each recipient's outcome like any delivery: delivered, deferred (held
    /// again for the next ATRN) or failed (DSN). Stops early when the connection is lost; what
    /// was not sent stays queued untouched. Returns how many messages were sent.
    pub async fn deliver(&mut self, conn: &mut crate::delivery::smtp_client::Connection) -> usize {
        let mut sent = 0;
        while !self.ids.is_empty() {
            if !conn.is_usable() {
                break;
            }
            let id = self.ids.remove(0);
            let members = self
                .inner
                .messages
                .lock()
                .unwrap()
                .get(&id)
                .map(|e| self.recipients_of(&e.state))
                .unwrap_or_default();
            let spool = self.inner.spool.clone();
            let load_id = id.clone();
            let loaded = tokio::task::spawn_blocking(move || spool.load(&load_id))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let msg = match loaded {
                Ok(msg) if !members.is_empty() => msg,
                Ok(_) => {
                    self.inner.finish(&id);
                    continue;
                }
                Err(e) => {
                    tracing::error!(queue_id = %id, error = %e, "ATRN: cannot read spooled message");
                    self.inner.finish(&id);
                    continue;
                }
            };
            let envelope = &msg.meta.envelope;
            let recipients: Vec<Recipient> = members
                .iter()
                .map(|&i| envelope.recipients[i].clone())
                .collect();
            let outbound = Outbound {
                queue_id: &msg.meta.id.0,
                reverse_path: &envelope.reverse_path,
                recipients: &recipients,
                message: &msg.message,
            };
            let result = conn.send(&outbound).await;
            if conn.failed_before_transaction() {
                // Nothing reached the customer: leave the message as it was.
                self.inner.finish(&id);
                break;
            }
            let answers = hop_reports(&members, &result, false, "no answer for this recipient");
            record(&self.inner, &msg, answers).await;
            self.inner.finish(&id);
            sent += 1;
        }
        sent
    }
}

impl Drop for Collection {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            self.inner.finish(&id);
        }
        let mut busy = self.inner.collecting.lock().unwrap();
        for d in &self.domains {
            busy.remove(d);
        }
    }
}

fn view(entry: &Entry) -> MessageView {
    let s = &entry.state;
    MessageView {
        id: s.meta.id.clone(),
        arrived_ms: s.meta.arrived_ms,
        size: s.meta.size,
        sender: s.meta.envelope.reverse_path.address.clone(),
        held: s.held,
        quarantine: s.meta.quarantine.clone(),
        active: entry.active,
        recipients: s
            .rcpts
            .iter()
            .zip(&s.meta.envelope.recipients)
            .map(|(r, rcpt)| RecipientView {
                address: rcpt.address.clone(),
                status: r.status,
                attempts: r.attempts,
                last_reply: r.last_reply.clone(),
                next_attempt_ms: r.next_attempt_ms,
            })
            .collect(),
    }
}

/// The queue from the spool's index, and the messages found finished (a crash hit between
/// their last outcome and their removal), which the caller discards.
fn load_all(spool: &Spool) -> std::io::Result<(Table, Vec<QueueId>)> {
    let mut table = Table::default();
    let mut finished = Vec::new();
    let now = now_ms();
    for id in spool.list()? {
        let state = match spool.load_meta(&id).and_then(|meta| {
            let records = spool.states(&id)?;
            Ok(MessageState::replay(meta, &records))
        }) {
            Ok(state) => state,
            Err(e) => {
                // Never delete what we cannot read: leave it for an operator.
                tracing::error!(queue_id = %id, error = %e, "unreadable spooled message left in place");
                continue;
            }
        };
        if state.is_done() {
            finished.push(id);
            continue;
        }
        table.insert(id, state, now);
    }
    Ok((table, finished))
}

async fn run(inner: Arc<Inner>, arrivals: mpsc::UnboundedReceiver<QueueId>) {
    let mut arrivals = Some(arrivals);
    while !inner.stopped.load(Ordering::SeqCst) {
        let next = dispatch(&inner);
        let sleep = next
            .map(|t| Duration::from_millis(t.saturating_sub(now_ms())))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            id = async {
                match arrivals.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match id {
                    Some(id) => {
                        let mut ids = vec![id];
                        if let Some(rx) = arrivals.as_mut() {
                            while let Ok(more) = rx.try_recv() {
                                ids.push(more);
                            }
                        }
                        admit(&inner, ids).await;
                    }
                    None => arrivals = None,
                }
            }
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Adds newly stored messages.
async fn admit(inner: &Arc<Inner>, ids: Vec<QueueId>) {
    // Metadata comes from the spool's in-memory index: no disk read.
    let metas: Vec<_> = ids
        .into_iter()
        .map(|id| (inner.spool.load_meta(&id), id))
        .collect();
    let now = now_ms();
    let mut table = inner.messages.lock().unwrap();
    for (meta, id) in metas {
        match meta {
            Ok(meta) => table.insert(id, MessageState::fresh(meta), now),
            Err(e) => tracing::error!(queue_id = %id, error = %e, "cannot read new message"),
        }
    }
}

/// Starts attempts for due messages (fresh mail first, then retries, each oldest first) while
/// the global limit allows. Returns when the scheduler should look again at the latest.
fn dispatch(inner: &Arc<Inner>) -> Option<u64> {
    let now = now_ms();
    let mut table = inner.messages.lock().unwrap();
    loop {
        let Ok(permit) = inner.global.clone().try_acquire_owned() else {
            break; // a finishing attempt wakes the scheduler
        };
        let Some((id, due)) = table.take_ready(now) else {
            break;
        };
        tokio::spawn(attempt(inner.clone(), id, due, permit));
    }
    table.next_timer()
}

impl Inner {
    fn destination_limit(&self, key: String) -> Arc<Semaphore> {
        let limit = self
            .settings
            .load()
            .config
            .concurrency_per_destination
            .max(1);
        self.per_destination
            .lock()
            .unwrap()
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
            .clone()
    }

    fn finish(&self, id: &QueueId) {
        self.messages
            .lock()
            .unwrap()
            .update(id, now_ms(), |entry| entry.active = false);
        self.wake.notify_one();
    }
}

/// One delivery attempt of message `id` for recipients `due`.
async fn attempt(inner: Arc<Inner>, id: QueueId, due: Vec<usize>, _permit: OwnedSemaphorePermit) {
    let spool = inner.spool.clone();
    let load_id = id.clone();
    let loaded = tokio::task::spawn_blocking(move || spool.load(&load_id))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let msg = match loaded {
        Ok(msg) => msg,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Removed by an operator meanwhile.
            inner.messages.lock().unwrap().remove(&id);
            inner.wake.notify_one();
            return;
        }
        Err(e) => {
            tracing::error!(queue_id = %id, error = %e, "cannot read spooled message; holding it");
            inner
                .messages
                .lock()
                .unwrap()
                .update(&id, now_ms(), |entry| entry.state.held = true);
            inner.finish(&id);
            return;
        }
    };
    let (mut settled, groups) = route_all(&inner, &msg, &due).await;
    let mut running: futures::stream::FuturesUnordered<_> = groups
        .into_iter()
        .map(|(dest, members)| deliver_group(&inner, &msg, dest, members))
        .collect();
    while let Some(answers) = running.next().await {
        if running.is_empty() {
            settled.extend(answers);
            break;
        }
        // Other destinations are still being tried, so the message stays queued: outcomes
        // that owe no DSN are recorded now (a crash meanwhile would otherwise repeat them);
        // the rest waits for the end, where the DSN is spooled before its outcomes are recorded.
        let (quiet, owing): (Vec<HopReport>, Vec<HopReport>) = answers
            .into_iter()
            .partition(|a| owes_no_dsn(&inner, &msg, a));
        if !quiet.is_empty() {
            record(&inner, &msg, quiet).await;
        }
        settled.extend(owing);
    }
    record(&inner, &msg, settled).await;
    inner.finish(&id);
}

/// Whether recording `a` now can never skip a DSN: a delivery nobody asked a report of, or a
/// deferral that is neither final (expiry) nor due for a delay warning.
fn owes_no_dsn(inner: &Inner, msg: &SpooledMessage, a: &HopReport) -> bool {
    let settings = inner.settings.load();
    let cfg = &settings.config;
    let now = now_ms();
    let notify = msg.meta.envelope.recipients[a.rcpt].notify;
    match &a.outcome {
        RecipientOutcome::Delivered(_) => {
            let reported = a.final_hop || !a.dsn_passed_on;
            !(reported && bounce::wanted(notify, DsnAction::Delivered))
        }
        RecipientOutcome::Deferred(_) => {
            let warned = inner
                .messages
                .lock()
                .unwrap()
                .get(&msg.meta.id)
                .is_none_or(|e| e.state.delay_warned);
            !schedule::expired(cfg, now, msg.meta.arrived_ms)
                && (warned
                    || cfg.delay_warning.is_zero()
                    || now.saturating_sub(msg.meta.arrived_ms)
                        < cfg.delay_warning.as_millis() as u64)
        }
        RecipientOutcome::Failed(_) => false,
    }
}

/// Routes the due recipients: answers for those decided by routing alone (discard, no such
/// mailbox), and the rest grouped by destination.
async fn route_all(
    inner: &Arc<Inner>,
    msg: &SpooledMessage,
    due: &[usize],
) -> (Vec<HopReport>, Vec<(Destination, Vec<usize>)>) {
    let envelope = &msg.meta.envelope;
    let mut answers = Vec::new();
    let mut groups: Vec<(Destination, Vec<usize>)> = Vec::new();
    for &i in due {
        let rcpt = &envelope.recipients[i];
        let routed = route::route(
            inner.opts.hooks.as_ref(),
            &inner.settings.load().routes,
            inner.opts.local.as_ref(),
            &envelope.reverse_path,
            rcpt,
        )
        .await;
        match routed {
            Routed::To(dest) => match groups.iter_mut().find(|(d, _)| d.key() == dest.key()) {
                Some((_, members)) => members.push(i),
                None => groups.push((dest, vec![i])),
            },
            Routed::Discard => answers.push(HopReport {
                rcpt: i,
                outcome: RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "discarded")),
                remote_mta: None,
                dsn_passed_on: true,
                final_hop: true,
            }),
            Routed::Fail(reply) => answers.push(HopReport {
                rcpt: i,
                outcome: RecipientOutcome::Failed(reply),
                remote_mta: None,
                dsn_passed_on: false,
                final_hop: true,
            }),
            // Held mail is a deferral like any other: retried on the usual schedule (each retry
            // only finds it held again), delay warnings, and a bounce after the lifetime.
            Routed::Hold(domain) => answers.push(HopReport {
                rcpt: i,
                outcome: RecipientOutcome::Deferred(route::hold_reply(&domain)),
                remote_mta: None,
                dsn_passed_on: false,
                final_hop: false,
            }),
        }
    }
    (answers, groups)
}

/// Delivers one destination's recipients (within its concurrency limit).
async fn deliver_group(
    inner: &Arc<Inner>,
    msg: &SpooledMessage,
    dest: Destination,
    members: Vec<usize>,
) -> Vec<HopReport> {
    let envelope = &msg.meta.envelope;
    let _slot = inner
        .destination_limit(dest.limit_key())
        .acquire_owned()
        .await
        .expect("semaphores are never closed");
    let recipients: Vec<Recipient> = members
        .iter()
        .map(|&i| envelope.recipients[i].clone())
        .collect();
    // The outbound hook (relay, MX, LMTP attempts): header edits, defer, fail or re-route.
    let attempt = {
        let messages = inner.messages.lock().unwrap();
        let state = messages.get(&msg.meta.id).map(|e| &e.state);
        members
            .iter()
            .filter_map(|&i| state.and_then(|s| s.rcpts.get(i)).map(|r| r.attempts))
            .max()
            .unwrap_or(0)
            + 1
    };
    let prepared = super::outbound::prepare(
        inner.opts.hooks.as_ref(),
        &msg.meta.id.0,
        &envelope.reverse_path,
        &recipients,
        attempt,
        dest,
        &msg.message,
    )
    .await;
    let (dest, edited) = match prepared {
        super::outbound::Prepared::Deliver(dest, edited) => (dest, edited),
        super::outbound::Prepared::Decided(outcome) => {
            return members
                .iter()
                .map(|&i| HopReport {
                    rcpt: i,
                    outcome: outcome.clone(),
                    remote_mta: None,
                    dsn_passed_on: false,
                    final_hop: true,
                })
                .collect();
        }
    };
    let outbound = Outbound {
        queue_id: &msg.meta.id.0,
        reverse_path: &envelope.reverse_path,
        recipients: &recipients,
        message: edited.as_deref().unwrap_or(&msg.message),
    };
    let agents = inner.settings.load().agents.clone();
    let result = agents.deliver(&dest, &outbound).await;
    let final_hop = matches!(dest, Destination::Maildir(_) | Destination::Lmtp(_));
    hop_reports(
        &members,
        &result,
        final_hop,
        "delivery agent gave no answer for this recipient",
    )
}

/// One report per group member (`members[k]` is the recipient of `attempt.outcomes[k]`); a
/// member the attempt gave no outcome for is deferred (451 4.3.0 `missing`).
fn hop_reports(
    members: &[usize],
    attempt: &Attempt,
    final_hop: bool,
    missing: &str,
) -> Vec<HopReport> {
    members
        .iter()
        .enumerate()
        .map(|(k, &i)| HopReport {
            rcpt: i,
            outcome: attempt
                .outcomes
                .get(k)
                .cloned()
                .unwrap_or_else(|| RecipientOutcome::Deferred(Reply::new(451, "4.3.0", missing))),
            remote_mta: attempt.remote_mta.clone(),
            dsn_passed_on: attempt.dsn_passed_on,
            final_hop,
        })
        .collect()
}

/// Turns answers into recorded state, DSNs, hook events, and removes finished messages.
async fn record(inner: &Arc<Inner>, msg: &SpooledMessage, answers: Vec<HopReport>) {
    let settings = inner.settings.load_full();
    let cfg = &settings.config;
    let meta = &msg.meta;
    let id = &meta.id;
    let now = now_ms();
    let expired = schedule::expired(cfg, now, meta.arrived_ms);
    let (attempts_before, delay_warned) = match inner.messages.lock().unwrap().get(id) {
        Some(e) => (
            e.state.rcpts.iter().map(|r| r.attempts).collect::<Vec<_>>(),
            e.state.delay_warned,
        ),
        None => return, // removed meanwhile
    };
    let warn_delay = !delay_warned
        && !cfg.delay_warning.is_zero()
        && now.saturating_sub(meta.arrived_ms) >= cfg.delay_warning.as_millis() as u64;

    let mut records = Vec::new();
    let mut reports = Vec::new();
    let mut events = Vec::new();
    for a in &answers {
        let rcpt = &meta.envelope.recipients[a.rcpt];
        let attempts = attempts_before.get(a.rcpt).copied().unwrap_or(0) + 1;
        let (status, reply, next_ms, action) = match &a.outcome {
            RecipientOutcome::Delivered(r) => {
                let action = if a.final_hop {
                    DsnAction::Delivered
                } else {
                    DsnAction::Relayed
                };
                let report = !a.dsn_passed_on || a.final_hop;
                (
                    RcptStatus::Delivered,
                    r.clone(),
                    0,
                    report.then_some(action),
                )
            }
            RecipientOutcome::Failed(r) => {
                (RcptStatus::Failed, r.clone(), 0, Some(DsnAction::Failed))
            }
            RecipientOutcome::Deferred(r) if expired => {
                let mut r = r.clone();
                r.text = format!("{} (gave up: message too old)", r.text);
                (RcptStatus::Failed, r, 0, Some(DsnAction::Failed))
            }
            RecipientOutcome::Deferred(r) => {
                let next = schedule::next_attempt_ms(cfg, attempts, now, meta.arrived_ms);
                let action = warn_delay.then_some(DsnAction::Delayed);
                (RcptStatus::Deferred, r.clone(), next, action)
            }
        };
        tracing::info!(
            queue_id = %id,
            rcpt = %rcpt.address,
            status = ?status,
            code = reply.code,
            enhanced = %reply.enhanced,
            reply = %reply.text,
            attempts,
            "delivery attempt"
        );
        if let Some(action) = action.filter(|&act| bounce::wanted(rcpt.notify, act)) {
            let until = (action == DsnAction::Delayed).then(|| {
                std::time::UNIX_EPOCH + Duration::from_millis(meta.arrived_ms) + cfg.lifetime
            });
            reports.push(bounce::entry(
                rcpt,
                action,
                &reply,
                a.remote_mta.clone(),
                until,
            ));
        }
        events.push(DeliveryEvent {
            message_id: id.0.clone(),
            reverse_path: meta.envelope.reverse_path.address.clone(),
            recipient: rcpt.address.clone(),
            outcome: match status {
                RcptStatus::Delivered => DeliveryOutcome::Delivered,
                RcptStatus::Failed => DeliveryOutcome::Failed,
                _ => DeliveryOutcome::Deferred,
            },
            reply: Some(reply.clone()),
            attempts,
        });
        records.push(state::outcome(a.rcpt, status, &reply, next_ms));
    }
    if warn_delay
        && records.iter().any(|r| {
            matches!(
                r,
                Record::Outcome {
                    status: RcptStatus::Deferred,
                    ..
                }
            )
        })
    {
        records.push(Record::DelayWarned { at_ms: now });
    }

    // The DSN is spooled before the outcomes are recorded: a crash in between repeats it rather
    // than losing it. Mail from <> gets none (`report` returns None), so bounces never loop.
    if let Some(mut dsn) = bounce::report(&inner.opts.hostname, meta, &msg.message, reports) {
        // Signed like the mail of our users, so receivers can authenticate our bounces.
        if let Some(signer) = &inner.dsn_signer {
            let mut signed = signer.signatures(&dsn.message);
            // As for our users' mail: an 8-bit report is made 7-bit before it is signed, so a
            // peer without 8BITMIME does not force a downgrade that breaks the signature (a
            // returned message/rfc822 part cannot be re-encoded: then it stays 8-bit).
            if !signed.is_empty()
                && !dsn.message.is_ascii()
                && let Some(seven_bit) = crate::mail::downgrade::downgrade_8bit(&dsn.message)
            {
                dsn.message = seven_bit;
                signed = signer.signatures(&dsn.message);
            }
            if !signed.is_empty() {
                signed.extend_from_slice(&dsn.message);
                dsn.message = signed;
            }
        }
        match inner.spool.store(dsn).await {
            Ok(dsn_id) => {
                tracing::info!(queue_id = %id, dsn = %dsn_id, "delivery status notification queued")
            }
            Err(e) => {
                tracing::error!(queue_id = %id, error = %e, "cannot queue delivery status notification")
            }
        }
    }

    // Apply in memory first: if the message is now finished, its removal is the record (a
    // state write would be deleted right away; a crash before the removal repeats the
    // deliveries, which at-least-once allows).
    let done = {
        let mut table = inner.messages.lock().unwrap();
        table.update(id, now_ms(), |entry| {
            for r in &records {
                entry.state.apply(r);
            }
            entry.state.is_done()
        })
    };
    let Some(done) = done else {
        return; // removed by an operator during the attempt
    };
    if !done {
        let written = match state::encode(&records) {
            Ok(encoded) => inner.spool.append_state(id, encoded).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            // Not recorded: after a restart the recipients are tried again (a duplicate,
            // never a loss).
            tracing::error!(queue_id = %id, error = %e, "cannot record delivery outcome");
        }
    }
    for event in &events {
        inner.opts.hooks.delivery(event).await;
    }
    if done {
        // Out of the queue's view first: it is finished whatever the disk says. Should the
        // removal fail, the next start finds the files and delivers again (at-least-once).
        inner.messages.lock().unwrap().remove(id);
        match inner.spool.discard(id).await {
            Ok(()) => tracing::info!(queue_id = %id, "message done, removed from queue"),
            Err(e) => {
                tracing::error!(queue_id = %id, error = %e, "cannot remove finished message")
            }
        }
    }
}
