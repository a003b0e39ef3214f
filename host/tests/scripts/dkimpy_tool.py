#!/usr/bin/env python3
"""dkimpy as an independent DKIM peer for mailwit's tests.

  dkimpy_tool.py keygen rsa|ed25519 PREFIX
      dknewkey: writes PREFIX.key (private) and PREFIX.dns (the TXT record value).
  dkimpy_tool.py sign KEYFILE DOMAIN SELECTOR < message > signed-message
      dkim.sign (relaxed/relaxed; the algorithm follows the key: ed25519 keys are dknewkey's
      base64 seed, anything else a PEM RSA key).
  dkimpy_tool.py arcsign KEYFILE DOMAIN SELECTOR < message > sealed-message
      dkim.arc_sign (RSA): adds the next ARC set; the message must carry an
      Authentication-Results field with authserv-id DOMAIN.
  dkimpy_tool.py verify NAME=RECORD... < message
      dkim.verify of the first signature with a dnsfunc that answers TXT lookups from the
      NAME=RECORD arguments (no DNS server involved); prints pass or fail, exits 0 or 1.
  dkimpy_tool.py arcverify NAME=RECORD... < message
      dkim.arc_verify of the whole ARC chain with the same dnsfunc; prints the chain validation
      (pass, fail or none) and the reason, exits 0 for pass.
"""
import sys

import dkim
import dkim.dknewkey


def keygen(ktype, prefix):
    argv = ["dknewkey"] + (["--ktype", "ed25519"] if ktype == "ed25519" else []) + [prefix]
    sys.argv = argv
    dkim.dknewkey.main()


def sign(keyfile, domain, selector):
    message = sys.stdin.buffer.read()
    key = open(keyfile, "rb").read()
    if key.startswith(b"-----"):
        algorithm = b"rsa-sha256"
    else:
        algorithm = b"ed25519-sha256"
        key = key.strip()
    signature = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key,
        signature_algorithm=algorithm,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    sys.stdout.buffer.write(signature + message)


def arcsign(keyfile, domain, selector):
    message = sys.stdin.buffer.read()
    key = open(keyfile, "rb").read()
    headers = dkim.arc_sign(message, selector.encode(), domain.encode(), key, domain.encode())
    sys.stdout.buffer.write(b"".join(headers) + message)


def dnsfunc_of(records):
    table = {}
    for item in records:
        name, _, value = item.partition("=")
        table[name.lower().rstrip(".")] = value.encode()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return table.get(name.lower().rstrip("."))

    return dnsfunc


def arcverify(records):
    message = sys.stdin.buffer.read()
    cv, _results, comment = dkim.arc_verify(message, dnsfunc=dnsfunc_of(records))
    print(cv.decode(), comment)
    sys.exit(0 if cv == b"pass" else 1)


def verify(records):
    table = {}
    for item in records:
        name, _, value = item.partition("=")
        table[name.lower().rstrip(".")] = value.encode()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return table.get(name.lower().rstrip("."))

    message = sys.stdin.buffer.read()
    ok = dkim.verify(message, dnsfunc=dnsfunc)
    print("pass" if ok else "fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "keygen":
        keygen(sys.argv[2], sys.argv[3])
    elif command == "sign":
        sign(sys.argv[2], sys.argv[3], sys.argv[4])
    elif command == "arcsign":
        arcsign(sys.argv[2], sys.argv[3], sys.argv[4])
    elif command == "arcverify":
        arcverify(sys.argv[2:])
    elif command == "verify":
        verify(sys.argv[2:])
    else:
        sys.exit("unknown command " + command)
