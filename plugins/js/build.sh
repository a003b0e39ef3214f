#!/usr/bin/env bash
# Builds a JavaScript mailwit plugin: plugins/js/build.sh PLUGIN_DIR [-o OUT.wasm]
# Installs the pinned ComponentizeJS (package-lock.json) on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/node_modules/.bin/componentize-js" ]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi
exec node "$here/build.mjs" "$@"
