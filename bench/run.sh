#!/usr/bin/env bash
# The whole benchmark comparison in one command, on a fresh Debian/Ubuntu machine:
#
#   bash bench/run.sh                 # smtp-sink, Postfix, mailwit (plugins, no plugins, relay); bench/results/
#   bash bench/run.sh --smoke         # seconds, smtp-sink only
#   bash bench/run.sh --criterion     # also the plugin-path criterion benches (cargo bench -p mailwit)
#   bash bench/run.sh --messages 2000 --idle 1000 --targets postfix,mailwit   # any mailwit-bench run flag
#   bash bench/run.sh --targets smtp-sink,postfix,haraka,mailwit   # Haraka too (installed from npm)
#
# Installs what is missing (Postfix from apt; Node.js and Haraka from npm into bench/.haraka only
# when a haraka target is asked for), builds release binaries, runs `mailwit-bench run`. Every
# target's state lives under target/bench-work/ on the machine's disk. Run as root or with sudo
# available: Postfix's private instance needs root to start, and apt needs it to install.
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
haraka=""
for arg in "${args[@]+"${args[@]}"}"; do
    [ "$arg" = "--smoke" ] && smoke=1
    case "$arg" in *haraka*) haraka=1 ;; esac
done

# Postfix: smtp-sink (the protocol limit) and smtpd (the reference MTA). "No configuration":
# the system's own Postfix stays unconfigured and stopped; the harness runs a private instance.
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
    echo "postfix postfix/main_mailer_type select No configuration" | sudo_if_needed debconf-set-selections
    apt_install postfix
fi

if [ -z "$smoke" ] && [ -n "$haraka" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    if [ ! -f bench/.haraka/node_modules/Haraka/bin/haraka ]; then
        mkdir -p bench/.haraka
        npm install --prefix bench/.haraka --no-audit --no-fund --loglevel=error "Haraka@${HARAKA_VERSION}"
    fi
fi
if [ -z "$smoke" ]; then
    # mailwit itself (its build also compiles the Wasm plugins). A failed build is reported and
    # the mailwit rows say "not available"; the other targets still run.
    if ! cargo build --release -p mailwit; then
        echo "warning: mailwit did not build; its rows will read 'not available'" >&2
    fi
fi

cargo build --release -p mailwit-bench
# Other work on the machine makes rates noisy: say how busy it was before and after.
echo "before: $(uptime)"
target/release/mailwit-bench run "${args[@]+"${args[@]}"}"
echo "after: $(uptime)"

if [ -n "$criterion" ]; then
    if ls host/benches/*.rs >/dev/null 2>&1; then
        cargo bench -p mailwit
    else
        echo "no criterion benches in host/benches yet" >&2
    fi
fi
