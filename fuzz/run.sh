#!/bin/sh
# Runs every fuzz target one after another, niced, for SECS seconds each (default 600).
# The generated corpus goes to WORK (default /tmp/mailwit-fuzz); fuzz/corpus/<target> only seeds it.
# Logs (with libFuzzer's final stats: stat::number_of_executed_units) go to WORK/<target>.log.
# Usage: fuzz/run.sh [SECS] [TARGET...]   (build first: cd fuzz && cargo +nightly fuzz build -O)
set -eu
cd "$(dirname "$0")"
SECS=${1:-600}
[ $# -gt 0 ] && shift
TARGETS=${*:-session data_decoder command_line bdat_scanner reply_parser config_toml message_headers}
WORK=${WORK:-/tmp/mailwit-fuzz}
BIN=target/x86_64-unknown-linux-gnu/release
for t in $TARGETS; do
    mkdir -p "$WORK/$t" "artifacts/$t"
    echo "== $t for ${SECS}s"
    nice -n 19 "$BIN/$t" -max_total_time="$SECS" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "$WORK/$t" "corpus/$t" >"$WORK/$t.log" 2>&1 || {
        echo "$t: FAILED, see $WORK/$t.log and fuzz/artifacts/$t/"
        continue
    }
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$WORK/$t.log" | tail -2
done
