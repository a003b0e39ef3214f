#!/usr/bin/env bash
# Runs testssl.sh (Debian `testssl.sh`, binary `testssl`) against a running mailwit's STARTTLS
# (smtp, default 2525) and implicit-TLS (default 2465) listeners — the quickstart's — and prints
# the number of findings per severity and every finding of severity HIGH or CRITICAL. Exits 1 if
# there is any besides the self-signed certificate's trust (expected for the quickstart's
# generated certificate), or if testssl produced no findings at all (it could not connect).
#
# usage: host/tests/scripts/testssl.sh [HOST] [STARTTLS_PORT] [TLS_PORT]
#   e.g. cargo run --release -- serve --config examples/quickstart.toml &  then this script.
set -euo pipefail
host=${1:-127.0.0.1}
starttls_port=${2:-2525}
tls_port=${3:-2465}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Findings about trust in the generated, self-signed certificate are expected: no chain of trust,
# the name (mail.example.test) is not the address scanned, and with no issuing CA there is no
# CRL or OCSP URI to revoke it through.
expected='^(cert_chain_of_trust|cert_trust|cert_caIssuers|cert_revocation)'

status=0
for target in "starttls:$starttls_port" "tls:$tls_port"; do
  kind=${target%%:*}
  port=${target#*:}
  args=(--quiet --color 0 --warnings off --jsonfile "$out/$kind.json")
  if [ "$kind" = starttls ]; then args+=(-t smtp); fi
  testssl "${args[@]}" "$host:$port" >"$out/$kind.log" 2>&1 || true
  python3 - "$out/$kind.json" "$kind:$port" "$expected" <<'PY' || status=1
import json, re, sys
path, label, expected = sys.argv[1], sys.argv[2], sys.argv[3]
every = json.load(open(path))
order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "INFO", "OK"]
counts = {s: sum(1 for f in every if f.get("severity") == s) for s in order}
print(f"{label}: findings by severity: " + " ".join(f"{s}={n}" for s, n in counts.items()))
if not any(f.get("id") == "cipher_order" for f in every):
    print(f"{label}: testssl did not get as far as the cipher order (no connection?)")
    sys.exit(1)
findings = [f for f in every if f.get("severity") in ("HIGH", "CRITICAL")]
bad = [f for f in findings if not re.match(expected, f.get("id", ""))]
for f in findings:
    mark = "expected" if f not in bad else "FINDING"
    print(f"{label}: {mark}: {f['severity']} {f['id']}: {f.get('finding', '')}")
if not findings:
    print(f"{label}: no HIGH or CRITICAL finding")
sys.exit(1 if bad else 0)
PY
done
exit $status
