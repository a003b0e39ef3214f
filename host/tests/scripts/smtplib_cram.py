#!/usr/bin/env python3
"""AUTH CRAM-MD5 with Python's smtplib (a real, independent client), then ATRN.

usage: smtplib_cram.py PORT USER PASSWORD DOMAIN

Prints one line per step: "AUTH <code> <text>" (smtplib computes the HMAC-MD5 digest itself) and,
when AUTH succeeded, "ATRN <code> <text>". Exits non-zero only when something other than an SMTP
reply went wrong (no CRAM-MD5 offered, connection trouble).
"""
import smtplib
import sys

port, user, password, domain = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
with smtplib.SMTP("127.0.0.1", int(port), timeout=30) as smtp:
    smtp.ehlo("customer.test")
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    if "CRAM-MD5" not in offered:
        sys.exit(f"CRAM-MD5 not offered: {offered}")
    smtp.user, smtp.password = user, password
    try:
        code, text = smtp.auth("CRAM-MD5", smtp.auth_cram_md5)
    except smtplib.SMTPAuthenticationError as e:
        print(f"AUTH {e.smtp_code} {e.smtp_error.decode()}")
        sys.exit(0)
    print(f"AUTH {code} {text.decode()}")
    code, text = smtp.docmd("ATRN", domain)
    print(f"ATRN {code} {text.decode()}")
    if code == 250:
        # The line turned; this script is no SMTP server: hang up.
        sys.exit(0)
