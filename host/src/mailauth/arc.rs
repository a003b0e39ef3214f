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
