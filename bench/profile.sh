#!/usr/bin/env bash
# Where one mailwit config spends its CPU per message: starts the server (state on the machine's
# disk under target/bench-work/, or STATE_ROOT=/dev/shm to take the disk out), warms it, drives it
# with the generator without PIPELINING (one round trip per command, as smtp-source), and reports
# the server's CPU per message (user+system from /proc), context switches per message (/proc),
# and the top symbols of a `perf record` (cpu-clock samples; Wasm functions named through
# wasmtime's perf map).
#
#   bash bench/profile.sh CONFIG [CONNECTIONS] [MESSAGES_PER_CONN] [OUT_PREFIX]
#   bash bench/profile.sh bench/configs/mailwit-plugins.toml 1 2000 bench/results/profile-plugins-1
#   MAILWIT_BIN=old/mailwit bash bench/profile.sh ...    # another build, for a before/after
#   bash bench/profile.sh bench/configs/mailwit-relay.toml 50 100   # starts an smtp-sink for @SINK_PORT@
#
# Writes OUT_PREFIX.txt (the summary and top symbols) when OUT_PREFIX is given.
# Needs release builds (cargo build --release -p mailwit -p mailwit-bench) and perf.
set -euo pipefail
cd "$(dirname "$0")/.."
config=$1; connections=${2:-1}; messages=${3:-2000}; out=${4:-}
bench=target/release/mailwit-bench
mailwit=${MAILWIT_BIN:-target/release/mailwit}
root=${STATE_ROOT:-target/bench-work}
mkdir -p "$root"
work=$(mktemp -d "$root/profile.XXXXXX")
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/etc"
sink=""
if grep -q @SINK_PORT@ "$config"; then
    # The relay config delivers to a second server: Postfix's smtp-sink (its CPU is not counted).
    sink_port=$((port + 1))
    smtp-sink $( [ "$(id -u)" -eq 0 ] && echo "-u nobody" ) 127.0.0.1:$sink_port 1000 &
    sink=$!
fi
sed "s/@PORT@/$port/; s/@SINK_PORT@/${sink_port:-0}/" "$config" > "$work/etc/mailwit.toml"
MAILWIT_WASM_PERFMAP=1 RUST_LOG=warn "$mailwit" serve --config "$work/etc/mailwit.toml" --state-dir "$work/state" > "$work/log" 2>&1 &
pid=$!
trap 'kill $pid $sink 2>/dev/null; wait $pid 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work" /tmp/perf-$pid.map' EXIT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
cpu() { awk '{print $14, $15}' /proc/$pid/stat; }
"$bench" load --addr 127.0.0.1:$port -c "$connections" -m 20 --no-pipelining > /dev/null
sleep 1
read -r u0 s0 < <(cpu)
# Context switches of the server's threads (voluntary + involuntary, summed over /proc tasks).
switches() { cat /proc/$pid/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n}'; }
cs0=$(switches)
perf record -F 999 -g -p $pid -o "$work/perf.data" 2> /dev/null &
rec=$!
sleep 0.5
rate=$("$bench" load --addr 127.0.0.1:$port -c "$connections" -m "$messages" --no-pipelining --time-limit 600 \
    | sed -n 's/.*"messages_per_sec": *\([0-9.]*\).*/\1/p')
sleep 2   # queued deliveries count
read -r u1 s1 < <(cpu)
cs1=$(switches)
kill -TERM $rec; wait $rec 2>/dev/null || true
n=$((connections * messages))
ticks=$(getconf CLK_TCK)
switches=$((cs1 - cs0))
summary=$(awk -v r="$rate" -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v n=$n -v t="$ticks" -v cs="$switches" \
    -v c="$(basename "$config")" -v k="$connections" -v fs="$(df -T "$work" | awk 'NR == 2 {print $2}')" \
    'BEGIN { printf "%s, %d connection(s) x %d messages, no pipelining, state on %s: %.0f msg/s, server CPU %.3f ms/msg (user %.3f, system %.3f, kernel %.0f %%), %.1f context switches/msg\n",
             c, k, n / k, fs, r, (u + s) / t * 1000 / n, u / t * 1000 / n, s / t * 1000 / n, s * 100 / (u + s), cs / n }')
echo "$summary"
top=$(perf report -i "$work/perf.data" --no-children -g none --sort dso,sym --stdio 2> /dev/null \
    | grep -E "^ +[0-9.]+%" | head -40 || true)
echo "$top"
if [ -n "$out" ]; then
    {
        echo "$summary"
        echo
        echo "perf record -F 999 -g (cpu-clock), perf report --no-children --sort dso,sym, top 40:"
        echo "$top"
        echo
        echo "by DSO:"
        perf report -i "$work/perf.data" --no-children -g none --sort dso --stdio 2> /dev/null | grep -E '^ +[0-9.]+%' | head -12 || true
    } > "$out.txt"
    echo "wrote $out.txt"
fi
