//! One mail transaction: what can be decided before talking (size, 8-bit, UTF-8), MAIL with its
//! parameters, RCPTs, then DATA or BDAT, pipelined when the peer allows; one outcome per recipient.

use super::connection::{Connection, Failure, Protocol};
use super::encode::{dot_stuff, has_8bit, needs_smtputf8, notify_param};
use super::reply::ServerReply;
use crate::delivery::contract::{Attempt, Outbound, RecipientOutcome};
use crate::mail::xtext;
use crate::policy::{BodyType, DsnRet, Recipient, Reply};

impl Connection {
    /// Runs one mail transaction (more when there are more recipients than `max_recipients`,
    /// or when the peer answers some RCPTs with 452 "too many recipients": RFC 5321 §4.5.3.1.10
    /// says to send those at once in another transaction, which we do while each round gets
    /// some of them through). Never fails as a whole: problems become per-recipient outcomes.
    pub async fn send(&mut self, out: &Outbound<'_>) -> Attempt {
        let mut total = self.send_batches(out).await;
        if !self.failed_before_transaction {
            self.messages += 1;
        }
        let mut pending: Vec<usize> = (0..out.recipients.len()).collect();
        loop {
            let again: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| {
                    matches!(&total.outcomes[i], RecipientOutcome::Deferred(r) if r.code == 452)
                })
                .collect();
            // Stop when nothing is left, nothing got through last round, or the session is gone.
            if again.is_empty() || again.len() == pending.len() || !self.usable {
                return total;
            }
            let recipients: Vec<Recipient> =
                again.iter().map(|&i| out.recipients[i].clone()).collect();
            let part = self
                .send_batches(&Outbound {
                    recipients: &recipients,
                    ..out.clone()
                })
                .await;
            total.dsn_passed_on |= part.dsn_passed_on;
            for (k, &i) in again.iter().enumerate() {
                if let Some(outcome) = part.outcomes.get(k) {
                    total.outcomes[i] = outcome.clone();
                }
            }
            pending = again;
        }
    }

    /// Transactions of at most `max_recipients` recipients each.
    async fn send_batches(&mut self, out: &Outbound<'_>) -> Attempt {
        let limit = self.config.max_recipients.max(1);
        if out.recipients.len() <= limit {
            return self.send_one(out).await;
        }
        let mut total = Attempt {
            outcomes: Vec::with_capacity(out.recipients.len()),
            dsn_passed_on: false,
            remote_mta: Some(self.remote.clone()),
        };
        for batch in out.recipients.chunks(limit) {
            let part = self
                .send_one(&Outbound {
                    recipients: batch,
                    ..out.clone()
                })
                .await;
            total.dsn_passed_on |= part.dsn_passed_on;
            total.outcomes.extend(part.outcomes);
        }
        total
    }

    async fn send_one(&mut self, out: &Outbound<'_>) -> Attempt {
        let mut report = Attempt {
            outcomes: Vec::with_capacity(out.recipients.len()),
            remote_mta: Some(self.remote.clone()),
            dsn_passed_on: false,
        };
        if out.recipients.is_empty() {
            return report;
        }
        if !self.usable {
            let reply = Reply::new(
                421,
                "4.4.2",
                format!("connection to {} is closed", self.remote),
            );
            report.outcomes = vec![RecipientOutcome::Deferred(reply); out.recipients.len()];
            return report;
        }
        // A peer without 8BITMIME gets the 7-bit form when there is one (else check_fit bounces).
        let downgraded = (has_8bit(out.message)
            && !self.capabilities.eight_bit_mime
            && out.reverse_path.body != Some(BodyType::BinaryMime))
        .then(|| crate::mail::downgrade::downgrade_8bit(out.message))
        .flatten();
        let converted;
        let out = match &downgraded {
            Some(message) => {
                converted = Outbound {
                    message,
                    ..out.clone()
                };
                &converted
            }
            None => out,
        };
        if let Err(failure) = self.check_fit(out) {
            report.outcomes = vec![failure.outcome(); out.recipients.len()];
            return report;
        }
        report.dsn_passed_on = self.capabilities.dsn;
        let mut outcomes: Vec<Option<RecipientOutcome>> = vec![None; out.recipients.len()];
        let result = self.transaction(out, &mut outcomes).await;
        if let Err(failure) = result {
            for o in outcomes.iter_mut().filter(|o| o.is_none()) {
                *o = Some(failure.outcome());
            }
        }
        report.outcomes = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    RecipientOutcome::Deferred(Reply::new(451, "4.3.0", "no reply for recipient"))
                })
            })
            .collect();
        report
    }

    /// What can be decided before talking: size, 8-bit and UTF-8 needs against the peer's offer.
    fn check_fit(&self, out: &Outbound<'_>) -> Result<(), Failure> {
        let caps = &self.capabilities;
        let remote = &self.remote;
        // RFC 8689 §4.1: a REQUIRETLS message goes only over TLS whose certificate was
        // authenticated (DANE, an enforced MTA-STS policy, a verified relay) to a peer that
        // offers REQUIRETLS; anything else is a permanent failure with 5.7.30.
        if out.reverse_path.requiretls && self.protocol == Protocol::Smtp {
            if !self.tls_authenticated {
                return Err(Failure::Permanent(Reply::new(
                    550,
                    "5.7.30",
                    format!(
                        "REQUIRETLS: no authenticated TLS to {remote} (needs DANE, an enforced MTA-STS policy or a verified relay)"
                    ),
                )));
            }
            if !caps.requiretls {
                return Err(Failure::Permanent(Reply::new(
                    550,
                    "5.7.30",
                    format!("REQUIRETLS: {remote} does not support REQUIRETLS"),
                )));
            }
        }
        if needs_smtputf8(out) && !caps.smtputf8 {
            return Err(Failure::Permanent(Reply::new(
                553,
                "5.6.7",
                format!("{remote} does not support SMTPUTF8, which this message needs"),
            )));
        }
        if out.reverse_path.body == Some(BodyType::BinaryMime)
            && !(caps.binary_mime && caps.chunking && self.config.chunking)
        {
            return Err(Failure::Permanent(Reply::new(
                554,
                "5.6.3",
                format!("{remote} does not support BINARYMIME; conversion is not supported"),
            )));
        }
        if has_8bit(out.message) && !caps.eight_bit_mime {
            return Err(Failure::Permanent(Reply::new(
                554,
                "5.6.3",
                format!(
                    "{remote} does not support 8BITMIME, and this message has no 7-bit form (8-bit header or message/* part)"
                ),
            )));
        }
        if let Some(limit) = caps.max_size()
            && out.message.len() as u64 > limit
        {
            return Err(Failure::Permanent(Reply::new(
                552,
                "5.3.4",
                format!(
                    "message size {} exceeds the limit of {limit} of {remote}",
                    out.message.len()
                ),
            )));
        }
        Ok(())
    }

    async fn transaction(
        &mut self,
        out: &Outbound<'_>,
        outcomes: &mut [Option<RecipientOutcome>],
    ) -> Result<(), Failure> {
        let t = self.config.timeouts.clone();
        let bdat = self.capabilities.chunking && self.config.chunking;
        let pipelining = self.capabilities.pipelining;
        // A session that ended a transaction mid-way (or comes from the idle cache) is reset
        // first; pipelined, the RSET costs no round trip. If it fails, nothing of this
        // transaction happened yet (`failed_before_transaction`), so a caller may retry at once.
        let reset_first = self.needs_reset;
        self.failed_before_transaction = false;
        if reset_first && !pipelining {
            self.reset().await?;
        }
        let mail = self.mail_command(out);
        let rcpts: Vec<String> = out
            .recipients
            .iter()
            .map(|r| self.rcpt_command(r))
            .collect();

        // Envelope: MAIL, RCPT… and (without BDAT) DATA, in one write when PIPELINING is offered.
        let mut batch = String::new();
        if reset_first && pipelining {
            batch.push_str("RSET\r\n");
        }
        batch.push_str(&mail);
        batch.push_str("\r\n");
        if pipelining {
            for r in &rcpts {
                batch.push_str(r);
                batch.push_str("\r\n");
            }
            if !bdat {
                batch.push_str("DATA\r\n");
            }
        }
        self.needs_reset = true;
        if let Err(failure) = self.write(batch.as_bytes(), t.mail).await {
            self.failed_before_transaction = reset_first;
            return Err(failure);
        }
        if reset_first && pipelining {
            // On failure MAIL and the rest are not looked at.
            let reply = self.read(t.command, "RSET").await;
            self.reset_answered(reply)?;
        }
        let mail_reply = self.read(t.mail, "MAIL").await?;
        let mail_ok = mail_reply.class() == 2;
        if !mail_ok && !pipelining {
            return Err(self.broken_by(&mail_reply));
        }
        let mut accepted = Vec::new();
        for (i, rcpt) in rcpts.iter().enumerate() {
            if !pipelining {
                self.write(format!("{rcpt}\r\n").as_bytes(), t.rcpt).await?;
            }
            let reply = self.read(t.rcpt, "RCPT").await?;
            if reply.code == 421 {
                return Err(self.broken_by(&reply));
            }
            if !mail_ok {
                continue; // the MAIL reply decides; this one is a 503 follow-up
            }
            if reply.class() == 2 {
                accepted.push(i);
            } else {
                outcomes[i] = Some(outcome_of(&self.remote_said(&reply)));
            }
        }
        let data_reply = if pipelining && !bdat {
            Some(self.read(t.data_init, "DATA").await?)
        } else {
            None
        };
        if !mail_ok {
            return Err(self.broken_by(&mail_reply));
        }
        if accepted.is_empty() {
            if data_reply.as_ref().is_some_and(|r| r.code == 354) {
                // The peer wants a message nobody takes: send an empty one and forget it.
                self.write(b".\r\n", t.data_block).await?;
                self.read(t.data_end, "end of data").await?;
            }
            return Ok(());
        }

        let final_replies = if bdat {
            self.send_bdat(out.message, accepted.len()).await?
        } else {
            let data_reply = match data_reply {
                Some(r) => r,
                None => self.command("DATA", t.data_init, "DATA").await?,
            };
            if data_reply.code != 354 {
                return Err(self.broken_by(&data_reply));
            }
            self.write_blocks(&dot_stuff(out.message)).await?;
            self.read_final(accepted.len()).await?
        };
        for (&i, reply) in accepted.iter().zip(final_replies) {
            outcomes[i] = Some(outcome_of(&reply));
        }
        self.needs_reset = false;
        Ok(())
    }

    /// RSET on its own (peers without PIPELINING).
    async fn reset(&mut self) -> Result<(), Failure> {
        let t = self.config.timeouts.command;
        let reply = self.command("RSET", t, "RSET").await;
        self.reset_answered(reply)?;
        self.needs_reset = false;
        Ok(())
    }

    /// The answer to RSET: anything but 2xx leaves the session unfit for use, and a failure
    /// here is one before the transaction (the message was not offered).
    fn reset_answered(&mut self, reply: Result<ServerReply, Failure>) -> Result<(), Failure> {
        let reply = match reply {
            Ok(reply) => reply,
            Err(failure) => {
                self.failed_before_transaction = true;
                return Err(failure);
            }
        };
        if reply.class() != 2 {
            self.failed_before_transaction = true;
            self.usable = false;
            return Err(self.broken_by(&reply));
        }
        Ok(())
    }

    /// Sends the message in BDAT chunks and returns the final reply per accepted recipient.
    async fn send_bdat(&mut self, message: &[u8], accepted: usize) -> Result<Vec<Reply>, Failure> {
        let t = self.config.timeouts.clone();
        let size = self.config.chunk_size.max(1);
        let mut chunks = message.chunks(size).peekable();
        if message.is_empty() {
            self.write(b"BDAT 0 LAST\r\n", t.data_block).await?;
            return self.read_final(accepted).await;
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let head = format!(
                "BDAT {}{}\r\n",
                chunk.len(),
                if last { " LAST" } else { "" }
            );
            self.write(head.as_bytes(), t.data_block).await?;
            self.write_blocks(chunk).await?;
            if last {
                return self.read_final(accepted).await;
            }
            let reply = self.read(t.data_block, "BDAT").await?;
            if reply.class() != 2 {
                return Err(self.broken_by(&reply));
            }
        }
        unreachable!("a non-empty message has a last chunk")
    }

    /// The reply to the end of data: one for SMTP (it counts for every accepted recipient), one per
    /// accepted recipient for LMTP.
    async fn read_final(&mut self, accepted: usize) -> Result<Vec<Reply>, Failure> {
        let timeout = self.config.timeouts.data_end;
        if self.protocol == Protocol::Smtp {
            let reply = self.read(timeout, "end of data").await?;
            if reply.code == 421 {
                self.usable = false;
            }
            return Ok(vec![self.remote_said(&reply); accepted]);
        }
        let mut replies = Vec::with_capacity(accepted);
        for _ in 0..accepted {
            let reply = self.read(timeout, "end of data").await?;
            replies.push(self.remote_said(&reply));
        }
        Ok(replies)
    }

    fn mail_command(&self, out: &Outbound<'_>) -> String {
        let caps = &self.capabilities;
        let rp = out.reverse_path;
        let mut cmd = format!("MAIL FROM:<{}>", rp.address);
        if caps.size.is_some() {
            cmd.push_str(&format!(" SIZE={}", out.message.len()));
        }
        if rp.body == Some(BodyType::BinaryMime) {
            cmd.push_str(" BODY=BINARYMIME");
        } else if caps.eight_bit_mime && has_8bit(out.message) {
            cmd.push_str(" BODY=8BITMIME");
        }
        if caps.smtputf8 && needs_smtputf8(out) {
            cmd.push_str(" SMTPUTF8");
        }
        if rp.requiretls && caps.requiretls {
            cmd.push_str(" REQUIRETLS");
        }
        if caps.dsn {
            match rp.ret {
                Some(DsnRet::Full) => cmd.push_str(" RET=FULL"),
                Some(DsnRet::Hdrs) => cmd.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(envid) = &rp.envid {
                cmd.push_str(" ENVID=");
                cmd.push_str(&xtext::encode(envid));
            }
        }
        cmd
    }

    fn rcpt_command(&self, rcpt: &Recipient) -> String {
        let mut cmd = format!("RCPT TO:<{}>", rcpt.address);
        if self.capabilities.dsn {
            if let Some(notify) = rcpt.notify {
                cmd.push_str(" NOTIFY=");
                cmd.push_str(&notify_param(notify));
            }
            if let Some(orcpt) = &rcpt.orcpt {
                cmd.push_str(" ORCPT=");
                cmd.push_str(orcpt);
            }
        }
        cmd
    }
}

/// 2xx delivered, 4xx deferred, 5xx failed (anything else: deferred, it is a protocol error).
pub fn outcome_of(reply: &Reply) -> RecipientOutcome {
    match reply.code / 100 {
        2 => RecipientOutcome::Delivered(reply.clone()),
        5 => RecipientOutcome::Failed(reply.clone()),
        _ => RecipientOutcome::Deferred(reply.clone()),
    }
}
