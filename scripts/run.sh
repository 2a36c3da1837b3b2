#!/usr/bin/env bash
# Installs what is missing and runs the audioloop daemon. Where no sound
# server runs, the daemon starts its private headless PipeWire (embedded).
# Extra arguments go to `audioloop daemon` (see --help). The config is the
# daemon's own search (-c FILE, ~/.config/audioloop/audioloop.conf,
# /etc/audioloop/audioloop.conf, built-in defaults); the checkout's
# conf/audioloop.conf is the example, with every key at its default:
#   scripts/run.sh -c conf/audioloop.conf    reads it from the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# --lite-mode: V8 without its optimizing compiler; PCM never enters the
# daemon's JavaScript, so it costs nothing and saves ~5 MiB RSS (README "Memory")
exec node --lite-mode dist/src/cli/main.js daemon "$@"
