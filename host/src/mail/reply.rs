//! An SMTP reply with its RFC 3463 enhanced status code, and the checks on such codes.

/// An SMTP reply with its RFC 3463 enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// e.g. "5.7.1"
    pub enhanced: String,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, enhanced: impl Into<String>, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: enhanced.into(),
            text: text.into(),
        }
    }
}

/// "class.subject.detail" with parts of 1 to 3 digits (RFC 3463 §2 syntax).
pub fn is_enhanced_code(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    parts == 3
}

/// Whether `enhanced` is a valid code whose class (2, 4 or 5, one digit) is the reply code's.
pub fn enhanced_code_fits(code: u16, enhanced: &str) -> bool {
    let class = enhanced.split('.').next().unwrap_or("");
    is_enhanced_code(enhanced)
        && matches!(class, "2" | "4" | "5")
        && u16::from(class.as_bytes()[0] - b'0') == code / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes() {
        for (code, valid) in [
            ("5.1.1", true),
            ("4.123.999", true),
            ("5.1", false),
            ("5.1.1.1", false),
            ("5.a.1", false),
            ("5..1", false),
        ] {
            assert_eq!(is_enhanced_code(code), valid, "{code}");
        }
        for (reply, enhanced, fits) in [
            (550, "5.1.1", true),
            (450, "5.1.1", false),
            (354, "3.0.0", false),
            (550, "55.1.1", false),
        ] {
            assert_eq!(
                enhanced_code_fits(reply, enhanced),
                fits,
                "{reply} {enhanced}"
            );
        }
    }
}
