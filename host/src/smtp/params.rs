//! ESMTP parameters of MAIL (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH, REQUIRETLS) and RCPT
//! (NOTIFY, ORCPT).
//!
//! A parameter we do not advertise gets 555 5.5.4; a duplicate or malformed one 501 5.5.4.

use super::reply::{self, Static};
use crate::mail::{BodyType, DsnRet, Notify, Recipient, ReversePath, xtext};

/// Splits "KEY[=VALUE]" words; keys are case-insensitive.
fn words(rest: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    rest.split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (w, None),
        })
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), Static> {
    if slot.is_some() {
        return Err(reply::SYNTAX);
    }
    *slot = Some(value);
    Ok(())
}

/// MAIL's parameters, straight into the envelope's `ReversePath` (the caller sets `address`).
/// `auth_param` allows RFC 4954's `AUTH=` (advertised with AUTH); its value is validated and ignored.
/// REQUIRETLS is parsed everywhere; the caller refuses it where it is not offered (before STARTTLS).
pub fn parse_mail(rest: &str, auth_param: bool) -> Result<ReversePath, Static> {
    let mut params = ReversePath::default();
    let mut seen_smtputf8 = false;
    let mut seen_auth = false;
    for (key, value) in words(rest) {
        if key.eq_ignore_ascii_case("SIZE") {
            let v = value.ok_or(reply::SYNTAX)?;
            if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(reply::SYNTAX);
            }
            // 20 digits can overflow u64: such a size is over any limit anyway.
            set_once(&mut params.size, v.parse().unwrap_or(u64::MAX))?;
        } else if key.eq_ignore_ascii_case("BODY") {
            let body = match value.ok_or(reply::SYNTAX)? {
                v if v.eq_ignore_ascii_case("7BIT") => BodyType::SevenBit,
                v if v.eq_ignore_ascii_case("8BITMIME") => BodyType::EightBitMime,
                // BINARYMIME is not advertised: delivery would have to convert it for peers.
                v if v.eq_ignore_ascii_case("BINARYMIME") => return Err(reply::PARAM_NOT_OFFERED),
                _ => return Err(reply::SYNTAX),
            };
            set_once(&mut params.body, body)?;
        } else if key.eq_ignore_ascii_case("SMTPUTF8") {
            if value.is_some() || seen_smtputf8 {
                return Err(reply::SYNTAX);
            }
            seen_smtputf8 = true;
            params.smtputf8 = true;
        } else if key.eq_ignore_ascii_case("RET") {
            let ret = match value.ok_or(reply::SYNTAX)? {
                v if v.eq_ignore_ascii_case("FULL") => DsnRet::Full,
                v if v.eq_ignore_ascii_case("HDRS") => DsnRet::Hdrs,
                _ => return Err(reply::SYNTAX),
            };
            set_once(&mut params.ret, ret)?;
        } else if key.eq_ignore_ascii_case("ENVID") {
            let v = value.ok_or(reply::SYNTAX)?;
            // RFC 3461 §4.4: at most 100 characters, xtext.
            if v.is_empty() || v.len() > 100 {
                return Err(reply::SYNTAX);
            }
            set_once(&mut params.envid, xtext::decode(v).ok_or(reply::SYNTAX)?)?;
        } else if key.eq_ignore_ascii_case("REQUIRETLS") {
            if value.is_some() || params.requiretls {
                return Err(reply::SYNTAX);
            }
            params.requiretls = true;
        } else if key.eq_ignore_ascii_case("AUTH") && auth_param {
            let v = value.ok_or(reply::SYNTAX)?;
            if seen_auth || v.is_empty() || (v != "<>" && xtext::decode(v).is_none()) {
                return Err(reply::SYNTAX);
            }
            seen_auth = true;
        } else {
            return Err(reply::PARAM_NOT_OFFERED);
        }
    }
    Ok(params)
}

/// RCPT's parameters, straight into the envelope's `Recipient` (the caller sets `address`).
pub fn parse_rcpt(rest: &str) -> Result<Recipient, Static> {
    let mut params = Recipient::default();
    for (key, value) in words(rest) {
        if key.eq_ignore_ascii_case("NOTIFY") {
            set_once(
                &mut params.notify,
                parse_notify(value.ok_or(reply::SYNTAX)?)?,
            )?;
        } else if key.eq_ignore_ascii_case("ORCPT") {
            let v = value.ok_or(reply::SYNTAX)?;
            set_once(&mut params.orcpt, parse_orcpt(v)?.to_string())?;
        } else {
            return Err(reply::PARAM_NOT_OFFERED);
        }
    }
    Ok(params)
}

