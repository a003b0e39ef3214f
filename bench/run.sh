#!/usr/bin/env bash
# The whole benchmark comparison in one command, on a fresh Debian/Ubuntu machine:
#
#   bash bench/run.sh                 # mailwit vs Postfix vs Haraka vs smtp-sink, results in bench/results/
#   bash bench/run.sh --smoke         # seconds, smtp-sink only
#   bash bench/run.sh --criterion     # also the plugin-path criterion benches (cargo bench -p mailwit)
#   bash bench/run.sh --messages 2000 --idle 1000 --targets postfix,mailwit   # any mailwit-bench run flag
#
# Installs what is missing (Postfix from apt, Node.js from apt, Haraka from npm into bench/.haraka),
# builds release binaries, runs `mailwit-bench run`. Run as root or with sudo available: Postfix's
# private instance needs root to start, and apt needs it to install.
set -euo pipefail

cd "$(dirname "$0")/.."
HARAKA_VERSION=3.3.4

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        sudo_if_needed apt-get update -qq
        apt_updated=1
    fi
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

criterion=""
args=()
for arg in "$@"; do
    case "$arg" in
        --criterion) criterion=1 ;;
        *) args+=("$arg") ;;
    esac
done
smoke=""
for arg in "${args[@]+"${args[@]}"}"; do [ "$arg" = "--smoke" ] && smoke=1; done

# Postfix: smtp-sink (the protocol limit) and smtpd (the reference MTA). "No configuration":
# the system's own Postfix stays unconfigured and stopped; the harness runs a private instance.
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
    echo "postfix postfix/main_mailer_type select No configuration" | sudo_if_needed debconf-set-selections
    apt_install postfix
fi

if [ -z "$smoke" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    if [ ! -f bench/.haraka/node_modules/Haraka/bin/haraka ]; then
        mkdir -p bench/.haraka
        npm install --prefix bench/.haraka --no-audit --no-fund --loglevel=error "Haraka@${HARAKA_VERSION}"
    fi
    # mailwit itself (its build also compiles the Wasm plugins). A failed build is reported and
    # the mailwit rows say "not available"; the other targets still run.
    if ! cargo build --release -p mailwit; then
        echo "warning: mailwit did not build; its rows will read 'not available'" >&2
    fi
fi

cargo build --release -p mailwit-bench
target/release/mailwit-bench run "${args[@]+"${args[@]}"}"

if [ -n "$criterion" ]; then
    if ls host/benches/*.rs >/dev/null 2>&1; then
        cargo bench -p mailwit
    else
        echo "no criterion benches in host/benches yet" >&2
    fi
fi
