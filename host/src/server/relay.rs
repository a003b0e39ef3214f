//! Relay control: the core's safety net under any plugin.
//!
//! An unauthenticated client may only address local domains (else 554 5.7.1). The domain is
//! what follows the last `@` outside a quoted local part, compared exactly (case-insensitively)
//! with the configured local domains, so the classic tricks never open a relay:
//! `user%remote@local`, `remote!user@local` and `"user@remote"@local` stay local (and are
//! refused outright for unauthenticated clients), `user@local.` (trailing dot), `user@[1.2.3.4]`
//! (IP literal) and `user@remote` are not local. Source routes are stripped by the protocol
//! parser (RFC 5321 4.1.1.3: the last hop is what counts).

use crate::config::server::LocalConfig;
use crate::policy::Reply;

/// Where a recipient's domain points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientDomain {
    /// A local domain; carries the address with a domain (bare `postmaster` gets one).
    Local(String),
    /// Another domain: allowed only for authenticated clients.
    Remote(String),
}

fn relay_denied(address: &str) -> Reply {
    Reply::new(554, "5.7.1", format!("<{address}>: Relay access denied"))
}

/// Decides whether this client may address `address` at all, before any mailbox lookup.
pub fn check(
    address: &str,
    authenticated: bool,
    local: &LocalConfig,
) -> Result<RecipientDomain, Reply> {
    let Some((local_part, domain)) = crate::mail::address::split(address) else {
        // RFC 5321 4.5.1: "postmaster" without a domain must be accepted.
        if address.eq_ignore_ascii_case("postmaster")
            && let Some(first) = local.domains.first()
        {
            return Ok(RecipientDomain::Local(format!("postmaster@{first}")));
        }
        return Err(Reply::new(
            550,
            "5.1.3",
            format!("<{address}>: Recipient address needs a domain"),
        ));
    };
    if local_part.is_empty() || domain.is_empty() {
        return Err(Reply::new(
            501,
            "5.1.3",
            format!("<{address}>: Bad recipient address syntax"),
        ));
    }
    let is_local = local.is_local_domain(domain);
    if authenticated {
        return Ok(if is_local {
            RecipientDomain::Local(address.to_string())
        } else {
            RecipientDomain::Remote(address.to_string())
        });
    }
    // Unauthenticated: local domains only, and no routing syntax hidden in the local part.
    if !is_local || local_part.contains(['%', '!', '@']) {
        return Err(relay_denied(address));
    }
    Ok(RecipientDomain::Local(address.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalConfig {
        LocalConfig {
            domains: vec!["example.test".into()],
            mailboxes: vec!["bob@example.test".into()],
            aliases: Default::default(),
        }
    }

    #[test]
    fn unauthenticated_clients_reach_local_domains_only() {
        let l = local();
        let ok = |a: &str| check(a, false, &l);
        assert_eq!(
            ok("bob@example.test"),
            Ok(RecipientDomain::Local("bob@example.test".into()))
        );
        assert_eq!(
            ok("Bob@EXAMPLE.test"),
            Ok(RecipientDomain::Local("Bob@EXAMPLE.test".into()))
        );
        for trick in [
            "bob@elsewhere.test",
            "bob@example.test.",
            "bob@[127.0.0.1]",
            "bob%elsewhere.test@example.test",
            "elsewhere.test!bob@example.test",
            "\"bob@elsewhere.test\"@example.test",
            "bob@example.test@elsewhere.test",
            "bob@sub.example.test",
            "bob@example.testx",
        ] {
            let reply = ok(trick).unwrap_err();
            assert_eq!(
                (reply.code, reply.enhanced.as_str()),
                (554, "5.7.1"),
                "{trick}"
            );
        }
    }

    #[test]
    fn authenticated_clients_relay() {
        let l = local();
        assert_eq!(
            check("carol@elsewhere.test", true, &l),
            Ok(RecipientDomain::Remote("carol@elsewhere.test".into()))
        );
    }

    #[test]
    fn bare_postmaster_is_local() {
        assert_eq!(
            check("Postmaster", false, &local()),
            Ok(RecipientDomain::Local("postmaster@example.test".into()))
        );
        assert_eq!(check("bob", false, &local()).unwrap_err().code, 550);
    }
}
