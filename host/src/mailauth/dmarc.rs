//! DMARC (RFC 7489, as updated by RFC 9989 which mail-auth 0.13 implements): the From domain's
//! policy and whether SPF or DKIM passed for an aligned domain.

use super::results::{AuthStatus, DmarcCheck, DmarcPolicy};
use mail_auth::dmarc::Policy;
use mail_auth::{DmarcOutput, DmarcResult};

/// Our view of mail-auth's output. None when the From header has no single domain (several
/// From domains are exempt from DMARC, RFC 7489 section 6.6.1).
pub fn check(output: &DmarcOutput) -> Option<DmarcCheck> {
    if output.domain().is_empty() {
        return None;
    }
    let record = output.dmarc_record().is_some();
    let result = match output.result() {
        DmarcResult::Pass => AuthStatus::Pass,
        DmarcResult::Fail(_) => AuthStatus::Fail,
        DmarcResult::TempError(_) => AuthStatus::TempError,
        DmarcResult::PermError(_) => AuthStatus::PermError,
        DmarcResult::None => AuthStatus::None,
    };
    Some(DmarcCheck {
        result,
        from_domain: output.domain().to_string(),
        policy: if record {
            policy(output.policy())
        } else {
            DmarcPolicy::None
        },
        record,
        spf_aligned: *output.spf_result() == DmarcResult::Pass,
        dkim_aligned: *output.dkim_result() == DmarcResult::Pass,
        published: output.dmarc_record_cloned(),
    })
}

fn policy(policy: Policy) -> DmarcPolicy {
    match policy {
        Policy::Reject => DmarcPolicy::Reject,
        Policy::Quarantine => DmarcPolicy::Quarantine,
        Policy::None | Policy::Unspecified => DmarcPolicy::None,
    }
}
