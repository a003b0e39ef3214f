//! SPF (RFC 7208) of the HELO and MAIL FROM identities.
//!
//! The evaluation is ours ([`check`], [`record`], [`macros`]) rather than mail-auth's: mail-auth
//! 0.13.3 gave the expected result in 141 of the 203 cases of the RFC 7208 test suite (it
//! tolerates syntax errors the RFC makes permerror, refuses syntax the RFC allows, and turns names
//! hickory cannot encode into temperror). Its DKIM, ARC and DMARC are still used; DMARC takes the
//! result as a mail-auth `SpfOutput` built here.

pub mod check;
pub mod macros;
pub mod record;

use super::results::{AuthStatus, SpfCheck};
use crate::dns::Resolver;
use check::Evaluation;
use mail_auth::{SpfOutput, SpfResult};
use std::net::IpAddr;

/// The MAIL FROM identity (RFC 7208 section 2.4); for the null reverse path the HELO identity
/// `postmaster@<helo>` (section 2.4), and a sender without local-part gets `postmaster`
/// (section 4.3). Returns the check and mail-auth's form of it (DMARC needs that).
pub async fn check_mail_from(
    resolver: &Resolver,
    ip: IpAddr,
    helo: &str,
    mail_from: &str,
    hostname: &str,
) -> (SpfCheck, SpfOutput) {
    let identity = if mail_from.is_empty() {
        format!("postmaster@{helo}")
    } else if mail_from.starts_with('@') {
        format!("postmaster{mail_from}")
    } else {
        mail_from.to_string()
    };
    let domain = identity
        .rsplit_once('@')
        .map_or(helo, |(_, d)| d)
        .to_ascii_lowercase();
    let outcome = Evaluation::new(resolver, ip, &identity, helo, hostname)
        .check(&domain)
        .await;
    let check = SpfCheck {
        result: status(outcome.result),
        domain,
        identity: identity.clone(),
        explanation: outcome.explanation,
    };
    let output = output(&check, outcome.result);
    (check, output)
}

/// The HELO identity (RFC 7208 section 2.3); None for an address literal, which has no policy.
pub async fn check_helo(
    resolver: &Resolver,
    ip: IpAddr,
    helo: &str,
    hostname: &str,
) -> Option<(SpfCheck, SpfOutput)> {
    if helo.is_empty() || helo.starts_with('[') || helo.parse::<IpAddr>().is_ok() {
        return None;
    }
    let identity = format!("postmaster@{helo}");
    let outcome = Evaluation::new(resolver, ip, &identity, helo, hostname)
        .check(helo)
        .await;
    let check = SpfCheck {
        result: status(outcome.result),
        domain: helo.to_ascii_lowercase(),
        identity,
        explanation: outcome.explanation,
    };
    let output = output(&check, outcome.result);
    Some((check, output))
}

/// mail-auth's form of a result, for its DMARC evaluation and Authentication-Results builder.
fn output(check: &SpfCheck, result: SpfResult) -> SpfOutput {
    let output = SpfOutput::new(check.domain.clone()).with_result(result);
    match &check.explanation {
        Some(text) => output.with_explanation(text.clone()),
        None => output,
    }
}

pub fn status(result: SpfResult) -> AuthStatus {
    match result {
        SpfResult::Pass => AuthStatus::Pass,
        SpfResult::Fail => AuthStatus::Fail,
        SpfResult::SoftFail => AuthStatus::SoftFail,
        SpfResult::Neutral => AuthStatus::Neutral,
        SpfResult::TempError => AuthStatus::TempError,
        SpfResult::PermError => AuthStatus::PermError,
        SpfResult::None => AuthStatus::None,
    }
}
