//! SPF (RFC 7208) of the HELO and MAIL FROM identities, evaluated by mail-auth.

use super::results::{AuthStatus, SpfCheck};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfOutput, SpfResult};
use std::net::IpAddr;

/// The MAIL FROM identity (RFC 7208 section 2.4); for the null reverse path the HELO identity
/// `postmaster@<helo>` (section 2.4), and a sender without local-part gets `postmaster`
/// (section 4.3). Returns the check and mail-auth's output (DMARC needs it).
pub async fn check_mail_from(
    authenticator: &MessageAuthenticator,
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
    let output = authenticator
        .verify_spf(SpfParameters::verify_mail_from(
            ip, helo, hostname, &identity,
        ))
        .await;
    let domain = identity
        .rsplit_once('@')
        .map_or(helo, |(_, d)| d)
        .to_ascii_lowercase();
    (
        SpfCheck {
            result: status(output.result()),
            domain,
            identity,
            explanation: output.explanation().map(str::to_string),
        },
        output,
    )
}

/// The HELO identity (RFC 7208 section 2.3); None for an address literal, which has no policy.
pub async fn check_helo(
    authenticator: &MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    hostname: &str,
) -> Option<SpfCheck> {
    if helo.is_empty() || helo.starts_with('[') || helo.parse::<IpAddr>().is_ok() {
        return None;
    }
    let output = authenticator
        .verify_spf(SpfParameters::verify_ehlo(ip, helo, hostname))
        .await;
    Some(SpfCheck {
        result: status(output.result()),
        domain: helo.to_ascii_lowercase(),
        identity: format!("postmaster@{helo}"),
        explanation: output.explanation().map(str::to_string),
    })
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
