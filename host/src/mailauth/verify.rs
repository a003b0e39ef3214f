//! Verification of inbound mail: SPF (HELO and MAIL FROM), DKIM (every signature up to a
//! limit), ARC and DMARC, in one pass that yields [`AuthResults`].

use super::results::{AuthResults, AuthStatus, DkimCheck, SpfCheck};
use super::{arc, dmarc, resolver, spf};
use crate::config::Config;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, MessageAuthenticator, SpfOutput,
};
use std::net::IpAddr;

/// What the SMTP session knows about the message's origin.
pub struct Origin<'a> {
    pub client_ip: IpAddr,
    pub helo: &'a str,
    /// The reverse path (empty for `<>`).
    pub mail_from: &'a str,
}

pub struct Verifier {
    authenticator: MessageAuthenticator,
    /// The server's kind of resolver, for SPF (evaluated by us, see [`spf`]).
    resolver: std::sync::Arc<crate::dns::Resolver>,
    authserv_id: String,
    hostname: String,
    max_signatures: usize,
}

impl Verifier {
    pub fn from_config(config: &Config) -> anyhow::Result<Verifier> {
        Ok(Verifier {
            authenticator: resolver::authenticator(&config.dns)?,
            resolver: crate::dns::Resolver::from_config(&config.dns)
                .map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?,
            authserv_id: authserv_id(config),
            hostname: config.server.hostname.clone(),
            max_signatures: config.authentication.max_signatures,
        })
    }

    pub fn authserv_id(&self) -> &str {
        &self.authserv_id
    }

    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.authenticator
    }

    /// SPF for the MAIL FROM identity (RFC 7208 §2.4), with mail-auth's output for DMARC.
    async fn spf_mail_from(&self, origin: &Origin<'_>) -> (SpfCheck, SpfOutput) {
        spf::check_mail_from(
            &self.resolver,
            origin.client_ip,
            origin.helo,
            origin.mail_from,
            &self.hostname,
        )
        .await
    }

    pub async fn verify(&self, origin: &Origin<'_>, message: &[u8]) -> AuthResults {
        let auth = &self.authenticator;
        let spf_helo = spf::check_helo(
            &self.resolver,
            origin.client_ip,
            origin.helo,
            &self.hostname,
        )
        .await
        .map(|(check, _)| check);
        let (spf_mail_from, spf_output) = self.spf_mail_from(origin).await;
        let unparsable = || AuthResults {
            authserv_id: self.authserv_id.clone(),
            spf_helo: spf_helo.clone(),
            spf_mail_from: spf_mail_from.clone(),
            dkim: Vec::new(),
            dmarc: None,
            arc: super::results::ArcCheck {
                result: AuthStatus::None,
                sets: 0,
                reason: String::new(),
            },
            from_domain: String::new(),
        };
        let Some(mut parsed) = AuthenticatedMessage::parse(message) else {
            return unparsable();
        };
        // Each signature costs a key lookup and a hash of the message: a bounded number.
        parsed.dkim_headers.truncate(self.max_signatures);
        let dkim_output = auth.verify_dkim(&parsed).await;
        let arc_output = auth.verify_arc(&parsed).await;
        let mail_from_domain = spf_mail_from.domain.clone();
        let dmarc_output =
            dmarc_of(auth, &parsed, &dkim_output, &mail_from_domain, &spf_output).await;
        let from_domain = from_domain(&parsed);
        AuthResults {
            authserv_id: self.authserv_id.clone(),
            spf_helo,
            spf_mail_from,
            dkim: dkim_output.iter().map(dkim_check).collect(),
            dmarc: dmarc::check(&dmarc_output),
            arc: arc::check(&arc_output),
            from_domain,
        }
    }
}

