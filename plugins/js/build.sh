#!/usr/bin/env bash
# Builds a JavaScript mailwit plugin: plugins/js/build.sh PLUGIN_DIR [-o OUT.wasm]
# Installs the pinned ComponentizeJS (package-lock.json) on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# Tests build several plugins at once: one npm ci at a time, and the others wait for it.
(
  flock 9
  if [ ! -f "$here/node_modules/.installed" ]; then
    (cd "$here" && npm ci --no-audit --no-fund && touch node_modules/.installed)
  fi
) 9>"$here/.npm-lock"
exec node "$here/build.mjs" "$@"
