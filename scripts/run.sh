#!/usr/bin/env bash
# Installs what is missing and runs the audioloop daemon. Where no sound
# server runs, the daemon starts its private headless PipeWire (embedded).
# Extra arguments go to `audioloop daemon` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/src/cli/main.js daemon "$@"