impl Verifier {
    /// ARC-seals `outgoing` (the message as it leaves, after every change made here) with the
    /// results of verifying `received` (the message as it arrived, forged Authentication-Results
    /// removed): SPF, DKIM, DMARC and the chain are evaluated again for the
    /// ARC-Authentication-Results, which mail-auth builds from its own outputs (the DNS answers
    /// come from the resolver's cache). Only forwarded mail pays for this second pass.
    pub async fn arc_seal(
        &self,
        sealer: &arc::Sealer,
        origin: &Origin<'_>,
        received: &[u8],
        outgoing: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        use mail_auth::AuthenticationResults;
        let auth = &self.authenticator;
        let mut parsed = AuthenticatedMessage::parse(received)
            .ok_or_else(|| anyhow::anyhow!("the message cannot be parsed"))?;
        parsed.dkim_headers.truncate(self.max_signatures);
        let dkim = auth.verify_dkim(&parsed).await;
        let chain = auth.verify_arc(&parsed).await;
        let (spf_mail_from, spf_output) = self.spf_mail_from(origin).await;
        let dmarc = dmarc_of(auth, &parsed, &dkim, &spf_mail_from.domain, &spf_output).await;
        let from_domain = from_domain(&parsed);
        let mut results =
            AuthenticationResults::new(&self.authserv_id).with_dkim_results(&dkim, &from_domain);
        let helo = origin.helo;
        if let Some((_, output)) =
            spf::check_helo(&self.resolver, origin.client_ip, helo, &self.hostname).await
        {
            results = results.with_spf_ehlo_result(&output, origin.client_ip, helo);
        }
        let results = results
            .with_spf_mailfrom_result(&spf_output, origin.client_ip, &spf_mail_from.identity, helo)
            .with_dmarc_result(&dmarc)
            .with_arc_result(&chain, origin.client_ip);
        sealer.seal(outgoing, &results, &chain)
    }
}

/// `[authentication] authserv_id`, or the server's host name.
pub fn authserv_id(config: &Config) -> String {
    config
        .authentication
        .authserv_id
        .clone()
        .unwrap_or_else(|| config.server.hostname.clone())
}

/// DMARC (RFC 7489) for a parsed message with its DKIM outputs and its SPF result for MAIL FROM.
async fn dmarc_of(
    auth: &MessageAuthenticator,
    parsed: &AuthenticatedMessage<'_>,
    dkim: &[DkimOutput<'_>],
    mail_from_domain: &str,
    spf: &SpfOutput,
) -> DmarcOutput {
    auth.verify_dmarc(DmarcParameters::new(parsed, dkim, mail_from_domain, spf))
        .await
}

/// The domain of the message's first From address, lower-cased; empty without one.
fn from_domain(parsed: &AuthenticatedMessage<'_>) -> String {
    parsed
        .from
        .first()
        .and_then(|f| f.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

fn dkim_check(output: &DkimOutput<'_>) -> DkimCheck {
    let (result, reason) = match output.result() {
        DkimResult::Pass => (AuthStatus::Pass, String::new()),
        // A body that no longer matches its hash is a failed signature (RFC 6376 section
        // 6.1.3: PERMFAIL), which RFC 8601 reports as fail; mail-auth calls it neutral.
        DkimResult::Neutral(e @ mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthStatus::Fail, e.to_string())
        }
        DkimResult::Neutral(e) => (AuthStatus::Neutral, e.to_string()),
        DkimResult::Fail(e) => (AuthStatus::Fail, e.to_string()),
        DkimResult::PermError(e) => (AuthStatus::PermError, e.to_string()),
        DkimResult::TempError(e) => (AuthStatus::TempError, e.to_string()),
        DkimResult::None => (AuthStatus::None, String::new()),
    };
    let signature = output.signature();
    DkimCheck {
        result,
        reason,
        domain: signature
            .map(|s| s.d.to_ascii_lowercase())
            .unwrap_or_default(),
        selector: signature.map(|s| s.s.clone()).unwrap_or_default(),
        algorithm: signature
            .map(|s| s.a.name().to_string())
            .unwrap_or_default(),
        signature_prefix: signature
            .map(|s| {
                use base64::Engine;
                let b = base64::engine::general_purpose::STANDARD.encode(&s.b);
                b.chars().take(8).collect()
            })
            .unwrap_or_default(),
    }
}
