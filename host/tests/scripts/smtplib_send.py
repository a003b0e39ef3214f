#!/usr/bin/env python3
"""Sends three messages to a running mailwit with Python's smtplib (a real, independent client).

usage: smtplib_send.py MX_PORT SUBMISSION_PORT SUBMISSIONS_PORT

1. plaintext to bob@example.test over the mx listener;
2. as alice over submission with STARTTLS + AUTH;
3. as alice over submissions (implicit TLS) + AUTH.
The server's certificate is self-signed, so verification is off. Exits non-zero on any failure.
"""
import smtplib
import ssl
import sys
from email.message import EmailMessage

HOST = "127.0.0.1"
ALICE = "alice@example.test"
PASSWORD = "alice-secret"


def message(subject, to):
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"Sent by smtplib: {subject}\n")
    return msg


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def main():
    mx, submission, submissions = (int(p) for p in sys.argv[1:4])

    with smtplib.SMTP(HOST, mx, timeout=30) as s:
        s.ehlo("smtplib.test")
        assert s.has_extn("pipelining") and s.has_extn("chunking"), s.esmtp_features
        assert not s.has_extn("auth"), "mx offers no AUTH in plaintext"
        refused = s.send_message(message("smtplib-mx", "bob@example.test"))
        assert not refused, refused
        try:
            s.send_message(message("smtplib-relay", "x@elsewhere.test"))
            raise AssertionError("relay accepted")
        except smtplib.SMTPRecipientsRefused as e:
            code = e.recipients["x@elsewhere.test"][0]
            assert code == 554, e.recipients

    with smtplib.SMTP(HOST, submission, timeout=30) as s:
        s.ehlo("smtplib.test")
        s.starttls(context=insecure())
        s.ehlo("smtplib.test")
        s.login(ALICE, PASSWORD)
        refused = s.send_message(message("smtplib-starttls", "bob@example.test"))
        assert not refused, refused

    with smtplib.SMTP_SSL(HOST, submissions, timeout=30, context=insecure()) as s:
        s.ehlo("smtplib.test")
        try:
            s.login(ALICE, "wrong-password")
            raise AssertionError("wrong password accepted")
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535, e
        s.login(ALICE, PASSWORD)
        refused = s.send_message(message("smtplib-implicit", "postmaster@example.test"))
        assert not refused, refused

    print("smtplib: 3 messages sent")


if __name__ == "__main__":
    main()
