//! Mail authentication: DKIM signing of outgoing mail, and SPF / DKIM / DMARC / ARC verification
//! of inbound mail with an `Authentication-Results` header. mail-auth (0.13) does the parsing
//! and the cryptography; this module decides what is signed and verified, and when.
//!
//! - [`keys`]: reading, generating and publishing DKIM keys.
//! - [`sign`]: the signers of `[[dkim.sign]]`.
//! - [`verify`]: one pass over an inbound message, built on [`spf`], [`dmarc`] and [`arc`].
//! - [`results`]: the structured results and the header; forged headers removed.
//! - [`resolver`]: mail-auth's DNS client from `[dns]`.
//! - [`arc`]: chain validation, and the sealer of `[arc] seal` for forwarded mail.
//! - [`reports`]: DMARC aggregate reports (`[dmarc_reports]`).

pub mod arc;
pub mod cli;
pub mod dmarc;
pub mod keys;
pub mod reports;
pub mod resolver;
pub mod results;
pub mod sign;
pub mod spf;
pub mod verify;

pub use results::AuthResults;
pub use verify::Origin;

use crate::config::Config;

/// What the SMTP stages use: the signers, and the verifier for mx listeners.
#[derive(Default)]
pub struct MailAuth {
    /// Shared with the queue (it signs its DSNs) and replaced by a reload.
    pub signers: std::sync::Arc<sign::LiveSigners>,
    /// None when `[authentication] verify = false`.
    pub verifier: Option<std::sync::Arc<verify::Verifier>>,
    /// `[arc] seal`: seals verified mail that is forwarded off-site.
    pub sealer: Option<std::sync::Arc<arc::Sealer>>,
    /// `[dmarc_reports]`: the evaluations of the running period (None: reports are off).
    pub reports: Option<std::sync::Arc<reports::ReportLog>>,
}

impl MailAuth {
    /// Loads (or, for selectors without a key file, generates) the signing keys and builds the
    /// verifier's resolver.
    pub fn from_config(config: &Config) -> anyhow::Result<MailAuth> {
        let signers = sign::Signers::from_config(config)?;
        for key in signers.keys() {
            tracing::info!(domain = %key.domain, selector = %key.selector, key = %key.key_path.display(), "DKIM signing key loaded");
        }
        let sealer = arc::Sealer::from_config(config)?.map(std::sync::Arc::new);
        if let Some(sealer) = &sealer {
            tracing::info!(domain = %sealer.domain, selector = %sealer.selector, "ARC sealing of forwarded mail on");
        }
        let reports = if config.dmarc_reports.enabled {
            Some(std::sync::Arc::new(reports::ReportLog::open(
                &config.server.state_dir,
            )?))
        } else {
            None
        };
        Ok(MailAuth {
            signers: std::sync::Arc::new(sign::LiveSigners::new(signers)),
            verifier: Self::verifier(config)?,
            sealer,
            reports,
        })
    }

    /// Logs a verified message's DMARC evaluation for the aggregate reports, with what the
    /// data hook decided (a temporary refusal is not logged: the message comes again).
    pub fn record_dmarc(
        &self,
        results: &AuthResults,
        client_ip: std::net::IpAddr,
        verdict: &crate::policy::Verdict,
    ) {
        use crate::policy::Verdict;
        use mail_auth::report::ActionDisposition;
        let Some(log) = &self.reports else {
            return;
        };
        let disposition = match verdict {
            Verdict::Tempfail(_) => return,
            Verdict::Reject(_) | Verdict::Disconnect(_) => ActionDisposition::Reject,
            Verdict::Quarantine(_) => ActionDisposition::Quarantine,
            _ => ActionDisposition::None,
        };
        log.record(results, client_ip, disposition);
    }

    /// The ARC set for a verified message that is forwarded: `received` as it arrived (forged
    /// Authentication-Results removed), `outgoing` as it leaves. None (logged) when sealing is
    /// off, verification is off, or the chain cannot be extended.
    pub async fn seal_forwarded(
        &self,
        origin: &Origin<'_>,
        received: &[u8],
        outgoing: &[u8],
    ) -> Option<Vec<u8>> {
        let (sealer, verifier) = (self.sealer.as_ref()?, self.verifier.as_ref()?);
        match verifier.arc_seal(sealer, origin, received, outgoing).await {
            Ok(set) => Some(set),
            Err(e) => {
                tracing::warn!(error = %e, "ARC seal not added");
                None
            }
        }
    }

    /// The verifier of `[authentication]` (None when `verify = false`).
    pub fn verifier(config: &Config) -> anyhow::Result<Option<std::sync::Arc<verify::Verifier>>> {
        Ok(if config.authentication.verify {
            Some(std::sync::Arc::new(verify::Verifier::from_config(config)?))
        } else {
            None
        })
    }

    /// For a reload to `new`: the keys of `[[dkim.sign]]` read again (a rotated key file is
    /// picked up; a key that cannot be read refuses the reload), and the verifier rebuilt when
    /// `[authentication]` changed. The new signers take effect when the reload commits
    /// ([`sign::LiveSigners::replace`]).
    pub fn prepare_reload(
        &self,
        old: &Config,
        new: &Config,
        changes: &mut Vec<String>,
    ) -> anyhow::Result<(MailAuth, sign::Signers)> {
        let signers = sign::Signers::from_config(new)?;
        let current = self.signers.current();
        if !current.same_keys(&signers) {
            changes.push(format!(
                "dkim: signing keys now {}",
                match signers.describe() {
                    d if d.is_empty() => "none".to_string(),
                    d => d.join(", "),
                }
            ));
        }
        let verifier = if format!("{:?}", old.authentication) != format!("{:?}", new.authentication)
        {
            changes.push("[authentication] changed".into());
            Self::verifier(new)?
        } else {
            self.verifier.clone()
        };
        // The ARC key is read again too (rotation), and a broken one refuses the reload.
        let sealer = arc::Sealer::from_config(new)?.map(std::sync::Arc::new);
        if format!("{:?}", old.arc) != format!("{:?}", new.arc) {
            changes.push("[arc] changed".into());
        }
        Ok((
            MailAuth {
                signers: self.signers.clone(),
                verifier,
                sealer,
                // The period's log carries over ([dmarc_reports] itself needs a restart).
                reports: self.reports.clone(),
            },
            signers,
        ))
    }

    /// Verifies an inbound message: the results and the message to keep (forged
    /// Authentication-Results fields claiming our authserv-id removed). None when verification
    /// is off.
    pub async fn verify_inbound(
        &self,
        origin: &Origin<'_>,
        message: Vec<u8>,
    ) -> (Option<AuthResults>, Vec<u8>) {
        let Some(verifier) = &self.verifier else {
            return (None, message);
        };
        let results = verifier.verify(origin, &message).await;
        let message = results::strip_forged(&message, verifier.authserv_id()).unwrap_or(message);
        (Some(results), message)
    }
}