/// "NEVER" alone, or a list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1).
fn parse_notify(value: &str) -> Result<Notify, Static> {
    if value.eq_ignore_ascii_case("NEVER") {
        return Ok(Notify::default());
    }
    let mut notify = Notify::default();
    for item in value.split(',') {
        if item.eq_ignore_ascii_case("SUCCESS") {
            notify.success = true;
        } else if item.eq_ignore_ascii_case("FAILURE") {
            notify.failure = true;
        } else if item.eq_ignore_ascii_case("DELAY") {
            notify.delay = true;
        } else {
            // Includes NEVER combined with others, and empty items.
            return Err(reply::SYNTAX);
        }
    }
    Ok(notify)
}

/// "addr-type ; xtext" (RFC 3461 §4.2), kept as given.
fn parse_orcpt(value: &str) -> Result<&str, Static> {
    let (addr_type, addr) = value.split_once(';').ok_or(reply::SYNTAX)?;
    let type_ok = !addr_type.is_empty()
        && addr_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let addr_ok =
        !addr.is_empty() && addr.len() <= 500 && addr.bytes().all(|b| (33..=126).contains(&b));
    if type_ok
        && addr_ok
        && (xtext::decode(addr).is_some() || !addr_type.eq_ignore_ascii_case("rfc822"))
    {
        Ok(value)
    } else {
        Err(reply::SYNTAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_parameters() {
        let p = parse_mail(
            "SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159+2Bx",
            false,
        )
        .unwrap();
        assert_eq!(p.size, Some(1000));
        assert_eq!(p.body, Some(BodyType::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(DsnRet::Hdrs));
        assert_eq!(p.envid.as_deref(), Some("QQ314159+x"));
        assert_eq!(
            parse_mail("body=7bit", false).unwrap().body,
            Some(BodyType::SevenBit)
        );
    }

    #[test]
    fn mail_parameter_errors() {
        assert_eq!(
            parse_mail("BODY=BINARYMIME", false),
            Err(reply::PARAM_NOT_OFFERED)
        );
        assert_eq!(parse_mail("FOO=1", false), Err(reply::PARAM_NOT_OFFERED));
        assert_eq!(parse_mail("AUTH=<>", false), Err(reply::PARAM_NOT_OFFERED));
        assert!(parse_mail("AUTH=<>", true).is_ok());
        assert_eq!(parse_mail("SIZE=1 SIZE=2", false), Err(reply::SYNTAX));
        assert_eq!(parse_mail("SIZE=abc", false), Err(reply::SYNTAX));
        assert_eq!(parse_mail("SIZE", false), Err(reply::SYNTAX));
        assert_eq!(parse_mail("BODY=9BIT", false), Err(reply::SYNTAX));
        assert_eq!(parse_mail("RET=ALL", false), Err(reply::SYNTAX));
        assert_eq!(parse_mail("SMTPUTF8=yes", false), Err(reply::SYNTAX));
        assert_eq!(parse_mail("ENVID=a+zz", false), Err(reply::SYNTAX));
        assert_eq!(parse_mail("ENVID=a+0D+0Ab", false), Err(reply::SYNTAX));
        assert_eq!(parse_mail("ENVID=a+2", false), Err(reply::SYNTAX));
        assert_eq!(
            parse_mail("SIZE=99999999999999999999", false).unwrap().size,
            Some(u64::MAX)
        );
    }

    #[test]
    fn rcpt_parameters() {
        let p = parse_rcpt("NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob@example.test").unwrap();
        assert_eq!(
            p.notify,
            Some(Notify {
                success: true,
                failure: false,
                delay: true
            })
        );
        assert_eq!(p.orcpt.as_deref(), Some("rfc822;bob@example.test"));
        assert_eq!(
            parse_rcpt("NOTIFY=NEVER").unwrap().notify,
            Some(Notify::default())
        );
        assert_eq!(parse_rcpt("NOTIFY=NEVER,SUCCESS"), Err(reply::SYNTAX));
        assert_eq!(parse_rcpt("NOTIFY=SOMETIMES"), Err(reply::SYNTAX));
        assert_eq!(
            parse_rcpt("NOTIFY=SUCCESS NOTIFY=DELAY"),
            Err(reply::SYNTAX)
        );
        assert_eq!(parse_rcpt("ORCPT=bob@example.test"), Err(reply::SYNTAX));
        assert_eq!(parse_rcpt("SIZE=1"), Err(reply::PARAM_NOT_OFFERED));
    }
}
