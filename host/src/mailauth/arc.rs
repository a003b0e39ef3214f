//! ARC (RFC 8617) chain validation: whether the sets a forwarder added are intact.

use super::results::{ArcCheck, AuthStatus};
use mail_auth::{ArcOutput, DkimResult};

pub fn check(output: &ArcOutput<'_>) -> ArcCheck {
    let (result, reason) = match output.result() {
        DkimResult::Pass => (AuthStatus::Pass, String::new()),
        DkimResult::None => (AuthStatus::None, String::new()),
        DkimResult::TempError(e) => (AuthStatus::TempError, e.to_string()),
        DkimResult::Fail(e) | DkimResult::Neutral(e) | DkimResult::PermError(e) => {
            (AuthStatus::Fail, e.to_string())
        }
    };
    ArcCheck {
        result,
        sets: output.sets().len() as u32,
        reason,
    }
}

/// The ARC sealer of `[arc] seal` (RFC 8617 section 5.1): when mailwit forwards a message it
/// verified, it adds the next ARC set (ARC-Authentication-Results with what it found on receipt,
/// ARC-Message-Signature over the message as it leaves, ARC-Seal over the chain), so the next
/// hop can see that the message authenticated here although forwarding breaks SPF (and maybe
/// DKIM). The key stays in the host, like DKIM's.
pub struct Sealer {
    pub domain: String,
    pub selector: String,
    sealer: mail_auth::arc::ArcSealer<mail_auth::common::crypto::DkimKey, mail_auth::dkim::Done>,
}

impl Sealer {
    /// The sealer of `[arc] seal`, None when it is absent; a key that cannot be read is an error.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Option<Sealer>> {
        use anyhow::Context;
        let Some(seal) = &config.arc.seal else {
            return Ok(None);
        };
        let key = super::keys::load(&seal.key)
            .with_context(|| format!("[arc] seal key {}", seal.key.display()))?;
        let headers: Vec<String> = match &seal.headers {
            Some(list) => list.clone(),
            // DKIM's list, and the DKIM signatures themselves (a later hop may want to know
            // which ones we saw intact).
            None => super::sign::DEFAULT_HEADERS
                .iter()
                .chain(&["DKIM-Signature"])
                .map(|s| s.to_string())
                .collect(),
        };
        let sealer = mail_auth::arc::ArcSealer::from_key(key.key)
            .domain(seal.domain.to_ascii_lowercase())
            .selector(seal.selector.clone())
            .headers(headers)
            .header_canonicalization(mail_auth::dkim::Canonicalization::Relaxed)
            .body_canonicalization(mail_auth::dkim::Canonicalization::Relaxed);
        Ok(Some(Sealer {
            domain: seal.domain.to_ascii_lowercase(),
            selector: seal.selector.clone(),
            sealer,
        }))
    }

    /// The ARC set for `outgoing` (the message as it will leave), recording `results` (what the
    /// verification of the received message found) and extending the received chain `chain`.
    /// The three fields come back ready to put on top, CRLF line ends.
    pub fn seal(
        &self,
        outgoing: &[u8],
        results: &mail_auth::AuthenticationResults<'_>,
        chain: &ArcOutput<'_>,
    ) -> anyhow::Result<Vec<u8>> {
        use mail_auth::common::headers::HeaderWriter;
        if !chain.can_be_sealed() {
            anyhow::bail!("the received ARC chain already failed (cv=fail): not extended");
        }
        let message = mail_auth::AuthenticatedMessage::parse(outgoing)
            .ok_or_else(|| anyhow::anyhow!("the message cannot be parsed"))?;
        let set = self
            .sealer
            .seal(&message, results, chain)
            .map_err(|e| anyhow::anyhow!("sealing failed: {e}"))?;
        Ok(set.to_header().into_bytes())
    }
}
