#!/usr/bin/env bash
# Starts Redis, two mailwit instances and HAProxy on loopback, in the foreground; Ctrl-C stops all.
# Run from the repository root: examples/cluster/run.sh  (needs redis-server and haproxy)
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -p mailwit
bin=../../target/release/mailwit
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
mkdir -p var/redis
redis-server --port 6379 --bind 127.0.0.1 --dir var/redis --save "" --appendonly no & pids+=($!)
"$bin" serve --config mailwit-a.toml & pids+=($!)
"$bin" serve --config mailwit-b.toml & pids+=($!)
haproxy -db -f haproxy.cfg & pids+=($!)
wait
