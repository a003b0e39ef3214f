#!/usr/bin/env bash
# Builds a Python mailwit plugin: plugins/python/build.sh PLUGIN_DIR [-o OUT.wasm]
# Needs componentize-py (pip install componentize-py==0.25.1, the version .ci/run installs).
set -euo pipefail
exec python3 "$(dirname "$0")/build.py" "$@"
