#!/usr/bin/env bash
# Runs the native tests once against an AddressSanitizer build of the addon:
# builds native/*.c (the addon; not pa-backend.c, the PulseAudio module
# that binding.gyp builds apart) with -fsanitize=address into a private
# dir, points the TS layer at it (AUDIOLOOP_NATIVE_ADDON), preloads libasan into node and
# runs the tests that drive the addon hardest (handle lifetimes in any
# order, the fd data plane of every loop mode) against a private PipeWire.
# Leak checking is off: node itself keeps allocations until exit.
# Usage: scripts/asan.sh [mocha args...]   (default: the native-heavy tests)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=$(mktemp -d "${TMPDIR:-/tmp}/audioloop-asan-XXXXXX")
rt="$out/rt"
cleanup() {
  bash scripts/soundserver.sh stop "$rt" >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup EXIT
nodever=$(node -p process.versions.node)
inc=""
for d in "$HOME/.cache/node-gyp/$nodever/include/node" "$HOME/.node-gyp/$nodever/include/node" /usr/include/node; do
  if [[ -f "$d/node_api.h" ]]; then inc=$d; break; fi
done
[[ -n "$inc" ]] || { echo "asan: no node headers found (run npm run build:native once)" >&2; exit 1; }
# shellcheck disable=SC2046
gcc -shared -fPIC -g -O1 -fno-omit-frame-pointer -fsanitize=address -std=gnu11 -Wall -Wextra \
  -Wno-unused-parameter -Wno-missing-field-initializers -DNAPI_VERSION=8 -I"$inc" \
  $(pkg-config --cflags libpipewire-0.3) $(ls native/*.c | grep -v '/pa-backend\.c$') -o "$out/audioloop_native.node" \
  $(pkg-config --libs libpipewire-0.3) -lm -ldl
echo "asan: built $out/audioloop_native.node" >&2
eval "$(bash scripts/soundserver.sh start "$rt")"
if [[ $# -eq 0 ]]; then
  set -- dist/test/integration/pipewire-backend.test.js dist/test/integration/loop.test.js dist/test/integration/faults.test.js
fi
export AUDIOLOOP_NATIVE_ADDON="$out/audioloop_native.node"
export LD_PRELOAD
LD_PRELOAD=$(gcc -print-file-name=libasan.so)
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
npx --no-install mocha --no-config --require dist/test/helpers/hooks.js --timeout 60000 "$@"
