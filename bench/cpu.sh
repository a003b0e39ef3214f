#!/usr/bin/env bash
# Server CPU per message for one mailwit config, with the disk taken out: the state directory is
# on tmpfs (/dev/shm), the server is warmed with 10 messages per connection, then loaded, and its
# user+system CPU (from /proc) is divided by the messages sent. Steadier than msg/s on a noisy
# virtual disk; use it to compare builds or configs, alternating runs.
#
#   bash bench/cpu.sh bench/configs/mailwit-plugins.toml [CONNECTIONS] [MESSAGES_PER_CONN] [SIZE]
#   MAILWIT_BIN=/path/to/other/mailwit bash bench/cpu.sh ...     # compare two builds
#
# Needs release builds of mailwit and mailwit-bench (cargo build --release -p mailwit -p mailwit-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
config=$1; connections=${2:-50}; messages=${3:-100}; size=${4:-10240}
bench=target/release/mailwit-bench
mailwit=${MAILWIT_BIN:-target/release/mailwit}
work=$(mktemp -d /dev/shm/mailwit-cpu.XXXXXX)
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/etc"
sed "s/@PORT@/$port/" "$config" > "$work/etc/mailwit.toml"
RUST_LOG=warn "$mailwit" serve --config "$work/etc/mailwit.toml" --state-dir "$work/state" > "$work/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
"$bench" load --addr 127.0.0.1:$port -c "$connections" -m 10 -s "$size" > /dev/null
sleep 1
before=$(cpu)
rate=$("$bench" load --addr 127.0.0.1:$port -c "$connections" -m "$messages" -s "$size" | sed -n 's/.*"messages_per_sec": *\([0-9.]*\).*/\1/p')
sleep 2   # let queued deliveries finish: they count
after=$(cpu)
ticks=$(getconf CLK_TCK)
awk -v r="$rate" -v b="$before" -v a="$after" -v n=$((connections * messages)) -v t="$ticks" -v c="$(basename "$config")" \
    'BEGIN { printf "%s: %.0f msg/s, server CPU %.3f ms per message\n", c, r, (a - b) / t * 1000 / n }'
